//! Running a real Envoy per test.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use crate::error::HarnessError;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// The workspace root (this crate lives at `tests/integration`, two levels below it).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or(manifest)
}

/// Finds Envoy: `$LAYOVER_ENVOY`, else `.layover/envoy/envoy/_bin/envoy` in the workspace
/// (where `cargo xtask install-envoy` puts it).
pub fn find_envoy() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os("LAYOVER_ENVOY") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(HarnessError::EnvoyNotFound(format!(
                "LAYOVER_ENVOY={} is not a file",
                path.display()
            )))
        };
    }
    let local = repo_root().join(".layover/envoy/envoy/_bin/envoy");
    if local.is_file() {
        Ok(local)
    } else {
        Err(HarnessError::EnvoyNotFound(format!(
            "{} does not exist",
            local.display()
        )))
    }
}

/// Runs `envoy --mode validate` on a config (YAML or JSON text). Loads every extension the
/// config names without serving traffic.
pub fn validate_config(config: &str) -> Result<(), HarnessError> {
    validate_config_with(config, &EnvoyOptions::default())
}

/// [`validate_config`] with extra environment (e.g. `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`).
pub fn validate_config_with(config: &str, opts: &EnvoyOptions) -> Result<(), HarnessError> {
    let envoy = find_envoy()?;
    let dir = tempfile::Builder::new()
        .prefix("layover-validate-")
        .tempdir()
        .map_err(io("creating a temp dir"))?;
    let cfg = dir.path().join(config_file_name(config));
    std::fs::write(&cfg, config).map_err(io("writing the config"))?;
    let out = Command::new(envoy)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warn",
            "-c",
        ])
        .arg(&cfg)
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .map_err(io("running envoy --mode validate"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HarnessError::Invalid(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// Envoy picks the parser from the file extension; JSON text is also valid YAML, but a `.json`
/// name gives better error messages for JSON configs.
fn config_file_name(config: &str) -> &'static str {
    if config.trim_start().starts_with('{') {
        "envoy.json"
    } else {
        "envoy.yaml"
    }
}

/// The loopback ports a started Envoy ended up with (discovered after start, see [`Envoy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Admin interface port.
    pub admin: u16,
    /// Port of the data listener (the first listener, or [`EnvoyOptions::listener`]).
    pub listener: u16,
}

/// What the config callback gets: where the Envoy's files live.
///
/// The config should bind its admin interface and listeners to port 0 on 127.0.0.1
/// ([`Launch::ANY_PORT`]): the kernel then picks free ports atomically and the harness reads
/// them back from Envoy. Picking a port in the test and handing it to Envoy is racy: Envoy
/// listeners set SO_REUSEPORT by default, so two Envoys given the same port both bind it and
/// the kernel splits connections between them (seen under parallel load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The Envoy's private temp dir (config, logs); removed when the [`Envoy`] is dropped.
    pub dir: PathBuf,
    /// Where the config should write its access log for [`Envoy::access_log`] to find it.
    pub access_log: PathBuf,
}

impl Launch {
    /// The port to put in the config for the admin interface and every listener.
    pub const ANY_PORT: u16 = 0;
}

/// How to run Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Envoy `-l` log level.
    pub log_level: String,
    /// Extra environment for the Envoy process.
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments.
    pub extra_args: Vec<String>,
    /// Name of the data listener ([`Envoy::listener_addr`]); `None` takes the first listener.
    /// The harness waits until every listener with a socket address accepts connections.
    pub listener: Option<String>,
    /// How long to wait for the listeners to accept connections.
    pub startup_timeout: Duration,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            log_level: "info".into(),
            env: Vec::new(),
            extra_args: Vec::new(),
            listener: None,
            startup_timeout: crate::TEST_TIMEOUT,
        }
    }
}

/// A running Envoy. Killed (and waited for) on drop; its temp dir (config, logs) goes with it.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    dir: TempDir,
    admin: SocketAddr,
    /// Listener name and bound address, in `/listeners` order.
    listeners: Vec<(String, SocketAddr)>,
    /// Index into `listeners` of the data listener.
    data: usize,
}

impl Envoy {
    /// Starts Envoy with default options. `make_config` gets the Envoy's temp dir and returns
    /// the bootstrap (YAML or JSON), with admin and listeners on port 0 ([`Launch`]).
    pub async fn start<F, E>(make_config: F) -> Result<Envoy, HarnessError>
    where
        F: FnOnce(&Launch) -> Result<String, E>,
        E: std::fmt::Display,
    {
        Envoy::start_with(&EnvoyOptions::default(), make_config).await
    }

    /// Starts Envoy and waits until its listeners accept TCP connections.
    pub async fn start_with<F, E>(
        opts: &EnvoyOptions,
        make_config: F,
    ) -> Result<Envoy, HarnessError>
    where
        F: FnOnce(&Launch) -> Result<String, E>,
        E: std::fmt::Display,
    {
        let binary = find_envoy()?;
        let dir = tempfile::Builder::new()
            .prefix("layover-envoy-")
            .tempdir()
            .map_err(io("creating a temp dir"))?;
        let launch = Launch {
            access_log: dir.path().join("access.log"),
            dir: dir.path().to_path_buf(),
        };
        let config = make_config(&launch).map_err(|e| HarnessError::Config(e.to_string()))?;
        let mut starting = Starting::spawn(&binary, opts, dir, &config)?;
        match starting.wait_listening(opts).await {
            Ok((admin, listeners, data)) => {
                let mut envoy = starting.envoy;
                envoy.admin = admin;
                envoy.listeners = listeners;
                envoy.data = data;
                Ok(envoy)
            }
            Err(reason) => Err(HarnessError::Start {
                reason,
                log_tail: starting.envoy.log_tail(40),
            }),
        }
    }
}

/// An Envoy process that is not known to serve yet. Dropping it kills the process (it is an
/// [`Envoy`] without the discovered addresses).
struct Starting {
    envoy: Envoy,
}

/// Listener statuses as the admin `/listeners?format=json` endpoint reports them.
#[derive(serde::Deserialize)]
struct ListenerStatuses {
    #[serde(default)]
    listener_statuses: Vec<ListenerStatus>,
}

#[derive(serde::Deserialize)]
struct ListenerStatus {
    name: String,
    local_address: Option<LocalAddress>,
}

#[derive(serde::Deserialize)]
struct LocalAddress {
    socket_address: Option<SocketAddressJson>,
}

#[derive(serde::Deserialize)]
struct SocketAddressJson {
    address: String,
    #[serde(default)]
    port_value: u16,
}

type Discovered = (SocketAddr, Vec<(String, SocketAddr)>, usize);

impl Starting {
    fn spawn(
        binary: &Path,
        opts: &EnvoyOptions,
        dir: TempDir,
        config: &str,
    ) -> Result<Starting, HarnessError> {
        let cfg = dir.path().join(config_file_name(config));
        std::fs::write(&cfg, config).map_err(io("writing the config"))?;
        let stdout =
            File::create(dir.path().join("stdout.log")).map_err(io("creating stdout.log"))?;
        let stderr =
            File::create(dir.path().join("envoy.log")).map_err(io("creating envoy.log"))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&cfg)
            // Envoy writes the admin address it bound here (the config asks for port 0).
            .arg("--admin-address-path")
            .arg(dir.path().join("admin.address"))
            // No shared memory and no domain socket: parallel Envoys cannot collide on a base id.
            .arg("--disable-hot-restart")
            // One worker keeps CPU use low on shared machines and makes behaviour deterministic.
            .args(["--concurrency", "1"])
            // Access logs appear within 100 ms instead of Envoy's 10 s default.
            .args(["--file-flush-interval-msec", "100"])
            .args(["-l", &opts.log_level])
            .args(&opts.extra_args)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(io(format!("starting {}", binary.display())))?;
        Ok(Starting {
            envoy: Envoy {
                child,
                dir,
                admin: SocketAddr::from(([127, 0, 0, 1], 0)),
                listeners: Vec::new(),
                data: 0,
            },
        })
    }

    /// Waits for the admin address, reads the bound listener addresses from `/listeners`, and
    /// polls every listener until it accepts a TCP connection. `/ready` can answer before
    /// listeners accept, so the real listeners are the only trustworthy signal.
    async fn wait_listening(&mut self, opts: &EnvoyOptions) -> Result<Discovered, String> {
        let start = Instant::now();
        let admin_file = self.envoy.dir.path().join("admin.address");
        // Short per-call timeout: a slow admin answer is retried rather than waited out.
        let client = crate::client::HttpClient::http1().with_timeout(Duration::from_secs(2));
        let mut backoff = Duration::from_millis(5);
        loop {
            match self.envoy.child.try_wait() {
                Ok(Some(status)) => return Err(format!("Envoy exited with {status}")),
                Ok(None) => {}
                Err(e) => return Err(format!("checking the Envoy process: {e}")),
            }
            let last = match self.try_discover(&admin_file, &client, opts).await {
                Ok(found) => return Ok(found),
                Err(why) => why,
            };
            if start.elapsed() > opts.startup_timeout {
                return Err(format!(
                    "not serving within {:?}: {last}",
                    opts.startup_timeout
                ));
            }
            // Polling interval, not synchronization: readiness is decided by the checks above.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
    }

    async fn try_discover(
        &self,
        admin_file: &Path,
        client: &crate::client::HttpClient,
        opts: &EnvoyOptions,
    ) -> Result<Discovered, String> {
        let text =
            std::fs::read_to_string(admin_file).map_err(|e| format!("admin address: {e}"))?;
        let admin: SocketAddr = text
            .trim()
            .parse()
            .map_err(|e| format!("admin address {text:?}: {e}"))?;
        let reply = client
            .get(&format!("http://{admin}/listeners?format=json"))
            .await
            .map_err(|e| e.to_string())?;
        let statuses: ListenerStatuses = reply.json().map_err(|e| e.to_string())?;
        let mut listeners = Vec::new();
        for status in statuses.listener_statuses {
            // Internal listeners have no socket address; nothing to wait for there.
            let Some(sa) = status.local_address.and_then(|a| a.socket_address) else {
                continue;
            };
            if sa.port_value == 0 {
                return Err(format!("listener {} not bound yet", status.name));
            }
            let ip: std::net::IpAddr = sa
                .address
                .parse()
                .map_err(|e| format!("listener {} address {:?}: {e}", status.name, sa.address))?;
            listeners.push((status.name, SocketAddr::new(ip, sa.port_value)));
        }
        let data = match &opts.listener {
            Some(name) => listeners
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| format!("no listener named {name} (yet)"))?,
            None if listeners.is_empty() => return Err("no listeners (yet)".into()),
            None => 0,
        };
        for (name, addr) in &listeners {
            tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("listener {name} at {addr}: {e}"))?;
        }
        Ok((admin, listeners, data))
    }
}

impl Envoy {
    /// The Envoy process id (the soak run samples its RSS and CPU from `/proc/<pid>`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The ports this Envoy bound (admin and data listener).
    pub fn ports(&self) -> Ports {
        Ports {
            admin: self.admin.port(),
            listener: self.listener_addr().port(),
        }
    }

    /// Address of the data listener.
    pub fn listener_addr(&self) -> SocketAddr {
        self.listeners
            .get(self.data)
            .map(|(_, addr)| *addr)
            .unwrap_or(self.admin)
    }

    /// Address of the listener called `name`, if Envoy has one with a socket address.
    pub fn listener_addr_of(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
    }

    /// Address of the admin interface.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// `http://127.0.0.1:<listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listener_addr(), path)
    }

    /// `http://127.0.0.1:<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr(), path)
    }

    /// The temp dir holding the config and logs; a good place for access-log files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Envoy's own log so far (stderr, then stdout).
    pub fn log(&self) -> String {
        read_logs(self.dir.path())
    }

    /// The last `lines` lines of Envoy's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// Path of the access log the config was asked to write ([`Launch::access_log`]).
    pub fn access_log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// Waits until the access log holds at least `min` lines and returns them all, each parsed
    /// as JSON (the format `layover_bootstrap` writes). Envoy flushes the file every 100 ms
    /// (`--file-flush-interval-msec`), and logs a request only after its response completed,
    /// so the lines can trail the responses a test already has.
    pub async fn access_log(&self, min: usize) -> Result<Vec<serde_json::Value>, HarnessError> {
        let path = self.access_log_path();
        let start = Instant::now();
        loop {
            let text = read_lossy(&path);
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            if lines.len() >= min {
                return lines
                    .iter()
                    .map(|l| {
                        serde_json::from_str(l).map_err(|e| {
                            HarnessError::Http(format!("access log line is not JSON ({e}): {l}"))
                        })
                    })
                    .collect();
            }
            if start.elapsed() > crate::TEST_TIMEOUT {
                return Err(HarnessError::Http(format!(
                    "access log {} has {} lines, expected at least {min} within {:?}",
                    path.display(),
                    lines.len(),
                    crate::TEST_TIMEOUT
                )));
            }
            // Polling the file; the condition above decides, not the interval.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reads a counter or gauge from the admin `/stats` endpoint (`None` when absent).
    pub async fn stat(&self, name: &str) -> Result<Option<u64>, HarnessError> {
        let reply = crate::client::HttpClient::http1()
            .get(&self.admin_url(&format!("/stats?filter=^{}$", escape_regex(name))))
            .await?;
        let text = reply.text();
        Ok(text.lines().find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        }))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        // Errors mean the process is already gone; nothing useful to do about them in drop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn escape_regex(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

fn read_logs(dir: &Path) -> String {
    let mut out = read_lossy(&dir.join("envoy.log"));
    out.push_str(&read_lossy(&dir.join("stdout.log")));
    out
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(path) {
        // Only the end matters for diagnostics; cap what is read for huge logs.
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let cap = 1 << 20;
        if len > cap {
            let _ = f.seek(SeekFrom::Start(len - cap));
        }
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
