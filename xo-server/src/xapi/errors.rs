//! XAPI errors → XO API errors (`xo-common/api-errors.js` codes, spec xo-api.md §1.9), and the XO errors
//! about pool connections (`serverUnreachable`, `authenticationFailed`…).

use serde_json::{json, Value};
use xapi_client::{Error, XapiError};

use crate::error::ApiError;

fn rpc(code: i64, message: impl Into<String>, data: Option<Value>) -> ApiError {
    ApiError::Rpc {
        code,
        message: message.into(),
        data,
    }
}

/// Code 7 `no hosts available`.
pub fn no_hosts_available() -> ApiError {
    rpc(7, "no hosts available", None)
}

/// Code 8 `authentication failed`.
pub fn authentication_failed() -> ApiError {
    rpc(8, "authentication failed", None)
}

/// Code 9 `server unreachable` (`objectId`: the XAPI server id or the pool id).
pub fn server_unreachable(object_id: &str) -> ApiError {
    rpc(
        9,
        "server unreachable",
        Some(json!({ "objectId": object_id })),
    )
}

/// Code 13 `VM state is <actual> but should be <expected>`.
pub fn vm_bad_power_state(object_id: &str, expected: &str, actual: &str) -> ApiError {
    rpc(
        13,
        format!("VM state is {actual} but should be {expected}"),
        Some(json!({ "objectId": object_id, "expected": expected, "actual": actual })),
    )
}

/// Maps an XAPI failure to XO's error, as xo-server does. OpaqueRefs in the parameters are kept as is; use
/// [`crate::xapi::Pools::map_error`] to have them converted to XO ids through the object cache.
pub fn xapi_error_to_api(e: Error) -> ApiError {
    map_with(e, &|r: &str| r.to_owned())
}

/// [`xapi_error_to_api`] with `to_id` converting XAPI refs to XO ids.
pub(crate) fn map_with(e: Error, to_id: &dyn Fn(&str) -> String) -> ApiError {
    match e {
        Error::Xapi(x) => map_xapi(x, to_id),
        Error::Transport(m) | Error::Tls(m) => ApiError::internal(m),
        e @ (Error::Timeout(_)
        | Error::Http { .. }
        | Error::Codec(_)
        | Error::Config(_)
        | Error::TaskVanished(_)) => ApiError::internal(e.to_string()),
    }
}

fn map_xapi(x: XapiError, to_id: &dyn Fn(&str) -> String) -> ApiError {
    let p = |i: usize| x.params.get(i).map(String::as_str).unwrap_or("");
    let id = |i: usize| to_id(p(i));
    match x.code.as_str() {
        "EHOSTUNREACH" => server_unreachable(&id(0)),
        "HOST_OFFLINE" => rpc(18, "host offline", Some(json!({ "objectId": id(0) }))),
        "NO_HOSTS_AVAILABLE" => no_hosts_available(),
        "NOT_SUPPORTED_DURING_UPGRADE" => rpc(15, "not supported during upgrade", None),
        "OPERATION_BLOCKED" => rpc(
            19,
            "operation blocked",
            Some(json!({ "objectId": id(0), "code": p(1) })),
        ),
        "PIF_VLAN_EXISTS" => ApiError::object_already_exists(&id(0), "PIF"),
        "SESSION_AUTHENTICATION_FAILED" => authentication_failed(),
        "VDI_IN_USE" => rpc(
            17,
            "VDI in use",
            Some(json!({ "objectId": id(0), "operation": p(1) })),
        ),
        "VM_BAD_POWER_STATE" => vm_bad_power_state(&id(0), p(1), p(2)),
        "VM_IS_TEMPLATE" => rpc(12, "VM is a template", Some(json!({ "objectId": id(0) }))),
        "VM_LACKS_FEATURE" => rpc(
            14,
            format!("VM lacks feature {}", p(1)),
            Some(json!({ "objectId": id(0), "feature": p(1) })),
        ),
        "VM_LACKS_FEATURE_SHUTDOWN" => rpc(
            14,
            "VM lacks feature shutdown",
            Some(json!({ "objectId": id(0), "feature": "shutdown" })),
        ),
        "VM_MISSING_PV_DRIVERS" => {
            rpc(11, "missing PV drivers", Some(json!({ "objectId": id(0) })))
        }
        _ => {
            // XO serialises an XapiError for admins: `{code, params, …}`; its message is `CODE(p1, p2)`.
            let message = format!("{}({})", x.code, x.params.join(", "));
            ApiError::Internal {
                data: Some(json!({
                    "code": x.code,
                    "params": x.params,
                    "message": message,
                    "name": "XapiError",
                })),
                message,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(code: &str, params: &[&str]) -> Error {
        Error::Xapi(XapiError::new(code, params.iter().copied()))
    }

    #[test]
    fn known_codes() {
        let e = xapi_error_to_api(x(
            "VM_BAD_POWER_STATE",
            &["OpaqueRef:1", "halted", "running"],
        ));
        assert_eq!(e.code(), 13);
        assert_eq!(
            e.to_json(false),
            json!({"code": 13, "message": "VM state is running but should be halted",
                "data": {"objectId": "OpaqueRef:1", "expected": "halted", "actual": "running"}})
        );
        assert_eq!(
            xapi_error_to_api(x("SESSION_AUTHENTICATION_FAILED", &[])).code(),
            8
        );
        assert_eq!(xapi_error_to_api(x("NO_HOSTS_AVAILABLE", &[])).code(), 7);
        assert_eq!(xapi_error_to_api(x("HOST_OFFLINE", &["h"])).code(), 18);
        assert_eq!(xapi_error_to_api(x("VM_IS_TEMPLATE", &["v"])).code(), 12);
        assert_eq!(
            xapi_error_to_api(x("VM_MISSING_PV_DRIVERS", &["v"])).code(),
            11
        );
        assert_eq!(
            xapi_error_to_api(x("VDI_IN_USE", &["v", "destroy"])).code(),
            17
        );
        assert_eq!(
            xapi_error_to_api(x("OPERATION_BLOCKED", &["v", "c"])).code(),
            19
        );
        assert_eq!(xapi_error_to_api(x("PIF_VLAN_EXISTS", &["p"])).code(), 16);
        assert_eq!(xapi_error_to_api(x("EHOSTUNREACH", &["p"])).code(), 9);
        assert_eq!(
            xapi_error_to_api(x("NOT_SUPPORTED_DURING_UPGRADE", &[])).code(),
            15
        );
        let e = xapi_error_to_api(x("VM_LACKS_FEATURE_SHUTDOWN", &["v"]));
        assert_eq!(e.to_json(false)["data"]["feature"], "shutdown");
    }

    #[test]
    fn ref_conversion_and_unknown_codes() {
        let e = map_with(x("VM_IS_TEMPLATE", &["OpaqueRef:1"]), &|r| {
            format!("id-of-{r}")
        });
        assert_eq!(e.to_json(false)["data"]["objectId"], "id-of-OpaqueRef:1");
        let e = xapi_error_to_api(x("SR_FULL", &["a", "b"]));
        assert_eq!(e.code(), -32000);
        assert_eq!(e.to_json(true)["message"], "SR_FULL(a, b)");
        assert_eq!(e.to_json(true)["data"]["code"], "SR_FULL");
        assert_eq!(e.to_json(false)["message"], "unknown error from the peer");
        let e = xapi_error_to_api(Error::Transport("connection refused".into()));
        assert_eq!(e.code(), -32000);
    }
}
