//! Which waypoint a request reaches. A cluster's YAML declares many waypoints; istiod puts in
//! front of a service the waypoint its `istio.io/use-waypoint` label (or its namespace's) names
//! ([`layover_compiler::waypoint_bindings`]), so eval finds the request's destination service,
//! compiles that waypoint once, and says which one it used and why.

use std::collections::HashMap;
use std::net::IpAddr;

use layover_compiler::{
    Binding, Bundle, CompileOptions, Location, ServiceBinding, Severity, WaypointBindings,
};
use layover_core::CompiledPolicy;

use super::request::RequestJson;

/// The waypoint a request was evaluated at, and why that one.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    /// `namespace/name`, or `None` when the input declares no waypoint (every service is
    /// evaluated) or the destination has none.
    pub waypoint: Option<String>,
    /// How it was chosen.
    pub why: String,
}

/// The compiled waypoints, built on first use.
pub struct Selector<'a> {
    bundle: &'a Bundle,
    bindings: WaypointBindings,
    forced: Option<String>,
    istio: layover_envoyfilter::IstioVersion,
    compiled: HashMap<Option<String>, (CompiledPolicy, Vec<String>)>,
    /// Compile notices not printed yet, per waypoint; printed once, on first use.
    pub notices: Vec<String>,
}

/// What eval does with one request.
pub enum Target<'p> {
    /// Evaluate at this waypoint's policy; the strings are the compile's notices about
    /// VirtualService matches dropped for their `sourceLabels`.
    Policy(&'p CompiledPolicy, Chosen, &'p [String]),
    /// The request does not pass a waypoint (or none can be found): say why.
    NoWaypoint(Chosen),
}

impl<'a> Selector<'a> {
    /// `forced`: `--waypoint ns/name` (or `name`).
    pub fn new(
        bundle: &'a Bundle,
        forced: Option<String>,
        istio: layover_envoyfilter::IstioVersion,
    ) -> Self {
        Selector {
            bundle,
            bindings: layover_compiler::waypoint_bindings(bundle),
            forced,
            istio,
            compiled: HashMap::new(),
            notices: Vec::new(),
        }
    }

    /// The waypoint `request` reaches, compiled.
    pub fn target(&mut self, request: &RequestJson) -> Result<Target<'_>, String> {
        let chosen = match self.choose(request) {
            Ok(c) => c,
            Err(chosen) => return Ok(Target::NoWaypoint(chosen)),
        };
        let key = chosen.waypoint.clone();
        if !self.compiled.contains_key(&key) {
            let policy = self.compile(key.as_deref())?;
            self.compiled.insert(key.clone(), policy);
        }
        match self.compiled.get(&key) {
            Some((p, dropped)) => Ok(Target::Policy(p, chosen, dropped)),
            None => Err("internal error: the compiled waypoint went missing".to_string()),
        }
    }

    /// `Ok`: the waypoint to evaluate at; `Err`: the request passes none (with the reason).
    fn choose(&self, request: &RequestJson) -> Result<Chosen, Chosen> {
        if let Some(w) = &self.forced {
            return Ok(Chosen {
                waypoint: Some(self.qualify(w)),
                why: "--waypoint".to_string(),
            });
        }
        match self.bindings.waypoints.as_slice() {
            [] => {
                return Ok(Chosen {
                    waypoint: None,
                    why: "the input declares no waypoint Gateway: every service is evaluated"
                        .to_string(),
                })
            }
            [only] => {
                return Ok(Chosen {
                    waypoint: Some(only.clone()),
                    why: "the only waypoint Gateway in the input".to_string(),
                })
            }
            _ => {}
        }
        let Some(svc) = self.destination(request) else {
            return Err(Chosen {
                waypoint: None,
                why: format!(
                    "the input declares {} waypoints and the request's destination is none of its services; give destination.service (FQDN) or choose one with --waypoint <namespace/name>",
                    self.bindings.waypoints.len()
                ),
            });
        };
        match &svc.binding {
            Binding::Waypoint { waypoint, reason } => Ok(Chosen {
                waypoint: Some(waypoint.clone()),
                why: format!("{}: {reason}", svc.hostname),
            }),
            Binding::Direct { reason, .. } => Err(Chosen {
                waypoint: None,
                why: format!("{}: {reason}", svc.hostname),
            }),
        }
    }

    /// `name` alone means the waypoint of that name when exactly one has it.
    fn qualify(&self, w: &str) -> String {
        if w.contains('/') {
            return w.to_string();
        }
        let mut same = self
            .bindings
            .waypoints
            .iter()
            .filter(|k| k.rsplit('/').next() == Some(w));
        match (same.next(), same.next()) {
            (Some(one), None) => one.clone(),
            _ => w.to_string(),
        }
    }

    /// The request's destination service: `destination.service` (FQDN or short name), else the
    /// VIP, else the authority's host (FQDN, `name.namespace`, or `name` in the source's
    /// namespace, as Kubernetes DNS search paths resolve it).
    fn destination(&self, request: &RequestJson) -> Option<&ServiceBinding> {
        let services = &self.bindings.services;
        if let Some(s) = &request.destination.service {
            return self.by_name(s, request);
        }
        if let Some(ip) = request.destination.ip {
            return services.iter().find(|s| has_vip(s, ip));
        }
        let authority = request.authority.as_deref()?;
        let host = strip_port(authority);
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            return services.iter().find(|s| has_vip(s, ip));
        }
        self.by_name(host, request)
    }

    fn by_name(&self, host: &str, request: &RequestJson) -> Option<&ServiceBinding> {
        let services = &self.bindings.services;
        let host = host.trim_end_matches('.');
        if let Some(s) = services.iter().find(|s| s.hostname == host) {
            return Some(s);
        }
        let ns = request.source_namespace();
        let mut parts = host.splitn(3, '.');
        let (name, namespace) = match (parts.next(), parts.next()) {
            (Some(n), Some(ns)) => (n, Some(ns.to_string())),
            (Some(n), None) => (n, ns),
            _ => return None,
        };
        let namespace = namespace?;
        services
            .iter()
            .find(|s| s.name == name && s.namespace == namespace)
    }

    fn compile(&mut self, waypoint: Option<&str>) -> Result<(CompiledPolicy, Vec<String>), String> {
        let opts = CompileOptions {
            waypoint: waypoint.map(str::to_string),
            istio: self.istio,
        };
        let compiled = layover_compiler::compile_with(self.bundle, &opts).map_err(|e| {
            let at = waypoint.map_or(String::new(), |w| format!(" (compiling waypoint {w})"));
            format!("{e}{at}")
        })?;
        // With several waypoints each compile reports every other waypoint's objects as
        // skipped: only warnings are worth reading then.
        let several = self.forced.is_none() && self.bindings.waypoints.len() > 1;
        self.notices.extend(
            compiled
                .notices
                .iter()
                .filter(|n| !several || n.severity == Severity::Warning)
                .map(ToString::to_string),
        );
        let dropped = compiled
            .notices
            .iter()
            .filter(|n| n.path.ends_with(".sourceLabels"))
            .map(|n| match &n.at {
                Location::Object(o) => format!("{} {}", o.object(), n.path),
                _ => n.path.clone(),
            })
            .collect();
        let policy = CompiledPolicy::compile(&compiled.policy).map_err(|e| {
            format!("the compiled policy was rejected by the engine: {e}\nhint: this is a compiler bug; please report it with the input YAML")
        })?;
        Ok((policy, dropped))
    }
}

fn has_vip(s: &ServiceBinding, ip: IpAddr) -> bool {
    s.addresses
        .iter()
        .any(|a| a.parse::<IpAddr>().is_ok_and(|v| v == ip))
}

fn strip_port(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    }
}
