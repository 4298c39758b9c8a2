//! XO's `editVm` (`xapi/mixins/vm.mjs` `_editVm`): the `vm.set` / `vm.create` properties mapped to XAPI
//! setters, with the memory and vCPU constraints handled in a working order.

use serde_json::{Map, Value};

use super::resolve::{parse_size, plain_error, ri, rs, CallError, Xapi, NULL_REF};
use crate::error::ApiError;

/// Properties [`edit_vm`] understands.
pub(super) const EDITABLE: &[&str] = &[
    "name_label",
    "name_description",
    "notes",
    "auto_poweron",
    "high_availability",
    "CPUs",
    "cpusMax",
    "memory",
    "memoryMin",
    "memoryMax",
    "memoryStaticMax",
    "PV_args",
    "cpuMask",
    "cpuWeight",
    "cpuCap",
    "affinityHost",
    "vga",
    "videoram",
    "coresPerSocket",
    "hasVendorDevice",
    "expNestedHvm",
    "nestedVirt",
    "startDelay",
    "secureBoot",
    "nicType",
    "hvmBootFirmware",
    "virtualizationMode",
    "viridian",
    "blockedOperations",
    "tags",
];

const VGA_VALUES: &[&str] = &["std", "cirrus"];
const VIDEORAM_VALUES: &[i64] = &[1, 2, 4, 8, 16];

/// The VM being edited.
pub(super) struct EditTarget {
    /// Its XAPI ref.
    pub vm_ref: String,
    /// Its pool (XO id), for `auto_poweron`.
    pub pool_id: Option<String>,
}

fn int_param(v: &Value, name: &str) -> Result<i64, ApiError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| ApiError::invalid_parameters_message(format!("invalid {name}"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| ApiError::invalid_parameters_message(format!("invalid {name}"))),
        _ => Err(ApiError::invalid_parameters_message(format!(
            "invalid {name}"
        ))),
    }
}

fn flag(v: &Value) -> Option<&'static str> {
    (v.as_bool() == Some(true)).then_some("true")
}

fn is_memory_constraint(e: &CallError) -> bool {
    matches!(e, CallError::Xapi(x) if x.code.starts_with("MEMORY_CONSTRAINT_VIOLATION"))
}

/// XO's `xoData.set`: merges `{key: value}` into the JSON of `other_config["xo:<uuid[0:8]>"]`.
pub(super) async fn xo_data_set(
    x: &Xapi,
    vm_ref: &str,
    key: &str,
    value: Value,
) -> Result<(), ApiError> {
    let rec = x.record("VM", vm_ref).await?;
    let uuid = rs(&rec, "uuid");
    let field = format!("xo:{}", uuid.get(..8).unwrap_or(uuid));
    let mut data = rec
        .get("other_config")
        .and_then(|o| o.get(&field))
        .and_then(Value::as_str)
        .and_then(|t| serde_json::from_str::<Map<String, Value>>(t).ok())
        .unwrap_or_default();
    data.insert(key.to_owned(), value);
    let text = Value::Object(data).to_string();
    x.update_map("VM", vm_ref, "other_config", &field, Some(&text))
        .await
}

/// Applies the properties in `props` (unknown keys are ignored here: callers filter them).
pub(super) async fn edit_vm(
    x: &Xapi,
    t: &EditTarget,
    props: &Map<String, Value>,
) -> Result<(), ApiError> {
    let vm = t.vm_ref.as_str();
    let set = |field: &'static str, v: Value| async move {
        x.call(&format!("VM.set_{field}"), vec![vm.into(), v]).await
    };
    let platform = |key: &'static str, v: Option<String>| async move {
        x.update_map("VM", vm, "platform", key, v.as_deref()).await
    };
    if let Some(v) = props.get("name_label") {
        set("name_label", v.clone()).await?;
    }
    if let Some(v) = props.get("name_description") {
        set("name_description", v.clone()).await?;
    }
    if let Some(v) = props.get("notes") {
        x.update_map("VM", vm, "other_config", "xo:notes", v.as_str())
            .await?;
    }
    if let Some(v) = props.get("auto_poweron") {
        x.update_map("VM", vm, "other_config", "auto_poweron", flag(v))
            .await?;
        if flag(v).is_some() {
            if let Some(pool) = t.pool_id.as_deref().and_then(|id| x.pools.object(id)) {
                x.update_map(
                    "pool",
                    pool.xapi_ref(),
                    "other_config",
                    "auto_poweron",
                    Some("true"),
                )
                .await?;
            }
        }
    }
    if let Some(v) = props.get("high_availability") {
        set("ha_restart_priority", v.clone()).await?;
    }
    edit_cpus(x, vm, props).await?;
    for (key, param) in [("cap", "cpuCap"), ("weight", "cpuWeight")] {
        if let Some(v) = props.get(param) {
            let value = v.as_i64().map(|n| n.to_string());
            x.update_map("VM", vm, "VCPUs_params", key, value.as_deref())
                .await?;
        }
    }
    if let Some(v) = props.get("cpuMask") {
        let mask = v.as_array().map(|a| {
            a.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(",")
        });
        x.update_map("VM", vm, "VCPUs_params", "mask", mask.as_deref())
            .await?;
    }
    edit_memory(x, vm, props).await?;
    if let Some(v) = props.get("PV_args") {
        set("PV_args", v.clone()).await?;
    }
    if let Some(v) = props.get("affinityHost") {
        let host = match v.as_str() {
            Some(id) if !id.is_empty() => {
                x.pools.object_of_type(id, &["host"])?.xapi_ref().to_owned()
            }
            _ => NULL_REF.to_owned(),
        };
        set("affinity", host.into()).await?;
    }
    if let Some(v) = props.get("vga") {
        let vga = v.as_str().unwrap_or_default();
        if !VGA_VALUES.contains(&vga) {
            return Err(plain_error(format!(
                "The different values that the VGA can take are: {}",
                VGA_VALUES.join(",")
            )));
        }
        platform("vga", Some(vga.to_owned())).await?;
    }
    if let Some(v) = props.get("videoram") {
        let n = v.as_f64().unwrap_or(0.0);
        if n.fract() != 0.0 || !VIDEORAM_VALUES.contains(&(n as i64)) {
            return Err(plain_error(
                "The different values that the video RAM can take are: 1,2,4,8,16",
            ));
        }
        platform("videoram", Some((n as i64).to_string())).await?;
    }
    if let Some(v) = props.get("coresPerSocket") {
        let value = match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        platform("cores-per-socket", value).await?;
    }
    if let Some(v) = props.get("hasVendorDevice") {
        set("has_vendor_device", v.clone()).await?;
    }
    if let Some(v) = props.get("expNestedHvm") {
        platform("exp-nested-hvm", flag(v).map(str::to_owned)).await?;
    }
    if let Some(v) = props.get("nestedVirt") {
        platform("nested-virt", flag(v).map(str::to_owned)).await?;
    }
    if let Some(v) = props.get("startDelay") {
        set("start_delay", v.clone()).await?;
    }
    if let Some(v) = props.get("secureBoot") {
        platform("secureboot", Some(v.as_bool().unwrap_or(false).to_string())).await?;
    }
    if let Some(v) = props.get("nicType") {
        platform("nic_type", v.as_str().map(str::to_owned)).await?;
    }
    if let Some(v) = props.get("hvmBootFirmware") {
        let fw = v.as_str();
        x.update_map("VM", vm, "HVM_boot_params", "firmware", fw)
            .await?;
        let model = if fw == Some("uefi") { "uefi" } else { "compat" };
        platform("device-model", Some(format!("qemu-upstream-{model}"))).await?;
    }
    if let Some(v) = props.get("virtualizationMode") {
        let mode = v.as_str().unwrap_or_default();
        if mode != "pv" && mode != "hvm" {
            return Err(plain_error("The virtualization mode must be 'pv' or 'hvm'"));
        }
        set("domain_type", mode.into()).await?;
    }
    if let Some(v) = props.get("viridian") {
        platform("viridian", flag(v).map(str::to_owned)).await?;
    }
    if let Some(Value::Object(ops)) = props.get("blockedOperations") {
        for (op, v) in ops {
            let value = match v {
                Value::String(s) => Some(s.as_str()),
                Value::Bool(true) => Some("true"),
                _ => None,
            };
            x.update_map("VM", vm, "blocked_operations", op, value)
                .await?;
        }
    }
    if let Some(v) = props.get("tags") {
        set("tags", v.clone()).await?;
    }
    Ok(())
}

/// `CPUs` (VCPUs_at_startup, live too when running) and `cpusMax` (VCPUs_max): when the new values
/// conflict with the current ones, the other one is set first.
async fn edit_cpus(x: &Xapi, vm: &str, props: &Map<String, Value>) -> Result<(), ApiError> {
    let cpus = props
        .get("CPUs")
        .map(|v| int_param(v, "CPUs"))
        .transpose()?;
    let max = props
        .get("cpusMax")
        .map(|v| int_param(v, "cpusMax"))
        .transpose()?;
    if cpus.is_none() && max.is_none() {
        return Ok(());
    }
    let rec = x.record("VM", vm).await?;
    let cur_at = ri(&rec, "VCPUs_at_startup");
    let cur_max = ri(&rec, "VCPUs_max");
    let running = rs(&rec, "power_state") == "Running";
    let set_cpus = |n: i64| async move {
        if n == cur_at {
            return Ok(());
        }
        x.call("VM.set_VCPUs_at_startup", vec![vm.into(), n.into()])
            .await?;
        if running {
            x.call("VM.set_VCPUs_number_live", vec![vm.into(), n.into()])
                .await?;
        }
        Ok::<(), ApiError>(())
    };
    let set_max = |n: i64| async move {
        if n == cur_max {
            return Ok(());
        }
        x.call("VM.set_VCPUs_max", vec![vm.into(), n.into()])
            .await
            .map(drop)
    };
    match (cpus, max) {
        (Some(c), Some(m)) if c > cur_max => {
            set_max(m).await?;
            set_cpus(c).await?;
        }
        (Some(c), Some(m)) => {
            set_cpus(c).await?;
            set_max(m).await?;
        }
        (Some(c), None) => set_cpus(c).await?,
        (None, Some(m)) => set_max(m).await?,
        (None, None) => {}
    }
    Ok(())
}

/// `memory` (all four limits, or dynamic max when dynamic memory control is in use), `memoryMax`,
/// `memoryStaticMax`, `memoryMin`.
async fn edit_memory(x: &Xapi, vm: &str, props: &Map<String, Value>) -> Result<(), ApiError> {
    let size = |k: &str| props.get(k).map(parse_size).transpose();
    let memory = size("memory")?;
    let memory_max = size("memoryMax")?;
    let static_max = size("memoryStaticMax")?;
    let memory_min = size("memoryMin")?;
    if memory.is_none() && memory_max.is_none() && static_max.is_none() && memory_min.is_none() {
        return Ok(());
    }
    let rec = x.record("VM", vm).await?;
    if let Some(m) = memory {
        let (dmin, dmax, smax) = (
            ri(&rec, "memory_dynamic_min"),
            ri(&rec, "memory_dynamic_max"),
            ri(&rec, "memory_static_max"),
        );
        if dmin != dmax || dmin != smax {
            set_memory_max(x, vm, m).await?;
        } else if m != dmax {
            let smin = ri(&rec, "memory_static_min");
            x.call(
                "VM.set_memory_limits",
                vec![vm.into(), smin.into(), m.into(), m.into(), m.into()],
            )
            .await?;
        }
    }
    if let Some(m) = memory_max {
        set_memory_max(x, vm, m).await?;
    }
    if let Some(m) = static_max {
        let rec = x.record("VM", vm).await?;
        if m != ri(&rec, "memory_static_max") {
            x.call("VM.set_memory_static_max", vec![vm.into(), m.into()])
                .await?;
        }
    }
    if let Some(m) = memory_min {
        let rec = x.record("VM", vm).await?;
        if m != ri(&rec, "memory_dynamic_min") {
            x.call("VM.set_memory_dynamic_min", vec![vm.into(), m.into()])
                .await?;
        }
    }
    Ok(())
}

async fn set_memory_max(x: &Xapi, vm: &str, dmax: i64) -> Result<(), ApiError> {
    let rec = x.record("VM", vm).await?;
    if dmax == ri(&rec, "memory_dynamic_max") {
        return Ok(());
    }
    let dmin = ri(&rec, "memory_dynamic_min").min(dmax);
    if rs(&rec, "power_state") == "Running" {
        return match x
            .try_call(
                "VM.set_memory_dynamic_range",
                vec![vm.into(), dmin.into(), dmax.into()],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_memory_constraint(&e) => {
                Err(plain_error("Cannot change memory on running VM"))
            }
            Err(e) => Err(x.api(e)),
        };
    }
    let smin = ri(&rec, "memory_static_min").min(dmax);
    let smax = ri(&rec, "memory_static_max").max(dmax);
    match x
        .try_call(
            "VM.set_memory_limits",
            vec![
                vm.into(),
                smin.into(),
                smax.into(),
                dmin.into(),
                dmax.into(),
            ],
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_memory_constraint(&e) => x
            .call(
                "VM.set_memory_limits",
                vec![
                    vm.into(),
                    smin.into(),
                    dmax.into(),
                    dmax.into(),
                    dmax.into(),
                ],
            )
            .await
            .map(drop),
        Err(e) => Err(x.api(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn int_params() {
        assert_eq!(int_param(&json!(4), "x").unwrap(), 4);
        assert_eq!(int_param(&json!("4"), "x").unwrap(), 4);
        assert_eq!(int_param(&json!("four"), "x").unwrap_err().code(), 10);
        assert_eq!(int_param(&json!(true), "x").unwrap_err().code(), 10);
    }
}
