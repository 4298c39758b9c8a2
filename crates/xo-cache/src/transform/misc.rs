//! The smaller XO types: `patch` (host_patch), `pool_patch`, `PCI`, `PGPU`, `vgpu`, `gpuGroup`, `vgpuType`,
//! `VTPM`, `PUSB`, `VUSB`, `USB_group`, `bond`, `SM`.

use serde_json::Value;

use crate::jsval::{get_str, num, put, raw, to_timestamp, truthy, Record};
use crate::lookup::Ctx;

fn typed(t: &str) -> Record {
    let mut o = Record::new();
    o.insert("type".into(), Value::String(t.into()));
    o
}

pub(super) fn host_patch(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = typed("patch");
    let pool_patch_ref = get_str(rec, "pool_patch");
    let pp = ctx.follow(rec, "pool_patch", "pool_patch");
    o.insert("applied".into(), Value::Bool(truthy(rec.get("applied"))));
    if let Some(pp) = pp {
        put(&mut o, "enforceHomogeneity", raw(pp, "pool_applied"));
        put(&mut o, "description", raw(pp, "name_description"));
        put(&mut o, "name", raw(pp, "name_label"));
        put(
            &mut o,
            "pool_patch",
            pool_patch_ref.map(|r| Value::String(r.to_owned())),
        );
        o.insert("size".into(), num(pp.get("size")));
        put(&mut o, "guidance", raw(pp, "after_apply_guidance"));
    }
    o.insert("time".into(), to_timestamp(rec.get("timestamp_applied")));
    put(&mut o, "$host", ctx.link(rec, "host"));
    o
}

pub(super) fn pool_patch(rec: &Record, r: &str, ctx: &Ctx<'_>) -> Record {
    let mut o = Record::new();
    o.insert("id".into(), Value::String(r.to_owned()));
    put(&mut o, "dataUuid", raw(rec, "uuid"));
    put(&mut o, "description", raw(rec, "name_description"));
    put(&mut o, "guidance", raw(rec, "after_apply_guidance"));
    put(&mut o, "name", raw(rec, "name_label"));
    o.insert("size".into(), num(rec.get("size")));
    o.insert("uuid".into(), Value::String(r.to_owned()));
    put(&mut o, "$host_patches", ctx.link_set(rec, "host_patches"));
    o
}

pub(super) fn pci(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = typed("PCI");
    put(&mut o, "class_name", raw(rec, "class_name"));
    put(&mut o, "device_name", raw(rec, "device_name"));
    put(&mut o, "pci_id", raw(rec, "pci_id"));
    put(&mut o, "$host", ctx.link(rec, "host"));
    o
}

pub(super) fn pgpu(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = typed("PGPU");
    put(&mut o, "dom0Access", raw(rec, "dom0_access"));
    put(
        &mut o,
        "enabledVgpuTypes",
        ctx.link_set(rec, "enabled_VGPU_types"),
    );
    put(&mut o, "gpuGroup", ctx.link(rec, "GPU_group"));
    o.insert(
        "isSystemDisplayDevice".into(),
        Value::Bool(truthy(rec.get("is_system_display_device"))),
    );
    put(&mut o, "pci", ctx.link(rec, "PCI"));
    // XO "links" the `supported_VGPU_max_capacities` map, which yields `undefined`: the key is never sent.
    put(
        &mut o,
        "supportedVgpuTypes",
        ctx.link_set(rec, "supported_VGPU_types"),
    );
    let host = ctx.link(rec, "host");
    put(&mut o, "host", host.clone());
    put(&mut o, "$host", host);
    let vgpus = ctx.link_set(rec, "resident_VGPUs");
    put(&mut o, "vgpus", vgpus.clone());
    put(&mut o, "$vgpus", vgpus);
    o
}

pub(super) fn vgpu(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = typed("vgpu");
    o.insert(
        "currentlyAttached".into(),
        Value::Bool(truthy(rec.get("currently_attached"))),
    );
    put(&mut o, "device", raw(rec, "device"));
    put(&mut o, "gpuGroup", ctx.link(rec, "GPU_group"));
    put(&mut o, "otherConfig", raw(rec, "other_config"));
    put(&mut o, "resident_on", ctx.link(rec, "resident_on"));
    put(&mut o, "vgpuType", ctx.link(rec, "type"));
    put(&mut o, "vm", ctx.link(rec, "VM"));
    o
}

pub(super) fn gpu_group(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = typed("gpuGroup");
    put(&mut o, "allocation", raw(rec, "allocation_algorithm"));
    put(
        &mut o,
        "enabledVgpuTypes",
        ctx.link_set(rec, "enabled_VGPU_types"),
    );
    put(&mut o, "gpuTypes", raw(rec, "GPU_types"));
    put(&mut o, "name_description", raw(rec, "name_description"));
    put(&mut o, "name_label", raw(rec, "name_label"));
    put(&mut o, "otherConfig", raw(rec, "other_config"));
    put(&mut o, "pgpus", ctx.link_set(rec, "PGPUs"));
    put(
        &mut o,
        "supportedVgpuTypes",
        ctx.link_set(rec, "supported_VGPU_types"),
    );
    put(&mut o, "vgpus", ctx.link_set(rec, "VGPUs"));
    o
}

pub(super) fn vgpu_type(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = typed("vgpuType");
    o.insert(
        "experimental".into(),
        Value::Bool(truthy(rec.get("experimental"))),
    );
    put(&mut o, "framebufferSize", raw(rec, "framebuffer_size"));
    put(
        &mut o,
        "gpuGroups",
        ctx.link_set(rec, "enabled_on_GPU_groups"),
    );
    put(&mut o, "maxHeads", raw(rec, "max_heads"));
    put(&mut o, "maxResolutionX", raw(rec, "max_resolution_x"));
    put(&mut o, "maxResolutionY", raw(rec, "max_resolution_y"));
    put(&mut o, "modelName", raw(rec, "model_name"));
    put(&mut o, "pgpus", ctx.link_set(rec, "enabled_on_PGPUs"));
    put(&mut o, "vendorName", raw(rec, "vendor_name"));
    put(&mut o, "vgpus", ctx.link_set(rec, "VGPUs"));
    o
}

pub(super) fn vtpm(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = typed("VTPM");
    put(&mut o, "vm", ctx.link(rec, "VM"));
    o
}

pub(super) fn pusb(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = typed("PUSB");
    let mut description = get_str(rec, "vendor_desc").unwrap_or("").to_owned();
    let product = get_str(rec, "product_desc").unwrap_or("").trim();
    if !product.is_empty() {
        description.push_str(" - ");
        description.push_str(product);
    }
    o.insert("description".into(), Value::String(description));
    put(&mut o, "host", ctx.link(rec, "host"));
    put(
        &mut o,
        "passthroughEnabled",
        raw(rec, "passthrough_enabled"),
    );
    put(&mut o, "speed", raw(rec, "speed"));
    put(&mut o, "usbGroup", ctx.link(rec, "USB_group"));
    put(&mut o, "vendorId", raw(rec, "vendor_id"));
    put(&mut o, "version", raw(rec, "version"));
    o
}

pub(super) fn vusb(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = typed("VUSB");
    put(&mut o, "vm", ctx.link(rec, "VM"));
    put(&mut o, "currentlyAttached", raw(rec, "currently_attached"));
    put(&mut o, "usbGroup", ctx.link(rec, "USB_group"));
    o
}

pub(super) fn usb_group(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = typed("USB_group");
    put(&mut o, "PUSBs", ctx.link_set(rec, "PUSBs"));
    put(&mut o, "VUSBs", ctx.link_set(rec, "VUSBs"));
    o
}

pub(super) fn bond(rec: &Record, ctx: &Ctx<'_>) -> Record {
    let mut o = typed("bond");
    put(&mut o, "master", ctx.link(rec, "master"));
    put(&mut o, "mode", raw(rec, "mode"));
    o
}

/// `SM` (storage driver), fields as listed in the spec (§4).
pub(super) fn sm(rec: &Record) -> Record {
    let mut o = typed("SM");
    put(&mut o, "SM_type", raw(rec, "type"));
    put(&mut o, "configuration", raw(rec, "configuration"));
    put(&mut o, "vendor", raw(rec, "vendor"));
    put(&mut o, "features", raw(rec, "features"));
    put(&mut o, "driver_filename", raw(rec, "driver_filename"));
    put(
        &mut o,
        "required_cluster_stack",
        raw(rec, "required_cluster_stack"),
    );
    put(
        &mut o,
        "supported_image_formats",
        raw(rec, "supported_image_formats"),
    );
    o
}
