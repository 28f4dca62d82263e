//! The per-request input of the engine: a borrowed view over what the host already holds.

use std::net::IpAddr;

/// One HTTP request as the waypoint sees it after Envoy's own processing (path normalization,
/// header sanitizing). Everything is borrowed: building a view costs no allocation beyond the
/// header slice the adapter already has.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// `:method`, e.g. "GET".
    pub method: &'a str,
    /// `:scheme`, "http" or "https".
    pub scheme: &'a str,
    /// `:authority` (Host header), possibly with a port.
    pub authority: &'a str,
    /// `:path` as Envoy passes it to filters: already normalized per MeshConfig
    /// `pathNormalization`, still carrying the query string (and never a fragment).
    pub path: &'a str,
    /// Request headers with lower-case names, in arrival order; a name may repeat.
    /// Pseudo-headers may be present and are ignored by header matching.
    pub headers: &'a [(&'a str, &'a str)],
    /// Who is calling.
    pub source: SourceView<'a>,
    /// What was called.
    pub destination: DestinationView<'a>,
    /// TLS SNI of the downstream connection, if any (`connection.sni`).
    pub sni: Option<&'a str>,
    /// The payload of the request's JWT as Envoy's `jwt_authn` filter verified it; `None`
    /// without a verified token (AuthorizationPolicy `requestPrincipals`, `request.auth.*`).
    pub jwt: Option<&'a crate::jwt::JwtPayload>,
}

/// The calling peer, as the waypoint authenticated it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceView<'a> {
    /// SPIFFE id without the `spiffe://` scheme, e.g. `cluster.local/ns/default/sa/productpage`;
    /// `None` for a plaintext or unauthenticated peer.
    pub principal: Option<&'a str>,
    /// Namespace of the peer (from its SPIFFE id), if authenticated.
    pub namespace: Option<&'a str>,
    /// Address of the direct peer (`source.ip`, AuthorizationPolicy `ipBlocks`). `None` means
    /// unknown (Envoy always has a peer; the host could not say which), and a policy check on
    /// it then resolves against the caller: it holds in DENY / AUDIT policies and fails in
    /// ALLOW policies (`ipBlocks` and `notIpBlocks` alike).
    pub ip: Option<IpAddr>,
    /// Original client address (`remote.ip`, `remoteIpBlocks`); falls back to `ip` when unset,
    /// and is unknown (as `ip`) when both are.
    pub remote_ip: Option<IpAddr>,
}

/// The service the client dialled. A waypoint selects routes and policies by it, never by the
/// Host header.
#[derive(Debug, Clone, Copy, Default)]
pub struct DestinationView<'a> {
    /// FQDN of the service, e.g. `reviews.default.svc.cluster.local`, when known.
    pub service: Option<&'a str>,
    /// Destination (service VIP) address, used to find the service when `service` is unset.
    pub ip: Option<IpAddr>,
    /// Destination port.
    pub port: u16,
}

impl<'a> RequestView<'a> {
    /// Values of a header (lower-case `name`), in arrival order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// The path without query string (`?…`) or fragment (`#…`), as policies match it.
    pub fn path_without_query(&self) -> &'a str {
        // Byte scan: both delimiters are ASCII, so the cut is on a char boundary. (Hot path:
        // routing and authz both read it.)
        let end = self
            .path
            .bytes()
            .position(|b| b == b'?' || b == b'#')
            .unwrap_or(self.path.len());
        &self.path[..end]
    }

    /// The query string without the leading `?` (empty when there is none).
    pub fn query(&self) -> &'a str {
        match self.path.find('?') {
            Some(i) => {
                let q = &self.path[i + 1..];
                q.split('#').next().unwrap_or("")
            }
            None => "",
        }
    }

    /// The remote (original client) address: `remote_ip`, else the direct peer's.
    pub fn remote_ip(&self) -> Option<std::net::IpAddr> {
        self.source.remote_ip.or(self.source.ip)
    }
}

/// The namespace in a SPIFFE principal without `spiffe://` (`td/ns/<ns>/sa/<sa>` → `<ns>`).
pub fn namespace_of_principal(principal: &str) -> Option<&str> {
    let mut parts = principal.split('/');
    while let Some(part) = parts.next() {
        if part == "ns" {
            return parts.next();
        }
    }
    None
}

/// The connection attributes a compiled policy reads: each one the host must fetch (a
/// proxy-wasm property call copies it into VM memory), so an adapter reads only these. What a
/// waypoint always needs (the HBONE CONNECT authority that picks the service, the request's
/// headers) is not listed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionNeeds {
    /// The peer principal ([`SourceView::principal`], and the namespace and service account
    /// derived from it): `principals`, `namespaces`, `source.principal`, `source.namespace`,
    /// `source.serviceAccount`.
    pub principal: bool,
    /// The direct peer address ([`SourceView::ip`]): `ipBlocks`, `source.ip`.
    pub source_ip: bool,
    /// The original client address ([`SourceView::remote_ip`]): `remoteIpBlocks`,
    /// `remote.ip` (which falls back to the direct peer's, so it needs that one too).
    pub remote_ip: bool,
    /// The TLS SNI ([`RequestView::sni`]): `connection.sni`.
    pub sni: bool,
}

impl ConnectionNeeds {
    /// Every attribute: what a filter reads when it does not know the policy.
    pub const ALL: ConnectionNeeds = ConnectionNeeds {
        principal: true,
        source_ip: true,
        remote_ip: true,
        sni: true,
    };

    /// Whether either client address is needed.
    pub fn addresses(&self) -> bool {
        self.source_ip || self.remote_ip
    }

    /// Both sets of needs.
    pub fn union(self, other: ConnectionNeeds) -> ConnectionNeeds {
        ConnectionNeeds {
            principal: self.principal || other.principal,
            source_ip: self.source_ip || other.source_ip,
            remote_ip: self.remote_ip || other.remote_ip,
            sni: self.sni || other.sni,
        }
    }
}
