//! What both Envoy filters (proxy-wasm and dynamic module) share: decoding the policy from the
//! filter configuration, building the request view, and applying the engine's decision through
//! a small [`StreamHost`] trait. The adapters only implement that trait with their host calls,
//! so the semantics cannot drift between builds, and unit tests run against a fake host.
//!
//! No policy logic lives here: every branch on Istio semantics is in `layover-core`. This crate
//! only translates a [`Decision`] into Envoy's vocabulary (local replies, router headers,
//! header mutations).

#![forbid(unsafe_code)]

// Per-request entropy and SPIFFE parsing are the engine's; re-exported for the shims.
pub use layover_core::{namespace_of_principal, Entropy};
use layover_core::{
    wire, Action, Authorization, CompiledPolicy, Decision, DestinationView, HeaderOp, RequestView,
    Sampled, SourceView,
};

use layover_contract::{
    ClusterSelection, FilterConfig, FilterMode, CLUSTER_HEADER, INTERNAL_HEADER_PREFIX,
};

mod connection;
mod jwt;
pub use connection::{connection, Connection, ConnectionHost};

/// Body of a fault-injected abort, as Envoy's fault filter sends it.
pub const FAULT_ABORT_BODY: &[u8] = b"fault filter abort";

/// Status of the reply when the filter cannot decide (an internal error): the request is denied,
/// never forwarded undecided. 500 is what Envoy's own filters answer for an internal failure
/// (e.g. `ext_authz` with `failure_mode_allow: false` … 403/500; RBAC never allows on error).
pub const INTERNAL_ERROR_STATUS: u16 = 500;

/// Body of the reply when the filter failed internally.
pub const INTERNAL_ERROR_BODY: &[u8] = b"layover: internal error";

/// A host call the decision depends on failed, or the host handed over state the filter cannot
/// read. The request is denied with [`INTERNAL_ERROR_STATUS`] ("fail closed").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalError(pub String);

impl std::fmt::Display for InternalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The local reply for an internal error: 500, no routing, nothing of the request forwarded.
pub fn internal_error_reply() -> LocalReply {
    LocalReply {
        status: INTERNAL_ERROR_STATUS,
        headers: Vec::new(),
        body: INTERNAL_ERROR_BODY.to_vec(),
    }
}

/// The HTTP-level effect of applying a request's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request continue to the router.
    Continue,
    /// A local reply was sent; stop the request.
    Replied,
    /// Hold the request for this many milliseconds, then call [`StreamFilter::on_delay_elapsed`].
    Delay(u64),
}

/// A reply the proxy sends itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// Response headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Host calls a filter needs for one HTTP stream. Implemented by each adapter over its ABI
/// (and by a fake in tests). A failed host call must never panic.
///
/// The request side returns errors: the decision is only as good as the headers it read and
/// the mutations that carry it (stripping client-sent internal signals, the cluster choice,
/// router controls, rewrites), so a failure there denies the request with 500
/// ([`INTERNAL_ERROR_STATUS`]). Response-side mutations are best effort (the implementor logs
/// a failure): the request was already decided and forwarded.
pub trait StreamHost {
    /// Every request header, pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`)
    /// included, names lower-case, in order.
    fn request_headers(&self) -> Result<Vec<(String, String)>, InternalError>;
    /// Replace a request header (all values), creating it if absent.
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), InternalError>;
    /// Append a value to a request header.
    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), InternalError>;
    /// Remove a request header.
    fn remove_request_header(&mut self, name: &str) -> Result<(), InternalError>;
    /// Replace a response header.
    fn set_response_header(&mut self, name: &str, value: &str);
    /// Append a value to a response header.
    fn add_response_header(&mut self, name: &str, value: &str);
    /// Remove a response header.
    fn remove_response_header(&mut self, name: &str);
    /// Send a local reply and end the stream's request processing.
    fn send_local_reply(&mut self, reply: &LocalReply);
    /// Fire-and-forget copy of the request to `cluster` (mirroring); failures are ignored.
    fn mirror(&mut self, cluster: &str, headers: &[(String, String)]);
    /// Log a warning.
    fn warn(&self, message: &str);
}

/// Decodes and compiles the policy from a filter configuration: proto3 JSON when it starts
/// with `{`, binary protobuf otherwise. Errors say what to do.
pub fn load_policy(config: &[u8]) -> Result<CompiledPolicy, String> {
    let first = config.iter().find(|b| !b.is_ascii_whitespace());
    let policy: wire::Policy = match first {
        None => return Err("empty filter configuration: expected a layover policy (the output of `layover compile`)".into()),
        Some(b'{') => serde_json::from_slice(config)
            .map_err(|e| format!("filter configuration is not a valid layover policy (JSON): {e}"))?,
        Some(_) => prost::Message::decode(config).map_err(|e| {
            format!("filter configuration is not a valid layover policy (protobuf): {e}")
        })?,
    };
    CompiledPolicy::compile(&policy).map_err(|e| format!("invalid layover policy: {e}"))
}

/// A filter configuration, decoded ([`FilterConfig::decode`]) and its policy compiled.
#[derive(Debug)]
pub struct LoadedConfig {
    /// What the filter enforces ([`StreamFilter::new`]).
    pub mode: FilterMode,
    /// How the cluster choice reaches the route (waypoint mode).
    pub cluster_selection: ClusterSelection,
    /// The compiled policy.
    pub policy: CompiledPolicy,
}

/// Decodes a filter configuration as Envoy hands it over (a bare policy or the
/// `{"mode": …, "cluster_selection": …, "policy": …}` wrapper) and compiles its policy. Both
/// builds load their configuration here, so a mode means the same in each.
pub fn load_config(config: &[u8]) -> Result<LoadedConfig, String> {
    let decoded = FilterConfig::decode(config)?;
    Ok(LoadedConfig {
        mode: decoded.mode,
        cluster_selection: decoded.cluster_selection,
        policy: load_policy(&decoded.policy)?,
    })
}

/// True for request headers a client must never be able to set: every header layover or the
/// router reads as an internal signal (cluster choice, retries, timeouts, fault controls).
/// Envoy strips some `x-envoy-*` headers from external clients but keeps them for "internal"
/// (private-address) peers, which every mesh peer is, and never strips the fault filter's.
pub fn is_internal_signal(name: &str) -> bool {
    name.starts_with("x-envoy-") || name.starts_with(INTERNAL_HEADER_PREFIX)
}

/// Per-stream state of the filter.
#[derive(Debug, Default)]
pub struct StreamFilter {
    /// What this filter enforces (the configuration's [`FilterMode`]).
    mode: FilterMode,
    /// Response header operations to apply when the upstream answers.
    response_ops: Vec<HeaderOp>,
    /// CORS headers for the response of an actual cross-origin request.
    cors_headers: Vec<(String, String)>,
    /// What to do when a fault delay elapses: reply (abort) or continue.
    after_delay: Option<LocalReply>,
    /// Set once a local reply was sent, so nothing else touches the stream.
    replied: bool,
}

impl StreamFilter {
    /// A stream of a filter configured for `mode` (`StreamFilter::default()` is
    /// [`FilterMode::Waypoint`]).
    pub fn new(mode: FilterMode) -> StreamFilter {
        StreamFilter {
            mode,
            ..StreamFilter::default()
        }
    }

    /// Denies the request with [`internal_error_reply`] after an internal error (logged as a
    /// warning), unless a reply was already sent.
    pub fn fail_closed<H: StreamHost>(&mut self, host: &mut H, error: &InternalError) -> Verdict {
        host.warn(&format!("layover: internal error, request denied: {error}"));
        self.after_delay = None;
        if !self.replied {
            self.replied = true;
            host.send_local_reply(&internal_error_reply());
        }
        Verdict::Replied
    }

    /// Decides and applies the decision for a request's headers. The connection is what the
    /// adapter read from the host; an error there (unreadable filter state) fails closed like
    /// any other internal error.
    pub fn on_request_headers<H: StreamHost>(
        &mut self,
        policy: &CompiledPolicy,
        conn: Result<&Connection, &InternalError>,
        entropy: u64,
        host: &mut H,
    ) -> Verdict {
        match self.decide_and_apply(policy, conn, entropy, host) {
            Ok(verdict) => verdict,
            Err(error) => self.fail_closed(host, &error),
        }
    }

    fn decide_and_apply<H: StreamHost>(
        &mut self,
        policy: &CompiledPolicy,
        conn: Result<&Connection, &InternalError>,
        entropy: u64,
        host: &mut H,
    ) -> Result<Verdict, InternalError> {
        let conn = conn.map_err(Clone::clone)?;
        let headers = host.request_headers()?;
        if !headers.iter().any(|(n, _)| n == ":path") {
            // Envoy always hands an HTTP filter `:path` (CONNECT aside, which never reaches a
            // waypoint's HTTP chain): without it the host lost the request.
            return Err(InternalError("the host returned no :path header".into()));
        }
        if self.mode == FilterMode::Authorization {
            if policy.jwt().enabled {
                // Route B keeps istiod's own jwt_authn, which writes no payload header layover
                // could trust: refuse rather than decide without the verified identity.
                return Err(InternalError(
                    "RequestAuthentication needs the waypoint mode (route A or own bootstrap)"
                        .into(),
                ));
            }
            return Ok(self.authorize_only(policy, conn, &headers, host));
        }
        let jwt = jwt::verified_payload(policy, &headers)?;
        // Client-sent internal signals are invisible to matching as well as to Envoy.
        let visible: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(n, _)| !n.starts_with(':') && !is_internal_signal(n))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut view = request_view(policy, conn, &headers, &visible);
        view.jwt = jwt.as_ref();
        let decision = policy.decide(&view);
        let sampled = decision.sample(entropy);

        // Whatever happens next, no client-sent internal signal survives. One removal per name
        // (it drops every value); nothing to write when the client sent none.
        for (i, (name, _)) in headers.iter().enumerate() {
            if is_internal_signal(name) && !headers[..i].iter().any(|(n, _)| n == name) {
                host.remove_request_header(name)?;
            }
        }

        let reply = local_reply(&decision, &sampled);
        if let Some(delay) = sampled.delay_ms {
            // The fault filter delays first; what follows the delay is decided now.
            match reply {
                Some(r) => self.after_delay = Some(r),
                None => {
                    if let Err(error) = self.prepare_forward(&decision, &sampled, &headers, host) {
                        // Still delayed (the fault fired), then denied.
                        host.warn(&format!("layover: internal error, request denied: {error}"));
                        self.after_delay = Some(internal_error_reply());
                    }
                }
            }
            return Ok(Verdict::Delay(delay));
        }
        match reply {
            Some(r) => {
                self.replied = true;
                host.send_local_reply(&r);
                Ok(Verdict::Replied)
            }
            None => {
                self.prepare_forward(&decision, &sampled, &headers, host)?;
                Ok(Verdict::Continue)
            }
        }
    }

    /// Authorization-only mode ([`FilterMode::Authorization`], route B): AuthorizationPolicy
    /// decides, nothing else. A denied request gets Envoy RBAC's 403; an allowed one continues
    /// with its headers exactly as they came, `x-envoy-*` and `x-layover-*` included. The
    /// proxy's own routes (istiod's) run after this filter and may match on any client header,
    /// as they do without layover; layover sets no router control and no cluster header in this
    /// mode, so there is no signal of its own to protect, and whatever Envoy's connection
    /// manager does with `x-envoy-*` from the peer it does as in Istio's waypoint without
    /// layover. The policy sees the same headers istiod's RBAC filter after it sees.
    fn authorize_only<H: StreamHost>(
        &mut self,
        policy: &CompiledPolicy,
        conn: &Connection,
        headers: &[(String, String)],
        host: &mut H,
    ) -> Verdict {
        let visible: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(n, _)| !n.starts_with(':'))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let view = request_view(policy, conn, headers, &visible);
        if policy.authorize(&view).allowed() {
            return Verdict::Continue;
        }
        self.replied = true;
        host.send_local_reply(&LocalReply {
            status: Authorization::DENIED_STATUS,
            headers: Vec::new(),
            body: Authorization::DENIED_BODY.to_vec(),
        });
        Verdict::Replied
    }

    /// Called when a fault delay elapsed: sends the pending abort reply (returns
    /// [`Verdict::Replied`]) or lets the request continue.
    pub fn on_delay_elapsed<H: StreamHost>(&mut self, host: &mut H) -> Verdict {
        match self.after_delay.take() {
            Some(reply) => {
                self.replied = true;
                host.send_local_reply(&reply);
                Verdict::Replied
            }
            None => Verdict::Continue,
        }
    }

    /// Takes the reply to send when the current fault delay ends (an abort that fired with the
    /// delay), for hosts that resume delayed streams from outside the stream's own context.
    /// `None`: the request continues when the delay ends.
    pub fn take_pending_reply(&mut self) -> Option<LocalReply> {
        let reply = self.after_delay.take();
        if reply.is_some() {
            self.replied = true;
        }
        reply
    }

    /// Applies the response header operations decided for this stream (and CORS headers).
    pub fn on_response_headers<H: StreamHost>(&mut self, host: &mut H) {
        if self.replied {
            // Local replies already carry their headers.
            return;
        }
        apply_ops(&self.response_ops, |op| match op {
            HeaderOp::Set { name, value } => host.set_response_header(name, value),
            HeaderOp::Append { name, value } => host.add_response_header(name, value),
            HeaderOp::Remove { name } => host.remove_response_header(name),
        });
        for (name, value) in &self.cors_headers {
            host.set_response_header(name, value);
        }
    }

    /// Writes the cluster choice, router controls, header operations and rewrites.
    fn prepare_forward<H: StreamHost>(
        &mut self,
        decision: &Decision<'_>,
        sampled: &Sampled,
        original: &[(String, String)],
        host: &mut H,
    ) -> Result<(), InternalError> {
        let Some(dest) = sampled
            .destination
            .and_then(|i| decision.destinations.get(i))
        else {
            // Every forwarding decision has a destination; forwarding without a cluster choice
            // would let the route's fallback (or a stale header) decide.
            return Err(InternalError(
                "the decision forwards but names no destination".into(),
            ));
        };
        host.set_request_header(CLUSTER_HEADER, &dest.cluster)?;

        // Router controls. Retries: always explicit, so a route-level default cannot leak in.
        match decision.retry {
            Some(r) if r.policy.attempts > 0 => {
                let p = r.policy;
                host.set_request_header("x-envoy-max-retries", &p.attempts.to_string())?;
                if !p.retry_on.is_empty() {
                    host.set_request_header("x-envoy-retry-on", &p.retry_on.join(","))?;
                }
                if !p.retriable_status_codes.is_empty() {
                    let codes: Vec<String> = p
                        .retriable_status_codes
                        .iter()
                        .map(u32::to_string)
                        .collect();
                    host.set_request_header("x-envoy-retriable-status-codes", &codes.join(","))?;
                }
                if p.per_try_timeout_ms > 0 {
                    host.set_request_header(
                        "x-envoy-upstream-rq-per-try-timeout-ms",
                        &p.per_try_timeout_ms.to_string(),
                    )?;
                }
            }
            _ => host.set_request_header("x-envoy-max-retries", "0")?,
        }
        if decision.timeout_ms > 0 {
            host.set_request_header(
                "x-envoy-upstream-rq-timeout-ms",
                &decision.timeout_ms.to_string(),
            )?;
        }

        for op in &dest.request_header_ops {
            match op {
                HeaderOp::Set { name, value } => host.set_request_header(name, value)?,
                HeaderOp::Append { name, value } => host.add_request_header(name, value)?,
                HeaderOp::Remove { name } => host.remove_request_header(name)?,
            }
        }
        // A rewrite keeps the request's value in x-envoy-original-path / -host, as Envoy's route
        // does (`finalizeRequestHeaders`; istiod never sets the router's
        // `suppress_envoy_headers`), whether or not the value changed.
        let original_path = original
            .iter()
            .find(|(n, _)| n == ":path")
            .map(|(_, v)| v.as_str());
        if decision.path_rewritten {
            if let Some(p) = original_path {
                host.set_request_header("x-envoy-original-path", p)?;
            }
        }
        if original_path != Some(decision.path.as_ref()) {
            host.set_request_header(":path", &decision.path)?;
        }
        let original_authority = original
            .iter()
            .find(|(n, _)| n == ":authority")
            .map(|(_, v)| v.as_str());
        if decision.authority_rewritten {
            if let Some(a) = original_authority {
                host.set_request_header("x-envoy-original-host", a)?;
            }
        }
        if original_authority != Some(decision.authority.as_ref()) {
            host.set_request_header(":authority", &decision.authority)?;
        }

        self.response_ops = dest.response_header_ops.clone();
        if let Some(cors) = &decision.cors {
            self.cors_headers = cors
                .response_headers()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }

        if sampled.mirrors != 0 {
            let mirrored = mirror_headers(original, &decision.path, &decision.authority);
            for (i, m) in decision.mirrors.iter().enumerate() {
                if sampled.mirror_fires(i) {
                    host.mirror(&m.cluster, &mirrored);
                }
            }
        }
        Ok(())
    }
}

/// The engine's view of a request: its pseudo-headers, the `visible` headers policies match,
/// and what the connection says about the peer and the destination.
fn request_view<'a>(
    policy: &'a CompiledPolicy,
    conn: &'a Connection,
    headers: &'a [(String, String)],
    visible: &'a [(&'a str, &'a str)],
) -> RequestView<'a> {
    let pseudo = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let authority = pseudo(":authority");
    let scheme = pseudo(":scheme");
    let service = conn
        .destination_service
        .as_deref()
        .or_else(|| policy.service_for_authority(authority));
    RequestView {
        method: pseudo(":method"),
        scheme: if scheme.is_empty() { "http" } else { scheme },
        authority,
        path: pseudo(":path"),
        headers: visible,
        source: SourceView {
            principal: conn.principal.as_deref(),
            namespace: conn.principal.as_deref().and_then(namespace_of_principal),
            ip: conn.source_ip,
            remote_ip: conn.remote_ip,
        },
        destination: DestinationView {
            service,
            ip: conn.destination_ip,
            port: destination_port(conn.destination_port, authority),
        },
        sni: conn.sni.as_deref(),
        jwt: None,
    }
}

fn apply_ops(ops: &[HeaderOp], mut apply: impl FnMut(&HeaderOp)) {
    for op in ops {
        apply(op);
    }
}

/// The destination port policies see: the tunnel's (HBONE CONNECT authority) when the
/// connection gave one, else the Host header's. On the plain listener the service comes from the
/// Host header, and so does its port: the listener's own port says nothing about the service.
fn destination_port(from_connection: u16, authority: &str) -> u16 {
    if from_connection != 0 {
        return from_connection;
    }
    authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(0)
}

/// The local reply for a decision the proxy answers itself, or `None` to forward.
fn local_reply(decision: &Decision<'_>, sampled: &Sampled) -> Option<LocalReply> {
    // Envoy resolved the route before any filter answers, and `FilterManager::sendLocalReply`
    // applies that route entry's response header operations (the picked weighted cluster's,
    // then the route's) to every local reply: RBAC's 403, the fault filter's abort, the
    // router's cluster-not-found. Redirects and direct responses are no route entry; they carry
    // their own route-level operations below.
    let route_ops = sampled
        .route_destination
        .and_then(|i| decision.route_destinations.get(i))
        .map(|d| d.response_header_ops.as_slice())
        .unwrap_or(&[]);
    if let Some(abort) = sampled.abort {
        let mut headers = Vec::new();
        if let Some(grpc) = abort.grpc_status {
            headers.push(("content-type".to_string(), "application/grpc".to_string()));
            headers.push(("grpc-status".to_string(), grpc.to_string()));
        }
        apply_to_reply(&mut headers, route_ops);
        return Some(LocalReply {
            status: abort.status(),
            headers,
            body: if abort.grpc_status.is_some() {
                Vec::new()
            } else {
                FAULT_ABORT_BODY.to_vec()
            },
        });
    }
    let status = sampled.status?;
    let mut headers: Vec<(String, String)> = Vec::new();
    match decision.action {
        Action::Redirect => {
            if let Some(location) = &decision.location {
                headers.push(("location".into(), location.clone()));
            }
        }
        Action::DirectResponse => {
            if let Some(cors) = &decision.cors {
                headers.extend(
                    cors.response_headers()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string())),
                );
            }
        }
        _ => {}
    }
    match decision.action {
        // Route response header operations apply to the router's own replies too.
        Action::Redirect | Action::DirectResponse => {
            apply_to_reply(&mut headers, decision.response_header_ops)
        }
        Action::Deny | Action::Abort | Action::Unavailable | Action::Forward => {
            apply_to_reply(&mut headers, route_ops)
        }
        Action::NoRoute | Action::UnknownService => {}
    }
    Some(LocalReply {
        status,
        headers,
        body: decision.body.map(<[u8]>::to_vec).unwrap_or_default(),
    })
}

/// Applies header operations to a local reply's header list.
fn apply_to_reply(headers: &mut Vec<(String, String)>, ops: &[HeaderOp]) {
    for op in ops {
        match op {
            HeaderOp::Set { name, value } => {
                headers.retain(|(n, _)| n != name);
                headers.push((name.clone(), value.clone()));
            }
            HeaderOp::Append { name, value } => headers.push((name.clone(), value.clone())),
            HeaderOp::Remove { name } => headers.retain(|(n, _)| n != name),
        }
    }
}

/// Headers of a mirrored request: Envoy's shadow copies carry `<authority>-shadow`.
fn mirror_headers(
    original: &[(String, String)],
    path: &str,
    authority: &str,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = original
        .iter()
        .filter(|(n, _)| n != ":path" && n != ":authority" && !is_internal_signal(n))
        .cloned()
        .collect();
    out.push((":path".into(), path.to_string()));
    out.push((":authority".into(), shadow_authority(authority)));
    out
}

/// Envoy's `shadowAppendedHost` (`source/common/router/shadow_writer_impl.cc`, 1.40): `-shadow`
/// goes on the host, before the port (`HeaderUtility::getPortStart`: the last `:` not inside
/// an IPv6 literal's brackets).
fn shadow_authority(authority: &str) -> String {
    let port_start = authority
        .rfind(':')
        .filter(|&colon| authority.rfind(']').is_none_or(|end| end < colon));
    match port_start {
        Some(colon) => format!("{}-shadow{}", &authority[..colon], &authority[colon..]),
        None => format!("{authority}-shadow"),
    }
}

#[cfg(any(test, feature = "recording-host"))]
pub mod recording;
#[cfg(test)]
mod tests;
