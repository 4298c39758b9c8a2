//! The XenServer updates catalogue (`updates.xml`) and the missing-patch computation (pure, no I/O).

use std::collections::{BTreeMap, HashSet};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde::Serialize;

use crate::{Error, Result};

/// One patch of the catalogue, in XO's listing shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Patch {
    /// Same as `uuid` (XO's `id`).
    pub id: String,
    pub uuid: String,
    /// `name-label`.
    pub name: String,
    /// `name-description`.
    pub description: String,
    /// `timestamp` as given (XO converts it to a date).
    pub date: String,
    /// `url` of the documentation (`url` attribute).
    #[serde(rename = "documentationUrl")]
    pub documentation_url: String,
    /// `after-apply-guidance`.
    pub guidance: String,
    /// `patch-url`: the zip to download.
    pub url: String,
    pub version: String,
    /// uuids of conflicting patches.
    pub conflicts: Vec<String>,
    /// uuids of required patches.
    pub requirements: Vec<String>,
    pub paid: bool,
    /// An upgrade (a whole new release), never listed as missing.
    pub upgrade: bool,
}

/// The parsed catalogue: patches by uuid and, per product version, the uuids of its patches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    pub patches: BTreeMap<String, Patch>,
    pub versions: BTreeMap<String, Vec<String>>,
}

fn attrs(e: &BytesStart<'_>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in e.attributes() {
        let a = a.map_err(|e| Error::Catalogue(e.to_string()))?;
        let k = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let v = a
            .unescape_value()
            .map_err(|e| Error::Catalogue(e.to_string()))?
            .into_owned();
        out.insert(k, v);
    }
    Ok(out)
}

/// Parse `<patchdata><patches><patch …><conflictingpatches/><requiredpatches/></patch>…</patches>
/// <serverversions><version value="…"><patch uuid/>…</version></serverversions></patchdata>`.
pub fn parse_catalogue(xml: &str) -> Result<Catalogue> {
    let mut r = Reader::from_str(xml);
    let mut cat = Catalogue::default();
    let mut stack: Vec<String> = Vec::new();
    let mut current: Option<Patch> = None;
    let mut version: Option<String> = None;
    let mut seen_root = false;
    loop {
        let ev = r
            .read_event()
            .map_err(|e| Error::Catalogue(format!("at {}: {e}", r.buffer_position())))?;
        let (e, empty) = match &ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                match stack.pop().as_deref() {
                    Some("patch") if stack.last().map(String::as_str) == Some("patches") => {
                        if let Some(p) = current.take() {
                            cat.patches.insert(p.uuid.clone(), p);
                        }
                    }
                    Some("version") => version = None,
                    _ => {}
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
        let parent = stack.last().map(String::as_str);
        let a = attrs(e)?;
        match (parent, name.as_str()) {
            (None, "patchdata") => seen_root = true,
            (Some("patches"), "patch") => {
                let get = |k: &str| a.get(k).cloned().unwrap_or_default();
                let uuid = get("uuid");
                if uuid.is_empty() {
                    return Err(Error::Catalogue("a patch has no uuid".into()));
                }
                let name = get("name-label");
                let p = Patch {
                    id: uuid.clone(),
                    uuid,
                    upgrade: is_upgrade(&name),
                    name,
                    description: get("name-description"),
                    date: get("timestamp"),
                    documentation_url: get("url"),
                    guidance: get("after-apply-guidance"),
                    url: get("patch-url"),
                    version: get("version"),
                    conflicts: Vec::new(),
                    requirements: Vec::new(),
                    paid: a.get("update-stream").is_some_and(|s| s == "premium"),
                };
                if empty {
                    cat.patches.insert(p.uuid.clone(), p);
                } else {
                    current = Some(p);
                }
            }
            (
                Some("conflictingpatches" | "requiredpatches"),
                "conflictingpatch" | "requiredpatch",
            ) => {
                let uuid = a.get("uuid").cloned().unwrap_or_default();
                if let (Some(p), false) = (current.as_mut(), uuid.is_empty()) {
                    if name == "conflictingpatch" {
                        p.conflicts.push(uuid);
                    } else {
                        p.requirements.push(uuid);
                    }
                }
            }
            (Some("serverversions"), "version") => {
                let v = a.get("value").cloned().unwrap_or_default();
                cat.versions.entry(v.clone()).or_default();
                version = (!empty).then_some(v);
            }
            (Some("version"), "patch") => {
                if let (Some(v), Some(u)) = (&version, a.get("uuid")) {
                    cat.versions.entry(v.clone()).or_default().push(u.clone());
                }
            }
            _ => {}
        }
        if !empty {
            stack.push(name);
        }
    }
    if !seen_root {
        return Err(Error::Catalogue("no <patchdata> root".into()));
    }
    Ok(cat)
}

/// XO: names like `XS71` / `CH80` are whole-release upgrades.
fn is_upgrade(name: &str) -> bool {
    let rest = name.strip_prefix("XS").or_else(|| name.strip_prefix("CH"));
    rest.is_some_and(|r| r.len() >= 2 && r.bytes().all(|b| b.is_ascii_digit()))
}

/// Patches of `product_version` a host lacks: listed for its version, not installed, not an upgrade, not
/// conflicting with an installed patch. Sorted by date then name.
pub fn missing_for(
    cat: &Catalogue,
    product_version: &str,
    installed: &HashSet<String>,
) -> Vec<Patch> {
    let Some(uuids) = cat.versions.get(product_version) else {
        return Vec::new();
    };
    let mut out: Vec<Patch> = uuids
        .iter()
        .filter(|u| !installed.contains(*u))
        .filter_map(|u| cat.patches.get(u))
        .filter(|p| !p.upgrade)
        .filter(|p| !p.conflicts.iter().any(|c| installed.contains(c)))
        .cloned()
        .collect();
    out.sort_by(|a, b| (&a.date, &a.name).cmp(&(&b.date, &b.name)));
    out.dedup_by(|a, b| a.uuid == b.uuid);
    out
}

/// `patches` and their not-installed requirements, requirements first (`UnknownPatch` for a requirement missing
/// from the catalogue).
pub(crate) fn install_order(
    cat: &Catalogue,
    patches: &[String],
    installed: &HashSet<String>,
) -> Result<Vec<Patch>> {
    fn visit(
        cat: &Catalogue,
        u: &str,
        installed: &HashSet<String>,
        done: &mut HashSet<String>,
        path: &mut Vec<String>,
        out: &mut Vec<Patch>,
    ) -> Result<()> {
        if installed.contains(u) || done.contains(u) || path.iter().any(|p| p == u) {
            return Ok(());
        }
        let p = cat
            .patches
            .get(u)
            .ok_or_else(|| Error::UnknownPatch(u.to_owned()))?;
        path.push(u.to_owned());
        for r in &p.requirements {
            visit(cat, r, installed, done, path, out)?;
        }
        path.pop();
        done.insert(u.to_owned());
        out.push(p.clone());
        Ok(())
    }
    let mut out = Vec::new();
    let mut done = HashSet::new();
    for u in patches {
        visit(cat, u, installed, &mut done, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0"?>
<patchdata>
  <patches>
    <patch uuid="a" name-label="XS82E001" name-description="first &amp; one" after-apply-guidance="restartHost"
           url="https://docs/a" patch-url="http://x/a.zip" version="1.0" timestamp="2024-01-01T00:00:00Z">
      <conflictingpatches/><requiredpatches/>
    </patch>
    <patch uuid="b" name-label="XS82E002" name-description="second" after-apply-guidance="restartXAPI"
           url="" patch-url="http://x/b.zip" version="1.0" timestamp="2024-02-01T00:00:00Z">
      <conflictingpatches><conflictingpatch uuid="c"/></conflictingpatches>
      <requiredpatches><requiredpatch uuid="a"/></requiredpatches>
    </patch>
    <patch uuid="c" name-label="XS82E003" patch-url="http://x/c.zip" timestamp="2024-03-01T00:00:00Z"/>
    <patch uuid="u" name-label="XS90" patch-url="http://x/u.zip" timestamp="2024-04-01T00:00:00Z"/>
  </patches>
  <serverversions>
    <version value="8.2.1" name="XenServer 8.2.1"><patch uuid="a"/><patch uuid="b"/><patch uuid="c"/><patch uuid="u"/></version>
    <version value="7.1.2"/>
  </serverversions>
</patchdata>"#;

    #[test]
    fn parses_the_catalogue() {
        let c = parse_catalogue(XML).unwrap();
        assert_eq!(c.patches.len(), 4);
        let a = &c.patches["a"];
        assert_eq!(a.description, "first & one");
        assert_eq!(a.guidance, "restartHost");
        assert_eq!(a.url, "http://x/a.zip");
        let b = &c.patches["b"];
        assert_eq!(b.requirements, ["a"]);
        assert_eq!(b.conflicts, ["c"]);
        assert!(c.patches["u"].upgrade && !a.upgrade);
        assert_eq!(c.versions["8.2.1"], ["a", "b", "c", "u"]);
        assert!(c.versions["7.1.2"].is_empty());
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(
            parse_catalogue("<html></html>"),
            Err(Error::Catalogue(_))
        ));
        assert!(matches!(
            parse_catalogue("<patchdata><patches><patch/></patches></patchdata>"),
            Err(Error::Catalogue(_))
        ));
        assert!(parse_catalogue("<patchdata><a></b></patchdata>").is_err());
    }

    #[test]
    fn computes_missing_patches() {
        let c = parse_catalogue(XML).unwrap();
        let none = HashSet::new();
        let names = |v: Vec<Patch>| v.into_iter().map(|p| p.uuid).collect::<Vec<_>>();
        assert_eq!(names(missing_for(&c, "8.2.1", &none)), ["a", "b", "c"]);
        let a: HashSet<String> = ["a".to_owned()].into();
        assert_eq!(names(missing_for(&c, "8.2.1", &a)), ["b", "c"]);
        // c installed: b conflicts with it
        let ac: HashSet<String> = ["a".to_owned(), "c".to_owned()].into();
        assert!(missing_for(&c, "8.2.1", &ac).is_empty());
        assert!(missing_for(&c, "7.1.2", &none).is_empty());
        assert!(missing_for(&c, "6.0", &none).is_empty());
    }

    #[test]
    fn orders_requirements_first() {
        let c = parse_catalogue(XML).unwrap();
        let none = HashSet::new();
        let order = install_order(&c, &["b".to_owned()], &none).unwrap();
        assert_eq!(
            order.iter().map(|p| p.uuid.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let a: HashSet<String> = ["a".to_owned()].into();
        assert_eq!(
            install_order(&c, &["b".to_owned(), "b".to_owned()], &a)
                .unwrap()
                .len(),
            1
        );
        assert!(
            matches!(install_order(&c, &["zz".to_owned()], &none), Err(Error::UnknownPatch(u)) if u == "zz")
        );
    }
}
