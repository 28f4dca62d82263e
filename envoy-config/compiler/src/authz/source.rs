//! `from[].source` → a policy source.

use super::validate::{empty_values, istiod_regexes, strip_spiffe, IstiodRegex};
use crate::diag::ObjRef;
use crate::model::AuthzSource;
use crate::resolve::Ctx;
use crate::util::validate_cidr;
use layover_proto::v1 as pb;

/// Validates and translates a source (at `sp`); serviceAccounts become principals in the
/// trust domain `td`.
pub(super) fn source(
    ctx: &mut Ctx,
    at: &ObjRef,
    sp: &str,
    s: &AuthzSource,
    td: &str,
) -> pb::Source {
    for (name, list) in [
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
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
    let mut principals: Vec<String> = s.principals.iter().map(|p| strip_spiffe(p)).collect();
    principals.extend(sa(&s.service_accounts));
    let mut not_principals: Vec<String> =
        s.not_principals.iter().map(|p| strip_spiffe(p)).collect();
    not_principals.extend(sa(&s.not_service_accounts));
    pb::Source {
        principals,
        not_principals,
        namespaces: s.namespaces.clone(),
        not_namespaces: s.not_namespaces.clone(),
        ip_blocks: s.ip_blocks.clone(),
        not_ip_blocks: s.not_ip_blocks.clone(),
        remote_ip_blocks: s.remote_ip_blocks.clone(),
        not_remote_ip_blocks: s.not_remote_ip_blocks.clone(),
        // "iss/sub" patterns, matched on the JWT payload Envoy's jwt_authn verified
        // (pilot/pkg/security/authz/model/generator.go:263-320 @ 1.30.3).
        request_principals: s.request_principals.clone(),
        not_request_principals: s.not_request_principals.clone(),
    }
}
