//! What the benchmarks share: Envoy processes that stop when dropped, readiness waits, the
//! direct-response upstream, CPU time and RSS from `/proc`, and summary statistics.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is killed (by its own handle) when dropped.
pub struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    /// The process id (for `/proc/<pid>/…`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port the kernel considers free right now.
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding a port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("reading a port: {e}"))
}

/// Clock ticks per second for `/proc/<pid>/stat` times.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or(format!("/proc/{pid}/stat: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime field 15.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(format!("/proc/{pid}/stat: no field {}", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// Resident set size of `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    vm_rss_kib(&status).ok_or(format!("/proc/{pid}/status: no VmRSS"))
}

/// `VmRSS:   12345 kB` → 12345.
fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// One HTTP/1.1 GET over a fresh connection; the status code.
pub fn http_status(port: u16, host: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

/// When a started Envoy counts as ready.
pub enum Ready<'a> {
    /// `GET /` with this `Host` on the port answers 200 (a listener that routes).
    Listener { port: u16, host: &'a str },
    /// The admin interface's `/ready` answers 200 (every listener is up, whatever it routes).
    Admin { port: u16 },
}

/// An Envoy started by [`start_envoy`].
pub struct EnvoyRun<'a> {
    /// The Envoy binary.
    pub envoy: &'a Path,
    /// Its bootstrap.
    pub config: &'a Path,
    /// `--base-id` (distinct per concurrently running Envoy: shared memory).
    pub base_id: u32,
    /// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
    pub module_dir: &'a Path,
    /// Where its stderr goes.
    pub log: &'a Path,
    /// Its name in messages.
    pub name: &'a str,
}

/// How long an Envoy may take to become ready (a wasm Envoy spends seconds compiling the
/// module, more on a loaded machine).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Starts Envoy with `--concurrency 1` and waits until it is `ready`.
pub fn start_envoy(run: &EnvoyRun<'_>, ready: Ready<'_>) -> Result<Proc, String> {
    let log_file =
        std::fs::File::create(run.log).map_err(|e| format!("{}: {e}", run.log.display()))?;
    let child = Command::new(run.envoy)
        .arg("-c")
        .arg(run.config)
        .args(["--concurrency", "1", "--log-level", "warn", "--base-id"])
        .arg(run.base_id.to_string())
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", run.module_dir)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", run.envoy.display()))?;
    let mut proc = Proc {
        child,
        name: run.name.to_string(),
    };
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if let Ok(Some(status)) = proc.child.try_wait() {
            return Err(format!(
                "Envoy ({}) exited during start ({status}); see {}",
                proc.name,
                run.log.display()
            ));
        }
        let up = match ready {
            Ready::Listener { port, host } => http_status(port, host, "/") == Some(200),
            Ready::Admin { port } => http_status(port, "localhost", "/ready") == Some(200),
        };
        if up {
            return Ok(proc);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "Envoy ({}) was not ready within {START_TIMEOUT:?}; see {}",
        run.name,
        run.log.display()
    ))
}

/// Starts `cmd` (stderr to `log`) and waits until it accepts TCP connections on `port` on
/// loopback.
pub fn start_process(mut cmd: Command, name: &str, log: &Path, port: u16) -> Result<Proc, String> {
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let child = cmd
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("starting {name}: {e}"))?;
    let mut proc = Proc {
        child,
        name: name.to_string(),
    };
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if let Ok(Some(status)) = proc.child.try_wait() {
            return Err(format!(
                "{} exited during start ({status}); see {}",
                proc.name,
                log.display()
            ));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(proc);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "{name} did not listen on port {port} within {START_TIMEOUT:?}; see {}",
        log.display()
    ))
}

/// The upstream: an Envoy answering every request with a direct 200.
pub fn upstream_config(port: u16) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: upstream
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: upstream
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: ok}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    )
}

/// The median (NaN for no values).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// (min, max); (inf, -inf) for no values.
pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_even_and_empty_lists() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
        assert_eq!(min_max(&[2.0, -1.0, 5.0]), (-1.0, 5.0));
    }

    #[test]
    fn rss_is_read_from_proc_status() {
        let status = "Name:\tenvoy\nVmPeak:\t  900 kB\nVmRSS:\t   41236 kB\nThreads:\t12\n";
        assert_eq!(vm_rss_kib(status), Some(41236));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
        // This process exists and has a resident set.
        assert!(rss_kib(std::process::id()).is_ok_and(|kib| kib > 0));
        assert!(cpu_ticks(std::process::id()).is_ok());
    }
}
