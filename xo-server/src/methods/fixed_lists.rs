//! Methods that answer XO's fixed lists, for forms: `vm.getHaValues`, `vif.getLockingModeValues`,
//! `network.getBondModes`, `pif.getIpv4ConfigurationModes`, `pif.getIpv6ConfigurationModes`
//! (`packages/xo-server/src/api/vm.mjs`, `vif.mjs`, `network.mjs`, `pif.mjs`).

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
        Method::new("pif.getIpv4ConfigurationModes", |_, _| async {
            Ok(json!(["None", "DHCP", "Static"]))
        })
        .params(json!({})),
        Method::new("pif.getIpv6ConfigurationModes", |_, _| async {
            Ok(json!(["None", "DHCP", "Static", "Autoconf"]))
        })
        .params(json!({})),
    ]
}
