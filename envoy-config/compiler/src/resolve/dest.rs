//! Destination resolution for routes and mirrors (istiod `getWaypointDestinationCluster`).

use super::Ctx;
use crate::diag::ObjRef;

/// Resolved destination for a route or mirror.
pub(crate) struct Dest {
    /// Cluster name, as istiod's waypoint names it ([`Ctx::cluster_name`]).
    pub cluster: String,
    /// Destination service FQDN.
    pub host: String,
    /// Service port (0 when it could not be chosen).
    pub port: u32,
    /// DestinationRule subset, empty for none.
    pub subset: String,
    /// Unknown host, port or subset: Envoy answers 503.
    pub unavailable: bool,
}

/// Resolves a destination as istiod's `getWaypointDestinationCluster`: explicit port, else
/// the only port of the service, else the port the request arrived on (`listen_port`).
/// Unknown hosts, ports and subsets are kept but marked unavailable (Envoy answers 503).
pub(crate) fn resolve_dest(
    ctx: &mut Ctx,
    at: &ObjRef,
    path: &str,
    host: &str,
    subset: &str,
    port: Option<u32>,
    listen_port: Option<u32>,
) -> Dest {
    let svc = ctx.svc(host).cloned();
    let port = port.filter(|p| *p != 0).or_else(|| match &svc {
        Some(s) if s.ports.len() == 1 => Some(s.ports[0].number),
        _ => listen_port,
    });
    let port = port.unwrap_or(0);
    let mut unavailable = false;
    match &svc {
        None => {
            ctx.warn(
                at,
                path,
                format!("destination host {host} is not a Service or ServiceEntry in the input; requests routed there get 503"),
            );
            unavailable = true;
        }
        Some(s) => {
            if !s.ports.iter().any(|p| p.number == port) {
                ctx.warn(
                    at,
                    path,
                    format!("destination port {port} is not a port of {host}; requests routed there get 503"),
                );
                unavailable = true;
            }
            if !subset.is_empty() && !ctx.has_subset(host, subset) {
                ctx.warn(
                    at,
                    path,
                    format!("subset {subset:?} of {host} is not defined by any DestinationRule; requests routed there get 503"),
                );
                unavailable = true;
            }
        }
    }
    Dest {
        cluster: ctx.cluster_name(port, subset, host),
        host: host.to_string(),
        port,
        subset: subset.to_string(),
        unavailable,
    }
}

/// Whether a destination without an explicit port depends on the port the request used.
pub(crate) fn port_ambiguous(ctx: &Ctx, host: &str, port: Option<u32>) -> bool {
    if port.is_some_and(|p| p != 0) {
        return false;
    }
    !matches!(ctx.svc(host), Some(s) if s.ports.len() == 1)
}
