//! Finds the `faultline-node` binary, building it from this source tree when it is
//! missing or stale, so `cargo run --bin harness -- run` works on a fresh checkout.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

const NAME: &str = "faultline-node";

/// The workspace the running harness belongs to: its executable sits in
/// `ROOT/target/<profile>/` (or `ROOT/target/<profile>/deps/` for tests), and
/// ROOT holds `system/Cargo.toml`. Not where it was compiled: a harness copied
/// or run from another checkout builds that checkout's node.
pub(crate) fn workspace() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .take(5)
        .find(|d| d.join("system").join("Cargo.toml").is_file() && d.join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
}

/// The node binary beside this executable, if one is there (no build).
pub fn existing() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let dir = exe.parent().context("this executable has no folder")?;
    // Test binaries live one level down, in `deps/`.
    [dir.join(NAME), dir.join("..").join(NAME)]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no {NAME} beside {}: build it with `cargo build --release -p system`",
                exe.display()
            )
        })
}

/// Where cargo puts build output for the workspace at `root`: `CARGO_TARGET_DIR`
/// when set (relative to `root`), else `root/target`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => root.join(d),
        _ => root.join("target"),
    }
}

/// The node binary: `explicit` if given, else built (a no-op when up to date) from
/// the source tree, else found next to this executable.
pub fn locate(explicit: Option<&Path>, quiet: bool) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_dir() {
            bail!(crate::run::BadInput(format!(
                "--node-bin {}: a folder, not the node binary",
                p.display()
            )));
        }
        if !p.is_file() {
            bail!(crate::run::BadInput(format!(
                "--node-bin {}: no such file",
                p.display()
            )));
        }
        return Ok(p.to_path_buf());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(NAME)));
    if let Some(root) = workspace() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let profile_release = beside
            .as_ref()
            .and_then(|b| b.parent())
            .is_none_or(|d| !d.ends_with("debug"));
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&root)
            .args(["build", "-p", "system", "--bin", NAME]);
        if profile_release {
            cmd.arg("--release");
        }
        if quiet {
            cmd.arg("--quiet");
        }
        let status = cmd
            .status()
            .context("cannot run cargo to build the node binary")?;
        if !status.success() {
            bail!("building {NAME} failed (cargo exit {status})");
        }
        let dir = target_dir(&root).join(if profile_release { "release" } else { "debug" });
        let built = dir.join(NAME);
        if built.is_file() {
            return Ok(built);
        }
    }
    match beside {
        Some(b) if b.is_file() => Ok(b),
        _ => bail!("cannot find {NAME}: build it with `cargo build --release -p system` or pass --node-bin"),
    }
}

/// The planted bugs the node binary knows, from `faultline-node --list-bugs`.
pub fn bugs(bin: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let out = Command::new(bin)
        .arg("--list-bugs")
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!("{} --list-bugs failed", bin.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, what) = l.split_once('\t')?;
            Some((name.to_string(), what.to_string()))
        })
        .collect())
}
