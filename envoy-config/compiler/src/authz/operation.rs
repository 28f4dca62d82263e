//! `to[].operation` → a policy operation.

use super::validate::empty_values;
use crate::diag::ObjRef;
use crate::model::{AuthzOperation, StrOrInt};
use crate::resolve::Ctx;
use layover_proto::v1 as pb;

/// Validates and translates an operation (at `op`): ports are numbers in 1..=65535, paths
/// start with "/" or use a "*" wildcard.
pub(super) fn operation(ctx: &mut Ctx, at: &ObjRef, op: &str, o: &AuthzOperation) -> pb::Operation {
    let ports = |ctx: &mut Ctx, name: &str, v: &Vec<StrOrInt>| -> Vec<u32> {
        let mut out = Vec::new();
        for (k, p) in v.iter().enumerate() {
            let n = match p {
                StrOrInt::Int(i) => u32::try_from(*i).ok().filter(|n| (1..=65535).contains(n)),
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
    pb::Operation {
        hosts: o.hosts.clone(),
        not_hosts: o.not_hosts.clone(),
        ports: p,
        not_ports: np,
        methods: o.methods.clone(),
        not_methods: o.not_methods.clone(),
        paths: o.paths.clone(),
        not_paths: o.not_paths.clone(),
    }
}
