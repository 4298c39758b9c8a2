//! Generator for `crates/xapi-types/src/generated/*`: schema tables, error codes and typed records from
//! `spec/xenapi.json`. Pure: [`generate`] maps the JSON text to the three files' contents, so a test can check
//! that the committed files are up to date.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Why the datamodel could not be turned into code.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    #[error("xenapi.json is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unexpected datamodel structure: {0}")]
    Structure(String),
    #[error("cannot parse type {0:?}")]
    Type(String),
}

fn structure(msg: impl Into<String>) -> CodegenError {
    CodegenError::Structure(msg.into())
}

/// The generated files' contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// `generated/schema.rs`: `CLASSES` and `ENUMS`.
    pub schema: String,
    /// `generated/error_codes.rs`: one const per error code plus `ALL`.
    pub error_codes: String,
    /// `generated/records.rs`: typed records and enums.
    pub records: String,
}

/// Classes for which a typed record struct is generated.
pub const RECORD_CLASSES: &[&str] = &[
    "pool",
    "host",
    "host_metrics",
    "host_cpu",
    "VM",
    "VM_metrics",
    "VM_guest_metrics",
    "VM_appliance",
    "VMSS",
    "VBD",
    "VDI",
    "SR",
    "SM",
    "PBD",
    "network",
    "PIF",
    "PIF_metrics",
    "Bond",
    "VLAN",
    "VIF",
    "console",
    "task",
    "message",
    "pool_update",
    "pool_patch",
    "host_patch",
    "PCI",
    "PGPU",
    "GPU_group",
    "VGPU",
    "VTPM",
    "VUSB",
    "PUSB",
    "USB_group",
];

/// Classes whose explicit messages have no `Async.` variant (XA `datamodel.ml` `no_async_messages_for`).
const NO_ASYNC_CLASSES: &[&str] = &["session", "event", "task", "data_source", "blob"];

/// Error codes XAPI raises that no message of the datamodel declares (xapi.md §5.5 and raise sites).
const EXTRA_ERROR_CODES: &[&str] = &[
    "BOOTLOADER_FAILED",
    "CANNOT_EVACUATE_HOST",
    "CLIENT_ERROR",
    "DB_UNIQUENESS_CONSTRAINT_VIOLATION",
    "DEFAULT_SR_NOT_FOUND",
    "DEVICE_ALREADY_ATTACHED",
    "DEVICE_ALREADY_DETACHED",
    "DEVICE_ALREADY_EXISTS",
    "DEVICE_DETACH_REJECTED",
    "EVENTS_LOST",
    "EVENT_FROM_TOKEN_PARSE_FAILURE",
    "EVENT_SUBSCRIPTION_PARSE_FAILURE",
    "FIELD_TYPE_ERROR",
    "HANDLE_INVALID",
    "HOST_DISABLED",
    "HOST_EVACUATE_IN_PROGRESS",
    "HOST_HAS_RESIDENT_VMS",
    "HOST_IN_USE",
    "HOST_IS_SLAVE",
    "HOST_NOT_DISABLED",
    "HOST_NOT_ENOUGH_FREE_MEMORY",
    "HOST_NOT_LIVE",
    "HOST_OFFLINE",
    "IMPORT_ERROR",
    "IMPORT_ERROR_CANNOT_HANDLE_CHUNKED",
    "INTERNAL_ERROR",
    "INVALID_DEVICE",
    "INVALID_UPDATE",
    "INVALID_VALUE",
    "LICENCE_RESTRICTION",
    "MAC_INVALID",
    "MAP_DUPLICATE_KEY",
    "MEMORY_CONSTRAINT_VIOLATION",
    "MESSAGE_DEPRECATED",
    "MESSAGE_METHOD_UNKNOWN",
    "MESSAGE_PARAMETER_COUNT_MISMATCH",
    "MESSAGE_REMOVED",
    "NETWORK_ALREADY_CONNECTED",
    "NETWORK_CONTAINS_PIF",
    "NETWORK_CONTAINS_VIF",
    "NOT_IMPLEMENTED",
    "NO_HOSTS_AVAILABLE",
    "ONLY_PROVISION_TEMPLATE",
    "ONLY_REVERT_SNAPSHOT",
    "OPERATION_BLOCKED",
    "OPERATION_NOT_ALLOWED",
    "OTHER_OPERATION_IN_PROGRESS",
    "OUT_OF_SPACE",
    "PBD_EXISTS",
    "PIF_IS_PHYSICAL",
    "RBAC_PERMISSION_DENIED",
    "SESSION_AUTHENTICATION_FAILED",
    "SESSION_AUTHORIZATION_FAILED",
    "SESSION_INVALID",
    "SESSION_NOT_REGISTERED",
    "SR_ATTACH_FAILED",
    "SR_BACKEND_FAILURE",
    "SR_FULL",
    "SR_HAS_NO_PBDS",
    "SR_HAS_PBD",
    "SR_NOT_ATTACHED",
    "SR_NOT_EMPTY",
    "SR_NO_PBDS",
    "SR_OPERATION_NOT_SUPPORTED",
    "SR_UNKNOWN_DRIVER",
    "TASK_CANCELLED",
    "TOO_MANY_PENDING_TASKS",
    "UNKNOWN_BOOTLOADER",
    "UPDATE_ALREADY_APPLIED",
    "UPDATE_ALREADY_APPLIED_IN_POOL",
    "UPDATE_ALREADY_EXISTS",
    "UPDATE_APPLY_FAILED",
    "UPDATE_IS_APPLIED",
    "UPDATE_POOL_APPLY_FAILED",
    "UUID_INVALID",
    "VALUE_NOT_SUPPORTED",
    "VBD_CDS_MUST_BE_READONLY",
    "VBD_IS_EMPTY",
    "VBD_NOT_EMPTY",
    "VBD_NOT_REMOVABLE_MEDIA",
    "VDI_INCOMPATIBLE_TYPE",
    "VDI_IN_USE",
    "VDI_IO_ERROR",
    "VDI_IS_A_PHYSICAL_DEVICE",
    "VDI_IS_NOT_ISO",
    "VDI_MISSING",
    "VDI_NOT_AVAILABLE",
    "VDI_READONLY",
    "VDI_TOO_LARGE",
    "VDI_TOO_SMALL",
    "VIF_IN_USE",
    "VM_BAD_POWER_STATE",
    "VM_CHECKPOINT_SUSPEND_FAILED",
    "VM_DUPLICATE_VBD_DEVICE",
    "VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT",
    "VM_HAS_PCI_ATTACHED",
    "VM_HAS_VGPU",
    "VM_HOST_INCOMPATIBLE_VERSION",
    "VM_HVM_REQUIRED",
    "VM_IS_IMMOBILE",
    "VM_IS_SNAPSHOT",
    "VM_IS_TEMPLATE",
    "VM_LACKS_FEATURE",
    "VM_MIGRATE_FAILED",
    "VM_MISSING_PV_DRIVERS",
    "VM_NON_SUSPENDABLE",
    "VM_NO_EMPTY_CD_VBD",
    "VM_OLD_PV_DRIVERS",
    "VM_REQUIRES_NETWORK",
    "VM_REQUIRES_SR",
    "VM_REVERT_FAILED",
    "VM_SHUTDOWN_TIMEOUT",
    "VM_TOO_MANY_VCPUS",
];

/// A parsed datamodel type (mirror of `xapi_types::Type`, owning its names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    String,
    Int,
    Float,
    Bool,
    DateTime,
    Ref(String),
    Enum(String),
    Set(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    Record(String),
    Option(Box<Ty>),
    Void,
    EventBatch,
    EventSet,
    Any,
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parse a datamodel type string (`(string -> enum vm_operations) map`, `VM ref set`, `sr_stat record option`).
pub fn parse_type(text: &str) -> Result<Ty, CodegenError> {
    let t = text.trim();
    let err = || CodegenError::Type(text.to_owned());
    let ty = match t {
        "string" => Ty::String,
        "int" => Ty::Int,
        "float" => Ty::Float,
        "bool" => Ty::Bool,
        "datetime" => Ty::DateTime,
        "void" => Ty::Void,
        "an event batch" => Ty::EventBatch,
        "event record set" => Ty::EventSet,
        // `event.snapshot`: a record of whichever class the event is about.
        "<class> record" => Ty::Any,
        _ => {
            if let Some(inner) = t.strip_suffix(" set") {
                Ty::Set(Box::new(parse_type(inner)?))
            } else if let Some(inner) = t.strip_suffix(" option") {
                Ty::Option(Box::new(parse_type(inner)?))
            } else if let Some(inner) = t.strip_suffix(" map") {
                let body = inner
                    .strip_prefix('(')
                    .and_then(|s| s.strip_suffix(')'))
                    .ok_or_else(err)?;
                let mut depth = 0i32;
                let mut split = None;
                for (i, c) in body.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        '-' if depth == 0 && body[i..].starts_with("->") => {
                            split = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let i = split.ok_or_else(err)?;
                Ty::Map(
                    Box::new(parse_type(&body[..i])?),
                    Box::new(parse_type(&body[i + 2..])?),
                )
            } else if let Some(name) = t.strip_suffix(" ref") {
                is_name(name)
                    .then(|| Ty::Ref(name.to_owned()))
                    .ok_or_else(err)?
            } else if let Some(name) = t.strip_suffix(" record") {
                is_name(name)
                    .then(|| Ty::Record(name.to_owned()))
                    .ok_or_else(err)?
            } else if let Some(name) = t.strip_prefix("enum ") {
                is_name(name)
                    .then(|| Ty::Enum(name.to_owned()))
                    .ok_or_else(err)?
            } else {
                return Err(err());
            }
        }
    };
    Ok(ty)
}

/// The Rust constant expression of a type (`Type::Set(&Type::Ref("VM"))`).
fn type_expr(t: &Ty) -> String {
    match t {
        Ty::String => "Type::String".into(),
        Ty::Int => "Type::Int".into(),
        Ty::Float => "Type::Float".into(),
        Ty::Bool => "Type::Bool".into(),
        Ty::DateTime => "Type::DateTime".into(),
        Ty::Ref(c) => format!("Type::Ref({c:?})"),
        Ty::Enum(e) => format!("Type::Enum({e:?})"),
        Ty::Set(i) => format!("Type::Set(&{})", type_expr(i)),
        Ty::Map(k, v) => format!("Type::Map(&{}, &{})", type_expr(k), type_expr(v)),
        Ty::Record(c) => format!("Type::Record({c:?})"),
        Ty::Option(i) => format!("Type::Option(&{})", type_expr(i)),
        Ty::Void => "Type::Void".into(),
        Ty::EventBatch => "Type::EventBatch".into(),
        Ty::EventSet => "Type::EventSet".into(),
        Ty::Any => "Type::Any".into(),
    }
}

fn str_field<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a str, CodegenError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| structure(format!("{what} lacks string `{key}`")))
}

fn array_field<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a [Value], CodegenError> {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| structure(format!("{what} lacks array `{key}`")))
}

fn is_removed(v: &Value) -> bool {
    v.pointer("/lifecycle/state").and_then(Value::as_str) == Some("Removed_s")
}

/// Escape a doc text into one `///` line.
fn doc_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

struct Field {
    name: String,
    ty: Ty,
    qualifier: &'static str,
    default: Option<String>,
    removed: bool,
}

struct Param {
    name: String,
    ty: Ty,
    required: bool,
}

struct Message {
    name: String,
    params: Vec<Param>,
    result: Ty,
    errors: Vec<String>,
    implicit: bool,
    is_async: bool,
    removed: bool,
}

struct Class {
    name: String,
    fields: Vec<Field>,
    messages: Vec<Message>,
}

struct Model {
    classes: Vec<Class>,
    /// Enum name → values, in first-seen order.
    enums: Vec<(String, Vec<String>)>,
    /// Error code → doc (first declaration seen).
    errors: BTreeMap<String, String>,
}

fn load(json: &str) -> Result<Model, CodegenError> {
    let root: Value = serde_json::from_str(json)?;
    let classes_json = root
        .as_array()
        .ok_or_else(|| structure("top level is not an array"))?;
    let mut classes = Vec::new();
    let mut enums: Vec<(String, Vec<String>)> = Vec::new();
    let mut errors = BTreeMap::new();
    for c in classes_json {
        let cname = str_field(c, "name", "class")?.to_owned();
        let mut fields = Vec::new();
        for f in array_field(c, "fields", &cname)? {
            let fname = str_field(f, "name", &cname)?;
            let what = format!("{cname}.{fname}");
            let qualifier = match str_field(f, "qualifier", &what)? {
                "RO/runtime" => "RoRuntime",
                "RO/constructor" => "RoConstructor",
                "RW" => "Rw",
                q => return Err(structure(format!("{what}: unknown qualifier {q}"))),
            };
            fields.push(Field {
                name: fname.to_owned(),
                ty: parse_type(str_field(f, "type", &what)?)?,
                qualifier,
                default: f.get("default").and_then(Value::as_str).map(str::to_owned),
                removed: is_removed(f),
            });
        }
        let mut messages = Vec::new();
        for m in array_field(c, "messages", &cname)? {
            let mname = str_field(m, "name", &cname)?.to_owned();
            let what = format!("{cname}.{mname}");
            let mut params = Vec::new();
            for p in array_field(m, "params", &what)? {
                params.push(Param {
                    name: str_field(p, "name", &what)?.to_owned(),
                    ty: parse_type(str_field(p, "type", &what)?)?,
                    required: p.get("required").and_then(Value::as_bool).unwrap_or(true),
                });
            }
            let result_text = array_field(m, "result", &what)?
                .first()
                .and_then(Value::as_str)
                .ok_or_else(|| structure(format!("{what}: empty result")))?;
            let result = match (cname.as_str(), mname.as_str()) {
                // The datamodel does not declare event.from's real shape (xapi.md §3.1).
                ("event", "from") => Ty::EventBatch,
                ("event", "next") => Ty::EventSet,
                _ => parse_type(result_text)?,
            };
            let mut errs = Vec::new();
            for e in array_field(m, "errors", &what)? {
                let code = str_field(e, "name", &what)?.to_owned();
                let doc = e.get("doc").and_then(Value::as_str).unwrap_or_default();
                errors.entry(code.clone()).or_insert_with(|| doc_line(doc));
                errs.push(code);
            }
            let implicit = m.get("implicit").and_then(Value::as_bool).unwrap_or(false);
            let is_async = !NO_ASYNC_CLASSES.contains(&cname.as_str())
                && (!implicit || mname == "create" || mname == "destroy");
            messages.push(Message {
                name: mname,
                params,
                result,
                errors: errs,
                implicit,
                is_async,
                removed: is_removed(m),
            });
        }
        for e in c
            .get("enums")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let ename = str_field(e, "name", &cname)?.to_owned();
            let values = array_field(e, "values", &ename)?
                .iter()
                .map(|v| str_field(v, "name", &ename).map(str::to_owned))
                .collect::<Result<Vec<_>, _>>()?;
            match enums.iter().find(|(n, _)| *n == ename) {
                Some((_, existing)) if *existing != values => {
                    return Err(structure(format!(
                        "enum {ename} declared twice with different values"
                    )));
                }
                Some(_) => {}
                None => enums.push((ename, values)),
            }
        }
        classes.push(Class {
            name: cname,
            fields,
            messages,
        });
    }
    for code in EXTRA_ERROR_CODES {
        errors.entry((*code).to_owned()).or_default();
    }
    Ok(Model {
        classes,
        enums,
        errors,
    })
}

const HEADER: &str =
    "// @generated by `cargo xtask codegen` from spec/xenapi.json: do not edit by hand.\n";

fn gen_schema(model: &Model) -> String {
    let mut o = String::new();
    o.push_str("//! Schema tables: every class (fields, messages) and enum of the datamodel.\n");
    o.push_str(HEADER);
    o.push('\n');
    o.push_str("use crate::schema::{ClassSpec, EnumSpec, FieldSpec, MessageSpec, ParamSpec, Qualifier, Type};\n\n");
    o.push_str("/// Every class of the datamodel, in `xenapi.json` order.\n");
    o.push_str("pub static CLASSES: &[ClassSpec] = &[\n");
    for c in &model.classes {
        let _ = writeln!(
            o,
            "    ClassSpec {{\n        name: {:?},\n        fields: &[",
            c.name
        );
        for f in &c.fields {
            let _ = writeln!(
                o,
                "            FieldSpec {{ name: {:?}, ty: {}, qualifier: Qualifier::{}, default: {}, removed: {} }},",
                f.name,
                type_expr(&f.ty),
                f.qualifier,
                f.default.as_ref().map_or_else(|| "None".to_owned(), |d| format!("Some({d:?})")),
                f.removed
            );
        }
        o.push_str("        ],\n        messages: &[\n");
        for m in &c.messages {
            let _ = writeln!(
                o,
                "            MessageSpec {{\n                name: {:?},",
                m.name
            );
            if m.params.is_empty() {
                o.push_str("                params: &[],\n");
            } else {
                o.push_str("                params: &[\n");
                for p in &m.params {
                    let _ = writeln!(
                        o,
                        "                    ParamSpec {{ name: {:?}, ty: {}, required: {} }},",
                        p.name,
                        type_expr(&p.ty),
                        p.required
                    );
                }
                o.push_str("                ],\n");
            }
            let errors = m
                .errors
                .iter()
                .map(|e| format!("{e:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                o,
                "                result: {},\n                errors: &[{errors}],\n                implicit: {},\n                is_async: {},\n                removed: {},\n            }},",
                type_expr(&m.result),
                m.implicit,
                m.is_async,
                m.removed
            );
        }
        o.push_str("        ],\n    },\n");
    }
    o.push_str(
        "];\n\n/// Every enum of the datamodel (deduplicated by name), in `xenapi.json` order.\n",
    );
    o.push_str("pub static ENUMS: &[EnumSpec] = &[\n");
    for (name, values) in &model.enums {
        let vals = values
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(o, "    EnumSpec {{ name: {name:?}, values: &[{vals}] }},");
    }
    o.push_str("];\n");
    o
}

fn gen_error_codes(model: &Model) -> String {
    let mut o = String::new();
    o.push_str("//! Error codes: every code a message of the datamodel declares, plus codes XAPI raises undeclared.\n");
    o.push_str(HEADER);
    o.push('\n');
    for (code, doc) in &model.errors {
        if !doc.is_empty() {
            let _ = writeln!(o, "#[doc = {doc:?}]");
        }
        let _ = writeln!(o, "pub const {code}: &str = {code:?};");
    }
    o.push_str("\n/// Every code above, sorted.\npub const ALL: &[&str] = &[\n");
    for code in model.errors.keys() {
        let _ = writeln!(o, "    {code},");
    }
    o.push_str("];\n");
    o
}

/// `vm_power_state` → `VmPowerState`, `VM_guest_metrics` → `VmGuestMetrics`, `IPv4` → `IPv4`, `RO` → `Ro`.
fn camel(name: &str) -> String {
    let mut out = String::new();
    for part in name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
    {
        let all_upper = part.chars().all(|c| !c.is_ascii_lowercase());
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            if all_upper {
                out.extend(chars.map(|c| c.to_ascii_lowercase()));
            } else {
                out.extend(chars);
            }
        }
    }
    if out.is_empty() {
        out.push_str("Empty");
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    out
}

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern", "false",
    "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
    "return", "static", "struct", "trait", "true", "type", "unsafe", "use", "where", "while",
    "abstract", "become", "box", "do", "final", "gen", "macro", "override", "priv", "try",
    "typeof", "unsized", "virtual", "yield",
];

/// A Rust field identifier for a wire field name.
fn field_ident(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "self" | "super" | "crate" | "_" => format!("{lower}_"),
        l if KEYWORDS.contains(&l) => format!("r#{l}"),
        _ => lower,
    }
}

/// The catch-all variant of generated enums.
const CATCH_ALL: &str = "Unrecognised";

/// The Rust type of a record field.
fn rust_type(t: &Ty) -> String {
    match t {
        Ty::String | Ty::DateTime => "String".into(),
        Ty::Int => "i64".into(),
        Ty::Float => "f64".into(),
        Ty::Bool => "bool".into(),
        Ty::Ref(_) => "Ref".into(),
        Ty::Enum(e) => camel(e),
        Ty::Set(i) => format!("Vec<{}>", rust_type(i)),
        Ty::Map(k, v) => format!("BTreeMap<{}, {}>", rust_type(k), rust_type(v)),
        Ty::Record(_) | Ty::Option(_) | Ty::Void | Ty::EventBatch | Ty::EventSet | Ty::Any => {
            "Value".into()
        }
    }
}

fn gen_records(model: &Model) -> Result<String, CodegenError> {
    let mut o = String::new();
    o.push_str("//! Typed records for the classes most code touches, and every datamodel enum as a Rust enum.\n");
    o.push_str("//!\n");
    o.push_str("//! Records deserialise from the canonical [`crate::Value`] form (see [`crate::schema::coerce`]); every\n");
    o.push_str("//! field defaults when absent. Enums keep the datamodel spelling on the wire; values this crate does\n");
    let _ = writeln!(
        o,
        "//! not know deserialise as `{CATCH_ALL}` (and serialise back as `\"{CATCH_ALL}\"`)."
    );
    o.push_str(HEADER);
    o.push('\n');
    o.push_str("#![allow(clippy::enum_variant_names, clippy::upper_case_acronyms)]\n\n");
    // Imports are added once the body is known, so that none is unused.
    let head = std::mem::take(&mut o);

    for (name, values) in &model.enums {
        let ty = camel(name);
        let mut seen = BTreeSet::new();
        let mut variants = Vec::new();
        for v in values {
            let mut ident = camel(v);
            let mut n = 2;
            while seen.contains(&ident) || ident == CATCH_ALL {
                ident = format!("{}{n}", camel(v));
                n += 1;
            }
            seen.insert(ident.clone());
            variants.push((ident, v.as_str()));
        }
        let _ = writeln!(o, "\n/// Datamodel enum `{name}`.");
        o.push_str(
            "#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]\n",
        );
        let _ = writeln!(o, "pub enum {ty} {{");
        for (i, (ident, wire)) in variants.iter().enumerate() {
            if i == 0 {
                o.push_str("    #[default]\n");
            }
            let _ = writeln!(o, "    #[serde(rename = {wire:?})]\n    {ident},");
        }
        let _ = writeln!(o, "    /// A value this crate does not know.\n    #[serde(other)]\n    {CATCH_ALL},\n}}\n");
        let _ = writeln!(o, "impl {ty} {{");
        let all = variants
            .iter()
            .map(|(i, _)| format!("Self::{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(o, "    /// Every known value, in datamodel order.\n    pub const ALL: &'static [Self] = &[{all}];\n");
        o.push_str("    /// The wire spelling.\n    pub fn as_str(self) -> &'static str {\n        match self {\n");
        for (ident, wire) in &variants {
            let _ = writeln!(o, "            Self::{ident} => {wire:?},");
        }
        let _ = writeln!(
            o,
            "            Self::{CATCH_ALL} => {CATCH_ALL:?},\n        }}\n    }}\n}}\n"
        );
        let _ = writeln!(
            o,
            "impl std::fmt::Display for {ty} {{\n    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {{\n        f.write_str(self.as_str())\n    }}\n}}"
        );
    }

    for cname in RECORD_CLASSES {
        let class = model
            .classes
            .iter()
            .find(|c| c.name == *cname)
            .ok_or_else(|| structure(format!("record class {cname} not in the datamodel")))?;
        let ty = format!("{}Record", camel(cname));
        let _ = writeln!(o, "\n/// A `{cname}` record.");
        o.push_str(
            "#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]\n",
        );
        o.push_str("#[serde(default)]\n");
        let _ = writeln!(o, "pub struct {ty} {{");
        let mut seen = BTreeSet::new();
        for f in &class.fields {
            let ident = field_ident(&f.name);
            if !seen.insert(ident.clone()) {
                return Err(structure(format!("{cname}: two fields map to `{ident}`")));
            }
            if ident.trim_start_matches("r#") != f.name {
                let _ = writeln!(o, "    #[serde(rename = {:?})]", f.name);
            }
            if f.ty == Ty::DateTime {
                // Absent datetimes are the epoch ("unset"), not "".
                o.push_str("    #[serde(default = \"crate::records::epoch\")]\n");
            }
            let _ = writeln!(o, "    pub {ident}: {},", rust_type(&f.ty));
        }
        o.push_str("}\n\n");
        let _ = writeln!(
            o,
            "impl Record for {ty} {{\n    const CLASS: &'static str = {cname:?};\n}}"
        );
    }
    let uses_value = o.contains(": Value,") || o.contains("Value>");
    let imports = format!(
        "use crate::records::Record;\nuse crate::{};\n{}",
        if uses_value { "{Ref, Value}" } else { "Ref" },
        if o.contains("BTreeMap<") {
            "use std::collections::BTreeMap;\n"
        } else {
            ""
        }
    );
    Ok(format!("{head}{imports}{o}"))
}

/// Generate the three files from the text of `xenapi.json`.
pub fn generate(json: &str) -> Result<Output, CodegenError> {
    let model = load(json)?;
    Ok(Output {
        schema: gen_schema(&model),
        error_codes: gen_error_codes(&model),
        records: gen_records(&model)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types() {
        assert_eq!(parse_type("string").unwrap(), Ty::String);
        assert_eq!(
            parse_type("VM ref set").unwrap(),
            Ty::Set(Box::new(Ty::Ref("VM".into())))
        );
        assert_eq!(
            parse_type("(string -> enum vm_operations) map").unwrap(),
            Ty::Map(
                Box::new(Ty::String),
                Box::new(Ty::Enum("vm_operations".into()))
            )
        );
        assert_eq!(
            parse_type("(VM ref -> (string -> string) map) map").unwrap(),
            Ty::Map(
                Box::new(Ty::Ref("VM".into())),
                Box::new(Ty::Map(Box::new(Ty::String), Box::new(Ty::String)))
            )
        );
        assert_eq!(
            parse_type("sr_stat record option").unwrap(),
            Ty::Option(Box::new(Ty::Record("sr_stat".into())))
        );
        assert_eq!(
            parse_type("string set set").unwrap(),
            Ty::Set(Box::new(Ty::Set(Box::new(Ty::String))))
        );
        assert_eq!(parse_type("<class> record").unwrap(), Ty::Any);
        for bad in [
            "",
            "strin",
            "(string -> string)",
            "(string string) map",
            "a b ref",
            "enum ",
            "VM ref -> x",
        ] {
            assert!(parse_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn type_expressions() {
        let t = parse_type("(string -> VM ref set) map").unwrap();
        assert_eq!(
            type_expr(&t),
            "Type::Map(&Type::String, &Type::Set(&Type::Ref(\"VM\")))"
        );
    }

    #[test]
    fn names() {
        assert_eq!(camel("vm_power_state"), "VmPowerState");
        assert_eq!(camel("VM_guest_metrics"), "VmGuestMetrics");
        assert_eq!(camel("balance-slb"), "BalanceSlb");
        assert_eq!(camel("IPv4"), "IPv4");
        assert_eq!(camel("RO"), "Ro");
        assert_eq!(camel("1x"), "V1x");
        assert_eq!(field_ident("VCPUs_max"), "vcpus_max");
        assert_eq!(field_ident("type"), "r#type");
        assert_eq!(field_ident("self"), "self_");
    }

    #[test]
    fn rejects_bad_models() {
        assert!(generate("not json").is_err());
        assert!(generate("{}").is_err());
        assert!(generate(r#"[{"name":"x"}]"#).is_err());
        let bad_type =
            r#"[{"name":"x","fields":[{"name":"f","type":"wat","qualifier":"RW"}],"messages":[]}]"#;
        assert!(matches!(generate(bad_type), Err(CodegenError::Type(_))));
    }
}
