//! The connection view against the recording fake host, and the parsing helpers behind it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use layover_contract::filter_state;

use super::*;
use crate::namespace_of_principal;
use crate::recording::RecordingHost;

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse::<IpAddr>().unwrap())
}

fn host_with_state(state: &[(&str, &str)]) -> RecordingHost {
    RecordingHost {
        filter_state: state
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..RecordingHost::default()
    }
}

fn reads(host: &RecordingHost) -> Vec<String> {
    host.connection_reads.borrow().clone()
}

#[test]
fn connection_outside_a_tunnel_reads_the_tls_peer_and_the_direct_address() {
    let mut host = host_with_state(&[]);
    host.peer_uri_san = Some("spiffe://cluster.local/ns/default/sa/productpage".into());
    // A forged x-forwarded-for that Envoy turned into the stream's remote address (port 0).
    host.direct_remote_address = Some("127.0.0.1:40000".into());
    host.source_address = Some("10.1.2.3:0".into());
    host.sni = Some("reviews.default.svc.cluster.local".into());
    let conn = connection(&host, ConnectionNeeds::ALL).unwrap();
    assert_eq!(
        conn,
        Connection {
            principal: Some("cluster.local/ns/default/sa/productpage".into()),
            source_ip: ip("127.0.0.1"),
            remote_ip: ip("10.1.2.3"),
            destination_service: None,
            destination_ip: None,
            destination_port: 0,
            sni: Some("reviews.default.svc.cluster.local".into()),
        }
    );
    // Each property once; of the HBONE keys only the CONNECT authority (absent here).
    assert_eq!(
        reads(&host),
        [
            "sni",
            filter_state::CONNECT_AUTHORITY,
            "peer_uri_san",
            "direct_remote_address",
            "source_address"
        ]
    );

    // A URI SAN that is not SPIFFE is no principal; an empty SNI is none; without a direct
    // address the stream's remote address is the source.
    let mut host = host_with_state(&[]);
    host.peer_uri_san = Some("https://x".into());
    host.source_address = Some("[::1]:5000".into());
    host.sni = Some(String::new());
    let conn = connection(&host, ConnectionNeeds::ALL).unwrap();
    assert_eq!(conn.principal, None);
    assert_eq!(conn.sni, None);
    assert_eq!((conn.source_ip, conn.remote_ip), (ip("::1"), None));

    // An HBONE authority the formatter wrote as `-` is no tunnel: the HBONE keys behind it are
    // not read.
    let host = host_with_state(&[(filter_state::CONNECT_AUTHORITY, "-")]);
    assert_eq!(
        connection(&host, ConnectionNeeds::ALL).unwrap(),
        Connection::default()
    );
    assert!(!reads(&host)
        .iter()
        .any(|r| r == filter_state::PEER_PRINCIPAL));
}

#[test]
fn connection_inside_a_tunnel_reads_the_hbone_filter_state_only() {
    let mut host = host_with_state(&[
        (
            filter_state::PEER_PRINCIPAL,
            "spiffe://cluster.local/ns/default/sa/productpage",
        ),
        (filter_state::CONNECT_AUTHORITY, "10.96.0.10:9080"),
        (filter_state::FORWARDED_FOR, "for=\"10.244.1.7:41234\""),
        (filter_state::HBONE_PEER_ADDRESS, "10.244.1.2:52000"),
    ]);
    // What the TLS peer and the stream say is the tunnel's, not the client's: never read.
    host.peer_uri_san = Some("spiffe://cluster.local/ns/istio-system/sa/ztunnel".into());
    host.direct_remote_address = Some("127.0.0.1:1".into());
    host.source_address = Some("127.0.0.1:1".into());
    host.sni = Some("sni".into());
    let conn = connection(&host, ConnectionNeeds::ALL).unwrap();
    assert_eq!(
        conn,
        Connection {
            principal: Some("cluster.local/ns/default/sa/productpage".into()),
            source_ip: ip("10.244.1.7"),
            remote_ip: ip("10.244.1.7"),
            destination_service: None,
            destination_ip: ip("10.96.0.10"),
            destination_port: 9080,
            sni: Some("sni".into()),
        }
    );
    assert_eq!(
        reads(&host),
        [
            "sni",
            filter_state::CONNECT_AUTHORITY,
            filter_state::PEER_PRINCIPAL,
            filter_state::FORWARDED_FOR,
            filter_state::HBONE_PEER_ADDRESS,
        ]
    );
}

// Fail closed (README "Security"): HBONE state that is present but unreadable is an internal
// error, never "absent" (which would pick the service by Host, or make an authenticated peer a
// plaintext one).
#[test]
fn connection_with_unreadable_hbone_state_fails_closed() {
    for (principal, authority) in [
        ("spiffe://cluster.local/ns/a/sa/b", "not an authority"),
        ("spiffe://cluster.local/ns/a/sa/b", "nonsense"),
        ("spiffe://cluster.local/ns/a/sa/b", "reviews:http"),
        ("spiffe://cluster.local/ns/a/sa/b", ":9080"),
        ("spiffe://cluster.local/ns/a/sa/b", "[::1]"),
        ("cluster.local/ns/a/sa/b", "10.0.0.1:80"),
        ("spiffe://", "10.0.0.1:80"),
    ] {
        let mut host = host_with_state(&[
            (filter_state::PEER_PRINCIPAL, principal),
            (filter_state::CONNECT_AUTHORITY, authority),
        ]);
        host.peer_uri_san = Some("spiffe://cluster.local/ns/a/sa/tls-peer".into());
        host.direct_remote_address = Some("10.0.0.9:1".into());
        assert!(
            connection(&host, ConnectionNeeds::ALL).is_err(),
            "{principal:?} {authority:?} was accepted"
        );
    }
}

#[test]
fn principal_and_address_helpers() {
    assert_eq!(
        principal_from_uri_san("spiffe://cluster.local/ns/a/sa/b"),
        Some("cluster.local/ns/a/sa/b")
    );
    assert_eq!(principal_from_uri_san("https://x"), None);
    assert_eq!(namespace_of_principal("cluster.local/ns/a/sa/b"), Some("a"));
    assert_eq!(
        parse_socket_address("[::1]:80"),
        Some(("::1".parse().unwrap(), 80))
    );
    assert_eq!(
        parse_socket_address("10.0.0.1:8080"),
        Some(("10.0.0.1".parse().unwrap(), 8080))
    );
}

#[test]
fn peer_addresses_prefer_the_direct_peer() {
    // The bootstrap handed over the direct peer: a forged x-forwarded-for (which Envoy turned
    // into the stream's remote address, port 0) only becomes the remote (original client) IP.
    assert_eq!(
        peer_addresses(Some("127.0.0.1:40000"), Some("10.1.2.3:0")),
        (ip("127.0.0.1"), ip("10.1.2.3"))
    );
    // No x-forwarded-for: both are the peer, and remote_ip stays unset (it defaults to it).
    assert_eq!(
        peer_addresses(Some("127.0.0.1:40000"), Some("127.0.0.1:40000")),
        (ip("127.0.0.1"), None)
    );
    // No direct address from the host: the stream's remote address is the best there is.
    assert_eq!(peer_addresses(None, Some("[::1]:5000")), (ip("::1"), None));
    assert_eq!(peer_addresses(Some("garbage"), None), (None, None));
}

#[test]
fn hbone_connection_reads_the_tunnel() {
    // A service VIP as CONNECT authority, ztunnel's forwarded header, a verified peer.
    let state = HboneState {
        peer_principal: Some("spiffe://cluster.local/ns/default/sa/productpage"),
        connect_authority: Some("10.96.0.10:9080"),
        forwarded: Some("for=\"10.244.1.7:41234\";host=reviews.default.svc.cluster.local"),
        peer_address: Some("10.244.1.2:52000"),
    };
    let conn = hbone_connection(&state, None).unwrap().unwrap();
    assert_eq!(
        conn.principal.as_deref(),
        Some("cluster.local/ns/default/sa/productpage")
    );
    assert_eq!(conn.destination_ip, ip("10.96.0.10"));
    assert_eq!(conn.destination_port, 9080);
    assert_eq!(conn.destination_service, None);
    assert_eq!(conn.remote_ip, ip("10.244.1.7"));
    assert_eq!(conn.source_ip, ip("10.244.1.7"));

    // A hostname authority; no forwarded header: the peer is the source.
    let state = HboneState {
        peer_principal: Some("-"),
        connect_authority: Some("Reviews.default.svc.cluster.local:9080"),
        forwarded: Some("-"),
        peer_address: Some("[fd00::2]:52000"),
    };
    let conn = hbone_connection(&state, Some("sni".into()))
        .unwrap()
        .unwrap();
    assert_eq!(conn.principal, None);
    assert_eq!(
        conn.destination_service.as_deref(),
        Some("reviews.default.svc.cluster.local")
    );
    assert_eq!(conn.destination_ip, None);
    assert_eq!(conn.destination_port, 9080);
    assert_eq!(conn.source_ip, ip("fd00::2"));
    assert_eq!(conn.remote_ip, None);
    assert_eq!(conn.sni.as_deref(), Some("sni"));

    // Not in a tunnel.
    assert_eq!(hbone_connection(&HboneState::default(), None), Ok(None));
    let no_authority = HboneState {
        peer_principal: Some("spiffe://cluster.local/ns/a/sa/b"),
        connect_authority: Some("-"),
        ..Default::default()
    };
    assert_eq!(hbone_connection(&no_authority, None), Ok(None));
    // Fail closed: state that is there but unreadable is an internal error, never "absent"
    // (which would pick the service by Host, or make an authenticated peer a plaintext one).
    for (principal, authority) in [
        ("spiffe://cluster.local/ns/a/sa/b", "nonsense"),
        ("spiffe://cluster.local/ns/a/sa/b", "reviews:http"),
        ("spiffe://cluster.local/ns/a/sa/b", ":9080"),
        ("spiffe://cluster.local/ns/a/sa/b", "[::1]"),
        ("cluster.local/ns/a/sa/b", "10.0.0.1:80"),
        ("spiffe://", "10.0.0.1:80"),
    ] {
        let odd = HboneState {
            peer_principal: Some(principal),
            connect_authority: Some(authority),
            ..Default::default()
        };
        assert!(
            hbone_connection(&odd, None).is_err(),
            "{principal:?} {authority:?} was accepted"
        );
    }
}

#[test]
fn forwarded_for_forms() {
    assert_eq!(forwarded_for("for=\"10.0.0.1:80\""), ip("10.0.0.1"));
    assert_eq!(forwarded_for("for=10.0.0.1"), ip("10.0.0.1"));
    assert_eq!(
        forwarded_for("host=x; For=\"[2001:db8::1]:4711\""),
        ip("2001:db8::1")
    );
    assert_eq!(forwarded_for("for=\"[2001:db8::1]\""), ip("2001:db8::1"));
    assert_eq!(forwarded_for("for=10.0.0.1, for=10.0.0.2"), ip("10.0.0.1"));
    assert_eq!(forwarded_for("for=unknown"), None);
    assert_eq!(forwarded_for("host=x"), None);
    assert_eq!(forwarded_for(""), None);
}

const NONE: ConnectionNeeds = ConnectionNeeds {
    principal: false,
    source_ip: false,
    remote_ip: false,
    sni: false,
};

fn plain_host() -> RecordingHost {
    let mut host = host_with_state(&[]);
    host.peer_uri_san = Some("spiffe://cluster.local/ns/default/sa/productpage".into());
    host.direct_remote_address = Some("127.0.0.1:40000".into());
    host.source_address = Some("10.1.2.3:0".into());
    host.sni = Some("reviews.default.svc.cluster.local".into());
    host
}

fn tunnel_host() -> RecordingHost {
    host_with_state(&[
        (
            filter_state::PEER_PRINCIPAL,
            "spiffe://cluster.local/ns/default/sa/productpage",
        ),
        (filter_state::CONNECT_AUTHORITY, "10.96.0.10:9080"),
        (filter_state::FORWARDED_FOR, "for=\"10.244.1.7:41234\""),
        (filter_state::HBONE_PEER_ADDRESS, "10.244.1.2:52000"),
    ])
}

// Issue 15: a property the policy never reads is never fetched (each one is a host call and a
// copy into the VM); only the CONNECT authority, which picks the service, is always read.
macro_rules! reads_case {
    ($name:ident, $host:expr, $needs:expr, $expected:expr) => {
        #[test]
        fn $name() {
            let host = $host;
            connection(&host, $needs).unwrap();
            let expected: &[&str] = &$expected;
            assert_eq!(reads(&host), expected);
        }
    };
}

reads_case!(
    plain_nothing_needed,
    plain_host(),
    NONE,
    [filter_state::CONNECT_AUTHORITY]
);
reads_case!(
    plain_principal_only,
    plain_host(),
    ConnectionNeeds {
        principal: true,
        ..NONE
    },
    [filter_state::CONNECT_AUTHORITY, "peer_uri_san"]
);
reads_case!(
    plain_source_ip_only,
    plain_host(),
    ConnectionNeeds {
        source_ip: true,
        ..NONE
    },
    [filter_state::CONNECT_AUTHORITY, "direct_remote_address"]
);
reads_case!(
    plain_source_ip_without_direct_address,
    RecordingHost {
        direct_remote_address: None,
        ..plain_host()
    },
    ConnectionNeeds {
        source_ip: true,
        ..NONE
    },
    [
        filter_state::CONNECT_AUTHORITY,
        "direct_remote_address",
        "source_address"
    ]
);
reads_case!(
    plain_remote_ip,
    plain_host(),
    ConnectionNeeds {
        remote_ip: true,
        source_ip: true,
        ..NONE
    },
    [
        filter_state::CONNECT_AUTHORITY,
        "direct_remote_address",
        "source_address"
    ]
);
reads_case!(
    plain_sni_only,
    plain_host(),
    ConnectionNeeds { sni: true, ..NONE },
    ["sni", filter_state::CONNECT_AUTHORITY]
);
reads_case!(
    tunnel_nothing_needed,
    tunnel_host(),
    NONE,
    [filter_state::CONNECT_AUTHORITY]
);
reads_case!(
    tunnel_principal_only,
    tunnel_host(),
    ConnectionNeeds {
        principal: true,
        ..NONE
    },
    [
        filter_state::CONNECT_AUTHORITY,
        filter_state::PEER_PRINCIPAL
    ]
);
reads_case!(
    tunnel_addresses_only,
    tunnel_host(),
    ConnectionNeeds {
        source_ip: true,
        ..NONE
    },
    [
        filter_state::CONNECT_AUTHORITY,
        filter_state::FORWARDED_FOR,
        filter_state::HBONE_PEER_ADDRESS
    ]
);

#[test]
fn connection_reads_only_what_is_needed_and_keeps_the_values() {
    // What is read is what ALL reads; what is not is unset.
    let conn = connection(
        &plain_host(),
        ConnectionNeeds {
            principal: true,
            ..NONE
        },
    )
    .unwrap();
    assert_eq!(
        conn,
        Connection {
            principal: Some("cluster.local/ns/default/sa/productpage".into()),
            ..Connection::default()
        }
    );
    let conn = connection(
        &plain_host(),
        ConnectionNeeds {
            source_ip: true,
            ..NONE
        },
    )
    .unwrap();
    assert_eq!((conn.source_ip, conn.remote_ip), (ip("127.0.0.1"), None));
    let conn = connection(&tunnel_host(), NONE).unwrap();
    assert_eq!(
        (
            conn.principal,
            conn.source_ip,
            conn.destination_ip,
            conn.destination_port
        ),
        (None, None, ip("10.96.0.10"), 9080)
    );
}
