//! `cargo xtask codegen [--check]`: regenerate (or verify) `crates/xapi-types/src/generated/*` from
//! `spec/xenapi.json`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn codegen(check: bool) -> Result<()> {
    let root = workspace_root();
    let spec = root.join("spec/xenapi.json");
    let json =
        std::fs::read_to_string(&spec).with_context(|| format!("reading {}", spec.display()))?;
    let out = xtask::codegen::generate(&json)?;
    let dir = root.join("crates/xapi-types/src/generated");
    let mut stale = Vec::new();
    for (name, text) in [
        ("schema.rs", &out.schema),
        ("error_codes.rs", &out.error_codes),
        ("records.rs", &out.records),
    ] {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == *text {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        bail!(
            "generated files are stale (run `cargo xtask codegen`): {}",
            stale.join(", ")
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["codegen"] => codegen(false),
        ["codegen", "--check"] => codegen(true),
        _ => bail!("usage: cargo xtask codegen [--check]"),
    }
}
