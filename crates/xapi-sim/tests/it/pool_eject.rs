//! `pool.eject` through the dispatcher: its refusals (master, running guests, HA) change nothing; a
//! successful eject removes the member and everything that hangs off it, and only that.

use serde_json::{json, Value};
use xapi_sim::Sim;
use xapi_types::XapiError;

struct P {
    sim: Sim,
    s: String,
}

impl P {
    fn new() -> P {
        let sim = Sim::builder().hosts(3).vms(9).build().expect("build");
        let s = sim
            .call(
                "session.login_with_password",
                vec![json!("root"), json!("root"), json!("1.0"), json!("test")],
            )
            .expect("login");
        P {
            s: s.as_str().unwrap().to_owned(),
            sim,
        }
    }

    fn try_call(&self, method: &str, args: Vec<Value>) -> Result<Value, XapiError> {
        let mut p = vec![json!(self.s)];
        p.extend(args);
        self.sim.call(method, p)
    }

    fn call(&self, method: &str, args: Vec<Value>) -> Value {
        self.try_call(method, args)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    fn fail(&self, method: &str, args: Vec<Value>) -> Vec<String> {
        match self.try_call(method, args) {
            Ok(v) => panic!("{method} unexpectedly succeeded: {v}"),
            Err(e) => e.to_description(),
        }
    }

    fn all(&self, class: &str) -> serde_json::Map<String, Value> {
        self.call(&format!("{class}.get_all_records"), vec![])
            .as_object()
            .unwrap()
            .clone()
    }

    fn total(&self) -> usize {
        self.sim.state().read(xapi_sim::Db::total)
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pool_eject_refusals_change_nothing() {
    let p = P::new();
    let pool = p.call("pool.get_all", vec![])[0].clone();
    let master = p.call("pool.get_master", vec![pool.clone()]);
    let before = p.total();
    assert_eq!(
        p.fail("pool.eject", vec![master.clone()]),
        ["INTERNAL_ERROR", "Xapi_pool.Cannot_eject_master"]
    );
    assert_eq!(
        p.fail("pool.eject", vec![json!("OpaqueRef:nope")])[0],
        "HANDLE_INVALID"
    );
    // a member with a running guest
    let hosts = p.all("host");
    let (slave, _) = hosts
        .iter()
        .find(|(r, h)| {
            **r != master
                && strs(&h["resident_VMs"]).iter().any(|vm| {
                    let v = p.call("VM.get_record", vec![json!(vm)]);
                    v["is_control_domain"] == false && v["power_state"] == "Running"
                })
        })
        .expect("a member running a guest");
    assert_eq!(
        p.fail("pool.eject", vec![json!(slave)]),
        ["OPERATION_NOT_ALLOWED", "VM resident on host"]
    );
    // HA on
    p.call("pool.enable_ha", vec![json!([]), json!({})]);
    assert_eq!(p.fail("pool.eject", vec![json!(slave)]), ["HA_IS_ENABLED"]);
    p.call("pool.disable_ha", vec![]);
    assert_eq!(p.total(), before);
}

#[test]
fn pool_eject_removes_the_member_and_what_hangs_off_it() {
    let p = P::new();
    let pool = p.call("pool.get_all", vec![])[0].clone();
    let master = p.call("pool.get_master", vec![pool.clone()]);
    let hosts = p.all("host");
    let (slave, h) = hosts
        .iter()
        .find(|(r, _)| **r != master)
        .map(|(r, h)| (r.clone(), h.clone()))
        .unwrap();
    // stop what runs there (guests only: the control domain stays until the eject)
    for vm in strs(&h["resident_VMs"]) {
        let v = p.call("VM.get_record", vec![json!(vm)]);
        if v["is_control_domain"] == false && v["power_state"] != "Halted" {
            p.call("VM.hard_shutdown", vec![json!(vm)]);
        }
    }
    let dom0 = h["control_domain"].as_str().unwrap().to_owned();
    let pifs = strs(&h["PIFs"]);
    let pbds = strs(&h["PBDs"]);
    let cpus = strs(&h["host_CPUs"]);
    let metrics = h["metrics"].as_str().unwrap().to_owned();
    let srs: Vec<String> = pbds
        .iter()
        .map(|pbd| {
            p.call("PBD.get_SR", vec![json!(pbd)])
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let shared: Vec<&String> = srs
        .iter()
        .filter(|sr| p.call("SR.get_shared", vec![json!(sr)]) == true)
        .collect();
    assert!(!pifs.is_empty() && !cpus.is_empty() && !srs.is_empty());
    // a session the member's own toolstack holds
    let local =
        p.sim
            .state()
            .create_session("root", &xapi_types::Ref::from(slave.as_str()), "t", true);
    let hosts_before = p.all("host").len();
    let vms_before = p.all("VM").len();

    assert_eq!(p.call("pool.eject", vec![json!(slave)]), json!(""));

    assert_eq!(
        p.fail("host.get_record", vec![json!(slave)])[0],
        "HANDLE_INVALID"
    );
    assert_eq!(p.all("host").len(), hosts_before - 1);
    assert!(!p.sim.state().session_valid(&local));
    for (class, refs) in [
        ("PIF", &pifs),
        ("PBD", &pbds),
        ("host_cpu", &cpus),
        ("host_metrics", &vec![metrics]),
        ("VM", &vec![dom0]),
    ] {
        for r in refs {
            assert_eq!(
                p.fail(&format!("{class}.get_record"), vec![json!(r)])[0],
                "HANDLE_INVALID",
                "{class} {r}"
            );
        }
    }
    // its local SRs are forgotten; shared ones stay, reachable from the other members
    for sr in &srs {
        let gone = p.try_call("SR.get_record", vec![json!(sr)]).is_err();
        assert_eq!(gone, !shared.contains(&sr), "SR {sr}");
    }
    for sr in shared {
        let pbds = strs(&p.call("SR.get_PBDs", vec![json!(sr)]));
        assert_eq!(pbds.len(), hosts_before - 1);
    }
    // only the member's control domain left the VM table; no dangling host refs anywhere
    assert_eq!(p.all("VM").len(), vms_before - 1);
    let text =
        serde_json::to_string(&[p.all("VM"), p.all("PBD"), p.all("PIF"), p.all("pool")]).unwrap();
    assert!(
        !text.contains(slave.as_str()),
        "a record still points at the ejected host"
    );
    // the remaining pool works
    let other = p
        .all("host")
        .keys()
        .find(|r| **r != master)
        .cloned()
        .unwrap();
    p.call("host.disable", vec![json!(other)]);
    p.call("host.enable", vec![json!(other)]);
    // ejecting it again: it is gone
    assert_eq!(
        p.fail("pool.eject", vec![json!(slave)])[0],
        "HANDLE_INVALID"
    );
}

#[test]
fn host_destroy_forgets_a_member_that_is_down_for_good() {
    let p = P::new();
    let pool = p.call("pool.get_all", vec![])[0].clone();
    let master = p.call("pool.get_master", vec![pool]);
    let slave = p
        .all("host")
        .keys()
        .find(|r| json!(r) != master)
        .unwrap()
        .clone();
    // a live host, the master: refused, nothing changes
    let before = p.total();
    assert_eq!(
        p.fail("host.destroy", vec![json!(slave)]),
        ["HOST_IS_LIVE", slave.as_str()]
    );
    assert_eq!(p.total(), before);
    let metrics = p.call("host.get_metrics", vec![json!(slave)]);
    let sim = &p.sim;
    sim.state()
        .write(|db| {
            db.set_field(
                "host_metrics",
                &xapi_types::Ref::from(metrics.as_str().unwrap()),
                "live",
                json!(false),
            )
        })
        .unwrap();
    // down, but guests are still resident there
    let e = p.fail("host.destroy", vec![json!(slave)]);
    assert_eq!(e, ["HOST_HAS_RESIDENT_VMS", slave.as_str()]);
    for vm in strs(&p.call("host.get_resident_VMs", vec![json!(slave)])) {
        let v = p.call("VM.get_record", vec![json!(vm)]);
        if v["is_control_domain"] == false {
            p.call("VM.power_state_reset", vec![json!(vm)]);
        }
    }
    p.call("host.destroy", vec![json!(slave)]);
    assert!(!p.all("host").contains_key(&slave));
    assert!(p.all("PBD").values().all(|pbd| pbd["host"] != json!(slave)));
    let e = p.fail("host.destroy", vec![master.clone()]);
    assert_eq!(e[0], "HOST_IS_LIVE");
}
