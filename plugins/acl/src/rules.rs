//! XO's inheritance rules (`xo-acl-resolver`): for each object type, whether a permission held on the
//! object itself counts and which related objects pass theirs down.
//!
//! host, network: self or `$pool`; SR: self or `$container`; VM: self or `$container` (host if resident,
//! else pool); VM-template: self or `$pool`; VM-snapshot: self or `$snapshot_of`; VM-controller:
//! `$container` only; VDI: self, `$SR`, or any VM attached through its VBDs (`$VBDs` → VBD `VM`);
//! VDI-snapshot: self or `$snapshot_of`; VBD: its `VDI`; VIF: `$network` or `$VM`; PIF, PCI, task:
//! `$host`; PBD: `host` or `SR`; message: `$object`; PUSB: `host`; VUSB: `vm`; pool and anything else:
//! self only. A member equal to the object's own id is ignored; missing objects deny.

use serde_json::Value;

/// How one related object passes permissions down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parent {
    /// That object (checked with its own rule).
    Object(String),
    /// The VM of that VBD (VDI → VM through VBDs).
    VmOfVbd(String),
}

/// The rule of one object, extracted from its XO JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Whether a permission on the object itself counts.
    pub self_ok: bool,
    /// Related objects whose permission counts.
    pub parents: Vec<Parent>,
    /// For VBDs: their VM (used by [`Parent::VmOfVbd`]).
    pub vm: Option<String>,
}

/// `(self counts, member fields)` of an XO type.
fn rule(kind: &str) -> (bool, &'static [&'static str]) {
    match kind {
        "host" | "network" | "VM-template" => (true, &["$pool"]),
        "SR" | "VM" => (true, &["$container"]),
        "VM-controller" => (false, &["$container"]),
        "VM-snapshot" | "VDI-snapshot" => (true, &["$snapshot_of"]),
        "VDI" | "VDI-unmanaged" => (true, &["$SR"]),
        "VBD" => (false, &["VDI"]),
        "VIF" => (false, &["$network", "$VM"]),
        "PIF" | "PCI" | "task" => (false, &["$host"]),
        "PBD" => (false, &["host", "SR"]),
        "message" => (false, &["$object"]),
        "PUSB" => (false, &["host"]),
        "VUSB" => (false, &["vm"]),
        _ => (true, &[]),
    }
}

fn ids(v: Option<&Value>) -> impl Iterator<Item = &str> {
    let (one, many) = match v {
        Some(Value::String(s)) => (Some(s.as_str()), None),
        Some(Value::Array(a)) => (None, Some(a.iter().filter_map(Value::as_str))),
        _ => (None, None),
    };
    one.into_iter().chain(many.into_iter().flatten())
}

impl Node {
    /// The rule of `object` (an XO object with `id` and `type`).
    pub fn of(object: &Value) -> Node {
        let id = object.get("id").and_then(Value::as_str).unwrap_or("");
        let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
        let (self_ok, fields) = rule(kind);
        let mut parents: Vec<Parent> = fields
            .iter()
            .flat_map(|f| ids(object.get(*f)))
            .filter(|p| *p != id && !p.is_empty())
            .map(|p| Parent::Object(p.to_owned()))
            .collect();
        if kind == "VDI" || kind == "VDI-unmanaged" {
            parents.extend(
                ids(object.get("$VBDs"))
                    .filter(|p| *p != id)
                    .map(|p| Parent::VmOfVbd(p.to_owned())),
            );
        }
        let vm = (kind == "VBD")
            .then(|| object.get("VM").and_then(Value::as_str).map(str::to_owned))
            .flatten();
        Node {
            self_ok,
            parents,
            vm,
        }
    }
}

/// Whether a permission is granted on object `id` given the objects (`node`) and the user's direct
/// grants (`direct(id)`), following the rules; `visiting` guards against link cycles.
pub fn granted(
    id: &str,
    node: &mut dyn FnMut(&str) -> Option<Node>,
    direct: &dyn Fn(&str) -> bool,
    depth: usize,
) -> bool {
    const MAX_DEPTH: usize = 16;
    if depth > MAX_DEPTH {
        return false;
    }
    let Some(n) = node(id) else { return false };
    if n.self_ok && direct(id) {
        return true;
    }
    for p in &n.parents {
        let pid = match p {
            Parent::Object(o) => Some(o.clone()),
            Parent::VmOfVbd(vbd) => node(vbd).and_then(|v| v.vm),
        };
        if let Some(pid) = pid {
            if pid != id && granted(&pid, node, direct, depth + 1) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nodes_follow_the_rules() {
        let vm = json!({"id": "vm", "type": "VM", "$container": "h", "$pool": "p"});
        assert_eq!(
            Node::of(&vm),
            Node {
                self_ok: true,
                parents: vec![Parent::Object("h".into())],
                vm: None
            }
        );
        let vdi = json!({"id": "d", "type": "VDI", "$SR": "sr", "$VBDs": ["b1", "b2"]});
        assert_eq!(
            Node::of(&vdi).parents,
            vec![
                Parent::Object("sr".into()),
                Parent::VmOfVbd("b1".into()),
                Parent::VmOfVbd("b2".into())
            ]
        );
        let vbd = json!({"id": "b1", "type": "VBD", "VDI": "d", "VM": "vm"});
        assert_eq!(Node::of(&vbd).vm.as_deref(), Some("vm"));
        assert!(!Node::of(&vbd).self_ok);
        // a member equal to the own id is ignored
        let pool = json!({"id": "p", "type": "host", "$pool": "p"});
        assert!(Node::of(&pool).parents.is_empty());
        let ctrl = json!({"id": "c", "type": "VM-controller", "$container": "h"});
        assert!(!Node::of(&ctrl).self_ok);
    }

    #[test]
    fn cycles_and_missing_objects_deny() {
        let mut node = |id: &str| {
            Some(Node {
                self_ok: false,
                parents: vec![Parent::Object(if id == "a" { "b" } else { "a" }.into())],
                vm: None,
            })
        };
        assert!(!granted("a", &mut node, &|_| true, 0));
        let mut none = |_: &str| None;
        assert!(!granted("a", &mut none, &|_| true, 0));
    }
}
