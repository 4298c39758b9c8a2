//! What VBDs and VIFs share as devices of a VM: device numbers in use and free, the metrics row XAPI keeps per
//! device, destroy while attached to a live VM (`DEVICE_ALREADY_ATTACHED`), the plug / unplug preconditions
//! (VM running, `DEVICE_ALREADY_ATTACHED` / `DEVICE_ALREADY_DETACHED`) and the `create` / `destroy` RPC shapes.

use xapi_types::{Ref, Value, XapiError};

use super::allowed::update_vm;
use super::helpers::{b, constructor_record, get, jr, refs, rf, s, valid, void, Params};
use super::vm_ops_check::{assert_power_state_in, PowerState};
use crate::db::{Db, Record};
use crate::rpc::Ctx;

/// A device class of a VM: its class name, the VM field listing its rows and the field naming its slot.
#[derive(Debug, Clone, Copy)]
pub struct DeviceClass {
    /// `VBD` or `VIF`.
    pub class: &'static str,
    /// The VM's set of these devices (`VBDs`, `VIFs`).
    pub vm_field: &'static str,
    /// The slot field (`userdevice`, `device`).
    pub slot_field: &'static str,
    /// Slots `0..slots` are offered.
    pub slots: u32,
}

impl DeviceClass {
    /// `VBD_metrics`, `VIF_metrics`.
    fn metrics_class(&self) -> String {
        format!("{}_metrics", self.class)
    }

    /// Slots used by the VM's devices of this class.
    pub fn used(&self, db: &Db, vm: &Ref) -> Vec<String> {
        db.get("VM", vm)
            .map(|r| {
                refs(r, self.vm_field)
                    .iter()
                    .filter_map(|d| {
                        db.get(self.class, d)
                            .map(|d| s(d, self.slot_field).to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Free slots, lowest first.
    pub fn allowed(&self, db: &Db, vm: &Ref) -> Vec<String> {
        let used = self.used(db, vm);
        (0..self.slots)
            .map(|n| n.to_string())
            .filter(|d| !used.contains(d))
            .collect()
    }

    /// Insert the device row and, where the schema has them, its metrics row.
    pub fn insert(&self, db: &mut Db, rec: Record) -> Result<Ref, XapiError> {
        let r = db.insert(self.class, rec)?;
        let metrics = self.metrics_class();
        if xapi_types::schema::class(self.class).is_some_and(|c| c.field("metrics").is_some())
            && xapi_types::schema::class(&metrics).is_some()
        {
            let m = db.insert(&metrics, Record::new())?;
            db.set_field(self.class, &r, "metrics", jr(&m))?;
        }
        Ok(r)
    }

    /// Destroy the device and its metrics (`DEVICE_ALREADY_ATTACHED [ref]` while attached to a live VM), then
    /// refresh its VM. Returns the destroyed record.
    pub fn destroy(&self, db: &mut Db, dev: &Ref) -> Result<Record, XapiError> {
        let r = get(db, self.class, dev)?;
        let vm = rf(&r, "VM");
        if b(&r, "currently_attached") && vm_power(db, &vm).is_live() {
            return Err(XapiError::new("DEVICE_ALREADY_ATTACHED", [dev.0.clone()]));
        }
        let metrics = rf(&r, "metrics");
        db.destroy(self.class, dev)?;
        let metrics_class = self.metrics_class();
        if valid(db, &metrics_class, &metrics) {
            db.destroy(&metrics_class, &metrics)?;
        }
        if valid(db, "VM", &vm) {
            update_vm(db, &vm)?;
        }
        Ok(r)
    }

    /// The plug (`attach`) or unplug preconditions: the VM runs and the device is not already in that state.
    /// Returns the device's record.
    pub fn check_plug(&self, db: &Db, dev: &Ref, attach: bool) -> Result<Record, XapiError> {
        let r = get(db, self.class, dev)?;
        let vm = rf(&r, "VM");
        assert_power_state_in(&vm.0, vm_power(db, &vm), &[PowerState::Running])?;
        if b(&r, "currently_attached") == attach {
            let code = if attach {
                "DEVICE_ALREADY_ATTACHED"
            } else {
                "DEVICE_ALREADY_DETACHED"
            };
            return Err(XapiError::new(code, [dev.0.clone()]));
        }
        Ok(r)
    }

    /// `<class>.create(record)`: the constructor record checked against the schema, then `create`.
    pub fn create_rpc(
        &self,
        ctx: &Ctx,
        p: Vec<Value>,
        create: fn(&mut Db, Record) -> Result<Ref, XapiError>,
    ) -> Result<Value, XapiError> {
        let rec = constructor_record(self.class, p.into_iter().next().unwrap_or(Value::Null))?;
        ctx.pool.write(|db| create(db, rec)).map(|r| jr(&r))
    }

    /// `<class>.destroy(ref)` through `destroy`.
    pub fn destroy_rpc(
        &self,
        ctx: &Ctx,
        p: Vec<Value>,
        destroy: fn(&mut Db, &Ref) -> Result<(), XapiError>,
    ) -> Result<Value, XapiError> {
        let dev = Params::new(&ctx.method, &p).r(0)?;
        ctx.pool.write(|db| destroy(db, &dev)).map(|_| void())
    }
}

/// The power state of a VM (`Halted` when it cannot be read).
pub fn vm_power(db: &Db, vm: &Ref) -> PowerState {
    db.get("VM", vm)
        .and_then(|r| PowerState::parse(s(r, "power_state")))
        .unwrap_or_default()
}
