//! Rendering engine decisions as the JSON documented in the README, and as the demo's table.

use std::io::Write;

use layover_core::{
    wire, Action, CorsDecision, Decision, DestinationChoice, EffectiveRetry, HeaderOp, PathRejected,
};
use serde_json::{json, Map, Value};

use super::request::RequestJson;
use super::select::Chosen;

/// Envoy answered before any filter ran (the path cannot be normalized).
pub fn rejected(request: &RequestJson, rejected: &PathRejected) -> Value {
    let mut out = Map::new();
    put_name(&mut out, request);
    out.insert("action".into(), json!("reject"));
    out.insert("status".into(), json!(rejected.status()));
    out.insert("reason".into(), json!(rejected.to_string()));
    Value::Object(out)
}

/// The `waypoint` member: which waypoint answered and why that one.
pub fn waypoint(chosen: &Chosen) -> Value {
    json!({"name": chosen.waypoint, "chosen_by": chosen.why})
}

/// The request passes no waypoint (its service has none, or eval cannot tell which):
/// ztunnel delivers it to the workloads, so no L7 policy of this input applies.
pub fn no_waypoint(request: &RequestJson, chosen: &Chosen) -> Value {
    let mut out = Map::new();
    put_name(&mut out, request);
    out.insert("action".into(), json!("no_waypoint"));
    out.insert("status".into(), Value::Null);
    out.insert(
        "reason".into(),
        json!("the request does not pass a waypoint: no waypoint route or authorization applies"),
    );
    out.insert("waypoint".into(), waypoint(chosen));
    Value::Object(out)
}

fn put_name(out: &mut Map<String, Value>, request: &RequestJson) {
    if let Some(name) = &request.name {
        out.insert("name".into(), json!(name));
    }
}

/// The action's name in the decision JSON.
pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::Forward => "route",
        Action::Deny => "deny",
        Action::DirectResponse => "direct_response",
        Action::Redirect => "redirect",
        Action::Abort => "abort",
        Action::NoRoute => "no_route",
        Action::UnknownService => "unknown_service",
        Action::Unavailable => "unavailable",
    }
}

/// The full decision JSON.
pub fn decision(request: &RequestJson, d: &Decision<'_>) -> Value {
    let mut out = Map::new();
    put_name(&mut out, request);
    out.insert("action".into(), json!(action_name(d.action)));
    out.insert("status".into(), json!(d.status));
    out.insert("reason".into(), json!(d.reason));
    out.insert("service".into(), json!(d.service.map(|s| s.hostname)));
    out.insert("authz".into(), authz(d));
    out.insert("route".into(), route(d));
    out.insert("normalized_path".into(), json!(d.normalized_path));
    out.insert("path".into(), json!(d.path));
    out.insert("authority".into(), json!(d.authority));
    out.insert(
        "destinations".into(),
        Value::Array(d.destinations.iter().map(destination).collect()),
    );
    let (request_ops, response_ops) = header_ops(d);
    out.insert("request_headers".into(), request_ops);
    out.insert("response_headers".into(), response_ops);
    out.insert("location".into(), json!(d.location));
    out.insert(
        "body".into(),
        json!(d.body.map(|b| String::from_utf8_lossy(b).into_owned())),
    );
    out.insert("retries".into(), d.retry.map_or(Value::Null, retries));
    out.insert(
        "timeout_ms".into(),
        if d.timeout_ms == 0 {
            Value::Null
        } else {
            json!(d.timeout_ms)
        },
    );
    out.insert("fault".into(), fault(d));
    out.insert(
        "mirror".into(),
        Value::Array(
            d.mirrors
                .iter()
                .map(|m| {
                    json!({
                        "cluster": m.cluster, "host": m.host, "port": m.port,
                        "subset": empty_null(&m.subset), "percentage": m.percentage,
                    })
                })
                .collect(),
        ),
    );
    out.insert("cors".into(), d.cors.as_ref().map_or(Value::Null, cors));
    Value::Object(out)
}

fn empty_null(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        json!(s)
    }
}

fn authz(d: &Decision<'_>) -> Value {
    let Some(a) = &d.authz else {
        return Value::Null;
    };
    let policy_ref = |m: &layover_core::authz::PolicyMatch<'_>| {
        json!({
            "policy": format!("{}/{}", m.namespace, m.name),
            "action": action_label(m.action),
            "rule": m.rule,
        })
    };
    let deciding = a.deciding.as_ref();
    json!({
        "decision": if a.allowed { "allow" } else { "deny" },
        "policy": deciding.map(|m| format!("{}/{}", m.namespace, m.name)),
        "policy_action": deciding.map(|m| action_label(m.action)),
        "rule": deciding.and_then(|m| m.rule),
        "audit": a.audit.as_ref().map(policy_ref),
        "dry_run": a.dry_run.as_ref().map(|(would_allow, m)| json!({
            "decision": if *would_allow { "allow" } else { "deny" },
            "policy": m.as_ref().map(|m| format!("{}/{}", m.namespace, m.name)),
            "rule": m.as_ref().and_then(|m| m.rule),
        })),
    })
}

fn action_label(action: wire::AuthorizationAction) -> &'static str {
    match action {
        wire::AuthorizationAction::Allow => "ALLOW",
        wire::AuthorizationAction::Deny => "DENY",
        wire::AuthorizationAction::Audit => "AUDIT",
    }
}

fn route(d: &Decision<'_>) -> Value {
    let Some(r) = &d.route else {
        return Value::Null;
    };
    match r.origin {
        Some(o) if !r.is_default => json!({
            "source": format!("{} {}/{}", o.kind, o.namespace, o.name),
            "index": o.index,
            "name": empty_null(&o.element_name),
            "match_index": r.match_index,
            "match_name": empty_null(r.match_name),
            "position": r.index,
        }),
        _ => json!({ "source": "default", "index": Value::Null, "name": Value::Null }),
    }
}

fn ops_json(ops: &[HeaderOp]) -> Value {
    Value::Array(
        ops.iter()
            .map(|op| match op {
                HeaderOp::Set { name, value } => json!({"op": "set", "name": name, "value": value}),
                HeaderOp::Append { name, value } => {
                    json!({"op": "add", "name": name, "value": value})
                }
                HeaderOp::Remove { name } => json!({"op": "remove", "name": name}),
            })
            .collect(),
    )
}

fn destination(c: &DestinationChoice) -> Value {
    json!({
        "cluster": c.cluster,
        "host": c.host,
        "port": c.port,
        "subset": empty_null(&c.subset),
        "weight": c.weight,
        "probability": c.probability,
        "unavailable": c.unavailable,
        "request_headers": ops_json(&c.request_header_ops),
        "response_headers": ops_json(&c.response_header_ops),
    })
}

/// Top-level header operations: for a forwarded request, the operations every candidate
/// destination shares (each destination also lists its own); for a proxy answer, the route's
/// response operations plus the CORS headers.
fn header_ops(d: &Decision<'_>) -> (Value, Value) {
    if let Some(first) = d.destinations.first() {
        let same = |f: fn(&DestinationChoice) -> &Vec<HeaderOp>| {
            d.destinations.iter().all(|c| f(c) == f(first))
        };
        let request = if same(|c| &c.request_header_ops) {
            ops_json(&first.request_header_ops)
        } else {
            Value::Null
        };
        let response = if same(|c| &c.response_header_ops) {
            ops_json(&first.response_header_ops)
        } else {
            Value::Null
        };
        return (request, response);
    }
    (Value::Array(Vec::new()), ops_json(d.response_header_ops))
}

fn retries(r: EffectiveRetry<'_>) -> Value {
    let p = r.policy;
    json!({
        "attempts": p.attempts,
        "retry_on": p.retry_on,
        "retriable_status_codes": p.retriable_status_codes,
        "per_try_timeout_ms": if p.per_try_timeout_ms == 0 { Value::Null } else { json!(p.per_try_timeout_ms) },
        "retry_host_predicate": p.retry_host_predicates,
        "host_selection_retry_max_attempts": p.host_selection_retry_max_attempts,
        "retry_remote_localities": p.retry_remote_localities,
        "source": if r.from_mesh_default { "mesh_default" } else { "route" },
    })
}

fn fault(d: &Decision<'_>) -> Value {
    let Some(f) = &d.fault else {
        return Value::Null;
    };
    json!({
        "delay": f.delay.map(|x| json!({"fixed_delay_ms": x.fixed_delay_ms, "percentage": x.percentage})),
        "abort": f.abort.map(|x| json!({
            "http_status": x.status(),
            "grpc_status": x.grpc_status,
            "percentage": x.percentage,
        })),
    })
}

fn cors(c: &CorsDecision<'_>) -> Value {
    let kind = match c.kind {
        layover_core::CorsKind::Preflight => "preflight",
        layover_core::CorsKind::PreflightForwarded => "preflight_forwarded",
        layover_core::CorsKind::Actual => "actual",
    };
    let headers: Map<String, Value> = c
        .response_headers()
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"kind": kind, "origin_allowed": c.origin_allowed, "response_headers": headers})
}

/// One request's table row (without the WAYPOINT column).
fn table_row(i: usize, name: &Option<String>, d: &Value) -> Vec<String> {
    let s = |v: &Value| v.as_str().map(str::to_string);
    let route = d["route"]["source"]
        .as_str()
        .map(|src| match d["route"]["index"].as_u64() {
            Some(i) => format!("{src} #{i}"),
            None => src.to_string(),
        })
        .unwrap_or_else(|| "-".into());
    let dests = d["destinations"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|c| {
                    let host = c["host"].as_str().unwrap_or("?");
                    let short = host.split('.').next().unwrap_or(host);
                    match c["subset"].as_str() {
                        Some(sub) => format!("{short}/{sub} {}%", c["weight"]),
                        None => format!("{short} {}%", c["weight"]),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into());
    let retries = match &d["retries"] {
        Value::Null => "-".to_string(),
        r => format!(
            "{}x{}",
            r["attempts"],
            if r["source"] == "mesh_default" {
                " (mesh)"
            } else {
                ""
            }
        ),
    };
    let fault = match &d["fault"] {
        Value::Null => "-".to_string(),
        f => {
            let mut parts = Vec::new();
            if let Some(ms) = f["delay"]["fixed_delay_ms"].as_u64() {
                parts.push(format!("delay {ms}ms@{}%", f["delay"]["percentage"]));
            }
            if let Some(st) = f["abort"]["http_status"].as_u64() {
                parts.push(format!("abort {st}@{}%", f["abort"]["percentage"]));
            }
            parts.join(" ")
        }
    };
    let authz = match &d["authz"] {
        Value::Null => "-".to_string(),
        a => match (s(&a["policy"]), a["decision"].as_str()) {
            (Some(p), Some(d)) => format!("{d} ({p})"),
            (None, Some("deny")) => "deny (no ALLOW policy matched)".to_string(),
            (None, Some("allow")) => "allow (no ALLOW policy bound)".to_string(),
            (_, other) => other.unwrap_or("?").to_string(),
        },
    };
    vec![
        name.clone().unwrap_or_else(|| format!("#{}", i + 1)),
        s(&d["action"]).unwrap_or_default(),
        d["status"].as_u64().map_or("-".into(), |v| v.to_string()),
        route,
        dests,
        retries,
        d["timeout_ms"]
            .as_u64()
            .map_or("-".into(), |ms| format!("{ms}ms")),
        fault,
        authz,
    ]
}

/// The demo's table: one row per request. A WAYPOINT column appears when the rows were
/// evaluated at different waypoints (or some at none).
pub fn write_table(out: &mut dyn Write, rows: &[(Option<String>, Value)]) -> std::io::Result<()> {
    let mut header = vec![
        "REQUEST",
        "ACTION",
        "STATUS",
        "ROUTE",
        "DESTINATIONS",
        "RETRIES",
        "TIMEOUT",
        "FAULT",
        "AUTHZ",
    ];
    let mut table: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, (name, d))| table_row(i, name, d))
        .collect();
    let waypoints: Vec<String> = rows
        .iter()
        .map(|(_, d)| d["waypoint"]["name"].as_str().unwrap_or("-").to_string())
        .collect();
    if waypoints.iter().any(|w| *w != waypoints[0]) {
        header.insert(1, "WAYPOINT");
        for (row, w) in table.iter_mut().zip(waypoints) {
            row.insert(1, w);
        }
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &[String]| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if i + 1 < cells.len() {
                text.extend(std::iter::repeat_n(
                    ' ',
                    w.saturating_sub(cell.chars().count()),
                ));
            }
        }
        writeln!(out, "{text}")
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    line(out, &header)?;
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(out, &rule)?;
    for row in &table {
        line(out, row)?;
    }
    Ok(())
}
