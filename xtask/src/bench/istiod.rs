//! The istiod-shaped waypoint in `cargo xtask bench` (issue 13): the configuration users run.
//!
//! The waypoint istiod 1.30.3 would push for the same Istio YAML (`bench istiod`, which calls
//! `layover_bootstrap::istiod`): HBONE in on `connect_terminate`, `main_internal` selecting one
//! chain per service port by the service VIP (the CONNECT goes to `VIP:9080`, as ztunnel sends
//! it), every endpoint in the mesh and reached by HBONE through `connect_originate`. Three
//! builds: **istiod-native** (istiod's own RBAC, fault, CORS and routes per chain — the
//! baseline), and **istiod-wasm** / **istiod-dynamic-module**, layover attached only the way a
//! cluster attaches it, by the route A EnvoyFilter (each chain's connection manager replaced).
//!
//! The destination's ztunnel is played by one `bench ztunnel` process shared by the three: a
//! single-threaded Rust HBONE server on loopback that terminates the waypoint's mTLS + HTTP/2
//! CONNECT and splices each tunnel to the direct-response upstream (its CONNECT authority). It
//! is cheaper than a second Envoy doing the same (no HTTP/1.1 codec inside the tunnel, one
//! thread), and its CPU is not the waypoint's: only the waypoint's `/proc` times are measured.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use super::{find, ratio, Env, Goal, Row, Settings, Waypoint};
use crate::measure::{free_port, start_envoy, start_process, EnvoyRun, Proc, Ready};

/// The pseudo-listener of the istiod-shaped waypoints: HBONE to the service VIP.
pub(super) const LISTENER: &str = "istiod";

/// The istiod-shaped waypoints, in report order; the first is the baseline of the ratios.
pub(super) const CONFIGS: [&str; 3] = ["istiod-native", "istiod-wasm", "istiod-dynamic-module"];

/// The baseline the istiod-shaped waypoints are compared to.
pub(super) const NATIVE: &str = "istiod-native";

/// The identity the destination ztunnel's stand-in presents.
pub(super) const ZTUNNEL_IDENTITY: &str = "default/ztunnel";

/// The listeners an istiod-shaped waypoint is measured on.
const LISTENERS: [&str; 1] = [LISTENER];

/// Starts the destination ztunnel's stand-in (`bench ztunnel`); ready when it accepts TCP.
pub(super) fn start_ztunnel(env: &Env) -> Result<(Proc, u16), String> {
    let port = free_port()?;
    let mut cmd = Command::new(&env.loadgen);
    cmd.arg("ztunnel")
        .arg("--certs")
        .arg(&env.certs)
        .args(["--identity", ZTUNNEL_IDENTITY])
        .args(["--port", &port.to_string()]);
    let proc = start_process(cmd, "ztunnel", &env.work.join("ztunnel.log"), port)?;
    Ok((proc, port))
}

/// Generates one istiod-shaped waypoint's bootstrap (`bench istiod`) and starts it.
pub(super) fn start_waypoint(
    env: &Env,
    dir: &Path,
    yaml: &Path,
    config: &'static str,
    base_id: u32,
    ztunnel_port: u16,
) -> Result<Waypoint, String> {
    let admin = free_port()?;
    let hbone_port = free_port()?;
    let out = dir.join(config);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let bootstrap = out.join("envoy.yaml");
    let build = config.trim_start_matches("istiod-");
    let o = Command::new(&env.loadgen)
        .arg("istiod")
        .arg("--config")
        .arg(yaml)
        .arg("--out")
        .arg(&bootstrap)
        .args(["--build", build, "--wasm"])
        .arg(&env.wasm)
        .arg("--certs")
        .arg(&env.certs)
        .args(["--hbone-port", &hbone_port.to_string()])
        .args(["--admin-port", &admin.to_string()])
        .args(["--ztunnel-port", &ztunnel_port.to_string()])
        .output()
        .map_err(|e| format!("running bench istiod: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "bench istiod --build {build}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    let proc = start_envoy(
        &EnvoyRun {
            envoy: &env.envoy,
            config: &bootstrap,
            base_id,
            module_dir: &env.module_dir,
            log: &out.join("envoy.log"),
            name: config,
        },
        Ready::Admin { port: admin },
    )?;
    Ok(Waypoint {
        config,
        port: 0,
        hbone_port,
        listeners: &LISTENERS,
        proc: Some(proc),
    })
}

/// vCPU a waypoint needs per 1,000 requests/s: CPU seconds per request × 1,000 (Istio's
/// published waypoint figure is 0.25 vCPU at 1,000 rps).
pub(super) fn vcpu_per_krps(cpu_us_per_req: f64) -> f64 {
    cpu_us_per_req / 1_000.0
}

/// The goals of issue 13 for the istiod-shaped waypoint.
pub(super) fn goals(settings: &Settings, rows: &[Row]) -> Vec<Goal> {
    let goal = |text: &str, config: &str, routes: usize, ok: fn(f64) -> bool| {
        super::ratio_goal(
            settings,
            rows,
            text,
            config,
            routes,
            super::Metric::Cpu,
            (&LISTENERS, NATIVE),
            ok,
        )
    };
    vec![
        goal(
            "istiod shape: dynamic module ≤ 1.0× istiod-native CPU per request at 10 routes",
            "istiod-dynamic-module",
            10,
            |x| x <= 1.0,
        ),
        goal(
            "istiod shape: dynamic module ≤ 0.75× istiod-native CPU per request at 1,000 routes",
            "istiod-dynamic-module",
            1_000,
            |x| x <= 0.75,
        ),
        goal(
            "istiod shape: wasm ≤ 1.2× istiod-native CPU per request at 10 routes",
            "istiod-wasm",
            10,
            |x| x <= 1.2,
        ),
    ]
}

/// The report's section on the istiod-shaped waypoints.
pub(super) fn report_md(rows: &[Row]) -> String {
    let mut o = String::new();
    if !rows.iter().any(|r| r.listener == LISTENER) {
        return o;
    }
    let _ = writeln!(
        o,
        "\n## The istiod-shaped waypoint (HBONE to the service VIP, HBONE out)\n\n\
         The waypoint istiod 1.30.3 generates for the same YAML: `connect_terminate` → \
         `main_internal` (one chain per service port, selected by the CONNECT's VIP:port) → \
         `connect_originate` HBONE to the endpoint through a destination-ztunnel stand-in \
         (`bench ztunnel`, one Rust thread on loopback) in front of the direct-response upstream. \
         Each load connection is one mTLS HTTP/2 connection with one CONNECT tunnel per service \
         VIP. **istiod-native**: istiod's RBAC (DENY, ALLOW), fault, CORS and routes per chain; \
         **istiod-wasm** / **istiod-dynamic-module**: layover attached by the route A EnvoyFilter \
         (each chain's connection manager replaced). vCPU @ 1k rps = the whole waypoint's CPU \
         seconds per request × 1,000 (Istio publishes 0.25 vCPU per 1,000 rps).\n"
    );
    let _ = writeln!(
        o,
        "| routes | rules | config | req/s | p50 µs | p99 µs | CPU µs/req (min–max) | × istiod-native | vCPU @ 1k rps | RSS MiB |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows.iter().filter(|r| r.listener == LISTENER) {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} ({:.1}–{:.1}) | {} | {:.3} | {} |",
            r.routes,
            r.rules,
            r.config,
            r.req_per_s,
            r.p50_us,
            r.p99_us,
            r.cpu,
            r.cpu_min,
            r.cpu_max,
            ratio(rows, r, NATIVE),
            vcpu_per_krps(r.cpu),
            super::mib(r.rss_kib)
        );
    }
    o
}

/// One line per size: the istiod-shaped ratios side by side (for the printed summary).
pub(super) fn summary(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut sizes: Vec<(usize, usize)> = Vec::new();
    for r in rows.iter().filter(|r| r.listener == LISTENER) {
        if !sizes.contains(&(r.routes, r.rules)) {
            sizes.push((r.routes, r.rules));
        }
    }
    if sizes.is_empty() {
        return out;
    }
    out.push_str(
        "istiod-shaped waypoint (HBONE to the VIP): CPU µs/req, × istiod-native, vCPU per 1,000 rps\n\
         routes rules   native µs (vCPU)    wasm µs  ×      (vCPU)    module µs  ×      (vCPU)\n",
    );
    for (routes, rules) in sizes {
        let cell = |config: &str| match find(rows, routes, rules, LISTENER, config) {
            Some(r) => format!(
                "{:>7.1} {:>6} ({:.3})",
                r.cpu,
                ratio(rows, r, NATIVE),
                vcpu_per_krps(r.cpu)
            ),
            None => format!("{:>22}", "–"),
        };
        let native = find(rows, routes, rules, LISTENER, NATIVE).map_or("–".into(), |r| {
            format!("{:>7.1} ({:.3})", r.cpu, vcpu_per_krps(r.cpu))
        });
        let _ = writeln!(
            out,
            "{routes:>6} {rules:>5}  {native:>17}  {}  {}",
            cell("istiod-wasm"),
            cell("istiod-dynamic-module")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_per_thousand_rps_is_cpu_seconds_per_request_times_thousand() {
        // 250 µs per request = 0.25 vCPU at 1,000 requests/s (Istio's published figure).
        assert!((vcpu_per_krps(250.0) - 0.25).abs() < 1e-12);
        assert!((vcpu_per_krps(80.0) - 0.08).abs() < 1e-12);
    }
}
