//! The connection view: who the peer is and where the request is going, read from what the host
//! reports about the connection (not from the headers). Identity and source address are
//! security-relevant (`principals`, `ipBlocks`, `remoteIpBlocks`), so both builds read them here,
//! through the few host calls of [`ConnectionHost`], instead of each with its own copy.

use std::net::IpAddr;

use layover_contract::filter_state;
use layover_core::ConnectionNeeds;

use crate::InternalError;

/// The connection properties a filter reads from its host, each one host call. Implemented by
/// each build over its ABI (and by `recording::RecordingHost` in tests). `None` means the host
/// has no such value (or could not read it); what is absent and what is required is
/// [`connection`]'s business, never the implementor's.
///
/// Every call may copy out of the host (proxy-wasm copies each property into VM memory), so
/// [`connection`] calls each method at most once per request and only when it needs the value.
pub trait ConnectionHost {
    /// A string filter-state object (factory `envoy.string`) under `key`, one of
    /// [`layover_contract::filter_state`]'s keys.
    fn filter_state(&self, key: &str) -> Option<String>;
    /// The peer certificate's first URI SAN (`connection.uri_san_peer_certificate`).
    fn peer_uri_san(&self) -> Option<String>;
    /// The directly connected peer's `ip:port`, which a client cannot forge. Hosts without a
    /// native call read it from filter state ([`filter_state::DIRECT_REMOTE_ADDRESS`], written by
    /// the bootstrap).
    fn direct_remote_address(&self) -> Option<String>;
    /// The stream's remote address (`source.address`): derived from `x-forwarded-for` when the
    /// connection manager does not use the remote address (`use_remote_address: false`, as on
    /// Istio waypoints).
    fn source_address(&self) -> Option<String>;
    /// The TLS SNI (`connection.requested_server_name`).
    fn sni(&self) -> Option<String>;
}

/// What the connection tells us: peer identity, addresses, destination and SNI. Unreadable HBONE
/// state is an [`InternalError`] (the request fails closed).
///
/// Inside an HBONE tunnel (internal listener `main_internal`) the TLS peer is gone: the HBONE
/// listener left the identity and destination in filter state, and the HBONE keys are read only
/// when a CONNECT authority is there. Outside a tunnel the principal is the peer certificate's
/// SPIFFE URI SAN, and `source_ip` (`ipBlocks`) is the direct peer, never `source.address`: with
/// `use_remote_address: false` (Istio waypoints) the latter follows `x-forwarded-for`, and would
/// let a client pick its own source address with one header. `remote_ip` (`remoteIpBlocks`) is
/// that XFF-derived `source.address`, as Envoy's RBAC `remote_ip` sees it.
///
/// `needs` ([`layover_core::CompiledPolicy::needs`]) says which attributes the policy can read;
/// the others are not fetched (each is a host call, and for proxy-wasm a copy into VM memory)
/// and stay unset, which no predicate then looks at. In particular an HBONE peer identity is
/// only validated when a policy reads it: a value nothing reads cannot steer a decision.
pub fn connection<H: ConnectionHost + ?Sized>(
    host: &H,
    needs: ConnectionNeeds,
) -> Result<Connection, InternalError> {
    // Every read is a host call (a copy into VM memory for proxy-wasm): each at most once, and
    // only when the policy reads its value.
    let sni = if needs.sni {
        host.sni().filter(|s| !s.is_empty())
    } else {
        None
    };
    let authority = host.filter_state(filter_state::CONNECT_AUTHORITY);
    if present(authority.as_deref()).is_some() {
        let read = |wanted: bool, key: &str| {
            if wanted {
                host.filter_state(key)
            } else {
                None
            }
        };
        let principal = read(needs.principal, filter_state::PEER_PRINCIPAL);
        let forwarded = read(needs.addresses(), filter_state::FORWARDED_FOR);
        let peer = read(needs.addresses(), filter_state::HBONE_PEER_ADDRESS);
        let state = HboneState {
            peer_principal: principal.as_deref(),
            connect_authority: authority.as_deref(),
            forwarded: forwarded.as_deref(),
            peer_address: peer.as_deref(),
        };
        if let Some(conn) = hbone_connection(&state, sni.clone())? {
            return Ok(conn);
        }
    }
    let principal = if needs.principal {
        host.peer_uri_san()
            .as_deref()
            .and_then(principal_from_uri_san)
            .map(str::to_string)
    } else {
        None
    };
    let (source_ip, remote_ip) = if needs.addresses() {
        let direct = host.direct_remote_address();
        // Without `remote.ip` checks only the direct peer matters; the stream's remote address
        // stands in for it only when the host does not know (or garbled) the direct one.
        let known = direct.as_deref().and_then(parse_socket_address).is_some();
        let remote = if needs.remote_ip || !known {
            host.source_address()
        } else {
            None
        };
        peer_addresses(direct.as_deref(), remote.as_deref())
    } else {
        (None, None)
    };
    Ok(Connection {
        principal,
        source_ip,
        remote_ip,
        destination_service: None,
        destination_ip: None,
        // Outside a tunnel the adapter takes the port from the Host header.
        destination_port: 0,
        sni,
    })
}

/// What the adapter knows about the connection (not in the headers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// Peer SPIFFE id without `spiffe://`.
    pub principal: Option<String>,
    /// Direct peer address.
    pub source_ip: Option<IpAddr>,
    /// Original client address, when a trusted hop told us.
    pub remote_ip: Option<IpAddr>,
    /// The service the client dialled (from the HBONE CONNECT authority), if known.
    pub destination_service: Option<String>,
    /// Destination address (service VIP).
    pub destination_ip: Option<IpAddr>,
    /// Destination port; 0 when the connection does not say (outside an HBONE tunnel), and the
    /// adapter then takes the port of the request's authority.
    pub destination_port: u16,
    /// TLS SNI.
    pub sni: Option<String>,
}

/// The connection's `(source_ip, remote_ip)` from what the host reports: `direct` is the
/// directly connected peer when the host knows it ([`filter_state::DIRECT_REMOTE_ADDRESS`]), `remote` the
/// stream's remote address (Envoy's `source.address`, derived from `x-forwarded-for` unless
/// `use_remote_address` is set). Without a direct address the remote one is all there is.
pub(crate) fn peer_addresses(
    direct: Option<&str>,
    remote: Option<&str>,
) -> (Option<IpAddr>, Option<IpAddr>) {
    let direct = direct.and_then(parse_socket_address).map(|(ip, _)| ip);
    let remote = remote.and_then(parse_socket_address).map(|(ip, _)| ip);
    match direct {
        Some(ip) => (Some(ip), remote.filter(|r| *r != ip)),
        None => (remote, None),
    }
}

/// What the HBONE listener handed over in filter state (the values under the HBONE keys of [`filter_state`]),
/// as the host returned them. Envoy's formatter writes `-` for a missing value; that counts as
/// absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HboneState<'a> {
    /// [`filter_state::PEER_PRINCIPAL`].
    pub peer_principal: Option<&'a str>,
    /// [`filter_state::CONNECT_AUTHORITY`].
    pub connect_authority: Option<&'a str>,
    /// [`filter_state::FORWARDED_FOR`].
    pub forwarded: Option<&'a str>,
    /// [`filter_state::HBONE_PEER_ADDRESS`].
    pub peer_address: Option<&'a str>,
}

fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty() && *v != "-")
}

/// The [`Connection`] of a request that arrived inside an HBONE tunnel, or `Ok(None)` when the
/// request did not come through `connect_terminate` (no CONNECT authority in filter state); the
/// caller then reads the connection as on the plain listener.
///
/// - `principal`: the HBONE peer's SPIFFE id without `spiffe://`;
/// - destination: a CONNECT authority `ip:port` (service VIP or pod) gives `destination_ip` and
///   `destination_port`; `host:port` gives `destination_service` and `destination_port`;
/// - `remote_ip` and `source_ip`: the client named by `forwarded: for=…` (ztunnel, a verified
///   mesh peer, reports the connection's real source), else the HBONE peer's own address
///   (then `remote_ip` is unset).
///
/// Fails closed: state that is present but unreadable (an authority that is neither `ip:port`
/// nor `host:port`, a peer identity that is not a SPIFFE URI) is an [`InternalError`]. Reading
/// it as absent would pick the service by the `Host` header, or treat an authenticated peer as
/// a plaintext one, instead of what the tunnel said.
fn hbone_connection(
    state: &HboneState<'_>,
    sni: Option<String>,
) -> Result<Option<Connection>, InternalError> {
    let Some(authority) = present(state.connect_authority) else {
        return Ok(None);
    };
    let principal = match present(state.peer_principal) {
        None => None,
        Some(san) => Some(
            principal_from_uri_san(san)
                .ok_or_else(|| {
                    InternalError(format!(
                        "HBONE peer identity {san:?} ({}) is not a SPIFFE URI",
                        filter_state::PEER_PRINCIPAL
                    ))
                })?
                .to_string(),
        ),
    };
    let bad_authority = || {
        InternalError(format!(
            "HBONE CONNECT authority {authority:?} ({}) is neither ip:port nor host:port",
            filter_state::CONNECT_AUTHORITY
        ))
    };
    let (destination_service, destination_ip, destination_port) =
        match parse_socket_address(authority) {
            Some((ip, port)) => (None, Some(ip), port),
            None => match authority.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && !host.contains([':', '[', ']']) => {
                    let port = port.parse::<u16>().map_err(|_| bad_authority())?;
                    (Some(host.to_ascii_lowercase()), None, port)
                }
                _ => return Err(bad_authority()),
            },
        };
    let client = present(state.forwarded).and_then(forwarded_for);
    let peer = present(state.peer_address)
        .and_then(parse_socket_address)
        .map(|(ip, _)| ip);
    Ok(Some(Connection {
        principal,
        source_ip: client.or(peer),
        remote_ip: client,
        destination_service,
        destination_ip,
        destination_port,
        sni,
    }))
}

/// The client address of the first element of a `forwarded` header (RFC 7239): its `for=`
/// parameter, quoted or not, `ip`, `ip:port`, `[v6]` or `[v6]:port`. Obfuscated identifiers
/// (`unknown`, `_hidden`) give `None`.
fn forwarded_for(header: &str) -> Option<IpAddr> {
    let first = header.split(',').next()?;
    let value = first.split(';').find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })?;
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some((ip, _)) = parse_socket_address(value) {
        return Some(ip);
    }
    value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .and_then(|v| v.parse::<IpAddr>().ok())
}

/// Strips `spiffe://` from a URI SAN.
fn principal_from_uri_san(san: &str) -> Option<&str> {
    san.strip_prefix("spiffe://").filter(|p| !p.is_empty())
}

/// Parses an Envoy address property (`10.0.0.1:8080`, `[::1]:80`) into IP and port.
fn parse_socket_address(text: &str) -> Option<(IpAddr, u16)> {
    text.parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| (s.ip(), s.port()))
}

#[cfg(test)]
mod tests;
