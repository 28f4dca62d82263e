//! `cargo xtask bench-cluster-selection`: how the dynamic module hands its cluster choice to the
//! route, measured both ways on one machine in one interleaved run.
//!
//! - `header`: the filter writes `x-layover-cluster` and calls `http_clear_route_cache`; the
//!   `cluster_header` route is matched again.
//! - `specifier-plugin`: the filter writes dynamic metadata and calls
//!   `http_clear_route_cluster_cache`; only the route's cluster specifier plugin `select` runs.
//!
//! Both waypoints come from `layover envoy` (release binary) for the same Istio YAML, differing
//! only in `--cluster-selection` (and their ports). Each runs as its own Envoy with
//! `--concurrency 1`; a third Envoy answers as the upstream (direct response), so the proxied
//! path is real but cheap. Every round sends a fixed number of requests over 8 keep-alive
//! connections (a std-only client here: wrk can stop after N requests only by idling out its
//! duration) to each waypoint in turn (alternating which goes first) and reads that waypoint's CPU time
//! (utime + stime from `/proc/<pid>/stat`) before and after: CPU µs per request is what the
//! waypoint spent, whatever else the machine does; req/s is wall-clock and noisier.
//!
//! Writes `target/bench/cluster-selection.md`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::measure::{
    clock_ticks, cpu_ticks, free_port, median, min_max, start_envoy, upstream_config, EnvoyRun,
    Ready,
};
use crate::{repo_root, run, step};

/// The two mechanisms, as `layover envoy --cluster-selection` spells them.
const MODES: [&str; 2] = ["header", "specifier-plugin"];

/// Keep-alive connections the load client holds open.
const CONNECTIONS: u32 = 8;

/// Host header every request carries (the service in the bench YAML).
const HOST: &str = "bench:9080";

/// Settings from the command line.
struct Settings {
    rounds: u32,
    requests: u64,
}

fn parse(args: &[String]) -> Result<Settings, String> {
    let mut s = Settings {
        rounds: 6,
        requests: 60_000,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = |it: &mut std::slice::Iter<'_, String>| {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| *v > 0)
                .ok_or(format!("{arg} takes a positive number"))
        };
        match arg.as_str() {
            "--rounds" => {
                s.rounds = u32::try_from(value(&mut it)?).map_err(|e| e.to_string())?;
            }
            "--requests" => s.requests = value(&mut it)?,
            other => {
                return Err(format!(
                    "bench-cluster-selection: unknown argument `{other}` (expected --rounds N, --requests N)"
                ))
            }
        }
    }
    if s.rounds < 5 {
        return Err("bench-cluster-selection: at least 5 rounds".to_string());
    }
    Ok(s)
}

/// One measured run of one mode.
#[derive(Debug, Clone)]
struct Sample {
    mode: &'static str,
    round: u32,
    requests: u64,
    seconds: f64,
    req_per_s: f64,
    cpu_us_per_req: f64,
}

/// Service `bench` with two subsets (both on the upstream) and a VirtualService that decides
/// per request: `end-user: jason` → v2, everything else → v1.
fn istio_yaml(upstream: u16) -> String {
    let mut out = String::from(
        "---
apiVersion: v1
kind: Service
metadata: {name: bench, namespace: default}
spec:
  selector: {app: bench}
  ports: [{name: http, port: 9080, targetPort: 9080}]
",
    );
    for v in ["v1", "v2"] {
        out.push_str(&format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: bench-{v}, namespace: default}}
spec:
  address: 127.0.0.1
  ports: {{http: {upstream}}}
  labels: {{app: bench, version: {v}}}
"
        ));
    }
    out.push_str(
        "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bench, namespace: default}
spec:
  host: bench
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench, namespace: default}
spec:
  hosts: [bench]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: bench, subset: v2}}]
  - route: [{destination: {host: bench, subset: v1}}]
",
    );
    out
}

/// Sends `requests` GETs over [`CONNECTIONS`] keep-alive HTTP/1.1 connections (one blocking
/// client thread each, one request in flight per connection); (requests, seconds, req/s).
fn load(port: u16, requests: u64) -> Result<(u64, f64, f64), String> {
    let conns = u64::from(CONNECTIONS);
    let started = Instant::now();
    let clients: Vec<_> = (0..conns)
        .map(|i| {
            let n = requests / conns + u64::from(i < requests % conns);
            std::thread::spawn(move || client(port, n))
        })
        .collect();
    for c in clients {
        c.join()
            .map_err(|_| "a load client thread panicked".to_string())??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((requests, seconds, requests as f64 / seconds))
}

/// One keep-alive connection sending `n` requests, each answered 200 before the next.
fn client(port: u16, n: u64) -> Result<(), String> {
    let io = |e: std::io::Error| format!("load client on port {port}: {e}");
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let mut reader = BufReader::new(stream.try_clone().map_err(io)?);
    let mut writer = stream;
    let request = format!("GET /r HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let mut line = String::new();
    let mut body = Vec::new();
    for _ in 0..n {
        writer.write_all(request.as_bytes()).map_err(io)?;
        line.clear();
        reader.read_line(&mut line).map_err(io)?;
        if !line.starts_with("HTTP/1.1 200") {
            return Err(format!(
                "load client on port {port}: got `{}`",
                line.trim_end()
            ));
        }
        let mut length = 0usize;
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(io)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().map_err(|e| format!("{e}"))?;
                }
            }
        }
        body.resize(length, 0);
        reader.read_exact(&mut body).map_err(io)?;
    }
    Ok(())
}

/// `cargo xtask bench-cluster-selection [--rounds N] [--requests N]`.
pub fn cluster_selection(args: &[String]) -> Result<(), String> {
    let settings = parse(args)?;
    let root = repo_root();
    let envoy = crate::envoy::install(&root)?;
    let module_dir = crate::build_dynamic_module()?;
    step("building layover (release) to generate the waypoint configs");
    run(crate::cargo().args(["build", "--release", "--locked", "--bin", "layover"]))?;
    let layover = root.join("target/release/layover");

    let work = root.join("target/bench/cluster-selection");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let write = |name: &str, text: &str| -> Result<PathBuf, String> {
        let path = work.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    };

    let upstream_port = free_port()?;
    let upstream_cfg = write("upstream.yaml", &upstream_config(upstream_port))?;
    let yaml = write("bench.yaml", &istio_yaml(upstream_port))?;

    // One config per mode, from the same YAML; only the cluster selection and ports differ.
    let mut waypoints = Vec::new();
    for (i, mode) in MODES.iter().enumerate() {
        let port = free_port()?;
        let admin = free_port()?;
        let dir = work.join(mode);
        step(&format!("layover envoy --cluster-selection {mode}"));
        run(Command::new(&layover)
            .arg("envoy")
            .arg("--config")
            .arg(&yaml)
            .arg("--out-dir")
            .arg(&dir)
            .args(["--filter", "dynamic-module", "--dynamic-module-dir"])
            .arg(&module_dir)
            .args(["--cluster-selection", mode])
            .args(["--port", &port.to_string()])
            .args(["--admin-port", &admin.to_string()]))?;
        let base_id = 7100 + u32::try_from(i).unwrap_or(0);
        waypoints.push((*mode, dir.join("envoy.yaml"), port, base_id));
    }

    step("starting the upstream Envoy (direct response) and both waypoints (--concurrency 1)");
    let _upstream = start_envoy(
        &EnvoyRun {
            envoy: &envoy,
            config: &upstream_cfg,
            base_id: 7199,
            module_dir: &module_dir,
            log: &work.join("upstream.log"),
            name: "upstream",
        },
        Ready::Listener {
            port: upstream_port,
            host: HOST,
        },
    )?;
    let mut running = Vec::new();
    for (mode, config, port, base_id) in &waypoints {
        let proc = start_envoy(
            &EnvoyRun {
                envoy: &envoy,
                config,
                base_id: *base_id,
                module_dir: &module_dir,
                log: &work.join(format!("{mode}.log")),
                name: mode,
            },
            Ready::Listener {
                port: *port,
                host: HOST,
            },
        )?;
        running.push((*mode, *port, proc));
    }
    for (mode, port, _) in &running {
        step(&format!("warming up {mode} (5000 requests)"));
        load(*port, 5_000)?;
    }

    let ticks = clock_ticks();
    let mut samples = Vec::new();
    for round in 1..=settings.rounds {
        // Alternate which mode goes first, so drift over the run hits both alike.
        let order: Vec<usize> = if round % 2 == 1 {
            vec![0, 1]
        } else {
            vec![1, 0]
        };
        for i in order {
            let (mode, port, proc) = &running[i];
            let before = cpu_ticks(proc.pid())?;
            let (requests, seconds, req_per_s) = load(*port, settings.requests)?;
            let after = cpu_ticks(proc.pid())?;
            let cpu_us = (after.saturating_sub(before)) as f64 / ticks * 1e6;
            let sample = Sample {
                mode,
                round,
                requests,
                seconds,
                req_per_s,
                cpu_us_per_req: cpu_us / requests as f64,
            };
            println!(
                "round {round} {mode:<17} {requests:>7} req in {seconds:>6.2} s: {req_per_s:>8.0} req/s, {:>6.1} µs CPU/req",
                sample.cpu_us_per_req
            );
            samples.push(sample);
        }
    }
    drop(running);

    let report = report(&settings, &samples);
    println!("\n{report}");
    let out = root.join("target/bench/cluster-selection.md");
    std::fs::write(&out, &report).map_err(|e| format!("{}: {e}", out.display()))?;
    step(&format!("wrote {}", out.display()));
    Ok(())
}

/// The markdown report: every sample, then medians and spreads per mode.
fn report(settings: &Settings, samples: &[Sample]) -> String {
    let mut out = String::new();
    out.push_str("# Cluster selection: header vs cluster specifier plugin\n\n");
    out.push_str(&format!(
        "Envoy 1.40.0 `--concurrency 1` per waypoint, dynamic-module build, direct-response \
         upstream Envoy; {CONNECTIONS} keep-alive HTTP/1.1 connections (blocking std client, one \
         request in flight each), {} requests per \
         run, {} interleaved rounds (order alternating). CPU = waypoint utime+stime from \
         /proc/<pid>/stat.\n\n",
        settings.requests, settings.rounds
    ));
    out.push_str("| round | mechanism | requests | seconds | req/s | Envoy CPU µs/req |\n");
    out.push_str("|---:|---|---:|---:|---:|---:|\n");
    for s in samples {
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.1} |\n",
            s.round, s.mode, s.requests, s.seconds, s.req_per_s, s.cpu_us_per_req
        ));
    }
    out.push_str(
        "\n| mechanism | median µs/req | min–max µs/req | median req/s | min–max req/s |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|\n");
    let mut medians = Vec::new();
    for mode in MODES {
        let cpu: Vec<f64> = samples
            .iter()
            .filter(|s| s.mode == mode)
            .map(|s| s.cpu_us_per_req)
            .collect();
        let rps: Vec<f64> = samples
            .iter()
            .filter(|s| s.mode == mode)
            .map(|s| s.req_per_s)
            .collect();
        let (cmin, cmax) = min_max(&cpu);
        let (rmin, rmax) = min_max(&rps);
        let (cmed, rmed) = (median(cpu), median(rps));
        medians.push((mode, cmed, rmed, cmax - cmin));
        out.push_str(&format!(
            "| {mode} | {cmed:.1} | {cmin:.1}–{cmax:.1} | {rmed:.0} | {rmin:.0}–{rmax:.0} |\n"
        ));
    }
    if let [(a, acpu, arps, aspread), (b, bcpu, brps, bspread)] = medians.as_slice() {
        // Paired per round (same round, adjacent runs): how often is b cheaper than a?
        let mut b_cheaper = 0;
        let mut rounds = 0;
        for r in 1..=settings.rounds {
            let get = |m: &str| {
                samples
                    .iter()
                    .find(|s| s.round == r && s.mode == m)
                    .map(|s| s.cpu_us_per_req)
            };
            if let (Some(x), Some(y)) = (get(a), get(b)) {
                rounds += 1;
                if y < x {
                    b_cheaper += 1;
                }
            }
        }
        let diff = bcpu - acpu;
        out.push_str(&format!(
            "\n{b} − {a}: {diff:+.1} µs CPU/req ({:+.1} %), {:+.1} % req/s; {b} cheaper in \
             {b_cheaper} of {rounds} paired rounds; spread within a mechanism: {aspread:.1} / \
             {bspread:.1} µs.\n",
            diff / acpu * 100.0,
            (brps - arps) / arps * 100.0,
        ));
    }
    out
}
