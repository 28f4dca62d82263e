//! `HTTPRedirect` → a redirect action (istio `validateHTTPRedirect`; redirectCode default 301).

use crate::diag::ObjRef;
use crate::model::VsRedirect;
use crate::resolve::Ctx;
use layover_proto::v1 as pb;

/// Validates and translates `redirect` (at `{path}.redirect`) for a request that arrived on
/// `lp`: `derivePort: FROM_REQUEST_PORT` is that port, as istiod writes the listener port it
/// builds the route for (`ApplyRedirect`, route.go:803-808 @ 1.30.3; :80 with http and :443
/// with https are then dropped, route.go:812-827, which the engine applies to every port).
pub(super) fn redirect(
    ctx: &mut Ctx,
    at: &ObjRef,
    path: &str,
    rd: &VsRedirect,
    lp: Option<u32>,
) -> pb::Redirect {
    let status = rd.redirect_code.unwrap_or(301);
    if !(300..=399).contains(&status) {
        ctx.err(
            at,
            format!("{path}.redirect.redirectCode"),
            format!("redirect code {status} is not a 3xx status"),
        );
    }
    // istio validateHTTPRedirect.
    if rd.uri.is_none()
        && rd.authority.is_none()
        && rd.port.is_none()
        && rd.scheme.is_none()
        && rd.derive_port.is_none()
    {
        ctx.err(
            at,
            format!("{path}.redirect"),
            "redirect must specify URI, authority, scheme, or port",
        );
    }
    if let Some(sc) = rd
        .scheme
        .as_deref()
        .filter(|s| *s != "http" && *s != "https")
    {
        ctx.err(
            at,
            format!("{path}.redirect.scheme"),
            format!("invalid redirect scheme {sc:?}, must be \"http\" or \"https\""),
        );
    }
    let from_request = rd.derive_port.as_deref() == Some("FROM_REQUEST_PORT");
    let port_from_scheme = match rd.derive_port.as_deref() {
        None | Some("FROM_REQUEST_PORT") => false,
        Some("FROM_PROTOCOL_DEFAULT") => true,
        Some(other) => {
            ctx.err(
                at,
                format!("{path}.redirect.derivePort"),
                format!("unknown derivePort {other:?} (FROM_PROTOCOL_DEFAULT, FROM_REQUEST_PORT)"),
            );
            false
        }
    };
    if rd.port.is_some() && port_from_scheme {
        ctx.err(
            at,
            format!("{path}.redirect"),
            "port and derivePort are mutually exclusive",
        );
    }
    pb::Redirect {
        uri: rd.uri.clone().unwrap_or_default(),
        replace_prefix: false,
        authority: rd.authority.clone().unwrap_or_default(),
        port: match (rd.port, from_request) {
            (Some(p), _) => p,
            (None, true) => lp.unwrap_or(0),
            (None, false) => 0,
        },
        port_from_scheme,
        scheme: rd.scheme.clone().unwrap_or_default(),
        status,
    }
}
