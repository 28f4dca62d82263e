//! `cargo xtask fuzz`, `cargo xtask reload`, `cargo xtask soak`: the hardening runs that write
//! reports instead of passing or failing a CI step (they take minutes and a quiet machine).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{build_dynamic_module, build_wasm, cargo, envoy, repo_root, run, step};

/// The fuzz targets (binaries of `tests/fuzz`, feature `afl`) and their seed directories,
/// relative to the repo root.
const TARGETS: [(&str, &[&str]); 3] = [
    ("policy_decoder", &["tests/fuzz/seeds/policy_decoder"]),
    (
        "yaml_compiler",
        &["testdata/bookinfo", "testdata/invalid", "tests/fuzz/src"],
    ),
    (
        "decide",
        &["tests/fuzz/seeds/decide", "tests/fuzz/seeds/regressions"],
    ),
];

/// `cargo xtask fuzz [--seconds N] [--target NAME]…`: builds the AFL++ targets (installing
/// cargo-afl when missing) and fuzzes each for N seconds (default 120), one after the other;
/// writes `target/fuzz/report.md`.
pub(crate) fn fuzz(args: &[String]) -> Result<(), String> {
    let mut seconds: u64 = 120;
    let mut only: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|s| *s > 0)
                    .ok_or("fuzz: --seconds takes a positive number")?
            }
            "--target" => only.push(it.next().ok_or("fuzz: --target takes a name")?.clone()),
            other => {
                return Err(format!(
                    "fuzz: unknown argument `{other}` (expected --seconds N, --target NAME)"
                ))
            }
        }
    }
    for name in &only {
        if !TARGETS.iter().any(|(t, _)| t == name) {
            return Err(format!(
                "fuzz: unknown target `{name}` (policy_decoder, yaml_compiler, decide)"
            ));
        }
    }
    let root = repo_root();
    ensure_cargo_afl()?;
    // Own target dir and a fast release profile: AFL instrumentation rebuilds every crate, and
    // the workspace's LTO release profile would take many minutes for no fuzzing benefit.
    let build_dir = root.join("target/fuzz/build");
    step("building the fuzz targets (cargo afl build, release without LTO)");
    run(cargo()
        .args([
            "afl",
            "build",
            "--release",
            "--locked",
            "-p",
            "layover-fuzz",
            "--features",
            "afl",
        ])
        .env("CARGO_TARGET_DIR", &build_dir)
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"))?;

    let mut rows = Vec::new();
    for (name, seeds) in TARGETS {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let input = root.join("target/fuzz/in").join(name);
        let output = root.join("target/fuzz/out").join(name);
        prepare_seeds(&root, seeds, &input)?;
        // A fresh run each time: the numbers in the report are this run's.
        let _ = std::fs::remove_dir_all(&output);
        step(&format!("fuzzing {name} for {seconds} s (AFL++)"));
        let log_path = root.join("target/fuzz/out").join(format!("{name}.log"));
        std::fs::create_dir_all(root.join("target/fuzz/out"))
            .map_err(|e| format!("target/fuzz/out: {e}"))?;
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let result = run(cargo()
            // `-t 2000+`: a generous per-execution timeout on a loaded shared machine, and seeds
            // that still time out are skipped instead of aborting the run.
            .args([
                "afl",
                "fuzz",
                "-V",
                &seconds.to_string(),
                "-t",
                "2000+",
                "-i",
            ])
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .arg(build_dir.join("release").join(format!("fuzz_{name}")))
            .env("AFL_NO_UI", "1")
            .env("AFL_SKIP_CPUFREQ", "1")
            // Shared machines: no CPU pinning, no core_pattern requirement.
            .env("AFL_NO_AFFINITY", "1")
            .env("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1")
            .stdin(std::process::Stdio::null())
            .stdout(log));
        if let Err(e) = result {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "{e}\n{}\n(full log: {})",
                tail.join("\n"),
                log_path.display()
            ));
        }
        let stats = std::fs::read_to_string(output.join("default/fuzzer_stats"))
            .map_err(|e| format!("fuzz {name}: no fuzzer_stats: {e}"))?;
        let stat = |key: &str| {
            stats
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == key).then(|| v.trim().to_string())
                })
                .unwrap_or_else(|| "?".into())
        };
        let crashes = list(&output.join("default/crashes"));
        rows.push((
            name,
            stat("execs_done"),
            stat("execs_per_sec"),
            stat("corpus_count"),
            stat("saved_crashes"),
            stat("saved_hangs"),
            stat("run_time"),
            crashes,
        ));
    }

    let mut md = format!(
        "# Fuzzing (AFL++ {seconds} s per target)\n\n\
         `cargo xtask fuzz --seconds {seconds}`; load average at the end: {}.\n\n\
         | target | executions | execs/s | corpus | crashes | hangs | run time (s) |\n\
         |---|---|---|---|---|---|---|\n",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mut total_crashes = 0;
    for (name, execs, eps, corpus, crashes, hangs, time, _) in &rows {
        let _ = writeln!(
            md,
            "| {name} | {execs} | {eps} | {corpus} | {crashes} | {hangs} | {time} |"
        );
        total_crashes += crashes.parse::<u64>().unwrap_or(0);
    }
    for (name, .., files) in &rows {
        for f in files {
            let _ = writeln!(
                md,
                "\ncrash ({name}): `{}` — reproduce: `target/fuzz/build/release/fuzz_{name} < <file>`",
                f.display()
            );
        }
    }
    let report = root.join("target/fuzz/report.md");
    std::fs::write(&report, &md).map_err(|e| format!("{}: {e}", report.display()))?;
    println!("\n{md}\nwritten: {}", report.display());
    if total_crashes > 0 {
        return Err(format!(
            "fuzzing found {total_crashes} crash(es); see {}",
            report.display()
        ));
    }
    Ok(())
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.file_name().is_some_and(|n| n != "README.txt"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Copies the seed files (regular files under 1 MB) of `dirs` into `input`.
fn prepare_seeds(root: &Path, dirs: &[&str], input: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(input);
    std::fs::create_dir_all(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut n = 0;
    for dir in dirs {
        for file in list(&root.join(dir)) {
            let small = std::fs::metadata(&file).is_ok_and(|m| m.is_file() && m.len() < 1 << 20);
            let rust = file.extension().is_some_and(|e| e == "rs");
            if small && !rust {
                n += 1;
                let name = format!(
                    "{n:03}-{}",
                    file.file_name().and_then(|f| f.to_str()).unwrap_or("seed")
                );
                std::fs::copy(&file, input.join(name))
                    .map_err(|e| format!("{}: {e}", file.display()))?;
            }
        }
    }
    if n == 0 {
        return Err(format!("no seeds for {}", input.display()));
    }
    Ok(())
}

/// cargo-afl (AFL++ for Rust on stable): installed from crates.io and its AFL++ built once.
fn ensure_cargo_afl() -> Result<(), String> {
    let present = cargo()
        .args(["afl", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        step("installing cargo-afl (cargo install, a few minutes the first time)");
        run(cargo().args(["install", "cargo-afl", "--locked"]))
            .map_err(|e| format!("{e}\nhint: cargo-afl comes from crates.io"))?;
    }
    // Builds AFL++ and its LLVM runtime once per toolchain; already built is not an error.
    let built = cargo()
        .args(["afl", "config", "--build"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cargo afl config: {e}"))?;
    if !built.success() {
        // "already built" exits non-zero too; a missing AFL++ shows up at the build step.
        println!("(cargo afl config --build: AFL++ already built or not rebuilt)");
    }
    Ok(())
}

/// `cargo xtask reload`: the reload-under-load test for both builds, printing the reports it
/// writes to `target/reload/`.
pub(crate) fn reload() -> Result<(), String> {
    let root = repo_root();
    let envoy = envoy::install(&root)?;
    let wasm = build_wasm()?;
    let module_dir = build_dynamic_module()?;
    step("reload under load (tests/integration/tests/reload.rs, both builds)");
    run(cargo()
        .args([
            "test",
            "--locked",
            "-p",
            "layover-integration",
            "--test",
            "reload",
            "--",
            "--test-threads",
            "1",
        ])
        .env("LAYOVER_ENVOY", &envoy)
        .env("LAYOVER_WASM", &wasm)
        .env("LAYOVER_DYNAMIC_MODULE_DIR", &module_dir))?;
    for build in ["wasm", "dynamic-module"] {
        let path = root.join(format!("target/reload/report-{build}.md"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("\n{text}");
    }
    Ok(())
}

/// `cargo xtask soak [--minutes N] [--rate R]`: both builds concurrently at a fixed rate;
/// writes `target/soak/report.md` and `target/soak/soak.csv`.
pub(crate) fn soak(args: &[String]) -> Result<(), String> {
    let root = repo_root();
    let envoy = envoy::install(&root)?;
    let wasm = build_wasm()?;
    let module_dir = build_dynamic_module()?;
    // Optimized but without LTO, in its own target dir: the driver only has to keep its rate,
    // and sharing target/release with other flags would rebuild the dynamic module next time.
    let dir = root.join("target/soak/build");
    step("building the soak driver (release, no LTO)");
    run(cargo()
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "layover-integration",
            "--bin",
            "soak",
        ])
        .env("CARGO_TARGET_DIR", &dir)
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"))?;
    step("soak: both builds at a fixed rate (Ctrl-C stops it; nothing is written then)");
    run(Command::new(dir.join("release/soak"))
        .args(args)
        .args(["--out", "target/soak"])
        .env("LAYOVER_ENVOY", &envoy)
        .env("LAYOVER_WASM", &wasm)
        .env("LAYOVER_DYNAMIC_MODULE_DIR", &module_dir))
}
