//! The committed generated files match a fresh generation, and the generated tables say what the datamodel says.

use serde_json::json;
use xapi_types::records::{self, VmPowerState, VmRecord};
use xapi_types::schema::{self, coerce, default_value, Qualifier, Type};
use xapi_types::{error::codes, xmlrpc};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn generated_files_are_up_to_date() {
    let json = std::fs::read_to_string(root().join("spec/xenapi.json")).expect("spec/xenapi.json");
    let out = xtask::codegen::generate(&json).expect("generation succeeds");
    let dir = root().join("crates/xapi-types/src/generated");
    for (name, want) in [
        ("schema.rs", &out.schema),
        ("error_codes.rs", &out.error_codes),
        ("records.rs", &out.records),
    ] {
        let have = std::fs::read_to_string(dir.join(name)).expect("generated file");
        assert!(
            have == *want,
            "src/generated/{name} is stale: run `cargo xtask codegen`"
        );
    }
}

#[test]
fn has_every_class() {
    assert_eq!(schema::classes().len(), 72);
    for name in [
        "session",
        "pool",
        "host",
        "VM",
        "VM_guest_metrics",
        "pool_update",
        "event",
        "message",
        "Rate_limit",
    ] {
        assert!(schema::class(name).is_some(), "{name}");
    }
    assert_eq!(schema::class("vm").map(|c| c.name), Some("VM"));
    assert_eq!(
        schema::class("vm_guest_metrics").map(|c| c.name),
        Some("VM_guest_metrics")
    );
}

#[test]
fn vm_fields() {
    let vm = schema::class("VM").unwrap();
    let ps = vm.field("power_state").unwrap();
    assert_eq!(ps.ty, Type::Enum("vm_power_state"));
    assert_eq!(ps.qualifier, Qualifier::RoConstructor);
    assert_eq!(
        vm.field("resident_on").unwrap().qualifier,
        Qualifier::RoRuntime
    );
    assert_eq!(ps.default, Some("Halted"));
    assert_eq!(vm.field("name_label").unwrap().qualifier, Qualifier::Rw);
    assert_eq!(
        vm.field("memory_static_max").unwrap().qualifier,
        Qualifier::RoConstructor
    );
    assert_eq!(vm.field("memory_static_max").unwrap().ty, Type::Int);
    assert_eq!(vm.field("VBDs").unwrap().ty, Type::Set(&Type::Ref("VBD")));
    assert_eq!(
        vm.field("current_operations").unwrap().ty,
        Type::Map(&Type::String, &Type::Enum("vm_operations"))
    );
    assert_eq!(vm.field("other_config").unwrap().default, None);
    assert_eq!(vm.field("blocked_operations").unwrap().default, Some("{}"));
    assert_eq!(
        default_value(vm.field("generation_id").unwrap()),
        json!("0:0")
    );
    assert_eq!(
        default_value(vm.field("HVM_shadow_multiplier").unwrap()),
        json!(1.0)
    );
    assert_eq!(
        default_value(vm.field("has_vendor_device").unwrap()),
        json!(true)
    );
    assert_eq!(
        default_value(vm.field("snapshot_of").unwrap()),
        json!("OpaqueRef:NULL")
    );
    assert!(vm.field("is_snapshot_from_vmpp").unwrap().removed);
    assert!(!vm.field("uuid").unwrap().removed);
    assert_eq!(
        default_value(vm.field("power_state").unwrap()),
        json!("Halted")
    );
    assert_eq!(
        default_value(vm.field("affinity").unwrap()),
        json!("OpaqueRef:NULL")
    );
}

#[test]
fn vm_messages() {
    let vm = schema::class("VM").unwrap();
    let start = vm.message("start").unwrap();
    let params: Vec<_> = start
        .params
        .iter()
        .map(|p| (p.name, p.ty, p.required))
        .collect();
    assert_eq!(
        params,
        vec![
            ("session_id", Type::Ref("session"), true),
            ("vm", Type::Ref("VM"), true),
            ("start_paused", Type::Bool, true),
            ("force", Type::Bool, true),
        ]
    );
    assert_eq!(start.result, Type::Void);
    assert!(start.is_async && !start.implicit && !start.removed);
    assert!(start.errors.contains(&codes::VM_BAD_POWER_STATE));

    let get_record = vm.message("get_record").unwrap();
    assert_eq!(get_record.result, Type::Record("VM"));
    assert!(get_record.implicit && !get_record.is_async);
    let create = vm.message("create").unwrap();
    assert_eq!(create.params[1].ty, Type::Record("VM"));
    assert!(create.is_async);
    assert!(vm.message("destroy").unwrap().is_async);
    assert!(!vm.message("get_power_state").unwrap().is_async);
    assert_eq!(
        vm.message("get_all_records").unwrap().result,
        Type::Map(&Type::Ref("VM"), &Type::Record("VM"))
    );
    let snapshot = vm.message("snapshot").unwrap();
    assert_eq!(
        snapshot
            .params
            .iter()
            .map(|p| p.required)
            .collect::<Vec<_>>(),
        [true, true, true, false]
    );
}

#[test]
fn session_and_event_messages() {
    let session = schema::class("session").unwrap();
    let login = session.message("login_with_password").unwrap();
    assert_eq!(login.params.len(), 4);
    assert_eq!(login.params.iter().filter(|p| p.required).count(), 2);
    assert!(!login.is_async, "no Async for session");
    let event = schema::class("event").unwrap();
    assert_eq!(event.message("from").unwrap().result, Type::EventBatch);
    assert_eq!(event.message("next").unwrap().result, Type::EventSet);
    assert_eq!(event.field("snapshot").unwrap().ty, Type::Any);
    assert!(!event.message("from").unwrap().is_async);
    assert!(
        !schema::class("task")
            .unwrap()
            .message("cancel")
            .unwrap()
            .is_async
    );
    let sr_stat = schema::class("probe_result").unwrap();
    assert_eq!(
        sr_stat.field("sr").unwrap().ty,
        Type::Option(&Type::Record("sr_stat"))
    );
}

#[test]
fn enums() {
    let ps = schema::enum_spec("vm_power_state").unwrap();
    assert_eq!(ps.values, ["Halted", "Paused", "Running", "Suspended"]);
    assert_eq!(schema::enums().len(), 73);
    assert_eq!(
        coerce(&Type::Enum("vm_power_state"), json!("running")),
        Ok(json!("Running"))
    );
    let err = coerce(&Type::Enum("vm_power_state"), json!("Flying")).unwrap_err();
    assert_eq!(err.expected, "enum vm_power_state");
    assert_eq!(VmPowerState::ALL.len(), 4);
    assert_eq!(VmPowerState::Running.as_str(), "Running");
}

#[test]
fn error_codes() {
    for code in [
        "SESSION_AUTHENTICATION_FAILED",
        "SESSION_INVALID",
        "HOST_IS_SLAVE",
        "HANDLE_INVALID",
        "UUID_INVALID",
        "MESSAGE_METHOD_UNKNOWN",
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "MESSAGE_REMOVED",
        "FIELD_TYPE_ERROR",
        "INVALID_VALUE",
        "MAP_DUPLICATE_KEY",
        "EVENTS_LOST",
        "EVENT_FROM_TOKEN_PARSE_FAILURE",
        "EVENT_SUBSCRIPTION_PARSE_FAILURE",
        "SESSION_NOT_REGISTERED",
        "INTERNAL_ERROR",
        "VM_BAD_POWER_STATE",
        "OPERATION_NOT_ALLOWED",
        "OTHER_OPERATION_IN_PROGRESS",
        "TASK_CANCELLED",
        "VM_IS_TEMPLATE",
    ] {
        assert!(codes::ALL.contains(&code), "{code}");
    }
    assert_eq!(codes::SESSION_INVALID, "SESSION_INVALID");
    assert!(
        codes::ALL.windows(2).all(|w| w[0] < w[1]),
        "sorted and unique"
    );
    // Every declared error is in the catalogue.
    for c in schema::classes() {
        for m in c.messages {
            for e in m.errors {
                assert!(codes::ALL.contains(e), "{}.{}: {e}", c.name, m.name);
            }
        }
    }
}

#[test]
fn every_type_in_the_tables_has_a_default() {
    for c in schema::classes() {
        for f in c.fields {
            let v = default_value(f);
            if !matches!(f.ty, Type::Any | Type::Option(_)) {
                assert_eq!(
                    coerce(&f.ty, v.clone()),
                    Ok(v),
                    "{}.{} {}",
                    c.name,
                    f.name,
                    f.ty
                );
            }
        }
    }
}

fn full_vm_record() -> serde_json::Value {
    let vm = schema::class("VM").unwrap();
    let mut rec = serde_json::Map::new();
    for f in vm.fields {
        rec.insert(f.name.to_owned(), default_value(f));
    }
    serde_json::Value::Object(rec)
}

#[test]
fn typed_vm_record_from_xmlrpc() {
    let mut raw = full_vm_record();
    raw["name_label"] = json!("web01");
    raw["power_state"] = json!("Running");
    raw["memory_static_max"] = json!(4_294_967_296_i64);
    raw["VCPUs_max"] = json!(2);
    raw["other_config"] = json!({"xo:tag": "x"});
    raw["snapshot_time"] = json!("2025-03-19T04:16:24Z");
    // Through the wire: ints become untyped strings, datetimes typed, maps structs.
    let xml = xmlrpc::encode_response(&Ok(raw), &Type::Record("VM"));
    assert!(
        xml.contains("<member><name>memory_static_max</name><value>4294967296</value></member>")
    );
    assert!(xml.contains("<dateTime.iso8601>20250319T04:16:24Z</dateTime.iso8601>"));
    assert!(xml.contains(
        "<member><name>is_a_template</name><value><boolean>0</boolean></value></member>"
    ));
    let decoded = xmlrpc::decode_response(xml.as_bytes()).unwrap().unwrap();
    assert_eq!(decoded["memory_static_max"], json!("4294967296"));
    let vm: VmRecord = records::decode(decoded).unwrap();
    assert_eq!(vm.name_label, "web01");
    assert_eq!(vm.power_state, VmPowerState::Running);
    assert_eq!(vm.memory_static_max, 4_294_967_296);
    assert_eq!(vm.vcpus_max, 2);
    assert_eq!(vm.snapshot_time, "20250319T04:16:24Z");
    assert!(vm.affinity.is_null());
    assert_eq!(vm.other_config.get("xo:tag").map(String::as_str), Some("x"));
}

#[test]
fn typed_records_are_tolerant() {
    let vm: VmRecord = records::decode(json!({"power_state": "Levitating", "extra": 1})).unwrap();
    assert_eq!(vm.power_state, VmPowerState::Unrecognised);
    let lower: VmRecord = records::decode(json!({"power_state": "running"})).unwrap();
    assert_eq!(lower.power_state, VmPowerState::Running);
    assert!(coerce(&Type::Record("VM"), json!({"power_state": "Levitating"})).is_err());
    assert_eq!(
        schema::canonicalise(&Type::Record("VM"), json!({"power_state": "Levitating"})),
        Ok(json!({"power_state": "Levitating"}))
    );
    let bad = records::decode::<VmRecord>(json!({"memory_static_max": "lots"}));
    assert!(matches!(bad, Err(records::RecordError::Coerce(_))));
    let empty: VmRecord = records::decode(json!({})).unwrap();
    assert_eq!(empty.power_state, VmPowerState::Halted);
    assert_eq!(empty.snapshot_time, "19700101T00:00:00Z");
    let back = records::encode(&empty).unwrap();
    assert_eq!(back["power_state"], json!("Halted"));
    assert_eq!(back["VCPUs_max"], json!(0));
}

#[test]
fn method_lookup() {
    let (class, msg, is_async) = schema::method("VM.start").unwrap();
    assert_eq!((class.name, msg.name, is_async), ("VM", "start", false));
    let (_, msg, is_async) = schema::method("Async.VM.clone").unwrap();
    assert_eq!((msg.name, is_async), ("clone", true));
    assert!(
        schema::method("Async.VM.get_record").is_none(),
        "getters have no Async form"
    );
    assert!(schema::method("Async.session.login_with_password").is_none());
    assert!(
        schema::method("vm.start").is_none(),
        "wire class names are exact"
    );
    assert!(schema::method("VM.fly").is_none());
    assert!(schema::method("VM").is_none());
    assert!(schema::method("").is_none());
}

#[test]
fn every_class_default_record_round_trips_through_both_wires() {
    use xapi_types::jsonrpc;
    for c in schema::classes() {
        let mut rec = serde_json::Map::new();
        for f in c.fields {
            rec.insert(f.name.to_owned(), default_value(f));
        }
        let value = serde_json::Value::Object(rec);
        let ty = Type::Record(c.name);
        let all = value;
        let xml = xmlrpc::encode_response(&Ok(all.clone()), &ty);
        let raw = xmlrpc::decode_response(xml.as_bytes()).unwrap().unwrap();
        assert_eq!(coerce(&ty, raw), Ok(all.clone()), "XML-RPC {}", c.name);
        let body = jsonrpc::encode_response(jsonrpc::Version::V2, &json!(1), &Ok(all.clone()));
        let raw = jsonrpc::decode_response(&body).unwrap().result.unwrap();
        assert_eq!(coerce(&ty, raw), Ok(all), "JSON-RPC {}", c.name);
    }
}
