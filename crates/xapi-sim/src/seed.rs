//! Populates a believable XCP-ng pool (spec §4.4): pool, hosts with metrics/CPUs/dom0/PIFs, networks, local and
//! shared SRs with PBDs, SM rows, roles, OS templates, VMs with disks/CD/VIFs/consoles/metrics, snapshots, messages.

use serde_json::{json, Value};
use xapi_types::{Ref, XapiError};

use crate::db::{rec, Db, Record};
use crate::state::now_xapi;

const GIB: i64 = 1024 * 1024 * 1024;
const MIB: i64 = 1024 * 1024;

/// What to build.
#[derive(Debug, Clone)]
pub struct SeedSpec {
    pub hosts: usize,
    pub vms: usize,
    /// Pool name label.
    pub name: String,
    /// IPv4 of host 0; host j gets the j-th next address.
    pub first_address: std::net::Ipv4Addr,
}

impl Default for SeedSpec {
    fn default() -> Self {
        SeedSpec {
            hosts: 1,
            vms: 0,
            name: "xcp-ng-pool".into(),
            first_address: std::net::Ipv4Addr::new(127, 0, 0, 1),
        }
    }
}

/// Address of host `j`.
pub fn host_address(first: std::net::Ipv4Addr, j: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(first).wrapping_add(j as u32))
}

fn mk(db: &mut Db, class: &str, fields: Record) -> Result<Ref, XapiError> {
    db.insert(class, fields)
}

fn mac(n: u64) -> String {
    format!(
        "aa:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        (n >> 32) & 0xff,
        (n >> 24) & 0xff,
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        n & 0xff
    )
}

/// Templates: (name, distro or "windows", HVM?).
const TEMPLATES: &[(&str, &str)] = &[
    ("Other install media", "other"),
    ("Debian Bookworm 12", "debian"),
    ("Debian Bullseye 11", "debian"),
    ("Ubuntu Jammy Jellyfish 22.04", "ubuntu"),
    ("Ubuntu Noble Numbat 24.04", "ubuntu"),
    ("CentOS Stream 9", "centos"),
    ("Rocky Linux 9", "rocky"),
    ("AlmaLinux 9", "almalinux"),
    ("Windows 10 (64-bit)", "windows"),
    ("Windows 11", "windows"),
    ("Windows Server 2019 (64-bit)", "windows"),
    ("Windows Server 2022 (64-bit)", "windows"),
];

const RUNNING_OPS: &[&str] = &[
    "changing_dynamic_range",
    "migrate_send",
    "pool_migrate",
    "changing_VCPUs_live",
    "suspend",
    "hard_reboot",
    "hard_shutdown",
    "clean_reboot",
    "clean_shutdown",
    "pause",
    "checkpoint",
    "snapshot",
];
const HALTED_OPS: &[&str] = &[
    "changing_dynamic_range",
    "changing_static_range",
    "changing_shadow_memory",
    "make_into_template",
    "changing_VCPUs",
    "changing_memory_limits",
    "changing_NVRAM",
    "create_vtpm",
    "destroy",
    "export",
    "copy",
    "clone",
    "provision",
    "start",
    "start_on",
    "snapshot",
    "migrate_send",
];
const SUSPENDED_OPS: &[&str] = &[
    "resume",
    "resume_on",
    "hard_shutdown",
    "migrate_send",
    "pool_migrate",
    "snapshot",
    "checkpoint",
];
const TEMPLATE_OPS: &[&str] = &[
    "changing_NVRAM",
    "changing_shadow_memory",
    "destroy",
    "export",
    "copy",
    "clone",
    "provision",
];

struct HostInfo {
    r: Ref,
    address: String,
    local_sr: Ref,
    dom0: Ref,
}

/// Build the pool into `db`. Returns the pool ref.
pub fn seed(db: &mut Db, spec: &SeedSpec) -> Result<Ref, XapiError> {
    let now = now_xapi();
    let hosts_n = spec.hosts.max(1);
    let mut seq: u64 = 0;
    let mut next = || {
        seq += 1;
        seq
    };

    // Roles.
    for (name, desc) in [
        (
            "pool-admin",
            "The Pool Administrator role has full access to all features and settings",
        ),
        (
            "pool-operator",
            "The Pool Operator role manages host- and pool-wide resources",
        ),
        (
            "vm-power-admin",
            "The VM Power Administrator role has full access to VM and template management",
        ),
        (
            "vm-admin",
            "The VM Administrator role can manage VMs and templates",
        ),
        (
            "vm-operator",
            "The VM Operator role can use VMs and interact with VM consoles",
        ),
        (
            "read-only",
            "The Read-Only role can log in with basic read-only access",
        ),
    ] {
        mk(
            db,
            "role",
            rec([
                ("name_label", json!(name)),
                ("name_description", json!(desc)),
                ("is_internal", json!(false)),
            ]),
        )?;
    }

    // Storage managers.
    for (ty, name, caps) in [
        (
            "ext",
            "Local EXT3 VHD",
            json!([
                "SR_PROBE",
                "SR_UPDATE",
                "VDI_CREATE",
                "VDI_DELETE",
                "VDI_ATTACH",
                "VDI_DETACH",
                "VDI_UPDATE",
                "VDI_CLONE",
                "VDI_SNAPSHOT",
                "VDI_RESIZE"
            ]),
        ),
        (
            "lvm",
            "Local LVHD",
            json!([
                "SR_PROBE",
                "SR_UPDATE",
                "VDI_CREATE",
                "VDI_DELETE",
                "VDI_ATTACH",
                "VDI_DETACH",
                "VDI_CLONE",
                "VDI_SNAPSHOT",
                "VDI_RESIZE"
            ]),
        ),
        (
            "nfs",
            "NFS VHD",
            json!([
                "SR_PROBE",
                "SR_UPDATE",
                "VDI_CREATE",
                "VDI_DELETE",
                "VDI_ATTACH",
                "VDI_DETACH",
                "VDI_UPDATE",
                "VDI_CLONE",
                "VDI_SNAPSHOT",
                "VDI_RESIZE",
                "VDI_MIRROR"
            ]),
        ),
        (
            "lvmoiscsi",
            "LVHD over iSCSI",
            json!([
                "SR_PROBE",
                "SR_UPDATE",
                "VDI_CREATE",
                "VDI_DELETE",
                "VDI_ATTACH",
                "VDI_DETACH",
                "VDI_CLONE",
                "VDI_SNAPSHOT",
                "VDI_RESIZE"
            ]),
        ),
        (
            "iso",
            "ISO",
            json!([
                "VDI_CREATE",
                "VDI_DELETE",
                "VDI_ATTACH",
                "VDI_DETACH",
                "SR_SCAN",
                "SR_ATTACH",
                "SR_DETACH"
            ]),
        ),
        (
            "udev",
            "Local Devices",
            json!([
                "VDI_INTRODUCE",
                "VDI_ATTACH",
                "VDI_DETACH",
                "VDI_UPDATE",
                "SR_UPDATE"
            ]),
        ),
    ] {
        let features: serde_json::Map<String, Value> = caps
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .map(|c| (c.to_owned(), json!(1)))
            .collect();
        mk(
            db,
            "SM",
            rec([
                ("name_label", json!(name)),
                ("name_description", json!(format!("SR plugin for {name}"))),
                ("type", json!(ty)),
                ("vendor", json!("Citrix Systems Inc / Vates")),
                ("copyright", json!("(C) 2008 Citrix Systems Inc")),
                ("version", json!("1.0")),
                ("required_api_version", json!("1.0")),
                ("capabilities", caps),
                ("features", Value::Object(features)),
                (
                    "driver_filename",
                    json!(format!("/opt/xensource/sm/{}SR", ty.to_uppercase())),
                ),
                ("required_cluster_stack", json!([])),
                ("supported_image_formats", json!(["vhd"])),
            ]),
        )?;
    }

    // Networks.
    let net = mk(
        db,
        "network",
        rec([
            (
                "name_label",
                json!("Pool-wide network associated with eth0"),
            ),
            ("name_description", json!("")),
            ("bridge", json!("xenbr0")),
            ("MTU", json!(1500)),
            ("managed", json!(true)),
            ("other_config", json!({})),
            ("default_locking_mode", json!("unlocked")),
        ]),
    )?;
    mk(
        db,
        "network",
        rec([
            ("name_label", json!("Host internal management network")),
            ("name_description", json!("Network on which guests will be assigned a private link-local IP address which can be used to talk XenAPI")),
            ("bridge", json!("xenapi")),
            ("MTU", json!(1500)),
            ("managed", json!(true)),
            ("other_config", json!({"is_guest_installer_network": "true", "is_host_internal_management_network": "true", "ip_begin": "169.254.0.1", "ip_end": "169.254.255.254", "netmask": "255.255.0.0"})),
            ("default_locking_mode", json!("unlocked")),
        ]),
    )?;

    // Pool-wide SRs.
    let shared_sr = if hosts_n > 1 {
        Some(mk(
            db,
            "SR",
            rec([
                ("name_label", json!("NFS shared storage")),
                ("name_description", json!("NFS SR [10.0.0.2:/srv/xcp]")),
                ("type", json!("nfs")),
                ("content_type", json!("user")),
                ("shared", json!(true)),
                ("physical_size", json!(4096 * GIB)),
                ("physical_utilisation", json!(0)),
                ("virtual_allocation", json!(0)),
                ("sm_config", json!({})),
                ("other_config", json!({"auto-scan": "true"})),
                (
                    "allowed_operations",
                    json!([
                        "vdi_enable_cbt",
                        "vdi_list_changed_blocks",
                        "unplug",
                        "plug",
                        "pbd_create",
                        "vdi_disable_cbt",
                        "update",
                        "pbd_destroy",
                        "vdi_resize",
                        "vdi_clone",
                        "vdi_data_destroy",
                        "scan",
                        "vdi_snapshot",
                        "vdi_mirror",
                        "vdi_create",
                        "vdi_destroy"
                    ]),
                ),
            ]),
        )?)
    } else {
        None
    };
    let tools_sr = mk(
        db,
        "SR",
        rec([
            ("name_label", json!("XCP-ng Tools")),
            ("name_description", json!("XCP-ng Tools ISOs")),
            ("type", json!("iso")),
            ("content_type", json!("iso")),
            ("shared", json!(true)),
            ("is_tools_sr", json!(true)),
            ("physical_size", json!(0)),
            ("sm_config", json!({})),
            (
                "other_config",
                json!({"i18n-key": "xenserver-tools", "xensource_internal": "true"}),
            ),
            (
                "allowed_operations",
                json!([
                    "forget",
                    "vdi_set_on_boot",
                    "plug",
                    "unplug",
                    "scan",
                    "update"
                ]),
            ),
        ]),
    )?;
    mk(
        db,
        "VDI",
        rec([
            ("name_label", json!("guest-tools.iso")),
            ("name_description", json!("XCP-ng VM Tools ISO")),
            ("SR", json!(tools_sr.0)),
            ("virtual_size", json!(60 * MIB)),
            ("physical_utilisation", json!(60 * MIB)),
            ("type", json!("user")),
            ("read_only", json!(true)),
            ("sharable", json!(true)),
            ("location", json!("guest-tools.iso")),
            ("managed", json!(true)),
            ("is_tools_iso", json!(true)),
            ("other_config", json!({})),
            ("on_boot", json!("persist")),
        ]),
    )?;

    // Hosts.
    let mut hosts: Vec<HostInfo> = Vec::new();
    for j in 0..hosts_n {
        let address = host_address(spec.first_address, j).to_string();
        let hostname = format!("xcp-ng-{}", j + 1);
        let metrics = mk(
            db,
            "host_metrics",
            rec([
                ("memory_total", json!(64 * GIB)),
                ("memory_free", json!(48 * GIB)),
                ("live", json!(true)),
                ("last_updated", json!(now)),
                ("other_config", json!({})),
            ]),
        )?;
        let host_ref = Db::new_ref();
        let dom0_ref = Db::new_ref();
        let cpu_info = json!({"cpu_count": "8", "socket_count": "1", "threads_per_core": "2", "vendor": "GenuineIntel", "speed": "2593.906", "modelname": "Intel(R) Xeon(R) CPU E5-2640 v3 @ 2.60GHz", "family": "6", "model": "63", "stepping": "2", "flags": "fpu de tsc msr pae mce cx8 apic sep mca cmov pat clflush acpi mmx fxsr sse sse2 ht syscall nx lm constant_tsc rep_good nopl nonstop_tsc pni pclmulqdq monitor est ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm", "features_pv": "17cbfbff-f7fa3223-2d93fbff-00000023-00000001-000007ab-00000000-00000000-00001000-0c000000", "features_hvm": "17cbfbff-f7fa3223-2d93fbff-00000023-00000001-000007ab-00000000-00000000-00001000-0c000000"});
        let local_sr = mk(
            db,
            "SR",
            rec([
                ("name_label", json!("Local storage")),
                (
                    "name_description",
                    json!(format!("Local storage on {hostname}")),
                ),
                ("type", json!("ext")),
                ("content_type", json!("user")),
                ("shared", json!(false)),
                ("physical_size", json!(500 * GIB)),
                ("physical_utilisation", json!(0)),
                ("virtual_allocation", json!(0)),
                ("sm_config", json!({"devserial": "scsi-3600508b1001c5"})),
                (
                    "other_config",
                    json!({"i18n-key": "local-storage", "i18n-original-value-name_label": "Local storage"}),
                ),
                (
                    "allowed_operations",
                    json!([
                        "vdi_enable_cbt",
                        "vdi_list_changed_blocks",
                        "unplug",
                        "plug",
                        "pbd_create",
                        "vdi_disable_cbt",
                        "update",
                        "pbd_destroy",
                        "vdi_resize",
                        "vdi_clone",
                        "vdi_data_destroy",
                        "scan",
                        "vdi_snapshot",
                        "vdi_mirror",
                        "vdi_create",
                        "vdi_destroy"
                    ]),
                ),
            ]),
        )?;
        let dvd_sr = mk(
            db,
            "SR",
            rec([
                ("name_label", json!("DVD drives")),
                ("name_description", json!("Physical DVD drives")),
                ("type", json!("udev")),
                ("content_type", json!("iso")),
                ("shared", json!(false)),
                ("sm_config", json!({"type": "cd"})),
                ("other_config", json!({"i18n-key": "local-hotplug-cd"})),
            ]),
        )?;
        let removable_sr = mk(
            db,
            "SR",
            rec([
                ("name_label", json!("Removable storage")),
                ("name_description", json!("")),
                ("type", json!("udev")),
                ("content_type", json!("disk")),
                ("shared", json!(false)),
                ("sm_config", json!({"type": "block"})),
                ("other_config", json!({"i18n-key": "local-hotplug-disk"})),
            ]),
        )?;
        db.create(
            "host",
            host_ref.clone(),
            rec([
                ("name_label", json!(hostname)),
                ("name_description", json!("Default install")),
                ("hostname", json!(hostname)),
                ("address", json!(address)),
                ("enabled", json!(true)),
                ("API_version_major", json!(2)),
                ("API_version_minor", json!(21)),
                ("API_version_vendor", json!("XenSource")),
                ("API_version_vendor_implementation", json!({})),
                ("software_version", json!({"product_version": "8.3.0", "product_version_text": "8.3", "product_version_text_short": "8.3", "platform_name": "XCP", "platform_version": "3.4.0", "product_brand": "XCP-ng", "build_number": "cloud", "git_id": "0", "hostname": "localhost", "date": "20240607T09:34:41Z", "dbv": "2024.0607", "is_preview_release": "false", "xapi": "24.19", "xapi_build": "24.19.2", "xen": "4.17.4-3", "linux": "4.19.0+1", "xencenter_min": "2.21", "xencenter_max": "2.21", "network_backend": "openvswitch", "db_schema": "5.781"})),
                ("capabilities", json!(["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_32p", "hvm-3.0-x86_64"])),
                ("cpu_configuration", json!({})),
                ("cpu_info", cpu_info),
                ("sched_policy", json!("credit")),
                ("supported_bootloaders", json!(["pygrub", "eliloader"])),
                ("memory_overhead", json!(700 * MIB)),
                ("metrics", json!(metrics.0)),
                ("control_domain", json!(dom0_ref.0)),
                ("edition", json!("xcp-ng")),
                ("editions", json!(["xcp-ng"])),
                ("license_params", json!({"sku_type": "free", "expiry": "20380119T03:14:07Z", "restrict_pool_attached_storage": "false"})),
                ("license_server", json!({"address": "localhost", "port": "27000"})),
                ("bios_strings", json!({"bios-vendor": "Xen", "system-manufacturer": "Xen", "system-product-name": "HVM domU"})),
                ("chipset_info", json!({"iommu": "true"})),
                ("other_config", json!({"agent_start_time": "1716900000.", "boot_time": "1716899900.", "iscsi_iqn": format!("iqn.2024-06.com.example:{hostname}")})),
                ("iscsi_iqn", json!(format!("iqn.2024-06.com.example:{hostname}"))),
                ("allowed_operations", json!(["vm_migrate", "provision", "vm_resume", "evacuate", "vm_start"])),
                ("virtual_hardware_platform_versions", json!([0, 1, 2])),
                ("display", json!("enabled")),
                ("suspend_image_sr", json!(local_sr.0)),
                ("crash_dump_sr", json!(local_sr.0)),
                ("logging", json!({})),
                ("power_on_mode", json!("")),
                ("external_auth_type", json!("")),
                ("last_software_update", json!(now)),
                ("tls_verification_enabled", json!(true)),
            ]),
        )?;
        for (sr, dc) in [
            (&local_sr, json!({"device": "/dev/sda3"})),
            (&dvd_sr, json!({"location": "/dev/xapi/cd"})),
            (&removable_sr, json!({"location": "/dev/xapi/block"})),
            (
                &tools_sr,
                json!({"location": "/opt/xensource/packages/iso", "legacy_mode": "true"}),
            ),
        ] {
            mk(
                db,
                "PBD",
                rec([
                    ("host", json!(host_ref.0)),
                    ("SR", json!(sr.0)),
                    ("device_config", dc),
                    ("currently_attached", json!(true)),
                    ("other_config", json!({})),
                ]),
            )?;
        }
        if let Some(s) = &shared_sr {
            mk(
                db,
                "PBD",
                rec([
                    ("host", json!(host_ref.0)),
                    ("SR", json!(s.0)),
                    (
                        "device_config",
                        json!({"server": "10.0.0.2", "serverpath": "/srv/xcp"}),
                    ),
                    ("currently_attached", json!(true)),
                    ("other_config", json!({})),
                ]),
            )?;
        }
        for n in 0..4 {
            mk(
                db,
                "host_cpu",
                rec([
                    ("host", json!(host_ref.0)),
                    ("number", json!(n)),
                    ("vendor", json!("GenuineIntel")),
                    ("speed", json!(2593)),
                    (
                        "modelname",
                        json!("Intel(R) Xeon(R) CPU E5-2640 v3 @ 2.60GHz"),
                    ),
                    ("family", json!(6)),
                    ("model", json!(63)),
                    ("stepping", json!("2")),
                    ("flags", json!("fpu de tsc msr pae")),
                    ("features", json!("17cbfbff-f7fa3223-2d93fbff-00000023")),
                    ("utilisation", json!(0.05)),
                    ("other_config", json!({})),
                ]),
            )?;
        }
        let pif_metrics = mk(
            db,
            "PIF_metrics",
            rec([
                ("carrier", json!(true)),
                ("speed", json!(1000)),
                ("duplex", json!(true)),
                ("vendor_name", json!("Intel Corporation")),
                ("device_name", json!("82574L Gigabit Network Connection")),
                ("pci_bus_path", json!("0000:00:19.0")),
                ("last_updated", json!(now)),
                ("other_config", json!({})),
            ]),
        )?;
        mk(
            db,
            "PIF",
            rec([
                ("device", json!("eth0")),
                ("network", json!(net.0)),
                ("host", json!(host_ref.0)),
                ("MAC", json!(mac(0x1000 + j as u64))),
                ("MTU", json!(1500)),
                ("VLAN", json!(-1)),
                ("metrics", json!(pif_metrics.0)),
                ("physical", json!(true)),
                ("currently_attached", json!(true)),
                ("ip_configuration_mode", json!("Static")),
                ("IP", json!(address)),
                ("netmask", json!("255.0.0.0")),
                ("gateway", json!("127.0.0.254")),
                ("DNS", json!("127.0.0.53")),
                ("management", json!(true)),
                ("managed", json!(true)),
                ("primary_address_type", json!("IPv4")),
                ("ipv6_configuration_mode", json!("None")),
                ("other_config", json!({})),
                ("properties", json!({"gro": "on"})),
                ("capabilities", json!(["fcoe"])),
            ]),
        )?;
        // dom0
        let dom0_metrics = vm_metrics(db, &now, 4 * GIB, 8, true, "pv")?;
        db.create(
            "VM",
            dom0_ref.clone(),
            rec([
                ("name_label", json!(format!("Control domain on host: {hostname}"))),
                ("name_description", json!("The domain which manages physical devices and manages other domains")),
                ("power_state", json!("Running")),
                ("is_control_domain", json!(true)),
                ("domid", json!(0)),
                ("resident_on", json!(host_ref.0)),
                ("memory_static_max", json!(4 * GIB)),
                ("memory_dynamic_max", json!(4 * GIB)),
                ("memory_dynamic_min", json!(4 * GIB)),
                ("memory_static_min", json!(4 * GIB)),
                ("memory_target", json!(4 * GIB)),
                ("VCPUs_max", json!(8)),
                ("VCPUs_at_startup", json!(8)),
                ("metrics", json!(dom0_metrics.0)),
                ("domain_type", json!("pv")),
                ("actions_after_shutdown", json!("destroy")),
                ("actions_after_reboot", json!("restart")),
                ("actions_after_crash", json!("restart")),
                ("other_config", json!({"storage_driver_domain": dom0_ref.0, "is_system_domain": "true", "perfmon": ""})),
                ("allowed_operations", json!(["changing_dynamic_range", "changing_VCPUs_live"])),
                ("user_version", json!(1)),
                ("HVM_shadow_multiplier", json!(1.0)),
            ]),
        )?;
        for proto in ["rfb", "vt100"] {
            console(db, &dom0_ref, proto, &address)?;
        }
        hosts.push(HostInfo {
            r: host_ref,
            address,
            local_sr,
            dom0: dom0_ref,
        });
    }
    let master = hosts[0].r.clone();
    let default_sr = shared_sr
        .clone()
        .unwrap_or_else(|| hosts[0].local_sr.clone());
    let pool = mk(
        db,
        "pool",
        rec([
            ("name_label", json!(spec.name)),
            ("name_description", json!("")),
            ("master", json!(master.0)),
            ("default_SR", json!(default_sr.0)),
            ("suspend_image_SR", json!(default_sr.0)),
            ("crash_dump_SR", json!(default_sr.0)),
            (
                "other_config",
                json!({"auto_poweron": "false", "memory-ratio-hvm": "0.25", "memory-ratio-pv": "0.25"}),
            ),
            (
                "cpu_info",
                json!({"cpu_count": (8 * hosts_n).to_string(), "socket_count": hosts_n.to_string(), "vendor": "GenuineIntel"}),
            ),
            (
                "restrictions",
                json!({"restrict_vswitch_controller": "false", "restrict_lab": "false", "restrict_pool_size": "false", "restrict_rbac": "false", "restrict_dmc": "false", "restrict_wlb": "false"}),
            ),
            ("ha_cluster_stack", json!("xhad")),
            (
                "allowed_operations",
                json!(["ha_enable", "cluster_create", "designate_new_master"]),
            ),
            ("gui_config", json!({})),
            ("health_check_config", json!({})),
            ("guest_agent_config", json!({})),
            ("migration_compression", json!(false)),
            ("coordinator_bias", json!(true)),
            ("tls_verification_enabled", json!(true)),
            ("local_auth_max_threads", json!(8)),
            ("ext_auth_max_threads", json!(1)),
        ]),
    )?;

    // Templates.
    let mut templates = Vec::new();
    for (name, distro) in TEMPLATES {
        let windows = *distro == "windows";
        let t = vm_row(
            db,
            &VmParams {
                name: name.to_string(),
                description: if windows {
                    "Clones of this template will automatically provision their storage when first booted and then reconfigure themselves with the optimal settings for Windows".into()
                } else {
                    String::new()
                },
                template: true,
                power: "Halted",
                host: None,
                memory: if windows { 4 * GIB } else { 2 * GIB },
                vcpus: 2,
                hvm: true,
                windows,
                now: &now,
            },
        )?;
        db.update("VM", &t, |r| {
            r.insert("is_default_template".into(), json!(true));
            r.insert("other_config".into(), json!({"default_template": "true", "install-methods": if windows { "cdrom" } else { "cdrom,nfs,http,ftp" }, "linux_template": if windows { "false" } else { "true" }, "base_template_name": name, "disks": "<provision><disk device=\"0\" size=\"34359738368\" sr=\"\" bootable=\"true\" type=\"system\"/></provision>"}));
            r.insert("allowed_operations".into(), json!(TEMPLATE_OPS));
            r.insert("reference_label".into(), json!(name.to_lowercase().replace([' ', '(', ')', '.'], "-")));
        })
        .ok();
        templates.push(t);
    }

    // Guest VMs.
    let mut vif_seq = 0u64;
    for i in 0..spec.vms {
        let host = &hosts[i % hosts.len()];
        let power = match i % 20 {
            0..=11 => "Running",
            12..=18 => "Halted",
            _ => "Suspended",
        };
        let windows = i % 4 == 3;
        let (tname, _) = TEMPLATES[1 + i % (TEMPLATES.len() - 1)];
        let sr = match (&shared_sr, i % 2) {
            (Some(s), 0) => s.clone(),
            _ => host.local_sr.clone(),
        };
        let vm = vm_row(
            db,
            &VmParams {
                name: format!("vm-{i:05}"),
                description: format!("Simulated VM {i} ({tname})"),
                template: false,
                power,
                host: Some(&host.r),
                memory: [GIB, 2 * GIB, 4 * GIB, 8 * GIB][i % 4],
                vcpus: [1, 2, 4][i % 3],
                hvm: true,
                windows,
                now: &now,
            },
        )?;
        // Disk + CD.
        let vdi = vdi_row(
            db,
            &sr,
            &format!("vm-{i:05} disk 0"),
            (10 + (i % 5) as i64 * 10) * GIB,
        )?;
        vbd_row(db, &vm, Some(&vdi), "0", "Disk", power == "Running")?;
        vbd_row(db, &vm, None, "3", "CD", power == "Running")?;
        if power == "Suspended" {
            let memory = db
                .field("VM", &vm, "memory_static_max")
                .ok()
                .and_then(Value::as_i64)
                .unwrap_or(GIB);
            let svdi = vdi_row(db, &sr, "Suspend image", memory)?;
            db.update("VDI", &svdi, |r| {
                r.insert("type".into(), json!("suspend"));
                r.insert(
                    "name_description".into(),
                    json!(format!("Suspend image of VM 'vm-{i:05}'")),
                );
            })?;
            db.set_field("VM", &vm, "suspend_VDI", json!(svdi.0))?;
        }
        vif_seq += 1;
        mk(
            db,
            "VIF",
            rec([
                ("device", json!("0")),
                ("network", json!(net.0)),
                ("VM", json!(vm.0)),
                ("MAC", json!(mac(vif_seq))),
                ("MTU", json!(1500)),
                ("currently_attached", json!(power == "Running")),
                ("MAC_autogenerated", json!(true)),
                ("locking_mode", json!("network_default")),
                ("other_config", json!({})),
                ("qos_algorithm_params", json!({})),
                (
                    "allowed_operations",
                    if power == "Running" {
                        json!(["attach", "unplug"])
                    } else {
                        json!(["attach"])
                    },
                ),
            ]),
        )?;
        if power == "Running" {
            console(db, &vm, "rfb", &host.address)?;
        }
        // Every 10th VM has a snapshot.
        if i % 10 == 0 {
            let snap = vm_row(
                db,
                &VmParams {
                    name: format!("vm-{i:05} snapshot"),
                    description: String::new(),
                    template: true,
                    power: "Halted",
                    host: None,
                    memory: GIB,
                    vcpus: 1,
                    hvm: true,
                    windows,
                    now: &now,
                },
            )?;
            db.update("VM", &snap, |r| {
                r.insert("is_a_snapshot".into(), json!(true));
                r.insert("snapshot_of".into(), json!(vm.0));
                r.insert("snapshot_time".into(), json!(now));
                r.insert(
                    "allowed_operations".into(),
                    json!([
                        "changing_NVRAM",
                        "changing_shadow_memory",
                        "destroy",
                        "export",
                        "copy",
                        "clone",
                        "revert"
                    ]),
                );
            })
            .ok();
            let svdi = vdi_row(db, &sr, &format!("vm-{i:05} disk 0"), 10 * GIB)?;
            db.update("VDI", &svdi, |r| {
                r.insert("is_a_snapshot".into(), json!(true));
                r.insert("snapshot_of".into(), json!(vdi.0));
                r.insert("snapshot_time".into(), json!(now));
            })
            .ok();
            vbd_row(db, &snap, Some(&svdi), "0", "Disk", false)?;
        }
        if i % 50 == 0 && power == "Running" {
            let uuid = db
                .field("VM", &vm, "uuid")
                .ok()
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_default();
            mk(
                db,
                "message",
                rec([
                    ("name", json!("VM_STARTED")),
                    ("priority", json!(5)),
                    ("cls", json!("VM")),
                    ("obj_uuid", json!(uuid)),
                    ("timestamp", json!(now)),
                    ("body", json!("")),
                ]),
            )?;
        }
        let _ = next();
    }
    // Host-level messages.
    for h in &hosts {
        let uuid = db
            .field("host", &h.r, "uuid")
            .ok()
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_default();
        mk(
            db,
            "message",
            rec([
                ("name", json!("HOST_CLOCK_SKEW_DETECTED")),
                ("priority", json!(3)),
                ("cls", json!("Host")),
                ("obj_uuid", json!(uuid)),
                ("timestamp", json!(now)),
                (
                    "body",
                    json!("The clock of the server appears to be off by 2 seconds"),
                ),
            ]),
        )?;
        let _ = &h.dom0;
    }
    let _ = templates;
    size_host_memory(db, &hosts)?;
    update_sr_usage(db);
    // allowed_operations and host_metrics.memory_free as the ops compute them.
    crate::ops::allowed::refresh_all(db)?;
    db.forget_history();
    Ok(pool)
}

/// Give every host enough RAM for what runs on it: `memory_total` = the next multiple of 64 GiB above
/// 1.25 × (host overhead + resident VMs' footprints) (at least 64 GiB), so `memory_free` stays believable.
fn size_host_memory(db: &mut Db, hosts: &[HostInfo]) -> Result<(), XapiError> {
    for h in hosts {
        let rec = db.record("host", &h.r)?;
        let metrics = Ref::from(
            rec.get("metrics")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        let mut used = rec
            .get("memory_overhead")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        for vm in rec
            .get("resident_VMs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            used = used.saturating_add(crate::ops::placement::vm_memory_footprint(
                db,
                &Ref::from(vm.as_str().unwrap_or_default()),
            ));
        }
        let step = 64 * GIB;
        let want = used.saturating_add(used / 4);
        let total = ((want / step) + 1).saturating_mul(step).max(step);
        db.set_field("host_metrics", &metrics, "memory_total", json!(total))?;
    }
    Ok(())
}

struct VmParams<'a> {
    name: String,
    description: String,
    template: bool,
    power: &'a str,
    host: Option<&'a Ref>,
    memory: i64,
    vcpus: i64,
    hvm: bool,
    windows: bool,
    now: &'a str,
}

fn vm_metrics(
    db: &mut Db,
    now: &str,
    memory: i64,
    vcpus: i64,
    running: bool,
    domain_type: &str,
) -> Result<Ref, XapiError> {
    let cpus: serde_json::Map<String, Value> =
        (0..vcpus).map(|n| (n.to_string(), json!(n % 8))).collect();
    mk(
        db,
        "VM_metrics",
        rec([
            ("memory_actual", json!(if running { memory } else { 0 })),
            ("VCPUs_number", json!(if running { vcpus } else { 0 })),
            (
                "VCPUs_CPU",
                if running {
                    Value::Object(cpus)
                } else {
                    json!({})
                },
            ),
            ("VCPUs_params", json!({})),
            ("VCPUs_flags", json!({})),
            ("state", json!([])),
            (
                "start_time",
                json!(if running {
                    now
                } else {
                    xapi_types::datetime::EPOCH
                }),
            ),
            ("install_time", json!(now)),
            ("last_updated", json!(now)),
            ("other_config", json!({})),
            ("hvm", json!(domain_type == "hvm")),
            ("nested_virt", json!(false)),
            ("nomigrate", json!(false)),
            (
                "current_domain_type",
                json!(if running { domain_type } else { "unspecified" }),
            ),
        ]),
    )
}

fn vm_row(db: &mut Db, p: &VmParams<'_>) -> Result<Ref, XapiError> {
    let running = p.power == "Running";
    // Only running (or paused) VMs are resident on a host; suspended ones are not.
    let live = running;
    let domain_type = if p.hvm { "hvm" } else { "pv" };
    let metrics = vm_metrics(db, p.now, p.memory, p.vcpus, running, domain_type)?;
    let guest_metrics = if running {
        let gm = mk(
            db,
            "VM_guest_metrics",
            rec([
                (
                    "os_version",
                    if p.windows {
                        json!({"name": "Microsoft Windows 11 Pro|C:\\Windows|\\Device\\Harddisk0\\Partition2", "distro": "windows", "major": "10", "minor": "0"})
                    } else {
                        json!({"name": "Debian GNU/Linux 12 (bookworm)", "distro": "debian", "major": "12", "minor": "5", "uname": "6.1.0-21-amd64"})
                    },
                ),
                (
                    "PV_drivers_version",
                    json!({"major": "9", "minor": "3", "micro": "3", "build": "0"}),
                ),
                ("PV_drivers_up_to_date", json!(true)),
                (
                    "networks",
                    json!({"0/ip": "10.1.0.10", "0/ipv4/0": "10.1.0.10"}),
                ),
                (
                    "other",
                    json!({"feature-shutdown": "1", "feature-suspend": "1", "feature-poweroff": "1", "feature-reboot": "1", "has-vendor-device": "0", "platform-feature-multiprocessor-suspend": "1"}),
                ),
                ("last_updated", json!(p.now)),
                ("other_config", json!({})),
                ("live", json!(true)),
                ("can_use_hotplug_vbd", json!("yes")),
                ("can_use_hotplug_vif", json!("yes")),
                ("PV_drivers_detected", json!(true)),
                ("netbios_name", json!({})),
                ("services", json!({})),
            ]),
        )?;
        gm.0
    } else {
        Ref::NULL_STR.to_owned()
    };
    let ops: &[&str] = if p.template {
        TEMPLATE_OPS
    } else {
        match p.power {
            "Running" => RUNNING_OPS,
            "Suspended" => SUSPENDED_OPS,
            _ => HALTED_OPS,
        }
    };
    let host = p
        .host
        .filter(|_| live)
        .map_or(Ref::NULL_STR.to_owned(), |h| h.0.clone());
    mk(
        db,
        "VM",
        rec([
            ("name_label", json!(p.name)),
            ("name_description", json!(p.description)),
            ("power_state", json!(p.power)),
            ("is_a_template", json!(p.template)),
            ("user_version", json!(1)),
            ("resident_on", json!(host)),
            ("affinity", json!(Ref::NULL_STR)),
            ("memory_overhead", json!(p.memory / 128)),
            ("memory_target", json!(if running { p.memory } else { 0 })),
            ("memory_static_max", json!(p.memory)),
            ("memory_dynamic_max", json!(p.memory)),
            ("memory_dynamic_min", json!(p.memory)),
            ("memory_static_min", json!(p.memory.min(512 * MIB))),
            ("VCPUs_params", json!({})),
            ("VCPUs_max", json!(p.vcpus)),
            ("VCPUs_at_startup", json!(p.vcpus)),
            ("actions_after_softreboot", json!("soft_reboot")),
            ("actions_after_shutdown", json!("destroy")),
            ("actions_after_reboot", json!("restart")),
            ("actions_after_crash", json!("restart")),
            ("HVM_boot_policy", json!(if p.hvm { "BIOS order" } else { "" })),
            ("HVM_boot_params", json!({"order": "cdn", "firmware": if p.windows { "uefi" } else { "bios" }})),
            ("HVM_shadow_multiplier", json!(1.0)),
            ("platform", json!({"timeoffset": "0", "device-model": "qemu-upstream-compat", "secureboot": "false", "viridian": if p.windows { "true" } else { "false" }, "nx": "true", "acpi": "1", "apic": "true", "pae": "true", "hpet": "true", "cores-per-socket": p.vcpus.to_string()})),
            ("other_config", json!({"base_template_name": "Debian Bookworm 12", "install-methods": "cdrom,nfs,http,ftp", "mac_seed": Db::new_uuid(), "import_task": ""})),
            ("domid", json!(if running { 1 + (db.count("VM") as i64 % 30000) } else { -1 })),
            ("domarch", json!(if running { "x64" } else { "" })),
            ("metrics", json!(metrics.0)),
            ("guest_metrics", json!(guest_metrics)),
            ("recommendations", json!("<restrictions><restriction field=\"memory-static-max\" max=\"1649267441664\"/><restriction field=\"vcpus-max\" max=\"32\"/><restriction property=\"number-of-vbds\" max=\"255\"/><restriction property=\"number-of-vifs\" max=\"7\"/><restriction field=\"has-vendor-device\" value=\"false\"/></restrictions>")),
            ("allowed_operations", json!(ops)),
            ("domain_type", json!(domain_type)),
            ("hardware_platform_version", json!(0)),
            ("generation_id", json!(if p.windows { "0:0" } else { "" })),
            ("ha_restart_priority", json!("")),
            ("has_vendor_device", json!(false)),
            ("NVRAM", json!({})),
        ]),
    )
}

fn vdi_row(db: &mut Db, sr: &Ref, name: &str, size: i64) -> Result<Ref, XapiError> {
    mk(
        db,
        "VDI",
        rec([
            ("name_label", json!(name)),
            ("name_description", json!("Created by the simulator")),
            ("SR", json!(sr.0)),
            ("virtual_size", json!(size)),
            ("physical_utilisation", json!(size / 4)),
            ("type", json!("user")),
            ("sharable", json!(false)),
            ("read_only", json!(false)),
            ("managed", json!(true)),
            ("location", json!(Db::new_uuid())),
            ("other_config", json!({})),
            (
                "sm_config",
                json!({"vhd-parent": "", "image-format": "vhd"}),
            ),
            ("on_boot", json!("persist")),
            (
                "allowed_operations",
                json!([
                    "clone",
                    "copy",
                    "resize",
                    "snapshot",
                    "mirror",
                    "destroy",
                    "forget",
                    "update",
                    "generate_config",
                    "enable_cbt",
                    "data_destroy",
                    "list_changed_blocks",
                    "set_on_boot",
                    "blocked"
                ]),
            ),
        ]),
    )
}

fn vbd_row(
    db: &mut Db,
    vm: &Ref,
    vdi: Option<&Ref>,
    userdevice: &str,
    ty: &str,
    attached: bool,
) -> Result<Ref, XapiError> {
    let empty = vdi.is_none();
    let device = match userdevice {
        "3" => "xvdd",
        "1" => "xvdb",
        _ => "xvda",
    };
    let metrics = Ref::NULL_STR;
    mk(
        db,
        "VBD",
        rec([
            ("VM", json!(vm.0)),
            (
                "VDI",
                json!(vdi.map_or(Ref::NULL_STR.to_owned(), |v| v.0.clone())),
            ),
            ("device", json!(if attached { device } else { "" })),
            ("userdevice", json!(userdevice)),
            ("bootable", json!(!empty)),
            ("mode", json!(if ty == "CD" { "RO" } else { "RW" })),
            ("type", json!(ty)),
            ("unpluggable", json!(ty != "CD")),
            ("empty", json!(empty)),
            ("currently_attached", json!(attached)),
            ("other_config", json!({"owner": ""})),
            ("qos_algorithm_type", json!("")),
            ("qos_algorithm_params", json!({})),
            ("metrics", json!(metrics)),
            (
                "allowed_operations",
                if attached {
                    json!(["attach", "unplug", "unplug_force"])
                } else {
                    json!(["attach", "plug"])
                },
            ),
        ]),
    )
}

fn console(db: &mut Db, vm: &Ref, protocol: &str, address: &str) -> Result<Ref, XapiError> {
    let r = Db::new_ref();
    let location = format!("https://{address}/console?ref={}", r.0);
    db.create(
        "console",
        r,
        rec([
            ("protocol", json!(protocol)),
            ("location", json!(location)),
            ("VM", json!(vm.0)),
            ("other_config", json!({})),
        ]),
    )
}

/// Recompute `SR.virtual_allocation` / `physical_utilisation` from the VDIs.
pub fn update_sr_usage(db: &mut Db) {
    let mut usage: std::collections::HashMap<String, (i64, i64)> = std::collections::HashMap::new();
    for (_, v) in db.all("VDI") {
        let sr = v
            .get("SR")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let e = usage.entry(sr).or_default();
        e.0 += v.get("virtual_size").and_then(Value::as_i64).unwrap_or(0);
        e.1 += v
            .get("physical_utilisation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
    }
    for (sr, (virt, phys)) in usage {
        let r = Ref::from(sr);
        if db.exists("SR", &r) {
            let _ = db.update("SR", &r, |rec| {
                rec.insert("virtual_allocation".into(), json!(virt));
                rec.insert("physical_utilisation".into(), json!(phys));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xapi_types::schema;

    #[test]
    fn every_seeded_field_is_canonical_for_its_type() {
        let mut db = Db::new();
        seed(
            &mut db,
            &SeedSpec {
                hosts: 2,
                vms: 40,
                ..SeedSpec::default()
            },
        )
        .unwrap();
        let mut bad = Vec::new();
        for c in schema::classes() {
            for (r, rec) in db.all(c.name) {
                for f in c.fields {
                    let v = rec.get(f.name).cloned().unwrap_or(Value::Null);
                    match schema::coerce(&f.ty, v.clone()) {
                        Ok(canon) if canon == v => {}
                        other => bad.push(format!("{}.{} of {r}: {v} → {other:?}", c.name, f.name)),
                    }
                }
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn pool_graph_is_consistent() {
        let mut db = Db::new();
        let pool = seed(
            &mut db,
            &SeedSpec {
                hosts: 3,
                vms: 30,
                ..SeedSpec::default()
            },
        )
        .unwrap();
        let master = crate::state::master_of(&db);
        assert_eq!(db.field("pool", &pool, "master").unwrap(), &json!(master.0));
        assert_eq!(db.count("host"), 3);
        for (h, rec) in db.all("host") {
            let dom0 = Ref::from(rec["control_domain"].as_str().unwrap());
            assert_eq!(db.field("VM", &dom0, "resident_on").unwrap(), &json!(h.0));
            assert!(!rec["PBDs"].as_array().unwrap().is_empty());
            assert_eq!(rec["PIFs"].as_array().unwrap().len(), 1);
            assert_eq!(rec["host_CPUs"].as_array().unwrap().len(), 4);
        }
        // Host memory accounts for what is resident (what XO shows as used memory).
        for (_, h) in db.all("host") {
            let m = db
                .get("host_metrics", &Ref::from(h["metrics"].as_str().unwrap()))
                .unwrap();
            let (total, free) = (
                m["memory_total"].as_i64().unwrap(),
                m["memory_free"].as_i64().unwrap(),
            );
            let used: i64 = h["resident_VMs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|vm| {
                    let vm = db.get("VM", &Ref::from(vm.as_str().unwrap())).unwrap();
                    let metrics = db
                        .get("VM_metrics", &Ref::from(vm["metrics"].as_str().unwrap()))
                        .unwrap();
                    metrics["memory_actual"].as_i64().unwrap()
                })
                .sum();
            assert!(
                free > 0 && free <= total - used,
                "free {free} total {total} used {used}"
            );
        }
        // Suspended VMs are not resident and have a suspend image.
        for (_, vm) in db.all("VM") {
            if vm["power_state"] == json!("Suspended") {
                assert_eq!(vm["resident_on"], json!(Ref::NULL_STR));
                let svdi = Ref::from(vm["suspend_VDI"].as_str().unwrap());
                assert_eq!(db.field("VDI", &svdi, "type").unwrap(), &json!("suspend"));
            }
        }
        let templates = db.find("VM", |v| v["is_default_template"] == json!(true));
        assert!(templates.len() >= 10);
        // Every running guest has guest metrics and a console; halted ones have neither.
        for (_, vm) in db.all("VM") {
            let running = vm["power_state"] == json!("Running");
            if vm["is_control_domain"] == json!(true) || vm["is_a_template"] == json!(true) {
                continue;
            }
            assert_eq!(vm["guest_metrics"] != json!(Ref::NULL_STR), running);
            assert_eq!(!vm["consoles"].as_array().unwrap().is_empty(), running);
            assert_eq!(vm["VBDs"].as_array().unwrap().len(), 2);
        }
    }
}
