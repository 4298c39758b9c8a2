//! Who may open which console (XAPI `console.ml` + `xapi_http.ml` rules): the session (cookie first, then query),
//! the console named by `ref` (console or VM ref) or `uuid` (VM or console uuid), and the check that its VM runs on
//! this host. Also builds the initial text of a console.

use std::sync::Arc;

use serde_json::Value;
use xapi_types::Ref;

use super::screen::ConsoleText;
use super::Screen;
use crate::db::Db;
use crate::state::{str_field, PoolState};

/// Realm of the 401 answer (XAPI uses the handler's task label).
pub(crate) const REALM: &str = "Connection to VM console";

/// Why a console request is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Missing or invalid session → 401.
    Unauthorised,
    /// XAPI's `Failure` (bad parameters, unknown console, VM not running here) → 500.
    Failure(String),
}

/// An accepted console request.
#[derive(Debug)]
pub(crate) struct Target {
    pub console: Ref,
    pub vm: Ref,
    pub screen: Arc<Screen>,
    /// `auth_user_name` of the session.
    pub user: String,
    /// `pool.limit_console_sessions`.
    pub limited: bool,
    /// `pool.vm_console_idle_timeout` (guests) or `host.console_idle_timeout` (dom0), when positive.
    pub idle: Option<std::time::Duration>,
}

/// Decode `application/x-www-form-urlencoded`-style query pairs.
pub(crate) fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of cookie `name` in a `Cookie:` header.
pub(crate) fn cookie(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k.trim() == name).then(|| percent_decode(v.trim().trim_matches('"')))
    })
}

/// Authorise and resolve a console request received by `host`.
pub(crate) fn resolve(
    pool: &Arc<PoolState>,
    host: &Ref,
    query: &str,
    cookies: &[String],
) -> Result<Target, Refusal> {
    let q = query_pairs(query);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    // xapi_http: the session comes from the cookie first, then the query string.
    let session = cookies
        .iter()
        .find_map(|h| cookie(h, "session_id"))
        .or_else(|| get("session_id"))
        .ok_or(Refusal::Unauthorised)?;
    let session = Ref::from(session.as_str());
    if !pool.session_valid(&session) {
        return Err(Refusal::Unauthorised);
    }
    if pool.is_local_session(&session)
        && pool.read(|db| str_field(db, "session", &session, "this_host")) != host.as_str()
    {
        return Err(Refusal::Unauthorised);
    }
    let (uuid, r) = (get("uuid"), get("ref"));
    pool.read(|db| {
        let id = match (uuid, r) {
            (Some(u), _) => db
                .find_by_uuid("VM", &u)
                .or_else(|| db.find_by_uuid("console", &u))
                .ok_or_else(|| Refusal::Failure(format!("no VM or console with uuid {u}")))?,
            (None, Some(r)) => Ref::from(r.as_str()),
            (None, None) => {
                return Err(Refusal::Failure(
                    "console request lacks a 'ref' or 'uuid' parameter".into(),
                ))
            }
        };
        let console = match db.class_of(&id) {
            Some("VM") => default_console(db, &id)?,
            Some("console") => id,
            _ => {
                return Err(Refusal::Failure(format!(
                    "{} is neither a VM ref nor a console ref",
                    id.as_str()
                )))
            }
        };
        let vm = Ref::from(str_field(db, "console", &console, "VM").as_str());
        if !running_here(db, &vm, host) {
            return Err(Refusal::Failure(format!(
                "VM {} (console {}) is not running on this host",
                vm.as_str(),
                console.as_str()
            )));
        }
        let screen = screen_of(pool, db, &vm);
        let user = str_field(db, "session", &session, "auth_user_name");
        let pool_ref = db.refs("pool").into_iter().next();
        let pool_rec = pool_ref.as_ref().and_then(|p| db.get("pool", p));
        let limited = pool_rec
            .and_then(|p| p.get("limit_console_sessions"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let dom0 = db
            .get("VM", &vm)
            .and_then(|r| r.get("is_control_domain"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let secs = if dom0 {
            db.get("host", host)
                .and_then(|h| h.get("console_idle_timeout"))
                .and_then(Value::as_i64)
        } else {
            pool_rec
                .and_then(|p| p.get("vm_console_idle_timeout"))
                .and_then(Value::as_i64)
        };
        let idle = secs
            .filter(|s| *s > 0)
            .map(|s| std::time::Duration::from_secs(s as u64));
        Ok(Target {
            console,
            vm,
            screen,
            user,
            limited,
            idle,
        })
    })
}

/// The first `rfb` console of a VM (XAPI's default console).
fn default_console(db: &Db, vm: &Ref) -> Result<Ref, Refusal> {
    let mut cs = db.find("console", |c| {
        c.get("VM").and_then(Value::as_str) == Some(vm.as_str())
            && c.get("protocol").and_then(Value::as_str) == Some("rfb")
    });
    cs.sort();
    cs.into_iter()
        .next()
        .ok_or_else(|| Refusal::Failure("failed to find the default VNC console of the VM".into()))
}

fn running_here(db: &Db, vm: &Ref, host: &Ref) -> bool {
    str_field(db, "VM", vm, "power_state") == "Running"
        && str_field(db, "VM", vm, "resident_on") == host.as_str()
}

/// True while the console row exists, its VM runs on `host` and the pool is up.
pub(crate) fn alive(pool: &PoolState, host: &Ref, console: &Ref, vm: &Ref) -> bool {
    !pool.is_shutdown()
        && pool.read(|db| db.exists("console", console) && running_here(db, vm, host))
}

/// The console refs of a VM, sorted (a restarted VM gets new ones).
fn identity(db: &Db, vm: &Ref) -> Vec<Ref> {
    let mut v = db.find("console", |c| {
        c.get("VM").and_then(Value::as_str) == Some(vm.as_str())
    });
    v.sort();
    v
}

/// The registry screen of a running VM, created (and stale ones pruned) as needed.
fn screen_of(pool: &PoolState, db: &Db, vm: &Ref) -> Arc<Screen> {
    pool.consoles
        .retain(|_, ids| !ids.is_empty() && ids.iter().all(|c| db.exists("console", c)));
    pool.consoles
        .get_or_create(vm, identity(db, vm), || initial_screen(db, vm))
}

/// The visible text rows of a running VM's console (row 0 is the title bar), as a viewer would see them; `None`
/// when the VM is unknown or has no console (not running).
pub fn screen_lines(pool: &PoolState, vm: &Ref) -> Option<Vec<String>> {
    let screen = pool.read(|db| {
        if !db.exists("VM", vm) || identity(db, vm).is_empty() {
            return None;
        }
        Some(screen_of(pool, db, vm))
    })?;
    Some(screen.lines())
}

/// A plausible console for the VM: name in the title bar, a boot log, a login prompt.
fn initial_screen(db: &Db, vm: &Ref) -> Screen {
    let name = str_field(db, "VM", vm, "name_label");
    let dom0 = db
        .get("VM", vm)
        .and_then(|r| r.get("is_control_domain"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let num = |f: &str| {
        db.get("VM", vm)
            .and_then(|r| r.get(f))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let vcpus = num("VCPUs_at_startup").max(1);
    let mib = num("memory_static_max") / (1024 * 1024);
    let hostname: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_matches('-')
        .to_owned();
    let hostname = if hostname.is_empty() {
        "localhost".to_owned()
    } else {
        hostname
    };
    let title = format!(" {name}");
    let log: Vec<String> = if dom0 {
        vec![
            "XCP-ng 8.3 (simulated)".into(),
            format!("Kernel 4.19.0+1 on an x86_64 ({vcpus} vCPUs, {mib} MiB)"),
            String::new(),
            "[  OK  ] Started XAPI toolstack.".into(),
            "[  OK  ] Started xcp-rrdd.".into(),
            "[  OK  ] Reached target Multi-User System.".into(),
            String::new(),
        ]
    } else {
        vec![
            "[    0.000000] Linux version 6.1.0-xen (sim) #1 SMP".into(),
            "[    0.000000] Command line: root=/dev/xvda1 ro console=hvc0".into(),
            format!("[    0.000000] Memory: {mib}MiB available"),
            format!("[    0.012000] smp: Brought up 1 node, {vcpus} CPUs"),
            "[    0.410000] xen_netfront: Initialising Xen virtual ethernet driver".into(),
            "[    0.620000] blkfront: xvda: barrier or flush: disabled; persistent grants: enabled"
                .into(),
            "[    0.900000] EXT4-fs (xvda1): mounted filesystem with ordered data mode".into(),
            "[    1.300000] systemd[1]: Reached target Multi-User System.".into(),
            String::new(),
            format!("Welcome to {name}"),
            String::new(),
        ]
    };
    Screen::new(
        name.clone(),
        ConsoleText::new(&title, &log, &format!("{hostname} login: ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_cookies() {
        let q = query_pairs("ref=OpaqueRef:1&session_id=OpaqueRef%3Aab+c&x&=y&bad=%zz%4");
        assert_eq!(q[0], ("ref".into(), "OpaqueRef:1".into()));
        assert_eq!(q[1], ("session_id".into(), "OpaqueRef:ab c".into()));
        assert_eq!(q[2], ("x".into(), "".into()));
        assert_eq!(q[4], ("bad".into(), "%zz%4".into()));
        assert_eq!(
            cookie("a=1; session_id=OpaqueRef:s; b=2", "session_id").as_deref(),
            Some("OpaqueRef:s")
        );
        assert_eq!(cookie("a=1", "session_id"), None);
    }
}
