//! `cargo xtask bench`: the side-by-side benchmark. One invocation measures, on this machine and
//! interleaved, four waypoints for the same Istio YAML:
//!
//! - `no-policy`: Envoy with the same listeners (plain and HBONE) but one route `prefix: /` to
//!   one cluster and no filter but the router — the ceiling;
//! - `native`: `layover envoy --filter none` — the policy translated to Envoy's own routes and
//!   RBAC, as istiod does (issue 6 part 1; an older `--filter none` that does not route the
//!   requests is reported as unavailable);
//! - `wasm`: the proxy-wasm build; `dynamic-module`: the Envoy dynamic module build.
//!
//! For every policy size (routes × authorization rules) the four Envoys run side by side
//! (`--concurrency 1` each) behind one direct-response upstream Envoy. Each is checked to answer
//! every request of the list with 200, warmed up (discarded), then measured in rounds that rotate
//! the order of the configs, on the plain listener (HTTP/1.1) and through HBONE (mutual TLS +
//! HTTP/2 CONNECT, HTTP/1.1 inside). A run is a fixed number of requests over keep-alive
//! connections, spread round-robin over one request per route; the load generator
//! (`tests/integration/src/bin/bench.rs`) reports req/s and latency percentiles, and the waypoint's CPU time
//! (utime + stime from `/proc/<pid>/stat`) before and after gives CPU µs per request. RSS
//! (`VmRSS`) is read after the rounds: with `--concurrency 1` it is the memory of one worker plus
//! the main thread.
//!
//! At the first size one extra plain run per waypoint is sampled with `perf record -e cpu-clock`
//! (when perf works) to show where the time goes. The core's `decide()` scaling micro-benchmark
//! runs too. Writes `target/bench/report.md`,
//! `target/bench/report.json` and `target/bench/cpu-per-request.png`, and prints the ratios to
//! native.
//!
//! Side by side with those, the istiod-shaped waypoint ([`istiod`], issue 13): the
//! configuration istiod generates for the same YAML, natively and with each layover build
//! attached by the route A EnvoyFilter, driven through HBONE to the service VIP and reaching the
//! upstream through HBONE out; its ratios are to its own native (`--shapes own,istiod` picks
//! which shapes run).

mod istiod;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::measure::{
    clock_ticks, cpu_ticks, free_port, median, min_max, rss_kib, start_envoy, upstream_config,
    EnvoyRun, Ready,
};
use crate::{repo_root, run, step};

/// The four waypoints, in report order.
const CONFIGS: [&str; 4] = ["no-policy", "native", "wasm", "dynamic-module"];

/// The two ways in: the plain HTTP listener and the HBONE listener (:15008's stand-in).
const LISTENERS: [&str; 2] = ["plain", "hbone"];

/// Services the routes are spread over (one VirtualService each).
const SERVICES: usize = 2;

/// The identity the HBONE client presents.
const CLIENT_IDENTITY: &str = "default/bench-client";

const USAGE: &str =
    "usage: cargo xtask bench [--quick] [--rounds N] [--requests N] [--connections N] \
[--routes 10,100,1000] [--rules 10,100] [--shapes own,istiod] [--no-micro] [--no-chart] \
[--no-profile]";

/// Settings from the command line.
#[derive(Debug, Clone)]
struct Settings {
    rounds: u32,
    requests: u64,
    connections: u64,
    routes: Vec<usize>,
    rules: Vec<usize>,
    micro: bool,
    chart: bool,
    profile: bool,
    quick: bool,
    /// Run the four waypoints of layover's own shape (plain listener and HBONE).
    own: bool,
    /// Run the istiod-shaped waypoints ([`istiod`]).
    istiod: bool,
}

/// `--shapes own,istiod` → (own, istiod).
fn shapes(v: Option<&String>) -> Result<(bool, bool), String> {
    let v = v.ok_or(format!("--shapes needs a comma-separated list\n{USAGE}"))?;
    let mut out = (false, false);
    for shape in v.split(',').map(str::trim) {
        match shape {
            "own" => out.0 = true,
            "istiod" => out.1 = true,
            other => return Err(format!("--shapes: unknown shape `{other}` (own, istiod)")),
        }
    }
    Ok(out)
}

fn list(v: Option<&String>, flag: &str) -> Result<Vec<usize>, String> {
    let v = v.ok_or(format!("{flag} needs a comma-separated list\n{USAGE}"))?;
    let out: Vec<usize> = v
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{flag} {v}: {e}"))?;
    if out.is_empty() || out.contains(&0) {
        return Err(format!("{flag} {v}: sizes must be at least 1"));
    }
    Ok(out)
}

fn parse(args: &[String]) -> Result<Settings, String> {
    let mut s = Settings {
        rounds: 3,
        requests: 20_000,
        connections: 8,
        routes: vec![10, 100, 1_000],
        rules: vec![10, 100],
        micro: true,
        chart: true,
        profile: true,
        quick: false,
        own: true,
        istiod: true,
    };
    let mut explicit = (false, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let number = |v: Option<&String>| {
            v.and_then(|v| v.parse::<u64>().ok())
                .filter(|n| *n > 0)
                .ok_or(format!("{arg} needs a positive number\n{USAGE}"))
        };
        match arg.as_str() {
            "--quick" => s.quick = true,
            "--rounds" => {
                s.rounds = u32::try_from(number(it.next())?).map_err(|e| e.to_string())?;
                explicit.0 = true;
            }
            "--requests" => {
                s.requests = number(it.next())?;
                explicit.1 = true;
            }
            "--connections" => s.connections = number(it.next())?,
            "--routes" => s.routes = list(it.next(), arg)?,
            "--rules" => s.rules = list(it.next(), arg)?,
            "--shapes" => (s.own, s.istiod) = shapes(it.next())?,
            "--no-micro" => s.micro = false,
            "--no-chart" => s.chart = false,
            "--no-profile" => s.profile = false,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("bench: unknown argument `{other}`\n{USAGE}")),
        }
    }
    if s.quick {
        // A smoke run: every piece once, numbers not worth comparing.
        if !explicit.0 {
            s.rounds = 1;
        }
        if !explicit.1 {
            s.requests = 1_000;
        }
        if !args.iter().any(|a| a == "--routes") {
            s.routes = vec![10];
        }
        if !args.iter().any(|a| a == "--rules") {
            s.rules = vec![10];
        }
    }
    Ok(s)
}

/// One measured run.
#[derive(Debug, Clone)]
struct Sample {
    routes: usize,
    rules: usize,
    listener: &'static str,
    config: &'static str,
    round: u32,
    load: LoadResult,
    cpu_us_per_req: f64,
}

/// What the load generator printed for one run.
#[derive(Debug, Clone, Default)]
struct LoadResult {
    requests: u64,
    errors: u64,
    seconds: f64,
    req_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

impl LoadResult {
    /// Reads the load generator's JSON line (flat, numbers only).
    fn parse(line: &str) -> Result<LoadResult, String> {
        let get = |key: &str| json_number(line, key).ok_or(format!("no `{key}` in `{line}`"));
        Ok(LoadResult {
            requests: get("requests")? as u64,
            errors: get("errors")? as u64,
            seconds: get("seconds")?,
            req_per_s: get("req_per_s")?,
            p50_us: get("p50_us")?,
            p99_us: get("p99_us")?,
        })
    }
}

/// The number after `"key":` in a flat JSON object.
fn json_number(text: &str, key: &str) -> Option<f64> {
    let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = text[at..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// Per (size, config): memory, and why the config could not be measured if it could not.
#[derive(Debug, Clone, Default)]
struct ConfigState {
    rss_kib: Option<u64>,
    unavailable: Option<String>,
}

/// The Istio YAML of one size: a waypoint, [`SERVICES`] services (two subsets each, both on the
/// upstream), `routes` VirtualService routes spread over them (exact, prefix, regex and
/// header-matched routes in turn, each splitting 90/10 over the subsets), and `rules`
/// authorization rules bound to the waypoint: a DENY policy with a tenth of them (none match)
/// and an ALLOW policy whose rules match only at the last one (any GET), so every request walks
/// the whole rule set. The shapes follow `filters/core/benches/decide.rs`; the conventions
/// (WorkloadEntry + Service, waypoint Gateway, `targetRefs`) follow testdata/bookinfo.
fn istio_yaml(routes: usize, rules: usize, upstream: u16) -> String {
    let mut y = String::from(
        "# Generated by `cargo xtask bench`.
apiVersion: v1
kind: Namespace
metadata:
  name: default
  labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: default, labels: {istio.io/waypoint-for: service}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
",
    );
    for s in 0..SERVICES {
        let _ = write!(
            y,
            "---
apiVersion: v1
kind: Service
metadata: {{name: bench-{s}, namespace: default}}
spec:
  clusterIP: {ip}
  selector: {{app: bench-{s}}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: bench-{s}, namespace: default}}
spec:
  host: bench-{s}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
",
            ip = vip(s)
        );
        for v in ["v1", "v2"] {
            let _ = write!(
                y,
                "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: bench-{s}-{v}, namespace: default}}
spec:
  address: 127.0.0.1
  ports: {{http: {upstream}}}
  labels: {{app: bench-{s}, version: {v}}}
  serviceAccount: bench
"
            );
        }
        let _ = write!(
            y,
            "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bench-{s}, namespace: default}}
spec:
  hosts: [bench-{s}]
  http:
"
        );
        for i in (0..routes).filter(|i| i % SERVICES == s) {
            let m = match (i / SERVICES) % 4 {
                0 => format!("{{uri: {{exact: /api/s{i}/items}}}}"),
                1 => format!("{{uri: {{prefix: /api/p{i}/}}}}"),
                2 => format!("{{uri: {{regex: \"/api/r{i}/[0-9]+(/detail)?\"}}}}"),
                _ => format!(
                    "{{uri: {{prefix: /api/h{i}/}}, headers: {{x-tenant: {{exact: t{}}}}}}}",
                    i % 7
                ),
            };
            let _ = write!(
                y,
                "  - name: r{i}
    match: [{m}]
    route:
    - {{destination: {{host: bench-{s}, subset: v1}}, weight: 90}}
    - {{destination: {{host: bench-{s}, subset: v2}}, weight: 10}}
"
            );
        }
    }
    let deny = (rules / 10).max(1).min(rules);
    let allow = rules - deny;
    let target =
        "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]\n";
    let _ = write!(
        y,
        "---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: bench-deny, namespace: default}}
spec:
{target}  action: DENY
  rules:
"
    );
    for j in 0..deny {
        let _ = writeln!(y, "  - to: [{{operation: {{paths: [\"/admin{j}/*\"]}}}}]");
    }
    if allow > 0 {
        let _ = write!(
            y,
            "---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: bench-allow, namespace: default}}
spec:
{target}  action: ALLOW
  rules:
"
        );
        for j in 0..allow - 1 {
            let _ = writeln!(
                y,
                "  - from: [{{source: {{principals: [\"cluster.local/ns/other{j}/sa/*\"]}}}}]\n    to: [{{operation: {{methods: [POST], paths: [\"/internal/{j}/*\"]}}}}]"
            );
        }
        y.push_str("  - to: [{operation: {methods: [GET]}}]\n");
    }
    y
}

/// The VIP (Service `clusterIP`) of service `s`: istiod's `main_internal` selects its chains
/// by VIP, so every service has one.
fn vip(s: usize) -> String {
    format!("10.96.50.{}", s + 1)
}

/// The request list of one size: one request per route (the load generator's format:
/// `authority<TAB>host<TAB>path[<TAB>header]`), with the service's hostname as the CONNECT
/// authority (layover's own waypoint routes tunnels by it).
fn targets(routes: usize) -> String {
    targets_via(routes, |s| {
        format!("bench-{s}.default.svc.cluster.local:9080")
    })
}

/// [`targets`] with the service VIP as the CONNECT authority, as ztunnel sends it (the
/// istiod-shaped waypoint selects its chain by that address).
fn vip_targets(routes: usize) -> String {
    targets_via(routes, |s| format!("{}:9080", vip(s)))
}

/// The request list with `authority(service)` as each request's CONNECT authority.
fn targets_via(routes: usize, authority: impl Fn(usize) -> String) -> String {
    let mut out = String::new();
    for i in 0..routes {
        let s = i % SERVICES;
        let (path, header) = match (i / SERVICES) % 4 {
            0 => (format!("/api/s{i}/items"), String::new()),
            1 => (format!("/api/p{i}/list?page=2"), String::new()),
            2 => (format!("/api/r{i}/{}", 1000 + i), String::new()),
            _ => (format!("/api/h{i}/x"), format!("\tx-tenant: t{}", i % 7)),
        };
        let _ = writeln!(out, "{}\tbench-{s}:9080\t{path}{header}", authority(s));
    }
    out
}

/// Tools and paths the run needs.
struct Env {
    root: PathBuf,
    envoy: PathBuf,
    layover: PathBuf,
    loadgen: PathBuf,
    wasm: PathBuf,
    module_dir: PathBuf,
    certs: PathBuf,
    work: PathBuf,
}

/// One waypoint Envoy of one size.
struct Waypoint {
    config: &'static str,
    /// The plain listener's port (0: none).
    port: u16,
    hbone_port: u16,
    /// The listeners it is measured on ([`LISTENERS`], or [`istiod::LISTENER`]).
    listeners: &'static [&'static str],
    proc: Option<crate::measure::Proc>,
}

/// `cargo xtask bench`.
pub fn run_bench(args: &[String]) -> Result<(), String> {
    let settings = parse(args)?;
    let started = Instant::now();
    let env = prepare()?;
    let load_before = loadavg();
    let micro = if settings.micro {
        micro_bench(&settings)?
    } else {
        String::new()
    };

    let upstream_port = free_port()?;
    let upstream_cfg = env.work.join("upstream.yaml");
    std::fs::write(&upstream_cfg, upstream_config(upstream_port))
        .map_err(|e| format!("{}: {e}", upstream_cfg.display()))?;
    step("starting the upstream Envoy (direct response, --concurrency 1)");
    let _upstream = start_envoy(
        &EnvoyRun {
            envoy: &env.envoy,
            config: &upstream_cfg,
            base_id: 7399,
            module_dir: &env.module_dir,
            log: &env.work.join("upstream.log"),
            name: "upstream",
        },
        Ready::Listener {
            port: upstream_port,
            host: "upstream",
        },
    )?;
    let ztunnel = if settings.istiod {
        step("starting the destination ztunnel's stand-in (bench ztunnel: HBONE → upstream)");
        Some(istiod::start_ztunnel(&env)?)
    } else {
        None
    };

    let sizes: Vec<(usize, usize)> = settings
        .routes
        .iter()
        .flat_map(|&r| settings.rules.iter().map(move |&u| (r, u)))
        .collect();
    let mut run = Collected::default();
    for (k, &size) in sizes.iter().enumerate() {
        let tag = format!(
            "[{}/{}] {} routes, {} rules",
            k + 1,
            sizes.len(),
            size.0,
            size.1
        );
        let ports = Ports {
            upstream: upstream_port,
            ztunnel: ztunnel.as_ref().map(|(_, p)| *p),
        };
        measure_size(&env, &settings, &tag, k == 0, size, ports, &mut run)?;
    }
    let load_after = loadavg();
    let machine = Machine::read(&env, &load_before, &load_after);
    write_reports(&env, &settings, &machine, &sizes, &micro, &run, started)
}

/// Builds Envoy's two layover filters, `layover` and the load generator, and issues the mesh
/// certificates; the run's tools and paths.
fn prepare() -> Result<Env, String> {
    let root = repo_root();
    let envoy = crate::envoy::install(&root)?;
    let wasm = crate::build_wasm()?;
    let module_dir = crate::build_dynamic_module()?;
    step("building layover and the load generator (release)");
    run(crate::cargo().args([
        "build",
        "--release",
        "--locked",
        "--bin",
        "layover",
        "-p",
        "layover",
        "--bin",
        "bench",
        "-p",
        "layover-integration",
    ]))?;
    let work = root.join("target/bench/side-by-side");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let env = Env {
        layover: root.join("target/release/layover"),
        loadgen: root.join("target/release/bench"),
        certs: work.join("certs"),
        root,
        envoy,
        wasm,
        module_dir,
        work,
    };
    step("issuing a mesh CA and the waypoint's, load generator's and ztunnel's certificates");
    run(Command::new(&env.layover)
        .arg("certs")
        .arg("--out")
        .arg(&env.certs)
        .args(["--identity", CLIENT_IDENTITY])
        .args(["--identity", istiod::ZTUNNEL_IDENTITY])
        .args(["--waypoint", "default/waypoint"]))?;
    Ok(env)
}

/// Where the waypoints send their traffic.
#[derive(Clone, Copy)]
struct Ports {
    /// The direct-response upstream.
    upstream: u16,
    /// The destination ztunnel's stand-in (when the istiod shape runs).
    ztunnel: Option<u16>,
}

/// Everything measured so far.
#[derive(Default)]
struct Collected {
    samples: Vec<Sample>,
    profiles: Vec<Profile>,
    states: BTreeMap<(usize, usize, &'static str), ConfigState>,
}

/// The files of one size: the Istio YAML and the two request lists.
struct SizeFiles {
    dir: PathBuf,
    yaml: PathBuf,
    /// CONNECT authority = service hostname (layover's own shape).
    targets: PathBuf,
    /// CONNECT authority = service VIP (the istiod shape).
    vip_targets: PathBuf,
}

impl SizeFiles {
    fn write(work: &Path, (routes, rules): (usize, usize), upstream: u16) -> Result<Self, String> {
        let dir = work.join(format!("r{routes}-a{rules}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok::<_, String>(path)
        };
        Ok(SizeFiles {
            yaml: write("istio.yaml", istio_yaml(routes, rules, upstream))?,
            targets: write("targets.tsv", targets(routes))?,
            vip_targets: write("targets-vip.tsv", vip_targets(routes))?,
            dir,
        })
    }

    /// The request list for `listener`.
    fn targets_for(&self, listener: &str) -> &Path {
        if listener == istiod::LISTENER {
            &self.vip_targets
        } else {
            &self.targets
        }
    }
}

/// Starts every waypoint of one size; the ones that cannot start are recorded as unavailable.
fn start_all(
    env: &Env,
    settings: &Settings,
    files: &SizeFiles,
    size: (usize, usize),
    ztunnel: Option<u16>,
    states: &mut BTreeMap<(usize, usize, &'static str), ConfigState>,
) -> Vec<Waypoint> {
    let mut waypoints = Vec::new();
    let own = CONFIGS.iter().filter(|_| settings.own);
    let shaped = istiod::CONFIGS.iter().filter(|_| settings.istiod);
    for (c, &config) in own.chain(shaped).enumerate() {
        let base_id = 7300 + u32::try_from(c).unwrap_or(0);
        let started = match ztunnel {
            Some(port) if config.starts_with("istiod-") => {
                istiod::start_waypoint(env, &files.dir, &files.yaml, config, base_id, port)
            }
            _ => start_waypoint(env, &files.dir, &files.yaml, config, base_id),
        };
        match started {
            Ok(w) => waypoints.push(w),
            Err(e) => {
                println!("    {config}: unavailable: {e}");
                states
                    .entry((size.0, size.1, config))
                    .or_default()
                    .unavailable = Some(e);
            }
        }
    }
    waypoints
}

/// One policy size: start the waypoints, check them, warm up, measure the rounds, profile.
fn measure_size(
    env: &Env,
    settings: &Settings,
    tag: &str,
    first: bool,
    size: (usize, usize),
    ports: Ports,
    run: &mut Collected,
) -> Result<(), String> {
    let (routes, rules) = size;
    let files = SizeFiles::write(&env.work, size, ports.upstream)?;
    step(&format!("{tag}: generating and starting the waypoints"));
    let mut waypoints = start_all(env, settings, &files, size, ports.ztunnel, &mut run.states);
    // Every request of the list must be answered 200 (routed and allowed) on every listener.
    for w in &mut waypoints {
        for &listener in w.listeners {
            if w.proc.is_none() {
                break;
            }
            let targets = files.targets_for(listener);
            if let Err(e) = load(env, w, listener, targets, routes as u64, 1, true) {
                println!("    {} ({listener}): unavailable: {e}", w.config);
                let state = run.states.entry((routes, rules, w.config)).or_default();
                state.unavailable = Some(format!("{listener} listener: {e}"));
                w.proc = None;
            }
        }
    }
    let warmup = (settings.requests / 4).max(500);
    for w in waypoints.iter().filter(|w| w.proc.is_some()) {
        for &listener in w.listeners {
            let targets = files.targets_for(listener);
            load(
                env,
                w,
                listener,
                targets,
                warmup,
                settings.connections,
                false,
            )?;
        }
    }
    println!("    warmed up ({warmup} requests per waypoint and listener, discarded)");
    measure_rounds(env, settings, &files, size, &waypoints, &mut run.samples)?;
    for w in &waypoints {
        if let Some(proc) = &w.proc {
            let state = run.states.entry((routes, rules, w.config)).or_default();
            state.rss_kib = rss_kib(proc.pid()).ok();
        }
    }
    if first && settings.profile {
        profile_all(
            env,
            settings,
            tag,
            &files,
            size,
            &waypoints,
            &mut run.profiles,
        )?;
    }
    Ok(())
}

/// The measured rounds of one size, every listener of every waypoint per round.
fn measure_rounds(
    env: &Env,
    settings: &Settings,
    files: &SizeFiles,
    (routes, rules): (usize, usize),
    waypoints: &[Waypoint],
    samples: &mut Vec<Sample>,
) -> Result<(), String> {
    let ticks = clock_ticks();
    for round in 1..=settings.rounds {
        for listener in LISTENERS.into_iter().chain([istiod::LISTENER]) {
            // Rotate which config goes first, so drift over the run hits all alike.
            let n = waypoints.len();
            for i in 0..n {
                let w = &waypoints[(i + round as usize) % n];
                let Some(proc) = &w.proc else { continue };
                if !w.listeners.contains(&listener) {
                    continue;
                }
                let before = cpu_ticks(proc.pid())?;
                let result = load(
                    env,
                    w,
                    listener,
                    files.targets_for(listener),
                    settings.requests,
                    settings.connections,
                    false,
                )?;
                let after = cpu_ticks(proc.pid())?;
                let cpu_us_per_req = after.saturating_sub(before) as f64 / ticks * 1e6
                    / result.requests.max(1) as f64;
                println!(
                    "    round {round}/{} {listener:<6} {:<21} {:>6} req {:>5.2} s {:>7.0} req/s  p50 {:>5.0} µs  p99 {:>6.0} µs  {:>6.1} µs CPU/req{}",
                    settings.rounds,
                    w.config,
                    result.requests,
                    result.seconds,
                    result.req_per_s,
                    result.p50_us,
                    result.p99_us,
                    cpu_us_per_req,
                    if result.errors > 0 {
                        format!("  ({} non-200)", result.errors)
                    } else {
                        String::new()
                    }
                );
                samples.push(Sample {
                    routes,
                    rules,
                    listener,
                    config: w.config,
                    round,
                    load: result,
                    cpu_us_per_req,
                });
            }
        }
    }
    Ok(())
}

/// Where the time goes, once, at the first size: one extra plain run per waypoint of the own
/// shape under `perf record` (software clock; works without hardware counters).
fn profile_all(
    env: &Env,
    settings: &Settings,
    tag: &str,
    files: &SizeFiles,
    (routes, rules): (usize, usize),
    waypoints: &[Waypoint],
    profiles: &mut Vec<Profile>,
) -> Result<(), String> {
    if !perf_works() {
        println!("    (no profile: `perf record -e cpu-clock` does not work here)");
        return Ok(());
    }
    step(&format!(
        "{tag}: profiling one extra plain run per waypoint (perf record -e cpu-clock)"
    ));
    for w in waypoints.iter().filter(|w| w.listeners.contains(&"plain")) {
        let Some(proc) = &w.proc else { continue };
        let data = files.dir.join(format!("{}.perf.data", w.config));
        let target = (proc.pid(), data.as_path());
        load_with(
            env,
            w,
            "plain",
            &files.targets,
            settings.requests,
            settings.connections,
            false,
            Some(target),
        )?;
        profiles.push(Profile::read(w.config, routes, rules, &data));
    }
    Ok(())
}

/// Summarizes the run and writes report.json, the chart and report.md; prints the ratios.
fn write_reports(
    env: &Env,
    settings: &Settings,
    machine: &Machine,
    sizes: &[(usize, usize)],
    micro: &str,
    run: &Collected,
    started: Instant,
) -> Result<(), String> {
    let out_dir = env.root.join("target/bench");
    let summary = summarize(sizes, &run.samples, &run.states);
    let mut goals = goals(settings, &summary);
    goals.extend(istiod::goals(settings, &summary));
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let json = report_json(
        settings,
        machine,
        &run.samples,
        &summary,
        &goals,
        micro,
        &run.profiles,
    );
    let json_path = out_dir.join("report.json");
    std::fs::write(&json_path, &json).map_err(|e| format!("{}: {e}", json_path.display()))?;
    let chart = if settings.chart {
        match chart(env, &json_path, &out_dir.join("cpu-per-request.png")) {
            Ok(p) => Some(p),
            Err(e) => {
                println!("(no chart: {e})");
                None
            }
        }
    } else {
        None
    };
    let md = report_md(
        settings,
        machine,
        &summary,
        &goals,
        micro,
        chart.is_some(),
        &run.states,
        &run.profiles,
    );
    let md_path = out_dir.join("report.md");
    std::fs::write(&md_path, &md).map_err(|e| format!("{}: {e}", md_path.display()))?;

    println!("\n{}", ratio_table(&summary));
    print!("{}", istiod::summary(&summary));
    for g in &goals {
        println!("goal: {} — {} ({})", g.goal, g.verdict(), g.measured);
    }
    step(&format!(
        "wrote {}, {}{} in {:.0} s",
        md_path.display(),
        json_path.display(),
        chart
            .map(|p| format!(", {}", p.display()))
            .unwrap_or_default(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Generates one waypoint's bootstrap and starts it (ready: admin `/ready`).
fn start_waypoint(
    env: &Env,
    dir: &Path,
    yaml: &Path,
    config: &'static str,
    base_id: u32,
) -> Result<Waypoint, String> {
    let port = free_port()?;
    let admin = free_port()?;
    let hbone_port = free_port()?;
    let out = dir.join(config);
    let bootstrap = out.join("envoy.yaml");
    let generate = |filter: &str, out: &Path| -> Result<(), String> {
        let o = Command::new(&env.layover)
            .arg("envoy")
            .arg("--config")
            .arg(yaml)
            .arg("--out-dir")
            .arg(out)
            .args(["--filter", filter, "--wasm"])
            .arg(&env.wasm)
            .arg("--dynamic-module-dir")
            .arg(&env.module_dir)
            .args(["--port", &port.to_string()])
            .args(["--admin-port", &admin.to_string()])
            .arg("--hbone")
            .arg(&env.certs)
            .args(["--hbone-port", &hbone_port.to_string()])
            .current_dir(&env.root)
            .output()
            .map_err(|e| format!("running layover envoy: {e}"))?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "layover envoy --filter {filter}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
    };
    match config {
        "no-policy" => {
            // The same listeners and clusters as the layover waypoints, minus all policy.
            let source = dir.join("no-policy-source");
            generate("dynamic-module", &source)?;
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            run(Command::new(&env.loadgen)
                .arg("ceiling")
                .arg("--in")
                .arg(source.join("envoy.yaml"))
                .arg("--out")
                .arg(&bootstrap)
                .args([
                    "--cluster",
                    "inbound-vip|9080|http/v1|bench-0.default.svc.cluster.local",
                ]))?;
        }
        "native" => generate("none", &out)?,
        other => generate(other, &out)?,
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
        port,
        hbone_port,
        listeners: &LISTENERS,
        proc: Some(proc),
    })
}

/// Runs the load generator once against `w` on `listener`.
fn load(
    env: &Env,
    w: &Waypoint,
    listener: &str,
    targets: &Path,
    requests: u64,
    connections: u64,
    check: bool,
) -> Result<LoadResult, String> {
    load_with(
        env,
        w,
        listener,
        targets,
        requests,
        connections,
        check,
        None,
    )
}

/// [`load`], optionally under `perf record` sampling the waypoint (`(pid, data file)`).
#[allow(clippy::too_many_arguments)]
fn load_with(
    env: &Env,
    w: &Waypoint,
    listener: &str,
    targets: &Path,
    requests: u64,
    connections: u64,
    check: bool,
    perf: Option<(u32, &Path)>,
) -> Result<LoadResult, String> {
    let mut cmd = match perf {
        None => Command::new(&env.loadgen),
        Some((pid, data)) => {
            let mut c = Command::new("perf");
            c.args(["record", "-q", "-e", "cpu-clock", "-F", "2000", "-p"])
                .arg(pid.to_string())
                .arg("-o")
                .arg(data)
                .arg("--")
                .arg(&env.loadgen);
            c
        }
    };
    cmd.arg("load").arg("--targets").arg(targets);
    cmd.args(["--requests", &requests.to_string()]);
    cmd.args(["--connections", &connections.to_string()]);
    if listener == "hbone" || listener == istiod::LISTENER {
        cmd.args(["--addr", &format!("127.0.0.1:{}", w.hbone_port)]);
        cmd.arg("--hbone").arg(&env.certs);
        cmd.args(["--identity", CLIENT_IDENTITY]);
    } else {
        cmd.args(["--addr", &format!("127.0.0.1:{}", w.port)]);
    }
    if check {
        cmd.arg("--check");
    }
    let o = cmd
        .output()
        .map_err(|e| format!("running {}: {e}", env.loadgen.display()))?;
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    LoadResult::parse(stdout.trim())
}

/// Whether `perf record` with the software clock works on this machine.
fn perf_works() -> bool {
    let data = std::env::temp_dir().join(format!("layover-perf-probe-{}.data", std::process::id()));
    let ok = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-o"])
        .arg(&data)
        .args(["--", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    let _ = std::fs::remove_file(&data);
    ok
}

/// One waypoint's CPU samples during a plain run, by shared object, and the hottest symbols of
/// the filter's own code.
struct Profile {
    config: &'static str,
    routes: usize,
    rules: usize,
    /// (share %, what) by shared object, largest first.
    dsos: Vec<(f64, String)>,
    /// (share %, symbol) in the filter's own code (dynamic module only: V8's JIT frames and the
    /// stripped Envoy have no symbols).
    symbols: Vec<(f64, String)>,
}

/// `perf report --stdio` lines `  12.34%  name…` → (12.34, name…).
fn perf_rows(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let (pct, rest) = l.split_once('%')?;
            let pct: f64 = pct.trim().parse().ok()?;
            Some((pct, rest.trim().to_string()))
        })
        .collect()
}

/// What a shared object stands for in a waypoint profile.
fn dso_meaning(dso: &str) -> String {
    match dso {
        "envoy" => "Envoy (stripped: HTTP codec, TLS, router, RBAC, host ABI, V8 runtime)".into(),
        "[kernel.kallsyms]" => "kernel (sockets, scheduling)".into(),
        "liblayover_module.so" => "layover dynamic module".into(),
        d if d.starts_with("[JIT]") => "layover wasm code (V8 JIT)".into(),
        d if d.starts_with("libc") => "libc (malloc, memcpy)".into(),
        d => d.to_string(),
    }
}

impl Profile {
    fn read(config: &'static str, routes: usize, rules: usize, data: &Path) -> Profile {
        let report = |extra: &[&str]| {
            output_of(
                Command::new("perf")
                    .args(["report", "--stdio", "--no-children", "-g", "none", "-i"])
                    .arg(data)
                    .args(extra),
            )
        };
        let dsos = perf_rows(&report(&["--sort", "dso"]))
            .into_iter()
            .map(|(p, d)| (p, dso_meaning(&d)))
            .filter(|(p, _)| *p >= 0.5)
            .collect();
        let symbols = if config == "dynamic-module" {
            perf_rows(&report(&[
                "--sort",
                "sym",
                "--dsos",
                "liblayover_module.so",
            ]))
            .into_iter()
            .map(|(p, s)| (p, s.trim_start_matches("[.]").trim().to_string()))
            .take(6)
            .collect()
        } else {
            Vec::new()
        };
        Profile {
            config,
            routes,
            rules,
            dsos,
            symbols,
        }
    }
}

/// The profiles as markdown: shares of the waypoint's CPU, and the same in µs per request
/// (share × the median CPU µs/request of that config on the plain listener).
fn profile_md(rows: &[Row], profiles: &[Profile]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n## Where the time goes (perf, plain listener)\n\nOne extra plain run per waypoint at \
         the first size under `perf record -e cpu-clock`; samples of the waypoint process by \
         shared object, converted to µs per request with the config's median CPU µs/request.\n"
    );
    for p in profiles {
        let cpu = find(rows, p.routes, p.rules, "plain", p.config).map(|r| r.cpu);
        let _ = writeln!(
            o,
            "**{}** ({} routes, {} rules):\n",
            p.config, p.routes, p.rules
        );
        let _ = writeln!(o, "| where | share | ≈ µs/req |\n|---|---:|---:|");
        for (pct, what) in &p.dsos {
            let us = cpu.map_or("–".into(), |c| format!("{:.1}", c * pct / 100.0));
            let _ = writeln!(o, "| {what} | {pct:.1} % | {us} |");
        }
        if !p.symbols.is_empty() {
            let list: Vec<String> = p
                .symbols
                .iter()
                .map(|(pct, s)| format!("`{s}` {pct:.2} %"))
                .collect();
            let _ = writeln!(o, "\nHottest module symbols: {}.", list.join(", "));
        }
        o.push('\n');
    }
    o
}

/// The `decide()` scaling micro-benchmark (`cargo bench -p layover-core`) at the sizes of the
/// run (routing only, then with rules); its printed table.
fn micro_bench(settings: &Settings) -> Result<String, String> {
    let join = |v: &[usize]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut rules = vec![0];
    rules.extend(&settings.rules);
    step("running the decide() scaling micro-benchmark (cargo bench -p layover-core)");
    let o = crate::cargo()
        .args([
            "bench",
            "--locked",
            "-p",
            "layover-core",
            "--bench",
            "decide",
        ])
        .env("LAYOVER_BENCH_ROUTES", join(&settings.routes))
        .env("LAYOVER_BENCH_RULES", join(&rules))
        .current_dir(repo_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo bench: {e}"))?;
    if !o.status.success() {
        return Err(format!("cargo bench -p layover-core failed ({})", o.status));
    }
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    print!("{text}");
    Ok(text)
}

/// Where the numbers came from.
struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
    envoy: String,
    load_before: String,
    load_after: String,
    date: String,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn output_of(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

impl Machine {
    fn read(env: &Env, load_before: &str, load_after: &str) -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let envoy = output_of(Command::new(&env.envoy).arg("--version"));
        let envoy = envoy
            .split_once("version: ")
            .map(|(_, v)| v.to_string())
            .unwrap_or(envoy);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: output_of(Command::new("uname").arg("-r")),
            envoy,
            load_before: load_before.to_string(),
            load_after: load_after.to_string(),
            date: output_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        }
    }
}

/// Medians of one (size, listener, config).
#[derive(Debug, Clone)]
struct Row {
    routes: usize,
    rules: usize,
    listener: &'static str,
    config: &'static str,
    runs: usize,
    req_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    cpu: f64,
    cpu_min: f64,
    cpu_max: f64,
    rss_kib: Option<u64>,
    errors: u64,
}

fn summarize(
    sizes: &[(usize, usize)],
    samples: &[Sample],
    states: &BTreeMap<(usize, usize, &'static str), ConfigState>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    // Own shape: plain then HBONE; then the istiod shape. Sizes, then configs, within each.
    let shapes: [(&[&'static str], &[&'static str]); 2] = [
        (&LISTENERS, &CONFIGS),
        (&[istiod::LISTENER], &istiod::CONFIGS),
    ];
    for (listener, configs) in shapes
        .into_iter()
        .flat_map(|(listeners, configs)| listeners.iter().map(move |&l| (l, configs)))
    {
        for &(routes, rules) in sizes {
            for &config in configs {
                let mine: Vec<&Sample> = samples
                    .iter()
                    .filter(|s| {
                        s.routes == routes
                            && s.rules == rules
                            && s.listener == listener
                            && s.config == config
                    })
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let pick = |f: fn(&Sample) -> f64| median(mine.iter().map(|s| f(s)).collect());
                let cpus: Vec<f64> = mine.iter().map(|s| s.cpu_us_per_req).collect();
                let (cpu_min, cpu_max) = min_max(&cpus);
                rows.push(Row {
                    routes,
                    rules,
                    listener,
                    config,
                    runs: mine.len(),
                    req_per_s: pick(|s| s.load.req_per_s),
                    p50_us: pick(|s| s.load.p50_us),
                    p99_us: pick(|s| s.load.p99_us),
                    cpu: median(cpus),
                    cpu_min,
                    cpu_max,
                    rss_kib: states.get(&(routes, rules, config)).and_then(|s| s.rss_kib),
                    errors: mine.iter().map(|s| s.load.errors).sum(),
                });
            }
        }
    }
    rows
}

fn find<'a>(
    rows: &'a [Row],
    routes: usize,
    rules: usize,
    listener: &str,
    config: &str,
) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.routes == routes && r.rules == rules && r.listener == listener && r.config == config
    })
}

/// One goal of issue 6, judged on the medians.
struct Goal {
    goal: String,
    measured: String,
    /// `None`: not measurable in this run (size not run, or native unavailable).
    met: Option<bool>,
}

impl Goal {
    fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        }
    }
}

/// Judges `config`/`base` ratios of `metric` at `routes`, over every rule
/// count and the listeners of `on` = (listeners, base config); `ok` judges a ratio.
#[allow(clippy::too_many_arguments)]
fn ratio_goal(
    settings: &Settings,
    rows: &[Row],
    goal: &str,
    config: &str,
    routes: usize,
    metric: Metric,
    on: (&[&str], &str),
    ok: fn(f64) -> bool,
) -> Goal {
    let mut parts = Vec::new();
    let mut met = None;
    let (listeners, base) = on;
    // Memory is per Envoy, not per listener.
    let listeners: &[&str] = match metric {
        Metric::Cpu => listeners,
        Metric::Rss => &listeners[..1],
    };
    let metric = |r: &Row| match metric {
        Metric::Cpu => Some(r.cpu),
        Metric::Rss => r.rss_kib.map(|k| k as f64),
    };
    for &rules in &settings.rules {
        for &listener in listeners {
            let (Some(c), Some(n)) = (
                find(rows, routes, rules, listener, config).and_then(metric),
                find(rows, routes, rules, listener, base).and_then(metric),
            ) else {
                continue;
            };
            let ratio = c / n;
            let good = ok(ratio);
            met = Some(met.unwrap_or(true) && good);
            let place = if listeners.len() > 1 {
                format!("{listener}, ")
            } else {
                String::new()
            };
            parts.push(format!("{place}{rules} rules: {ratio:.3}×"));
        }
    }
    Goal {
        goal: goal.to_string(),
        measured: if parts.is_empty() {
            format!("no {base} measurement at this size")
        } else {
            parts.join("; ")
        },
        met,
    }
}

/// What a goal compares.
#[derive(Clone, Copy)]
enum Metric {
    /// Median Envoy CPU µs per request, per listener.
    Cpu,
    /// RSS after the rounds.
    Rss,
}

fn goals(settings: &Settings, rows: &[Row]) -> Vec<Goal> {
    let (cpu, rss) = (Metric::Cpu, Metric::Rss);
    vec![
        ratio_goal(
            settings,
            rows,
            "dynamic module ≤ 1.10× native CPU per request at 10 routes",
            "dynamic-module",
            10,
            cpu,
            (&LISTENERS, "native"),
            |x| x <= 1.10,
        ),
        ratio_goal(
            settings,
            rows,
            "dynamic module < 1.0× native CPU per request at 1,000 routes",
            "dynamic-module",
            1_000,
            cpu,
            (&LISTENERS, "native"),
            |x| x < 1.0,
        ),
        ratio_goal(
            settings,
            rows,
            "wasm ≤ 1.35× native CPU per request at 10 routes",
            "wasm",
            10,
            cpu,
            (&LISTENERS, "native"),
            |x| x <= 1.35,
        ),
        ratio_goal(
            settings,
            rows,
            "dynamic module memory (RSS, one worker) at 1,000 routes ≤ 2× native",
            "dynamic-module",
            1_000,
            rss,
            (&LISTENERS, "native"),
            |x| x <= 2.0,
        ),
        ratio_goal(
            settings,
            rows,
            "wasm memory (RSS, one worker) at 1,000 routes ≤ 2× native",
            "wasm",
            1_000,
            rss,
            (&LISTENERS, "native"),
            |x| x <= 2.0,
        ),
    ]
}

/// The config `r`'s ratios are to: native of its shape.
fn native_of(r: &Row) -> &'static str {
    if r.listener == istiod::LISTENER {
        istiod::NATIVE
    } else {
        "native"
    }
}

fn ratio(rows: &[Row], r: &Row, base: &str) -> String {
    match find(rows, r.routes, r.rules, r.listener, base) {
        Some(b) if b.cpu > 0.0 => format!("{:.2}×", r.cpu / b.cpu),
        _ => "–".into(),
    }
}

/// The CPU-per-request ratios to native (and to no policy), as printed at the end.
fn ratio_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "CPU µs per request (median), ratio to the native of its shape, vCPU per 1,000 req/s\n\
         listener  routes rules  config                 µs/req   × native  × no-policy  vCPU@1k\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<8} {:>7} {:>5}  {:<21} {:>7.1}   {:>8}  {:>10}  {:>7.3}",
            r.listener,
            r.routes,
            r.rules,
            r.config,
            r.cpu,
            ratio(rows, r, native_of(r)),
            ratio(rows, r, "no-policy"),
            istiod::vcpu_per_krps(r.cpu),
        );
    }
    out
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1}", k as f64 / 1024.0))
        .unwrap_or_else(|| "–".into())
}

#[allow(clippy::too_many_arguments)]
fn report_md(
    settings: &Settings,
    m: &Machine,
    rows: &[Row],
    goals: &[Goal],
    micro: &str,
    chart: bool,
    states: &BTreeMap<(usize, usize, &'static str), ConfigState>,
    profiles: &[Profile],
) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# layover side-by-side benchmark\n");
    let _ = writeln!(
        o,
        "`cargo xtask bench{}` on {} — {}, {} cores, Linux {}, Envoy {}. Load average (1/5/15 min) \
         before: {}, after: {}.{}\n",
        if settings.quick { " --quick" } else { "" },
        m.date,
        m.cpu,
        m.cores,
        m.kernel,
        m.envoy,
        m.load_before,
        m.load_after,
        if settings.quick {
            " **Quick smoke run: numbers not comparable.**"
        } else {
            ""
        }
    );
    let _ = writeln!(
        o,
        "Method: per policy size the four waypoints run side by side (`--concurrency 1` each) \
         behind one direct-response upstream Envoy. Each run sends {} HTTP/1.1 GETs over {} \
         keep-alive connections (one request in flight each), round-robin over one request per \
         route (every request routed by its own route and allowed by the last ALLOW rule, after \
         all others were evaluated); HBONE runs open one mTLS HTTP/2 connection per client \
         connection with one CONNECT tunnel per service. {} round(s) after a discarded warm-up, \
         config order rotating per round; medians shown. CPU = the waypoint's utime+stime \
         (`/proc/<pid>/stat`) during the run, per request; RSS = `VmRSS` after the rounds \
         (main thread + one worker). Configs: **no-policy** (one route to one cluster, router \
         only: the ceiling), **native** (`layover envoy --filter none`: Envoy routes + RBAC), \
         **wasm**, **dynamic-module**; and the istiod-shaped waypoint (its own section below, \
         ratios to its own native).\n",
        settings.requests, settings.connections, settings.rounds
    );
    let _ = writeln!(o, "## Goals (issues 6 and 13; reported, not asserted)\n");
    let _ = writeln!(o, "| goal | measured | verdict |\n|---|---|---|");
    for g in goals {
        let _ = writeln!(o, "| {} | {} | {} |", g.goal, g.measured, g.verdict());
    }
    for listener in LISTENERS {
        let title = match listener {
            "plain" => "HTTP/1.1 on the plain listener",
            _ => "HTTP/1.1 through HBONE (mTLS + HTTP/2 CONNECT)",
        };
        let _ = writeln!(o, "\n## {title}\n");
        let _ = writeln!(
            o,
            "| routes | rules | config | req/s | p50 µs | p99 µs | CPU µs/req (min–max) | × native | × no-policy | RSS MiB |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in rows.iter().filter(|r| r.listener == listener) {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} ({:.1}–{:.1}) | {} | {} | {} |",
                r.routes,
                r.rules,
                r.config,
                r.req_per_s,
                r.p50_us,
                r.p99_us,
                r.cpu,
                r.cpu_min,
                r.cpu_max,
                ratio(rows, r, "native"),
                ratio(rows, r, "no-policy"),
                mib(r.rss_kib)
            );
        }
    }
    o.push_str(&istiod::report_md(rows));
    if chart {
        let _ = writeln!(o, "\n![CPU µs per request](cpu-per-request.png)");
    }
    if !micro.is_empty() {
        let _ = writeln!(
            o,
            "\n## decide() micro-benchmark (`cargo bench -p layover-core`)\n\nThe policy core alone, \
             no Envoy: ns per decision for requests spread over all routes, all rules evaluated.\n\n```text\n{}```",
            micro
        );
    }
    if !profiles.is_empty() {
        o.push_str(&profile_md(rows, profiles));
    }
    let _ = writeln!(o, "\n## Notes\n");
    let mut notes = 0;
    for ((routes, rules, config), s) in states {
        if let Some(why) = &s.unavailable {
            notes += 1;
            let hint = if *config == "native" {
                " (a `layover envoy --filter none` that predates the native translation, issue 6 \
                 part 1, routes by the filter's cluster header and so routes nothing here)"
            } else {
                ""
            };
            let _ = writeln!(
                o,
                "- {config} at {routes} routes / {rules} rules was not measured: {}{hint}",
                why.lines().next().unwrap_or("")
            );
        }
    }
    for r in rows.iter().filter(|r| r.errors > 0) {
        notes += 1;
        let _ = writeln!(
            o,
            "- {} {} at {} routes / {} rules: {} non-200 answers during the runs",
            r.config, r.listener, r.routes, r.rules, r.errors
        );
    }
    if notes == 0 {
        let _ = writeln!(o, "- every config answered every request with 200.");
    }
    let _ = writeln!(
        o,
        "- The load generator shares the machine with the waypoints; req/s and latency include \
         its cost and the machine's other load, CPU µs/request does not."
    );
    o
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A finite number as JSON (`null` otherwise).
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".into()
    }
}

/// The summary rows as JSON objects, one a line (with the ratio to the native of the row's
/// shape and the vCPU per 1,000 requests/s).
fn summary_json(rows: &[Row]) -> String {
    let rows_json: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "    {{\"routes\": {}, \"rules\": {}, \"listener\": {}, \"config\": {}, \"runs\": {}, \"req_per_s\": {}, \"p50_us\": {}, \"p99_us\": {}, \"cpu_us_per_req\": {}, \"cpu_min\": {}, \"cpu_max\": {}, \"ratio_to_native\": {}, \"vcpu_per_1000_rps\": {}, \"rss_kib\": {}, \"errors\": {}}}",
                r.routes,
                r.rules,
                esc(r.listener),
                esc(r.config),
                r.runs,
                num(r.req_per_s),
                num(r.p50_us),
                num(r.p99_us),
                num(r.cpu),
                num(r.cpu_min),
                num(r.cpu_max),
                find(rows, r.routes, r.rules, r.listener, native_of(r))
                    .map_or("null".into(), |b| num(r.cpu / b.cpu)),
                num(istiod::vcpu_per_krps(r.cpu)),
                r.rss_kib.map_or("null".into(), |k| k.to_string()),
                r.errors
            )
        })
        .collect();
    rows_json.join(",\n")
}

fn report_json(
    settings: &Settings,
    m: &Machine,
    samples: &[Sample],
    rows: &[Row],
    goals: &[Goal],
    micro: &str,
    profiles: &[Profile],
) -> String {
    let mut o = String::from("{\n");
    let _ = writeln!(
        o,
        "  \"machine\": {{\"cpu\": {}, \"cores\": {}, \"kernel\": {}, \"envoy\": {}, \"loadavg_before\": {}, \"loadavg_after\": {}, \"date\": {}}},",
        esc(&m.cpu),
        m.cores,
        esc(&m.kernel),
        esc(&m.envoy),
        esc(&m.load_before),
        esc(&m.load_after),
        esc(&m.date)
    );
    let _ = writeln!(
        o,
        "  \"settings\": {{\"rounds\": {}, \"requests\": {}, \"connections\": {}, \"quick\": {}, \"shapes\": [{}]}},",
        settings.rounds,
        settings.requests,
        settings.connections,
        settings.quick,
        [("own", settings.own), ("istiod", settings.istiod)]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| esc(name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let configs: Vec<String> = CONFIGS
        .iter()
        .chain(&istiod::CONFIGS)
        .map(|c| esc(c))
        .collect();
    let _ = writeln!(o, "  \"configs\": [{}],", configs.join(", "));
    o.push_str("  \"summary\": [\n");
    o.push_str(&summary_json(rows));
    o.push_str("\n  ],\n  \"samples\": [\n");
    let samples_json: Vec<String> = samples
        .iter()
        .map(|s| {
            format!(
                "    {{\"routes\": {}, \"rules\": {}, \"listener\": {}, \"config\": {}, \"round\": {}, \"requests\": {}, \"errors\": {}, \"seconds\": {}, \"req_per_s\": {}, \"p50_us\": {}, \"p99_us\": {}, \"cpu_us_per_req\": {}}}",
                s.routes,
                s.rules,
                esc(s.listener),
                esc(s.config),
                s.round,
                s.load.requests,
                s.load.errors,
                num(s.load.seconds),
                num(s.load.req_per_s),
                num(s.load.p50_us),
                num(s.load.p99_us),
                num(s.cpu_us_per_req)
            )
        })
        .collect();
    o.push_str(&samples_json.join(",\n"));
    o.push_str("\n  ],\n  \"goals\": [\n");
    let goals_json: Vec<String> = goals
        .iter()
        .map(|g| {
            format!(
                "    {{\"goal\": {}, \"measured\": {}, \"met\": {}}}",
                esc(&g.goal),
                esc(&g.measured),
                g.met.map_or("null".into(), |b| b.to_string())
            )
        })
        .collect();
    o.push_str(&goals_json.join(",\n"));
    o.push_str("\n  ],\n  \"profiles\": [\n");
    let pairs = |v: &[(f64, String)]| {
        v.iter()
            .map(|(p, w)| format!("[{}, {}]", num(*p), esc(w)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let profiles_json: Vec<String> = profiles
        .iter()
        .map(|p| {
            format!(
                "    {{\"config\": {}, \"routes\": {}, \"rules\": {}, \"by_object_percent\": [{}], \"module_symbols_percent\": [{}]}}",
                esc(p.config),
                p.routes,
                p.rules,
                pairs(&p.dsos),
                pairs(&p.symbols)
            )
        })
        .collect();
    o.push_str(&profiles_json.join(",\n"));
    let _ = write!(o, "\n  ],\n  \"micro_benchmark\": {}\n}}\n", esc(micro));
    o
}

/// The chart script: CPU µs/request per config, grouped by size, one panel per listener.
const CHART_PY: &str = r#"import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

report = json.load(open(sys.argv[1]))
rows = report["summary"]
configs = report["configs"]
listeners = [l for l in ("plain", "hbone", "istiod") if any(r["listener"] == l for r in rows)]
colours = {"no-policy": "C0", "native": "C1", "wasm": "C2", "dynamic-module": "C3"}
titles = {"plain": "plain listener", "hbone": "through HBONE", "istiod": "istiod-shaped, HBONE to the VIP"}
sizes = []
for r in rows:
    if (r["routes"], r["rules"]) not in sizes:
        sizes.append((r["routes"], r["rules"]))
fig, axes = plt.subplots(1, len(listeners), figsize=(6 * len(listeners), 4.5), squeeze=False)
for ax, listener in zip(axes[0], listeners):
    shown = [c for c in configs if any(r["listener"] == listener and r["config"] == c for r in rows)]
    width = 0.8 / max(len(shown), 1)
    for k, config in enumerate(shown):
        values = []
        for size in sizes:
            match = [r for r in rows if r["listener"] == listener and r["config"] == config
                     and (r["routes"], r["rules"]) == size]
            values.append(match[0]["cpu_us_per_req"] if match else 0)
        xs = [i + (k - (len(shown) - 1) / 2) * width for i in range(len(sizes))]
        # The same colour for a build in both shapes (istiod-wasm like wasm).
        base = config[len("istiod-"):] if config.startswith("istiod-") else config
        ax.bar(xs, values, width, label=config, color=colours.get(base))
    ax.set_xticks(range(len(sizes)))
    ax.set_xticklabels(["%d routes\n%d rules" % s for s in sizes], fontsize=8)
    ax.set_ylabel("Envoy CPU µs per request (median)")
    ax.set_title("HTTP/1.1, " + titles[listener])
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
m = report["machine"]
fig.suptitle("layover waypoint: Envoy %s, %s, %d cores" % (m["envoy"].split("/")[1] if "/" in m["envoy"] else m["envoy"], m["cpu"], m["cores"]), fontsize=9)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
"#;

/// Draws the chart with matplotlib from a venv under `.layover/bench-venv` (created and filled
/// from PyPI on first use).
fn chart(env: &Env, json: &Path, png: &Path) -> Result<PathBuf, String> {
    let venv = env.root.join(".layover/bench-venv");
    let python = venv.join("bin/python");
    let has_matplotlib = |p: &Path| {
        Command::new(p)
            .args(["-c", "import matplotlib"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has_matplotlib(&python) {
        step("installing matplotlib into .layover/bench-venv (PyPI, once) for the chart");
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .map_err(|e| format!("{e}\nhint: Debian needs python3-venv"))?;
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "matplotlib",
        ]))?;
    }
    let script = env.work.join("chart.py");
    std::fs::write(&script, CHART_PY).map_err(|e| format!("{}: {e}", script.display()))?;
    run(Command::new(&python).arg(&script).arg(json).arg(png))?;
    Ok(png.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_results_parse_from_the_generator_line() {
        let line = r#"{"requests":1000,"errors":2,"seconds":0.5,"req_per_s":2000.0,"p50_us":310,"p90_us":500,"p99_us":900,"max_us":1200}"#;
        let r = LoadResult::parse(line).unwrap_or_default();
        assert_eq!((r.requests, r.errors), (1000, 2));
        assert_eq!((r.p50_us, r.p99_us, r.req_per_s), (310.0, 900.0, 2000.0));
        assert!(LoadResult::parse("{}").is_err());
        assert_eq!(json_number(r#"{"a": 1.5 }"#, "a"), Some(1.5));
    }

    #[test]
    fn request_list_hits_every_route_and_the_yaml_declares_them() {
        let yaml = istio_yaml(8, 10, 9999);
        let list = targets(8);
        assert_eq!(list.lines().count(), 8);
        for (i, line) in list.lines().enumerate() {
            let s = i % SERVICES;
            assert!(line.starts_with(&format!("bench-{s}.default.svc.cluster.local:9080\t")));
            assert!(yaml.contains(&format!("  - name: r{i}\n")));
        }
        // Route 6 is the header-matched kind: its request carries the header.
        assert!(list
            .lines()
            .nth(6)
            .is_some_and(|l| l.ends_with("\tx-tenant: t6")));
        // 10 rules: 1 DENY, 9 ALLOW of which only the last (any GET) matches.
        assert_eq!(yaml.matches("/admin").count(), 1);
        assert_eq!(yaml.matches("/internal/").count(), 8);
        assert!(yaml.ends_with("  - to: [{operation: {methods: [GET]}}]\n"));
    }

    #[test]
    fn every_service_has_a_vip_and_the_istiod_list_connects_to_it() {
        let yaml = istio_yaml(4, 10, 9999);
        let list = vip_targets(4);
        for (i, line) in list.lines().enumerate() {
            let s = i % SERVICES;
            assert!(yaml.contains(&format!("  clusterIP: {}\n", vip(s))));
            assert!(line.starts_with(&format!("{}:9080\tbench-{s}:9080\t", vip(s))));
        }
        // Only the authority differs from the own shape's list.
        let own = targets(4);
        let strip = |l: &str| l.split_once('\t').map(|(_, r)| r.to_string());
        assert!(own.lines().map(strip).eq(list.lines().map(strip)));
    }

    #[test]
    fn quick_runs_shrink_and_flags_override() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let q = parse(&args(&["--quick"])).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (q.rounds, q.requests, q.routes.clone(), q.rules.clone()),
            (1, 1_000, vec![10], vec![10])
        );
        let s = parse(&args(&["--rounds", "5", "--routes", "10,1000"]))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!((s.rounds, s.routes), (5, vec![10, 1000]));
        assert!(parse(&args(&["--routes", "0"])).is_err());
        assert!(parse(&args(&["--bogus"])).is_err());
        assert!(q.own && q.istiod, "both shapes by default, --quick too");
        let only = parse(&args(&["--shapes", "istiod"])).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(!only.own && only.istiod);
        assert!(parse(&args(&["--shapes", "own,sidecar"])).is_err());
    }

    #[test]
    fn perf_report_lines_are_read() {
        let text =
            "# Samples: 9K\n#\n    67.60%  envoy            \n     6.37%  [JIT] tid 2756\n\n";
        let rows = perf_rows(text);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], (67.6, "envoy".to_string()));
        assert_eq!(dso_meaning(&rows[1].1), "layover wasm code (V8 JIT)");
        assert_eq!(
            dso_meaning("liblayover_module.so"),
            "layover dynamic module"
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(num(f64::NAN), "null");
    }
}
