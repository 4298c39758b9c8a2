//! Guest network addresses: XO's `normalizeVmNetworks` (→ `addresses`) and `extractIpFromVmNetworks`
//! (→ `mainIpAddress`), on `VM_guest_metrics.networks`.

use serde_json::{Map, Value};

/// Parse a key `<device>/ip` or `<device>/ipv4|ipv6/<anything>` into (device, protocol).
fn parse_key(key: &str) -> Option<(&str, &str)> {
    let (device, rest) = key.split_once('/')?;
    if device.is_empty() || !device.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if rest == "ip" {
        return Some((device, "ipv4"));
    }
    let (proto, tail) = rest.split_once('/')?;
    if (proto == "ipv4" || proto == "ipv6") && !tail.is_empty() {
        Some((device, proto))
    } else {
        None
    }
}

/// `{ "<dev>/<proto>/<n>": address }`: keys sorted, legacy `x/ip` merged into ipv4, whitespace-separated
/// lists split, empty values skipped, duplicates per (device, protocol) removed.
pub fn normalize(networks: Option<&Map<String, Value>>) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(networks) = networks else { return out };
    let mut keys: Vec<&String> = networks.keys().collect();
    keys.sort();
    // device → protocol → addresses, in first-seen order.
    type ByProto<'a> = Vec<(&'a str, Vec<String>)>;
    let mut by_device: Vec<(&str, ByProto<'_>)> = Vec::new();
    for key in keys {
        let Some(address) = networks[key].as_str() else {
            continue;
        };
        let address = address.trim();
        if address.is_empty() {
            continue;
        }
        let Some((device, proto)) = parse_key(key) else {
            continue;
        };
        let dev_idx = match by_device.iter().position(|(d, _)| *d == device) {
            Some(i) => i,
            None => {
                by_device.push((device, Vec::new()));
                by_device.len() - 1
            }
        };
        let protos = &mut by_device[dev_idx].1;
        let p_idx = match protos.iter().position(|(p, _)| *p == proto) {
            Some(i) => i,
            None => {
                protos.push((proto, Vec::new()));
                protos.len() - 1
            }
        };
        let set = &mut protos[p_idx].1;
        for a in address.split_whitespace() {
            if !set.iter().any(|x| x == a) {
                set.push(a.to_owned());
            }
        }
    }
    for (device, protos) in by_device {
        for (proto, addrs) in protos {
            for (i, a) in addrs.into_iter().enumerate() {
                out.insert(format!("{device}/{proto}/{i}"), Value::String(a));
            }
        }
    }
    out
}

fn is_ipv4_key(key: &str) -> bool {
    // ^\d+/ip(?:v4/\d+)?$
    let Some((dev, rest)) = key.split_once('/') else {
        return false;
    };
    if dev.is_empty() || !dev.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    rest == "ip"
        || rest
            .strip_prefix("ipv4/")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_ipv6_key(key: &str) -> bool {
    let Some((dev, rest)) = key.split_once('/') else {
        return false;
    };
    !dev.is_empty()
        && dev.bytes().all(|b| b.is_ascii_digit())
        && rest
            .strip_prefix("ipv6/")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// First IPv4 (in sorted key order), else first IPv6, else `None`.
pub fn main_ip(networks: Option<&Map<String, Value>>) -> Option<Value> {
    let networks = networks?;
    let mut keys: Vec<&String> = networks.keys().collect();
    keys.sort();
    let mut ipv6 = None;
    for key in keys {
        if is_ipv4_key(key) {
            return Some(networks[key].clone());
        }
        if ipv6.is_none() && is_ipv6_key(key) {
            ipv6 = Some(networks[key].clone());
        }
    }
    ipv6
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalizes_like_xo() {
        let input = json!({
            "0/ip": "127.0.0.1 127.0.0.2",
            "0/ipv4/0": "127.0.0.1",
            "1/ip": "127.0.0.1",
            "0/ipv4/2": "127.0.0.4",
            "0/ipv4/1": "127.0.0.5",
            "0/ipv4/foo bar": "127.0.0.3 127.0.0.6",
            "0/ipv6/0": "::1 ::2",
            "0/ipv4/3": "   ",
            "2/ipv5/0": "127.0.0.1"
        });
        let out = normalize(input.as_object());
        assert_eq!(
            Value::Object(out),
            json!({
                "0/ipv4/0": "127.0.0.1",
                "0/ipv4/1": "127.0.0.2",
                "0/ipv4/2": "127.0.0.5",
                "0/ipv4/3": "127.0.0.4",
                "0/ipv4/4": "127.0.0.3",
                "0/ipv4/5": "127.0.0.6",
                "0/ipv6/0": "::1",
                "0/ipv6/1": "::2",
                "1/ipv4/0": "127.0.0.1"
            })
        );
    }

    #[test]
    fn main_ip_prefers_ipv4() {
        let n = json!({"0/ipv6/0": "fe80::1", "1/ipv4/0": "10.0.0.2"});
        assert_eq!(main_ip(n.as_object()), Some(json!("10.0.0.2")));
        let n = json!({"0/ipv6/0": "fe80::1"});
        assert_eq!(main_ip(n.as_object()), Some(json!("fe80::1")));
        assert_eq!(main_ip(None), None);
    }
}
