//! AuthorizationPolicy binding and translation for a waypoint.
//!
//! Waypoints enforce only policies that name them through `targetRefs` (or the legacy
//! singular `targetRef`): the waypoint Gateway (every service it serves), a Service, a
//! ServiceEntry, or GatewayClass `istio-waypoint` from the root namespace. Selector-based and
//! namespace-wide policies are enforced by ztunnel / sidecars, not waypoints (istio.io
//! "Layer 7 features in ambient mode"; istiod `pilot/pkg/model/authorization.go`,
//! `ListAuthorizationPolicies` with a waypoint selection policy).

use crate::diag::ObjRef;
use crate::model::{AuthorizationPolicySpec, Metadata, StrOrInt, TargetRef};
use crate::object::{Object, ObjectKind};
use crate::resolve::Ctx;
use crate::util::{validate_cidr, validate_regex};
use layover_proto::v1 as pb;
use std::collections::HashMap;

pub(crate) fn compile_policies(
    ctx: &mut Ctx,
) -> (Vec<pb::AuthorizationPolicy>, HashMap<String, Vec<u32>>) {
    let bundle = ctx.bundle;
    let mut objs: Vec<&Object> = bundle
        .objects
        .iter()
        .filter(|o| matches!(o.kind, ObjectKind::AuthorizationPolicy(_)))
        .collect();
    objs.sort_by(|a, b| {
        (a.at.namespace.as_str(), a.at.name.as_str())
            .cmp(&(b.at.namespace.as_str(), b.at.name.as_str()))
    });
    let mut out = Vec::new();
    let mut bindings: HashMap<String, Vec<u32>> = HashMap::new();
    for o in objs {
        let ObjectKind::AuthorizationPolicy(d) = &o.kind else {
            continue;
        };
        let at = &o.at;
        let spec = &d.spec;
        let mut refs: Vec<(String, &TargetRef)> = Vec::new();
        if let Some(r) = &spec.target_ref {
            refs.push(("spec.targetRef".into(), r));
        }
        for (i, r) in spec.target_refs.iter().enumerate() {
            refs.push((format!("spec.targetRefs[{i}]"), r));
        }
        if refs.is_empty() {
            let what = if spec.selector.is_some() {
                "skipped: selector-based policies are enforced by ztunnel or sidecars, not by waypoints; bind it to the waypoint with targetRefs"
            } else if at.namespace == ctx.mesh.root_namespace {
                "skipped: mesh-wide (root namespace) policies without targetRefs are not enforced by waypoints"
            } else {
                "skipped: namespace-wide policies without targetRefs are not enforced by waypoints"
            };
            ctx.info(at, "", what);
            continue;
        }
        if spec.selector.is_some() {
            ctx.err(
                at,
                "spec.selector",
                "selector and targetRefs are mutually exclusive",
            );
            continue;
        }
        let mut hosts: Vec<String> = Vec::new();
        for (path, r) in refs {
            let kind = r.kind.as_deref().unwrap_or("");
            let group = r.group.as_deref().unwrap_or("");
            if let Some(rns) = &r.namespace {
                if rns != &at.namespace {
                    ctx.info(
                        at,
                        format!("{path}.namespace"),
                        "skipped target: targetRefs must be in the policy's own namespace",
                    );
                    continue;
                }
            }
            let served = |ctx: &Ctx| -> Vec<String> {
                ctx.services
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| ctx.served[*i])
                    .map(|(_, s)| s.hostname.clone())
                    .collect()
            };
            match (group, kind) {
                ("gateway.networking.k8s.io", "Gateway") => match &ctx.waypoint {
                    Some((wns, wn)) if *wns == at.namespace && *wn == r.name => {
                        hosts.extend(served(ctx))
                    }
                    Some((wns, wn)) => {
                        let msg = format!(
                            "skipped target: Gateway {}/{} is not this waypoint ({wns}/{wn})",
                            at.namespace, r.name
                        );
                        ctx.info(at, &path, msg);
                    }
                    None => {
                        ctx.info(
                            at,
                            &path,
                            format!("no waypoint Gateway in the input: Gateway {}/{} is taken to be this waypoint (every service)", at.namespace, r.name),
                        );
                        hosts.extend(served(ctx));
                    }
                },
                ("gateway.networking.k8s.io", "GatewayClass") => {
                    if r.name != "istio-waypoint" {
                        ctx.info(at, &path, format!("skipped target: GatewayClass {} is not istio-waypoint", r.name));
                    } else if at.namespace != ctx.mesh.root_namespace {
                        ctx.info(at, &path, format!("skipped target: GatewayClass targets only apply from the root namespace ({})", ctx.mesh.root_namespace));
                    } else {
                        hosts.extend(served(ctx));
                    }
                }
                ("" | "core", "Service") => {
                    let h = format!("{}.{}.svc.cluster.local", r.name, at.namespace);
                    match ctx.by_host.get(&h) {
                        Some(&i) if ctx.served[i] => hosts.push(h),
                        Some(_) => ctx.info(at, &path, format!("skipped target: Service {}/{} is not served by this waypoint", at.namespace, r.name)),
                        None => ctx.warn(at, &path, format!("skipped target: Service {}/{} is not in the input", at.namespace, r.name)),
                    }
                }
                ("networking.istio.io", "ServiceEntry") => {
                    let key = format!("{}/{}", at.namespace, r.name);
                    let hs: Vec<(String, bool)> = ctx
                        .services
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.se_name.as_deref() == Some(key.as_str()))
                        .map(|(i, s)| (s.hostname.clone(), ctx.served[i]))
                        .collect();
                    if hs.is_empty() {
                        ctx.warn(at, &path, format!("skipped target: ServiceEntry {key} is not in the input"));
                    } else if !hs.iter().any(|(_, s)| *s) {
                        ctx.info(at, &path, format!("skipped target: ServiceEntry {key} is not served by this waypoint"));
                    }
                    hosts.extend(hs.into_iter().filter(|(_, s)| *s).map(|(h, _)| h));
                }
                _ => ctx.err(
                    at,
                    format!("{path}.kind"),
                    format!("unsupported targetRef {group}/{kind} (Gateway, GatewayClass, Service, ServiceEntry)"),
                ),
            }
        }
        hosts.sort();
        hosts.dedup();
        if hosts.is_empty() {
            ctx.info(at, "", "skipped: binds to no service of this waypoint");
            continue;
        }
        let Some(p) = translate(ctx, at, &d.metadata, spec) else {
            continue;
        };
        let idx = out.len() as u32;
        out.push(p);
        for h in hosts {
            bindings.entry(h).or_default().push(idx);
        }
    }
    (out, bindings)
}

/// Istio validation (istio/istio pkg/config/security `CheckEmptyValues`): an empty string in
/// any value list of a rule is an error ("empty value not allowed"); `spiffe://` alone is an
/// empty principal.
fn empty_values(ctx: &mut Ctx, at: &ObjRef, field: &str, values: &[String]) {
    for (k, v) in values.iter().enumerate() {
        if v.is_empty() || v == "spiffe://" {
            ctx.err(at, format!("{field}[{k}]"), "empty value not allowed");
        }
    }
}

/// Regex metacharacters (RE2): istiod pastes some values into regexes unquoted.
fn has_regex_meta(s: &str) -> bool {
    s.contains([
        '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
    ])
}

/// Which regex istiod builds from a value (istio/istio pilot/pkg/security/authz/matcher):
/// the regex must compile, or Envoy would reject the whole RBAC filter istiod pushes.
#[derive(Clone, Copy)]
enum IstiodRegex {
    /// `principals`, `source.principal`: `*<suffix>` → `spiffe://.*<suffix>`.
    Principal,
    /// `namespaces`, `source.namespace`: `.*/ns/<v>/.*`, `*` → `.*`.
    Namespace,
}

fn istiod_regexes(ctx: &mut Ctx, at: &ObjRef, field: &str, values: &[String], kind: IstiodRegex) {
    for (k, v) in values.iter().enumerate() {
        let re = match kind {
            IstiodRegex::Principal => match strip_spiffe(v).strip_prefix('*') {
                Some(s) if has_regex_meta(s) => format!("^(?:.*{s})$"),
                _ => continue,
            },
            IstiodRegex::Namespace if has_regex_meta(v) => {
                format!("^(?:(?:.*/)?ns/{}/.*)$", v.replace('*', ".*"))
            }
            IstiodRegex::Namespace => continue,
        };
        if let Err(e) = validate_regex(&re) {
            ctx.err(
                at,
                format!("{field}[{k}]"),
                format!("{v:?}: istiod would emit an invalid regex: {e}"),
            );
        }
    }
}

fn strip_spiffe(p: &str) -> String {
    p.strip_prefix("spiffe://").unwrap_or(p).to_string()
}

fn translate(
    ctx: &mut Ctx,
    at: &ObjRef,
    meta: &Metadata,
    spec: &AuthorizationPolicySpec,
) -> Option<pb::AuthorizationPolicy> {
    let nerr = ctx.errors.len();
    let action = match spec.action.as_deref().unwrap_or("ALLOW") {
        "ALLOW" => pb::AuthorizationAction::Allow,
        "DENY" => pb::AuthorizationAction::Deny,
        "AUDIT" => pb::AuthorizationAction::Audit,
        "CUSTOM" => {
            ctx.err(at, "spec.action", "CUSTOM (ext_authz) is not supported yet");
            return None;
        }
        a => {
            ctx.err(
                at,
                "spec.action",
                format!("unknown action {a:?} (ALLOW, DENY, AUDIT, CUSTOM)"),
            );
            return None;
        }
    };
    if spec.provider.is_some() {
        ctx.err(
            at,
            "spec.provider",
            "provider is only valid with action CUSTOM",
        );
    }
    let dry_run = match meta.annotations.get("istio.io/dry-run").map(String::as_str) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            ctx.err(
                at,
                "metadata.annotations[istio.io/dry-run]",
                format!("expected \"true\" or \"false\", got {v:?}"),
            );
            false
        }
    };
    let td = ctx.mesh.trust_domain.clone();
    let mut rules = Vec::new();
    for (ri, r) in spec.rules.iter().flatten().enumerate() {
        let rp = format!("spec.rules[{ri}]");
        let mut rule = pb::AuthorizationRule::default();
        for (fi, f) in r.from.iter().enumerate() {
            let sp = format!("{rp}.from[{fi}].source");
            let s = &f.source;
            if !s.request_principals.is_empty() {
                ctx.err(at, format!("{sp}.requestPrincipals"), "request.auth (JWT) is not supported yet: requestPrincipals needs RequestAuthentication");
            }
            if !s.not_request_principals.is_empty() {
                ctx.err(at, format!("{sp}.notRequestPrincipals"), "request.auth (JWT) is not supported yet: notRequestPrincipals needs RequestAuthentication");
            }
            for (name, list) in [
                ("principals", &s.principals),
                ("notPrincipals", &s.not_principals),
                ("namespaces", &s.namespaces),
                ("notNamespaces", &s.not_namespaces),
                ("serviceAccounts", &s.service_accounts),
                ("notServiceAccounts", &s.not_service_accounts),
                ("ipBlocks", &s.ip_blocks),
                ("notIpBlocks", &s.not_ip_blocks),
                ("remoteIpBlocks", &s.remote_ip_blocks),
                ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
            ] {
                empty_values(ctx, at, &format!("{sp}.{name}"), list);
            }
            for (name, list) in [
                ("principals", &s.principals),
                ("notPrincipals", &s.not_principals),
            ] {
                istiod_regexes(
                    ctx,
                    at,
                    &format!("{sp}.{name}"),
                    list,
                    IstiodRegex::Principal,
                );
            }
            for (name, list) in [
                ("namespaces", &s.namespaces),
                ("notNamespaces", &s.not_namespaces),
            ] {
                istiod_regexes(
                    ctx,
                    at,
                    &format!("{sp}.{name}"),
                    list,
                    IstiodRegex::Namespace,
                );
            }
            for (name, list) in [
                ("ipBlocks", &s.ip_blocks),
                ("notIpBlocks", &s.not_ip_blocks),
                ("remoteIpBlocks", &s.remote_ip_blocks),
                ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
            ] {
                for (k, c) in list.iter().enumerate() {
                    if let Err(e) = validate_cidr(c) {
                        ctx.err(at, format!("{sp}.{name}[{k}]"), e);
                    }
                }
            }
            // serviceAccounts ("ns/sa" or "sa" in the policy namespace) are principals in the
            // mesh trust domain.
            let sa = |v: &Vec<String>| -> Vec<String> {
                v.iter()
                    .map(|s| match s.split_once('/') {
                        Some((ns, sa)) => format!("{td}/ns/{ns}/sa/{sa}"),
                        None => format!("{td}/ns/{}/sa/{s}", at.namespace),
                    })
                    .collect()
            };
            let mut principals: Vec<String> =
                s.principals.iter().map(|p| strip_spiffe(p)).collect();
            principals.extend(sa(&s.service_accounts));
            let mut not_principals: Vec<String> =
                s.not_principals.iter().map(|p| strip_spiffe(p)).collect();
            not_principals.extend(sa(&s.not_service_accounts));
            rule.from.push(pb::Source {
                principals,
                not_principals,
                namespaces: s.namespaces.clone(),
                not_namespaces: s.not_namespaces.clone(),
                ip_blocks: s.ip_blocks.clone(),
                not_ip_blocks: s.not_ip_blocks.clone(),
                remote_ip_blocks: s.remote_ip_blocks.clone(),
                not_remote_ip_blocks: s.not_remote_ip_blocks.clone(),
                request_principals: Vec::new(),
                not_request_principals: Vec::new(),
            });
        }
        for (ti, t) in r.to.iter().enumerate() {
            let op = format!("{rp}.to[{ti}].operation");
            let o = &t.operation;
            let ports = |ctx: &mut Ctx, name: &str, v: &Vec<StrOrInt>| -> Vec<u32> {
                let mut out = Vec::new();
                for (k, p) in v.iter().enumerate() {
                    let n = match p {
                        StrOrInt::Int(i) => {
                            u32::try_from(*i).ok().filter(|n| (1..=65535).contains(n))
                        }
                        StrOrInt::Str(s) => s
                            .trim()
                            .parse::<u32>()
                            .ok()
                            .filter(|n| (1..=65535).contains(n)),
                    };
                    match n {
                        Some(n) => out.push(n),
                        None => ctx.err(
                            at,
                            format!("{op}.{name}[{k}]"),
                            format!(
                                "invalid port {:?}",
                                match p {
                                    StrOrInt::Int(i) => i.to_string(),
                                    StrOrInt::Str(s) => s.clone(),
                                }
                            ),
                        ),
                    }
                }
                out
            };
            for (name, list) in [
                ("hosts", &o.hosts),
                ("notHosts", &o.not_hosts),
                ("methods", &o.methods),
                ("notMethods", &o.not_methods),
                ("paths", &o.paths),
                ("notPaths", &o.not_paths),
            ] {
                empty_values(ctx, at, &format!("{op}.{name}"), list);
            }
            let p = ports(ctx, "ports", &o.ports);
            let np = ports(ctx, "notPorts", &o.not_ports);
            for (name, list) in [("paths", &o.paths), ("notPaths", &o.not_paths)] {
                for (k, v) in list.iter().enumerate() {
                    if !(v.starts_with('/') || v.starts_with('*') || v.ends_with('*')) {
                        ctx.err(
                            at,
                            format!("{op}.{name}[{k}]"),
                            format!("path {v:?} must start with \"/\" or use a \"*\" wildcard"),
                        );
                    }
                }
            }
            rule.to.push(pb::Operation {
                hosts: o.hosts.clone(),
                not_hosts: o.not_hosts.clone(),
                ports: p,
                not_ports: np,
                methods: o.methods.clone(),
                not_methods: o.not_methods.clone(),
                paths: o.paths.clone(),
                not_paths: o.not_paths.clone(),
            });
        }
        for (wi, w) in r.when.iter().enumerate() {
            let wp = format!("{rp}.when[{wi}]");
            let key = w.key.as_str();
            if key.starts_with("request.auth.") {
                ctx.err(
                    at,
                    format!("{wp}.key"),
                    format!("{key}: request.auth (JWT) conditions are not supported yet"),
                );
                continue;
            }
            let known = key.starts_with("request.headers[") && key.ends_with(']')
                || key.starts_with("experimental.envoy.filters.")
                || matches!(
                    key,
                    "source.ip"
                        | "remote.ip"
                        | "source.namespace"
                        | "source.principal"
                        | "source.serviceAccount"
                        | "destination.ip"
                        | "destination.port"
                        | "connection.sni"
                );
            if !known {
                ctx.err(
                    at,
                    format!("{wp}.key"),
                    format!("unknown condition key {key:?}"),
                );
                continue;
            }
            if w.values.is_empty() && w.not_values.is_empty() {
                ctx.err(at, &wp, "one of values, notValues must be set");
            }
            empty_values(ctx, at, &format!("{wp}.values"), &w.values);
            empty_values(ctx, at, &format!("{wp}.notValues"), &w.not_values);
            let regex_kind = match key {
                "source.principal" => Some(IstiodRegex::Principal),
                "source.namespace" => Some(IstiodRegex::Namespace),
                _ => None,
            };
            if let Some(kind) = regex_kind {
                istiod_regexes(ctx, at, &format!("{wp}.values"), &w.values, kind);
                istiod_regexes(ctx, at, &format!("{wp}.notValues"), &w.not_values, kind);
            }
            for (name, list) in [("values", &w.values), ("notValues", &w.not_values)] {
                for (k, v) in list.iter().enumerate() {
                    let bad = match key {
                        "source.ip" | "remote.ip" | "destination.ip" => validate_cidr(v).err(),
                        "destination.port" => v
                            .parse::<u16>()
                            .err()
                            .map(|_| format!("invalid port {v:?}")),
                        _ => None,
                    };
                    if let Some(e) = bad {
                        ctx.err(at, format!("{wp}.{name}[{k}]"), e);
                    }
                }
            }
            let map = |v: &Vec<String>| -> Vec<String> {
                if key == "source.principal" {
                    v.iter().map(|p| strip_spiffe(p)).collect()
                } else {
                    v.clone()
                }
            };
            rule.when.push(pb::Condition {
                key: key.to_string(),
                values: map(&w.values),
                not_values: map(&w.not_values),
            });
        }
        rules.push(rule);
    }
    if ctx.errors.len() != nerr {
        return None;
    }
    Some(pb::AuthorizationPolicy {
        origin: Some(pb::Origin {
            kind: "AuthorizationPolicy".into(),
            namespace: at.namespace.clone(),
            name: at.name.clone(),
            index: 0,
            match_index: 0,
            element_name: String::new(),
        }),
        action: action as i32,
        rules,
        dry_run,
    })
}
