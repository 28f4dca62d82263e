//! AuthorizationPolicy binding and translation for a waypoint.
//!
//! Waypoints enforce only policies that name them through `targetRefs` (or the legacy
//! singular `targetRef`): the waypoint Gateway (every service it serves), a Service, a
//! ServiceEntry, or GatewayClass `istio-waypoint` from the root namespace. Selector-based and
//! namespace-wide policies are enforced by ztunnel / sidecars, not waypoints (istio.io
//! "Layer 7 features in ambient mode"; istiod `pilot/pkg/model/authorization.go`,
//! `ListAuthorizationPolicies` with a waypoint selection policy).

//!
//! Binding ([`compile_policies`], target by target) is here; each part of a rule has its own
//! file: [`source`], [`operation`], [`condition`], and the istiod value checks in [`validate`].

mod condition;
mod operation;
mod source;
mod validate;

use crate::diag::ObjRef;
use crate::model::{AuthorizationPolicySpec, Metadata, TargetRef};
use crate::object::{Object, ObjectKind};
use crate::resolve::Ctx;
use layover_proto::v1 as pb;
use std::collections::HashMap;

/// Translates every AuthorizationPolicy bound to this waypoint; returns the policies and,
/// per served service FQDN, the indexes of the policies bound to it.
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
        let Some(hosts) = bind(ctx, at, spec) else {
            continue;
        };
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

/// The served services `spec` binds through its targetRefs, sorted; `None` (with a notice or
/// error) when it binds none or is not enforced by waypoints at all.
fn bind(ctx: &mut Ctx, at: &ObjRef, spec: &AuthorizationPolicySpec) -> Option<Vec<String>> {
    bind_refs(
        ctx,
        at,
        spec.selector.is_some(),
        spec.target_ref.as_ref(),
        &spec.target_refs,
    )
}

/// [`bind`] for any security.istio.io policy with `selector` / `targetRef` / `targetRefs`
/// (RequestAuthentication attaches to waypoints exactly as AuthorizationPolicy does:
/// `pilot/pkg/model/authentication.go:298-303 @ 1.30.3`, `ShouldAttachPolicy`).
pub(crate) fn bind_refs(
    ctx: &mut Ctx,
    at: &ObjRef,
    has_selector: bool,
    target_ref: Option<&TargetRef>,
    target_refs: &[TargetRef],
) -> Option<Vec<String>> {
    let mut refs: Vec<(String, &TargetRef)> = Vec::new();
    if let Some(r) = target_ref {
        refs.push(("spec.targetRef".into(), r));
    }
    for (i, r) in target_refs.iter().enumerate() {
        refs.push((format!("spec.targetRefs[{i}]"), r));
    }
    if refs.is_empty() {
        let what = if has_selector {
            "skipped: selector-based policies are enforced by ztunnel or sidecars, not by waypoints; bind it to the waypoint with targetRefs"
        } else if at.namespace == ctx.mesh.root_namespace {
            "skipped: mesh-wide (root namespace) policies without targetRefs are not enforced by waypoints"
        } else {
            "skipped: namespace-wide policies without targetRefs are not enforced by waypoints"
        };
        ctx.info(at, "", what);
        return None;
    }
    if has_selector {
        ctx.err(
            at,
            "spec.selector",
            "selector and targetRefs are mutually exclusive",
        );
        return None;
    }
    let mut hosts: Vec<String> = Vec::new();
    for (path, r) in refs {
        target(ctx, at, &path, r, &mut hosts);
    }
    hosts.sort();
    hosts.dedup();
    if hosts.is_empty() {
        ctx.info(at, "", "skipped: binds to no service of this waypoint");
        return None;
    }
    Some(hosts)
}

/// Adds the served services one targetRef (at `path`) names to `hosts`.
fn target(ctx: &mut Ctx, at: &ObjRef, path: &str, r: &TargetRef, hosts: &mut Vec<String>) {
    let path = path.to_string();
    let kind = r.kind.as_deref().unwrap_or("");
    let group = r.group.as_deref().unwrap_or("");
    if let Some(rns) = &r.namespace {
        if rns != &at.namespace {
            ctx.info(
                at,
                format!("{path}.namespace"),
                "skipped target: targetRefs must be in the policy's own namespace",
            );
            return;
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

/// Translates a bound policy; `None` when it has errors (all of them are reported).
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
            rule.from.push(source::source(ctx, at, &sp, &f.source, &td));
        }
        for (ti, t) in r.to.iter().enumerate() {
            let op = format!("{rp}.to[{ti}].operation");
            rule.to
                .push(operation::operation(ctx, at, &op, &t.operation));
        }
        for (wi, w) in r.when.iter().enumerate() {
            let wp = format!("{rp}.when[{wi}]");
            if let Some(c) = condition::condition(ctx, at, &wp, w) {
                rule.when.push(c);
            }
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
