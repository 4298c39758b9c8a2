//! VM configuration setters with XAPI's checks (memory, VCPUs, template flag, affinity, blocked operations) and
//! the VM query messages (allowed devices, possible hosts, assertions, `update_allowed_operations`).

use serde_json::json;
use xapi_types::{Ref, Value, XapiError};

use super::allowed::{assert_vm_op, update_vm, update_vm_tree};
use super::device::DeviceClass;
use super::helpers::{check_memory_constraints, get, i, jr, rf, s, set, valid, void, Params};
use super::placement::{assert_can_boot_here, possible_hosts, update_host_memory};
use super::vbd::VBD;
use super::vif::VIF;
use super::vm::{ensure_metrics, power};
use super::vm_ops_check::{PowerState, VmOp};
use crate::db::Db;
use crate::rpc::{Ctx, Registry};

pub fn register(reg: &mut Registry) {
    reg.register("VM.set_memory_limits", set_memory_limits);
    reg.register("VM.set_memory", set_memory);
    reg.register("VM.set_memory_static_max", set_memory_static_max);
    reg.register("VM.set_memory_static_min", set_memory_static_min);
    reg.register("VM.set_memory_static_range", set_memory_static_range);
    reg.register("VM.set_memory_dynamic_range", set_memory_dynamic_range);
    reg.register("VM.set_memory_dynamic_max", set_memory_dynamic_max);
    reg.register("VM.set_memory_dynamic_min", set_memory_dynamic_min);
    reg.register("VM.set_VCPUs_max", set_vcpus_max);
    reg.register("VM.set_VCPUs_at_startup", set_vcpus_at_startup);
    reg.register("VM.set_VCPUs_number_live", set_vcpus_number_live);
    reg.register("VM.set_is_a_template", set_is_a_template);
    reg.register("VM.set_affinity", set_affinity);
    reg.register("VM.add_to_blocked_operations", add_to_blocked_operations);
    reg.register(
        "VM.remove_from_blocked_operations",
        remove_from_blocked_operations,
    );
    reg.register("VM.set_blocked_operations", set_blocked_operations);
    reg.register("VM.get_allowed_VBD_devices", get_allowed_vbd_devices);
    reg.register("VM.get_allowed_VIF_devices", get_allowed_vif_devices);
    reg.register("VM.get_possible_hosts", get_possible_hosts);
    reg.register("VM.assert_can_boot_here", assert_can_boot_here_h);
    reg.register("VM.assert_operation_valid", assert_operation_valid);
    reg.register("VM.update_allowed_operations", update_allowed_operations);
    reg.register("VM.send_sysrq", send_sysrq);
    reg.register("VM.send_trigger", send_trigger);
    reg.register("VM.call_plugin", call_plugin);
}

/// The four memory limits (static_min, dynamic_min, dynamic_max, static_max).
#[derive(Debug, Clone, Copy)]
struct Mem {
    smin: i64,
    dmin: i64,
    dmax: i64,
    smax: i64,
}

fn mem_of(db: &Db, vm: &Ref) -> Result<Mem, XapiError> {
    let r = db.record("VM", vm)?;
    Ok(Mem {
        smin: i(r, "memory_static_min"),
        dmin: i(r, "memory_dynamic_min"),
        dmax: i(r, "memory_dynamic_max"),
        smax: i(r, "memory_static_max"),
    })
}

/// Check the op, the constraints, then write the limits (a running VM's memory_actual follows dynamic_max).
fn apply_mem(db: &mut Db, vm: &Ref, op: VmOp, m: Mem) -> Result<(), XapiError> {
    assert_vm_op(db, vm, op)?;
    check_memory_constraints(m.smin, m.dmin, m.dmax, m.smax)?;
    set(
        db,
        "VM",
        vm,
        vec![
            ("memory_static_min", json!(m.smin)),
            ("memory_dynamic_min", json!(m.dmin)),
            ("memory_dynamic_max", json!(m.dmax)),
            ("memory_static_max", json!(m.smax)),
            ("memory_target", json!(m.dmax)),
        ],
    )?;
    if power(db, vm).is_live() {
        let metrics = ensure_metrics(db, vm)?;
        db.set_field("VM_metrics", &metrics, "memory_actual", json!(m.dmax))?;
        let host = rf(db.record("VM", vm)?, "resident_on");
        if valid(db, "host", &host) {
            update_host_memory(db, &host)?;
        }
    }
    update_vm(db, vm)
}

fn mem_setter(
    ctx: &Ctx,
    p: &[Value],
    op: VmOp,
    f: impl FnOnce(Mem, &Params) -> Result<Mem, XapiError>,
) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, p);
    let vm = pp.r(0)?;
    ctx.pool
        .write(|db| {
            let m = f(mem_of(db, &vm)?, &pp)?;
            apply_mem(db, &vm, op, m)
        })
        .map(|_| void())
}

/// One of the four memory limits, as a setter parameter names it.
#[derive(Debug, Clone, Copy)]
enum Limit {
    StaticMin,
    DynamicMin,
    DynamicMax,
    StaticMax,
}

impl Mem {
    fn with(mut self, limit: Limit, v: i64) -> Mem {
        *match limit {
            Limit::StaticMin => &mut self.smin,
            Limit::DynamicMin => &mut self.dmin,
            Limit::DynamicMax => &mut self.dmax,
            Limit::StaticMax => &mut self.smax,
        } = v;
        self
    }
}

/// A setter whose parameters 1, 2, … are the new values of `limits`, in that order.
fn limits_setter(ctx: &Ctx, p: Vec<Value>, op: VmOp, limits: &[Limit]) -> Result<Value, XapiError> {
    mem_setter(ctx, &p, op, |m, pp| {
        limits
            .iter()
            .enumerate()
            .try_fold(m, |m, (k, l)| Ok(m.with(*l, pp.i(k + 1)?)))
    })
}

fn set_memory_limits(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    use Limit::*;
    let limits = [StaticMin, StaticMax, DynamicMin, DynamicMax];
    limits_setter(ctx, p, VmOp::changing_memory_limits, &limits)
}

fn set_memory(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    mem_setter(ctx, &p, VmOp::changing_memory_limits, |m, pp| {
        let v = pp.i(1)?;
        Ok(Mem {
            smin: m.smin,
            dmin: v,
            dmax: v,
            smax: v,
        })
    })
}

fn set_memory_static_max(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    limits_setter(ctx, p, VmOp::changing_static_range, &[Limit::StaticMax])
}

fn set_memory_static_min(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    limits_setter(ctx, p, VmOp::changing_static_range, &[Limit::StaticMin])
}

fn set_memory_static_range(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let limits = [Limit::StaticMin, Limit::StaticMax];
    limits_setter(ctx, p, VmOp::changing_static_range, &limits)
}

fn set_memory_dynamic_range(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let limits = [Limit::DynamicMin, Limit::DynamicMax];
    limits_setter(ctx, p, VmOp::changing_dynamic_range, &limits)
}

fn set_memory_dynamic_max(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    limits_setter(ctx, p, VmOp::changing_dynamic_range, &[Limit::DynamicMax])
}

fn set_memory_dynamic_min(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    limits_setter(ctx, p, VmOp::changing_dynamic_range, &[Limit::DynamicMin])
}

/// Upper bound accepted for `VCPUs_max` (XAPI's limit for HVM guests).
pub const MAX_VCPUS: i64 = 128;

fn vcpu_error() -> XapiError {
    XapiError::new(
        "INVALID_VALUE",
        ["VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max"],
    )
}

/// A VCPU setter: `VM.x(vm, n)` checked against `op`, then `check(db, vm, n)`, then `apply(db, vm, n)`.
fn vcpu_setter(
    ctx: &Ctx,
    p: &[Value],
    op: VmOp,
    check: impl FnOnce(&Db, &Ref, i64) -> Result<(), XapiError>,
    apply: impl FnOnce(&mut Db, &Ref, i64) -> Result<(), XapiError>,
) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, p);
    let vm = pp.r(0)?;
    let n = pp.i(1)?;
    ctx.pool
        .write(|db| {
            assert_vm_op(db, &vm, op)?;
            check(db, &vm, n)?;
            apply(db, &vm, n)?;
            update_vm(db, &vm)
        })
        .map(|_| void())
}

/// `Err(vcpu_error())` unless `1 ≤ n ≤ VCPUs_max`.
fn at_most_vcpus_max(db: &Db, vm: &Ref, n: i64) -> Result<(), XapiError> {
    let max = i(db.record("VM", vm)?, "VCPUs_max");
    if n < 1 || n > max {
        return Err(vcpu_error());
    }
    Ok(())
}

fn set_vcpus_max(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    vcpu_setter(
        ctx,
        &p,
        VmOp::changing_VCPUs,
        |db, vm, v| {
            let at_startup = i(db.record("VM", vm)?, "VCPUs_at_startup");
            if v < 1 || v < at_startup {
                return Err(vcpu_error());
            }
            if v > MAX_VCPUS {
                return Err(XapiError::new(
                    "INVALID_VALUE",
                    ["VCPUs_max".to_owned(), v.to_string()],
                ));
            }
            Ok(())
        },
        |db, vm, v| db.set_field("VM", vm, "VCPUs_max", json!(v)),
    )
}

fn set_vcpus_at_startup(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    vcpu_setter(
        ctx,
        &p,
        VmOp::changing_VCPUs,
        at_most_vcpus_max,
        |db, vm, v| db.set_field("VM", vm, "VCPUs_at_startup", json!(v)),
    )
}

fn set_vcpus_number_live(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    vcpu_setter(
        ctx,
        &p,
        VmOp::changing_VCPUs_live,
        at_most_vcpus_max,
        |db, vm, n| {
            db.set_field("VM", vm, "VCPUs_at_startup", json!(n))?;
            let metrics = ensure_metrics(db, vm)?;
            db.set_field("VM_metrics", &metrics, "VCPUs_number", json!(n))
        },
    )
}

fn set_is_a_template(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let v = pp.b(1)?;
    ctx.pool
        .write(|db| {
            let r = get(db, "VM", &vm)?;
            if v && !super::helpers::b(&r, "is_a_template") {
                assert_vm_op(db, &vm, VmOp::make_into_template)?;
            }
            if !v && super::helpers::b(&r, "is_a_snapshot") {
                return Err(XapiError::new(
                    "VM_IS_SNAPSHOT",
                    [vm.0.as_str(), "make_into_template"],
                ));
            }
            let mut fields = vec![("is_a_template", json!(v))];
            if v {
                fields.push(("ha_always_run", json!(false)));
            }
            set(db, "VM", &vm, fields)?;
            update_vm_tree(db, &vm)
        })
        .map(|_| void())
}

fn set_affinity(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let host = pp.r(1)?;
    ctx.pool
        .write(|db| {
            get(db, "VM", &vm)?;
            if !host.is_null() {
                get(db, "host", &host)?;
            }
            db.set_field("VM", &vm, "affinity", jr(&host))
        })
        .map(|_| void())
}

fn blocked_op(
    ctx: &Ctx,
    p: Vec<Value>,
    f: impl FnOnce(&mut Db, &Ref, &Params) -> Result<(), XapiError>,
) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    ctx.pool
        .write(|db| {
            get(db, "VM", &vm)?;
            f(db, &vm, &pp)?;
            update_vm(db, &vm)
        })
        .map(|_| void())
}

fn add_to_blocked_operations(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    blocked_op(ctx, p, |db, vm, pp| {
        let key = pp.s(1)?;
        let value = pp.s(2)?;
        if VmOp::parse(&key).is_none() {
            return Err(XapiError::new("INVALID_VALUE", ["key".to_owned(), key]));
        }
        let r = db.record("VM", vm)?;
        let mut m = r
            .get("blocked_operations")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if m.contains_key(&key) {
            let uuid = s(r, "uuid").to_owned();
            return Err(XapiError::new(
                "MAP_DUPLICATE_KEY",
                ["VM".to_owned(), "blocked_operations".into(), uuid, key],
            ));
        }
        m.insert(key, json!(value));
        db.set_field("VM", vm, "blocked_operations", Value::Object(m))
    })
}

fn remove_from_blocked_operations(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    blocked_op(ctx, p, |db, vm, pp| {
        let key = pp.s(1)?;
        let mut m = db
            .field("VM", vm, "blocked_operations")?
            .as_object()
            .cloned()
            .unwrap_or_default();
        if m.remove(&key).is_some() {
            db.set_field("VM", vm, "blocked_operations", Value::Object(m))?;
        }
        Ok(())
    })
}

fn set_blocked_operations(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    blocked_op(ctx, p, |db, vm, pp| {
        let m = pp.map(1)?;
        if let Some(k) = m.keys().find(|k| VmOp::parse(k).is_none()) {
            return Err(XapiError::new(
                "INVALID_VALUE",
                ["key".to_owned(), k.clone()],
            ));
        }
        db.set_field("VM", vm, "blocked_operations", Value::Object(m))
    })
}

fn strings(v: Vec<String>) -> Value {
    Value::Array(v.into_iter().map(Value::String).collect())
}

fn allowed_devices(ctx: &Ctx, p: Vec<Value>, class: DeviceClass) -> Result<Value, XapiError> {
    let vm = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.read(|db| {
        get(db, "VM", &vm)?;
        Ok(strings(class.allowed(db, &vm)))
    })
}

fn get_allowed_vbd_devices(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    allowed_devices(ctx, p, VBD)
}

fn get_allowed_vif_devices(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    allowed_devices(ctx, p, VIF)
}

fn get_possible_hosts(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vm = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.read(|db| {
        let r = get(db, "VM", &vm)?;
        // A running VM can only be where it is.
        if power(db, &vm) != PowerState::Halted {
            let h = rf(&r, "resident_on");
            return Ok(Value::Array(if valid(db, "host", &h) {
                vec![jr(&h)]
            } else {
                vec![]
            }));
        }
        Ok(Value::Array(
            possible_hosts(db, &vm).iter().map(jr).collect(),
        ))
    })
}

fn assert_can_boot_here_h(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let host = pp.r(1)?;
    ctx.pool.read(|db| {
        let r = get(db, "VM", &vm)?;
        get(db, "host", &host)?;
        check_memory_constraints(
            i(&r, "memory_static_min"),
            i(&r, "memory_dynamic_min"),
            i(&r, "memory_dynamic_max"),
            i(&r, "memory_static_max"),
        )?;
        assert_can_boot_here(db, &vm, &host).map(|_| void())
    })
}

fn assert_operation_valid(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let op = pp.s(1)?;
    let op =
        VmOp::parse(&op).ok_or_else(|| XapiError::new("INVALID_VALUE", ["op".to_owned(), op]))?;
    ctx.pool
        .read(|db| assert_vm_op(db, &vm, op))
        .map(|_| void())
}

fn update_allowed_operations(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let vm = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool.write(|db| update_vm_tree(db, &vm)).map(|_| void())
}

fn checked_noop(ctx: &Ctx, p: Vec<Value>, op: VmOp) -> Result<Value, XapiError> {
    let vm = Params::new(&ctx.method, &p).r(0)?;
    ctx.pool
        .read(|db| assert_vm_op(db, &vm, op))
        .map(|_| void())
}

fn send_sysrq(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    checked_noop(ctx, p, VmOp::send_sysrq)
}

fn send_trigger(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    checked_noop(ctx, p, VmOp::send_trigger)
}

/// `VM.call_plugin(vm, plugin, fn, args)`: only the guest-agent-less default answer exists in the simulator.
fn call_plugin(ctx: &Ctx, p: Vec<Value>) -> Result<Value, XapiError> {
    let pp = Params::new(&ctx.method, &p);
    let vm = pp.r(0)?;
    let plugin = pp.s(1)?;
    ctx.pool
        .read(|db| assert_vm_op(db, &vm, VmOp::call_plugin))?;
    Err(XapiError::new("XENAPI_MISSING_PLUGIN", [plugin]))
}
