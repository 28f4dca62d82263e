//! The headers ztunnel adds to a CONNECT.

use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ring::rand::{SecureRandom, SystemRandom};

use crate::HboneError;

/// The workload and service a CONNECT comes from, as ztunnel describes it in `baggage`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baggage {
    /// `k8s.cluster.name`.
    pub cluster: Option<String>,
    /// `k8s.namespace.name`.
    pub namespace: Option<String>,
    /// The workload kind: `k8s.<kind>.name` (e.g. `deployment`, `pod`).
    pub workload_kind: Option<String>,
    /// The workload name, the value of `k8s.<kind>.name`.
    pub workload_name: Option<String>,
    /// `service.name`.
    pub service_name: Option<String>,
    /// `service.version`.
    pub service_version: Option<String>,
}

impl Baggage {
    /// The W3C baggage header value (members in ztunnel's order; empty when nothing is set).
    pub fn header_value(&self) -> String {
        let mut members = Vec::new();
        let mut push = |k: String, v: &Option<String>| {
            if let Some(v) = v {
                members.push(format!("{k}={v}"));
            }
        };
        push("k8s.cluster.name".into(), &self.cluster);
        push("k8s.namespace.name".into(), &self.namespace);
        if let Some(kind) = &self.workload_kind {
            push(format!("k8s.{kind}.name"), &self.workload_name);
        }
        push("service.name".into(), &self.service_name);
        push("service.version".into(), &self.service_version);
        members.join(",")
    }
}

/// The request headers of one CONNECT besides `:authority`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectHeaders {
    /// The original client: `forwarded: for="<ip:port>"`.
    pub forwarded_for: Option<SocketAddr>,
    /// The service host, added to `forwarded` as `host=<service>`.
    pub forwarded_host: Option<String>,
    /// The source workload (`baggage`).
    pub baggage: Option<Baggage>,
    /// `traceparent`; see [`new_traceparent`].
    pub traceparent: Option<String>,
    /// Any other headers, as given.
    pub extra: Vec<(String, String)>,
}

impl ConnectHeaders {
    /// The headers as an HTTP header map.
    pub fn to_header_map(&self) -> Result<HeaderMap, HboneError> {
        let mut map = HeaderMap::new();
        let mut add = |name: &str, value: &str| -> Result<(), HboneError> {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| HboneError::Request(format!("header name {name:?}: {e}")))?;
            let v = HeaderValue::from_str(value)
                .map_err(|e| HboneError::Request(format!("header {name} value {value:?}: {e}")))?;
            map.append(n, v);
            Ok(())
        };
        let mut forwarded = Vec::new();
        if let Some(addr) = self.forwarded_for {
            // RFC 7239: an IPv6 address and a port are quoted; ztunnel always quotes.
            forwarded.push(format!("for=\"{addr}\""));
        }
        if let Some(host) = &self.forwarded_host {
            forwarded.push(format!("host={host}"));
        }
        if !forwarded.is_empty() {
            add("forwarded", &forwarded.join(";"))?;
        }
        if let Some(b) = &self.baggage {
            let value = b.header_value();
            if !value.is_empty() {
                add("baggage", &value)?;
            }
        }
        if let Some(tp) = &self.traceparent {
            add("traceparent", tp)?;
        }
        for (k, v) in &self.extra {
            add(k, v)?;
        }
        Ok(map)
    }
}

/// A fresh W3C `traceparent` (version 00, random trace and span ids, sampled).
pub fn new_traceparent() -> Result<String, HboneError> {
    let mut bytes = [0u8; 24];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| HboneError::Setup("no randomness for traceparent".into()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("00-{}-{}-01", &hex[..32], &hex[32..]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn headers_as_ztunnel_writes_them() {
        let h = ConnectHeaders {
            forwarded_for: Some("[fd00::7]:41234".parse().unwrap()),
            forwarded_host: None,
            baggage: Some(Baggage {
                namespace: Some("bookinfo".into()),
                workload_kind: Some("pod".into()),
                workload_name: Some("productpage-0".into()),
                ..Baggage::default()
            }),
            traceparent: None,
            extra: Vec::new(),
        }
        .to_header_map()
        .unwrap();
        assert_eq!(h["forwarded"], "for=\"[fd00::7]:41234\"");
        assert_eq!(
            h["baggage"],
            "k8s.namespace.name=bookinfo,k8s.pod.name=productpage-0"
        );
        assert!(!h.contains_key("traceparent"));
        assert!(ConnectHeaders::default()
            .to_header_map()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn traceparents_are_fresh_and_well_formed() {
        let a = new_traceparent().unwrap();
        let b = new_traceparent().unwrap();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01")
        );
    }
}
