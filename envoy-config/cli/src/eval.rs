//! `layover eval`: the offline explain. Compiles the configuration exactly as `layover compile`
//! does, feeds each request through the same engine the filters run, after the same path
//! normalization Envoy applies before any filter, and prints the decision as JSON.

mod jwt;
mod render;
pub mod request;
mod select;

use std::io::{BufRead, Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;

use layover_core::{normalize_path, CompiledPolicy, DestinationView, RequestView, SourceView};
use serde_json::Value;

use request::RequestJson;
use select::{Chosen, Selector, Target};

/// Arguments of `layover eval`.
pub struct EvalArgs {
    /// YAML files or directories holding the Istio configuration.
    pub config: Vec<PathBuf>,
    /// One request as JSON (`-` for stdin).
    pub request: Option<PathBuf>,
    /// Many requests, one JSON object per line.
    pub requests: Option<PathBuf>,
    /// Print a human-readable table instead of JSON lines.
    pub table: bool,
    /// `--waypoint ns/name`: evaluate every request at this waypoint instead of the one that
    /// serves its destination.
    pub waypoint: Option<String>,
    /// The Istio release whose routing defaults apply.
    pub istio: layover_envoyfilter::IstioVersion,
}

/// Runs `layover eval`, writing decisions to `out`. Returns the error message on failure.
pub fn run(args: &EvalArgs, out: &mut dyn Write) -> Result<(), String> {
    let (bundle, load_errors) = layover_compiler::load_paths_partial(&args.config);
    if !load_errors.is_empty() {
        return Err(layover_compiler::Errors(load_errors).to_string());
    }
    let mut selector = Selector::new(&bundle, args.waypoint.clone(), args.istio);
    let requests = read_requests(args)?;
    let mut printed = std::collections::HashSet::new();
    let mut rows = Vec::with_capacity(requests.len());
    for (label, text) in requests {
        let request = RequestJson::parse(&text).map_err(|e| format!("{label}: {e}"))?;
        let decision = match selector.target(&request)? {
            Target::Policy(policy, chosen, dropped) => {
                let decision = with_waypoint(explain(policy, &request), &chosen);
                with_notes(decision, &notes(&request, dropped))
            }
            Target::NoWaypoint(chosen) => render::no_waypoint(&request, &chosen),
        };
        // One compile per waypoint, each repeating the load notices: print each once.
        for notice in selector.notices.drain(..) {
            if printed.insert(notice.clone()) {
                eprintln!("{notice}");
            }
        }
        rows.push((request.name.clone(), decision));
    }

    let written = if args.table {
        render::write_table(out, &rows)
    } else {
        rows.iter().try_for_each(|(_, decision)| {
            serde_json::to_writer(&mut *out, decision)
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(out))
        })
    };
    written.map_err(|e| format!("writing the output failed: {e}"))
}

/// Adds which waypoint answered, and why that one, to a decision.
fn with_waypoint(mut decision: Value, chosen: &Chosen) -> Value {
    if let Value::Object(map) = &mut decision {
        map.insert("waypoint".into(), render::waypoint(chosen));
    }
    decision
}

/// What the request gave that cannot change the decision, said instead of silently ignored.
fn notes(request: &RequestJson, dropped_source_label_matches: &[String]) -> Vec<String> {
    let mut notes = Vec::new();
    if !request.source.labels.is_empty() {
        let mut note = "source.labels do not change the decision: waypoints drop VirtualService matches with sourceLabels (istiod listener_waypoint.go:1198-1203 @ 1.30.3)".to_string();
        if dropped_source_label_matches.is_empty() {
            note.push_str("; this waypoint's input has none");
        } else {
            note.push_str("; dropped here: ");
            note.push_str(&dropped_source_label_matches.join("; "));
        }
        notes.push(note);
    }
    if request.body.is_some() {
        notes.push("body: no waypoint route match or authorization rule reads the body; only its length (content-length) is visible to header matches".to_string());
    }
    notes
}

fn with_notes(mut decision: Value, notes: &[String]) -> Value {
    if let (Value::Object(map), false) = (&mut decision, notes.is_empty()) {
        map.insert("notes".into(), serde_json::json!(notes));
    }
    decision
}

/// Reads the request documents, each labelled for error messages (`file:line`).
fn read_requests(args: &EvalArgs) -> Result<Vec<(String, String)>, String> {
    match (&args.request, &args.requests) {
        (Some(one), None) => {
            let text = if one.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| format!("reading the request from stdin: {e}"))?;
                s
            } else {
                std::fs::read_to_string(one)
                    .map_err(|e| format!("{}: cannot read the request: {e}", one.display()))?
            };
            Ok(vec![(one.display().to_string(), text)])
        }
        (None, Some(many)) => {
            let file = std::fs::File::open(many)
                .map_err(|e| format!("{}: cannot read the requests: {e}", many.display()))?;
            let mut out = Vec::new();
            for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| format!("{}: {e}", many.display()))?;
                let trimmed = line.trim();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                out.push((format!("{}:{}", many.display(), i + 1), trimmed.to_string()));
            }
            Ok(out)
        }
        _ => Err("give exactly one of --request <file|-> or --requests <file.jsonl>".to_string()),
    }
}

/// The decision for one request as JSON: what the waypoint would do.
pub fn explain(policy: &CompiledPolicy, request: &RequestJson) -> Value {
    // Envoy normalizes before any filter runs and rejects what it cannot normalize (400).
    let normalized = match normalize_path(&request.path, policy.path_normalization()) {
        Ok(path) => path,
        Err(rejected) => return render::rejected(request, &rejected),
    };
    let headers = request.header_pairs();
    let header_refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let source_namespace = request.source_namespace();
    let jwt = match jwt::authenticate(policy, request) {
        Ok(payload) => payload,
        Err(unauthenticated) => return unauthenticated,
    };

    // The service the client dialled: explicit FQDN, else its VIP, else the Host header, the
    // way the plain-HTTP listener resolves it.
    let authority_default;
    let authority = match &request.authority {
        Some(a) => a.as_str(),
        None => {
            authority_default = request
                .destination
                .service
                .clone()
                .unwrap_or_else(|| "unknown".to_string());
            authority_default.as_str()
        }
    };
    let service = match (&request.destination.service, request.destination.ip) {
        (Some(s), _) => Some(s.as_str()),
        (None, Some(_)) => None,
        (None, None) => policy.service_for_authority(authority),
    };

    let view = RequestView {
        method: &request.method,
        scheme: &request.scheme,
        authority,
        path: &normalized,
        headers: &header_refs,
        source: SourceView {
            principal: request.source.principal.as_deref(),
            namespace: source_namespace.as_deref(),
            ip: request.source.ip,
            remote_ip: request.source.remote_ip,
        },
        destination: DestinationView {
            service,
            ip: request.destination.ip.or_else(|| authority_ip(authority)),
            port: request.destination_port(),
        },
        sni: request.sni.as_deref(),
        jwt: jwt.as_ref(),
    };
    let decision = policy.decide(&view);
    render::decision(request, &decision)
}

/// An authority that is a literal address (`10.0.0.1:9080`, `[::1]:80`) names a VIP.
fn authority_ip(authority: &str) -> Option<IpAddr> {
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}
