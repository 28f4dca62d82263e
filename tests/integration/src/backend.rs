//! Programmable HTTP backends (HTTP/1.1 and h2c on one port) that answer with a JSON echo of the
//! request they received.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::HarnessError;

/// What a backend received, as it answers it (the JSON body of an echo response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// Backend name.
    pub name: String,
    /// Backend subset (e.g. "v1").
    pub subset: String,
    /// Request method.
    pub method: String,
    /// Path and query exactly as received.
    pub path: String,
    /// `:authority` (HTTP/2) or `Host` (HTTP/1.1).
    pub authority: String,
    /// Request headers; repeated headers joined with ",".
    pub headers: BTreeMap<String, String>,
    /// "HTTP/1.1" or "HTTP/2.0".
    pub version: String,
    /// Request body length in bytes.
    pub body_len: usize,
}

/// How a backend handles one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Behavior {
    /// Answer 200 with the [`Echo`] JSON.
    Echo,
    /// Answer with this status, extra headers and body (the echo JSON when `body` is `None`).
    Respond {
        /// Status code.
        status: u16,
        /// Extra response headers.
        headers: Vec<(String, String)>,
        /// Body; `None` sends the echo JSON.
        body: Option<String>,
    },
    /// Drop the request without answering: HTTP/1.1 closes the connection, HTTP/2 resets the
    /// stream.
    Reset,
    /// Wait this long, then echo.
    Stall(Duration),
}

#[derive(Debug)]
struct State {
    name: String,
    subset: String,
    queue: Mutex<VecDeque<Behavior>>,
    default: Mutex<Behavior>,
    received: Mutex<Vec<Echo>>,
}

/// Locks a mutex, recovering from poisoning (a panicking test must not cascade into the backend).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running backend on 127.0.0.1:<random>. Stops (with all its connections) on drop.
#[derive(Debug)]
pub struct Backend {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Backend {
    /// Starts a backend with a name and subset; it echoes every request until programmed
    /// otherwise. Must be called inside a Tokio runtime.
    pub async fn start(name: &str, subset: &str) -> Result<Backend, HarnessError> {
        Backend::start_at(name, subset, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Like [`Backend::start`], on a given address (the demo's backends listen on the ports
    /// testdata's WorkloadEntries declare). Tests should prefer [`Backend::start`]'s
    /// kernel-picked ports.
    pub async fn start_at(
        name: &str,
        subset: &str,
        addr: SocketAddr,
    ) -> Result<Backend, HarnessError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HarnessError::Io {
                what: format!("binding backend {name}"),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| HarnessError::Io {
            what: format!("reading backend {name} address"),
            source,
        })?;
        let state = Arc::new(State {
            name: name.to_string(),
            subset: subset.to_string(),
            queue: Mutex::new(VecDeque::new()),
            default: Mutex::new(Behavior::Echo),
            received: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(serve(listener, state.clone()));
        Ok(Backend { addr, state, task })
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Backend name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Backend subset.
    pub fn subset(&self) -> &str {
        &self.state.subset
    }

    /// Queues one behavior for the next request not already claimed by the queue.
    pub fn push(&self, behavior: Behavior) {
        lock(&self.state.queue).push_back(behavior);
    }

    /// Sets what happens once the queue is empty (initially [`Behavior::Echo`]).
    pub fn set_default(&self, behavior: Behavior) {
        *lock(&self.state.default) = behavior;
    }

    /// The next `n` requests get a 503 (with the echo body).
    pub fn fail_next(&self, n: usize) {
        self.respond_next(n, 503, &[]);
    }

    /// The next `n` requests get `status` with extra `headers` (echo body).
    pub fn respond_next(&self, n: usize, status: u16, headers: &[(&str, &str)]) {
        let behavior = Behavior::Respond {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: None,
        };
        let mut queue = lock(&self.state.queue);
        queue.extend(std::iter::repeat_n(behavior, n));
    }

    /// The next `n` requests are dropped without an answer.
    pub fn reset_next(&self, n: usize) {
        lock(&self.state.queue).extend(std::iter::repeat_n(Behavior::Reset, n));
    }

    /// The next request waits `duration` before it is answered.
    pub fn stall_next(&self, duration: Duration) {
        self.push(Behavior::Stall(duration));
    }

    /// Every request received so far, in arrival order (including failed and reset ones).
    pub fn received(&self) -> Vec<Echo> {
        lock(&self.state.received).clone()
    }

    /// How many requests arrived so far.
    pub fn request_count(&self) -> usize {
        lock(&self.state.received).len()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(req, state.clone()));
                    // Connection errors (resets, clients going away) are part of the tests.
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Error a handler returns to make hyper drop the request (connection close / stream reset).
#[derive(Debug)]
struct ResetRequested;

impl std::fmt::Display for ResetRequested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset requested by the test")
    }
}

impl std::error::Error for ResetRequested {}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, ResetRequested> {
    let (parts, body) = req.into_parts();
    let body_len = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);

    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| headers.get("host").cloned())
        .unwrap_or_default();
    let echo = Echo {
        name: state.name.clone(),
        subset: state.subset.clone(),
        method: parts.method.as_str().to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string()),
        authority,
        headers,
        version: match parts.version {
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
        .to_string(),
        body_len,
    };
    lock(&state.received).push(echo.clone());

    let behavior = lock(&state.queue)
        .pop_front()
        .unwrap_or_else(|| lock(&state.default).clone());
    match behavior {
        Behavior::Echo => Ok(respond(200, &[], None, &echo)),
        Behavior::Respond {
            status,
            headers,
            body,
        } => Ok(respond(status, &headers, body, &echo)),
        Behavior::Reset => Err(ResetRequested),
        Behavior::Stall(duration) => {
            tokio::time::sleep(duration).await;
            Ok(respond(200, &[], None, &echo))
        }
    }
}

fn respond(
    status: u16,
    headers: &[(String, String)],
    body: Option<String>,
    echo: &Echo,
) -> Response<Full<Bytes>> {
    let (body, content_type) = match body {
        Some(b) => (Bytes::from(b), "text/plain"),
        // Serializing plain strings and maps cannot fail; an empty body would only hide a bug.
        None => (
            Bytes::from(serde_json::to_vec(echo).unwrap_or_default()),
            "application/json",
        ),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp.headers_mut().insert(
        HeaderName::from_static("x-backend"),
        HeaderValue::from_str(&echo.name).unwrap_or(HeaderValue::from_static("invalid")),
    );
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}
