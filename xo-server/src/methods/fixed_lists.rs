//! Methods that answer XO's fixed lists, for forms: `vm.getHaValues`, `vif.getLockingModeValues`,
//! `network.getBondModes` (`packages/xo-server/src/api/vm.mjs`, `vif.mjs`, `network.mjs`).

use serde_json::json;

use crate::registry::Method;

pub(super) fn methods() -> Vec<Method> {
    vec![
        Method::new("vm.getHaValues", |_, _| async {
            Ok(json!(["best-effort", "restart", ""]))
        })
        .params(json!({})),
        Method::new("vif.getLockingModeValues", |_, _| async {
            Ok(json!(["disabled", "locked", "network_default", "unlocked"]))
        })
        .params(json!({})),
        Method::new("network.getBondModes", |_, _| async {
            Ok(json!(["balance-slb", "active-backup", "lacp"]))
        })
        .params(json!({})),
    ]
}
