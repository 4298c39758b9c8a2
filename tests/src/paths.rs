//! Where things live: the workspace root, the peer clients provisioned by `scripts/setup-peers.sh`.

use std::path::{Path, PathBuf};

use crate::error::HarnessError;

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // CARGO_MANIFEST_DIR is <root>/tests for this crate.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// `tests/peers`: the peer scripts and their npm project.
pub fn peers_dir() -> PathBuf {
    workspace_root().join("tests").join("peers")
}

/// The venv interpreter that has the official `XenAPI` SDK installed.
pub fn venv_python() -> Result<PathBuf, HarnessError> {
    let venv = workspace_root().join(".venv");
    let python = if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    };
    let marker = find_site_package(&venv, "XenAPI");
    match (python.exists(), marker) {
        (true, true) => Ok(python),
        _ => Err(HarnessError::PeersNotProvisioned {
            what: "Python venv with the XenAPI SDK",
            path: venv,
        }),
    }
}

/// The `node` executable, provided `tests/peers/node_modules/xen-api` is installed.
pub fn node_with_xen_api() -> Result<PathBuf, HarnessError> {
    let module = peers_dir().join("node_modules").join("xen-api");
    if !module.join("package.json").exists() {
        return Err(HarnessError::PeersNotProvisioned {
            what: "npm package xen-api",
            path: module,
        });
    }
    which("node").ok_or(HarnessError::ProgramMissing {
        program: "node",
        hint: "install Node.js >= 18, then run scripts/setup-peers.sh",
    })
}

/// Looks `program` up on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Whether `<venv>/lib*/python*/site-packages/<package>` exists.
fn find_site_package(venv: &Path, package: &str) -> bool {
    let Ok(libs) = std::fs::read_dir(venv.join("lib")) else {
        return venv
            .join("Lib")
            .join("site-packages")
            .join(package)
            .exists();
    };
    libs.flatten()
        .any(|python| python.path().join("site-packages").join(package).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("xo-tests-no-such-program-5f3a").is_none());
    }

    #[test]
    fn site_package_lookup_in_a_venv_layout() {
        let venv = std::env::temp_dir().join(format!("xo-tests-venv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&venv);
        assert!(!find_site_package(&venv, "XenAPI"), "no venv at all");
        let site = venv.join("lib").join("python3.11").join("site-packages");
        std::fs::create_dir_all(&site).expect("create venv layout");
        assert!(!find_site_package(&venv, "XenAPI"), "empty site-packages");
        std::fs::create_dir_all(site.join("XenAPI")).expect("create package dir");
        assert!(find_site_package(&venv, "XenAPI"));
        let _ = std::fs::remove_dir_all(&venv);
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let root = workspace_root();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("root Cargo.toml");
        assert!(manifest.contains("[workspace]"));
        assert!(peers_dir().join("package.json").exists());
    }
}
