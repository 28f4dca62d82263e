//! `layover envoy --run` never leaves Envoy behind: SIGTERM (what `kill`, systemd and a pod
//! shutdown send) and SIGINT to layover reach Envoy, and layover exits only after Envoy has —
//! with and without `--watch`. Runs the built binary and the real Envoy (`LAYOVER_ENVOY`, else
//! the project-local install `cargo xtask install-envoy` makes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn envoy() -> PathBuf {
    if let Some(p) = std::env::var_os("LAYOVER_ENVOY") {
        return PathBuf::from(p);
    }
    let local = repo().join(".layover/envoy/envoy/_bin/envoy");
    assert!(
        local.is_file(),
        "no Envoy: set LAYOVER_ENVOY or run `cargo xtask install-envoy` (cargo xtask test does both)"
    );
    local
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The child processes of `pid` (Linux `/proc/<pid>/task/<pid>/children`).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie has state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn start(name: &str, extra: &[&str]) -> (Child, u32) {
    let out =
        std::env::temp_dir().join(format!("layover-run-signals-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (port, admin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_layover"))
        .current_dir(repo())
        .args(["envoy", "--config", "testdata/bookinfo", "--run"])
        .args([
            "--port",
            &port.to_string(),
            "--admin-port",
            &admin.to_string(),
        ])
        .arg("--out-dir")
        .arg(&out)
        .arg("--envoy")
        .arg(envoy())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(std::env::temp_dir().join(format!("{name}.stderr"))).unwrap())
        .spawn()
        .unwrap();
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", admin)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            let err = std::fs::read_to_string(std::env::temp_dir().join(format!("{name}.stderr")));
            panic!("layover exited early ({status}): {err:?}");
        }
        assert!(Instant::now() < deadline, "Envoy's admin port never opened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let envoys = children(child.id());
    assert_eq!(
        envoys.len(),
        1,
        "layover should have one child, Envoy: {envoys:?}"
    );
    (child, envoys[0])
}

fn stops_with(name: &str, extra: &[&str], signal: Signal) {
    let (mut layover, envoy_pid) = start(name, extra);
    kill_process(Pid::from_child(&layover), signal).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = layover.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "layover did not exit after {signal:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // layover waited for Envoy, so Envoy is gone (reaped) by the time layover exits.
    assert!(!alive(envoy_pid), "Envoy {envoy_pid} outlived layover");
    assert!(status.success(), "layover exited with {status}");
}

/// `--watch` needs a layover filter: the dynamic module `cargo xtask test` builds
/// (`LAYOVER_DYNAMIC_MODULE_DIR`, else `target/release`).
fn module_dir() -> String {
    std::env::var("LAYOVER_DYNAMIC_MODULE_DIR")
        .unwrap_or_else(|_| repo().join("target/release").display().to_string())
}

#[test]
fn sigterm_stops_envoy_first() {
    stops_with("layover-run-term", &["--filter", "none"], Signal::TERM);
}

#[test]
fn sigint_stops_envoy_first() {
    stops_with("layover-run-int", &["--filter", "none"], Signal::INT);
}

#[test]
fn sigterm_stops_envoy_and_the_watch_loop() {
    let dir = module_dir();
    stops_with(
        "layover-run-watch",
        &["--watch", "--dynamic-module-dir", &dir],
        Signal::TERM,
    );
}
