//! `cargo xtask soak`: both filter builds under a fixed request rate for minutes, side by side
//! (one Envoy each, same YAML, same rate, started together so both see the same machine load),
//! with Envoy's RSS (`/proc/<pid>/status` VmRSS) and CPU (`/proc/<pid>/stat` utime+stime)
//! sampled every few seconds. Writes `<out>/soak.csv` (one row per sample and build) and
//! `<out>/report.md` (RSS first minute vs last minute, least-squares slope after warm-up, CPU,
//! requests, unexpected answers, load average).
//!
//! The traffic mixes what a waypoint does all day: a weighted split with a header match, an
//! ALLOW policy that admits, a DENY that answers 403, an unknown host (404), a fault abort, and
//! response header operations — so every allocation path of the filter runs.
//!
//! Usage: `soak [--minutes N] [--rate R] [--sample-secs S] [--out DIR]` (R requests per second
//! per build; `$LAYOVER_ENVOY`, `$LAYOVER_WASM`, `$LAYOVER_DYNAMIC_MODULE_DIR` as in the tests).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use layover_integration::waypoint::{app_yaml, subsets_yaml, FilterBuild, Waypoint};
use layover_integration::{Backend, HttpClient};

struct Args {
    minutes: f64,
    rate: u32,
    sample_secs: u64,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        minutes: 10.0,
        rate: 200,
        sample_secs: 5,
        out: PathBuf::from("target/soak"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--minutes" => {
                args.minutes = value("--minutes")?
                    .parse()
                    .map_err(|e| format!("--minutes: {e}"))?
            }
            "--rate" => {
                args.rate = value("--rate")?
                    .parse()
                    .map_err(|e| format!("--rate: {e}"))?
            }
            "--sample-secs" => {
                args.sample_secs = value("--sample-secs")?
                    .parse()
                    .map_err(|e| format!("--sample-secs: {e}"))?
            }
            "--out" => args.out = PathBuf::from(value("--out")?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.minutes <= 0.0 || args.rate == 0 || args.sample_secs == 0 {
        return Err("--minutes, --rate and --sample-secs must be positive".into());
    }
    Ok(args)
}

const EXTRA: &str = "
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
    headers: {response: {set: {x-soak: jason}}}
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 70}
    - {destination: {host: reviews, subset: v2}, weight: 30}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-deny, namespace: default}
spec:
  targetRefs: [{kind: Service, group: '', name: reviews}]
  action: DENY
  rules: [{to: [{operation: {paths: [/admin*]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-allow, namespace: default}
spec:
  targetRefs: [{kind: Service, group: '', name: ratings}]
  action: ALLOW
  rules: [{to: [{operation: {methods: [GET]}}]}]
";

/// One request of the mix: Host, path, an extra header, the expected status.
type Mixed = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
    u16,
);

/// The request mix.
const MIX: [Mixed; 6] = [
    ("reviews:9080", "/reviews/1", None, 200),
    (
        "reviews:9080",
        "/reviews/2",
        Some(("end-user", "jason")),
        200,
    ),
    ("reviews:9080", "/admin/x", None, 403),
    ("reviews:9080", "/abort", None, 418),
    ("ratings:9080", "/ratings/1", None, 200),
    ("nowhere:9080", "/", None, 404),
];

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    unexpected: AtomicU64,
    /// Ticks with no free slot (the waypoint fell behind the fixed rate).
    late: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    t: f64,
    rss_kb: u64,
    cpu_pct: f64,
    sent: u64,
    unexpected: u64,
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second: 100 on every Linux this runs on (`getconf CLK_TCK`).
const CLK_TCK: f64 = 100.0;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn soak_one(build: FilterBuild, args: &Args) -> Result<(Vec<Sample>, Totals), String> {
    let mut backends = Vec::new();
    let mut yaml = String::new();
    for app in ["reviews", "ratings"] {
        let mut bs = Vec::new();
        for v in ["v1", "v2"] {
            bs.push(
                Backend::start(&format!("{app}-{v}"), v)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        yaml.push_str(&app_yaml(app, &bs.iter().collect::<Vec<_>>()));
        yaml.push_str(&subsets_yaml(app, &["v1", "v2"]));
        backends.extend(bs);
    }
    yaml.push_str(EXTRA);
    let wp = Waypoint::start(build, &yaml)
        .await
        .map_err(|e| format!("[{}] {e}", build.name()))?;
    let pid = wp.envoy.pid();
    let counters = Arc::new(Counters::default());
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    let url = wp.envoy.url("");
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let started = Instant::now();

    // The pacing client: one request per tick at the fixed rate, up to 64 in flight.
    let pacer = {
        let counters = Arc::clone(&counters);
        let slots = Arc::clone(&slots);
        let client = HttpClient::http1();
        let period = Duration::from_secs_f64(1.0 / f64::from(args.rate));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n: usize = 0;
            while started.elapsed() < duration {
                tick.tick().await;
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    counters.late.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let (host, path, header, want) = MIX[n % MIX.len()];
                n += 1;
                let client = client.clone();
                let counters = Arc::clone(&counters);
                let url = format!("{url}{path}");
                tokio::spawn(async move {
                    let mut headers = vec![("host", host)];
                    headers.extend(header);
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                    match client.get_with(&url, &headers).await {
                        Ok(r) if r.status.as_u16() == want => {
                            counters.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            counters.unexpected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    drop(permit);
                });
            }
        })
    };

    let mut samples = Vec::new();
    let mut last = (Instant::now(), cpu_ticks(pid).unwrap_or(0));
    let every = Duration::from_secs(args.sample_secs);
    while started.elapsed() < duration {
        tokio::time::sleep(every).await;
        let now = Instant::now();
        let ticks = cpu_ticks(pid).ok_or("Envoy exited during the soak")?;
        let cpu_pct = (ticks - last.1) as f64 / CLK_TCK / (now - last.0).as_secs_f64() * 100.0;
        last = (now, ticks);
        let sample = Sample {
            t: started.elapsed().as_secs_f64(),
            rss_kb: rss_kb(pid).ok_or("Envoy exited during the soak")?,
            cpu_pct,
            sent: counters.sent.load(Ordering::Relaxed),
            unexpected: counters.unexpected.load(Ordering::Relaxed),
        };
        println!(
            "[{:>14}] t={:>6.0}s rss={:>7} KB cpu={:>5.1}% sent={} unexpected={} late={}",
            build.name(),
            sample.t,
            sample.rss_kb,
            sample.cpu_pct,
            sample.sent,
            sample.unexpected,
            counters.late.load(Ordering::Relaxed)
        );
        samples.push(sample);
    }
    pacer.await.map_err(|e| e.to_string())?;
    // Let in-flight requests finish: all 64 slots free again.
    let _ = tokio::time::timeout(Duration::from_secs(30), slots.acquire_many(64)).await;
    let totals = Totals {
        sent: counters.sent.load(Ordering::Relaxed),
        unexpected: counters.unexpected.load(Ordering::Relaxed),
        late: counters.late.load(Ordering::Relaxed),
    };
    drop(backends);
    Ok((samples, totals))
}

/// Requests over the whole run.
#[derive(Debug, Clone, Copy)]
struct Totals {
    sent: u64,
    unexpected: u64,
    late: u64,
}

/// Least-squares slope of RSS (KB per minute) over samples after `from` seconds.
fn slope_kb_per_min(samples: &[Sample], from: f64) -> f64 {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t >= from)
        .map(|s| (s.t / 60.0, s.rss_kb as f64))
        .collect();
    let n = pts.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

fn mean_rss(samples: &[Sample], from: f64, to: f64) -> f64 {
    let v: Vec<f64> = samples
        .iter()
        .filter(|s| s.t >= from && s.t <= to)
        .map(|s| s.rss_kb as f64)
        .collect();
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

type Run = (FilterBuild, Vec<Sample>, Totals);

fn report(args: &Args, runs: &[Run], load_start: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Soak: {} min at {} req/s per build, both builds concurrently\n",
        args.minutes, args.rate
    );
    let _ = writeln!(
        md,
        "Load average at start: {load_start}; at end: {}. Machine: {} CPUs (shared).\n",
        loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        md,
        "| build | requests | unexpected answers | late ticks | RSS first minute (MB) | RSS last minute (MB) | growth | slope after 1 min (KB/min) | mean CPU |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for (build, samples, totals) in runs {
        let end = samples.last().map_or(0.0, |s| s.t);
        let first = mean_rss(samples, 0.0, 60.0);
        let lastm = mean_rss(samples, end - 60.0, end);
        let cpu = samples.iter().map(|s| s.cpu_pct).sum::<f64>() / samples.len().max(1) as f64;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:+.1}% | {:+.1} | {:.1}% |",
            build.name(),
            totals.sent,
            totals.unexpected,
            totals.late,
            first / 1024.0,
            lastm / 1024.0,
            if first > 0.0 {
                (lastm - first) / first * 100.0
            } else {
                0.0
            },
            slope_kb_per_min(samples, 60.0),
            cpu
        );
    }
    md.push_str(
        "\nRSS is Envoy's whole process (V8 for the wasm build, the module for the other). \
         Samples: soak.csv. A slope within a few hundred KB/min on a shared 2-core machine is \
         allocator noise; a steady climb across the whole run is a leak to investigate.\n",
    );
    md
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let load_start = loadavg();
    println!(
        "soak: {} min at {} req/s per build, sampling every {} s (load average {load_start})",
        args.minutes, args.rate, args.sample_secs
    );
    let (wasm, dm) = tokio::join!(
        soak_one(FilterBuild::Wasm, &args),
        soak_one(FilterBuild::DynamicModule, &args)
    );
    let (wasm, dm) = (wasm?, dm?);
    let runs: Vec<Run> = vec![
        (FilterBuild::Wasm, wasm.0, wasm.1),
        (FilterBuild::DynamicModule, dm.0, dm.1),
    ];
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let mut csv = String::from("build,t_s,rss_kb,cpu_pct,sent,unexpected\n");
    for (build, samples, _) in &runs {
        for s in samples {
            let _ = writeln!(
                csv,
                "{},{:.1},{},{:.2},{},{}",
                build.name(),
                s.t,
                s.rss_kb,
                s.cpu_pct,
                s.sent,
                s.unexpected
            );
        }
    }
    let csv_path = args.out.join("soak.csv");
    std::fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    let md = report(&args, &runs, &load_start);
    let md_path = args.out.join("report.md");
    std::fs::write(&md_path, &md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    println!(
        "\n{md}\nwritten: {} and {}",
        md_path.display(),
        csv_path.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: error: {e}");
            ExitCode::FAILURE
        }
    }
}
