//! The request JSON `layover eval` reads (documented in the README).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

/// One request as a user describes it to `layover eval`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestJson {
    /// Optional label, echoed as `name` in the decision (and used by the demo's table).
    #[serde(default)]
    pub name: Option<String>,
    /// HTTP method; default GET.
    #[serde(default = "default_method")]
    pub method: String,
    /// "http" (default) or "https".
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Host header / `:authority`; defaults to the destination service's name.
    #[serde(default)]
    pub authority: Option<String>,
    /// Raw path as the client sent it, with query (normalized by eval as Envoy would).
    #[serde(default = "default_path")]
    pub path: String,
    /// Header name → one value or a list of values.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValues>,
    #[serde(default)]
    pub source: SourceJson,
    #[serde(default)]
    pub destination: DestinationJson,
    /// TLS SNI of the downstream connection, for `connection.sni` conditions.
    #[serde(default)]
    pub sni: Option<String>,
    /// Request body. No waypoint route match or authorization rule reads a body (Envoy's
    /// route and RBAC matchers see headers only); its length is the `content-length` header
    /// when the request gives none, so header matches on it see what Envoy would.
    #[serde(default)]
    pub body: Option<String>,
    /// A compact JWT, verified offline against the RequestAuthentication rules' inline JWKS
    /// (else the token is taken from the rules' locations, e.g. `Authorization: Bearer`).
    #[serde(default)]
    pub jwt: Option<String>,
}

/// A header given as one string or as several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HeaderValues {
    One(String),
    Many(Vec<String>),
}

/// The calling peer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceJson {
    /// SPIFFE id without `spiffe://` (e.g. `cluster.local/ns/default/sa/productpage`), or null
    /// for a plaintext peer.
    #[serde(default)]
    pub principal: Option<String>,
    /// Namespace; derived from the principal when omitted.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Direct peer address.
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// Original client address (`remoteIpBlocks`); defaults to `ip`.
    #[serde(default)]
    pub remote_ip: Option<IpAddr>,
    /// The calling workload's labels. Waypoints never see them: a VirtualService match with
    /// `sourceLabels` is dropped on waypoints, so they cannot change the decision (the
    /// decision's `notes` say so).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The service the client dialled.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationJson {
    /// FQDN of the service. When omitted, the service is found by `ip`, then by the authority.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// Destination port; defaults to the authority's port, else 80.
    #[serde(default)]
    pub port: Option<u16>,
}

fn default_method() -> String {
    "GET".to_string()
}
fn default_scheme() -> String {
    "http".to_string()
}
fn default_path() -> String {
    "/".to_string()
}

impl RequestJson {
    /// Parses one request, with a message that says what is wrong and where.
    pub fn parse(text: &str) -> Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("invalid request JSON: {}", e.inner())
            } else {
                format!("invalid request JSON: {path}: {}", e.inner())
            }
        })
    }

    /// Headers flattened to (lower-case name, value) pairs in a stable order.
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(body) = &self.body {
            if !self
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-length"))
            {
                out.push(("content-length".to_string(), body.len().to_string()));
            }
        }
        for (name, values) in &self.headers {
            let name = name.to_ascii_lowercase();
            match values {
                HeaderValues::One(v) => out.push((name, v.clone())),
                HeaderValues::Many(vs) => {
                    out.extend(vs.iter().map(|v| (name.clone(), v.clone())));
                }
            }
        }
        out
    }

    /// The source namespace: explicit, else the `ns/<namespace>/` segment of the principal.
    pub fn source_namespace(&self) -> Option<String> {
        if let Some(ns) = &self.source.namespace {
            return Some(ns.clone());
        }
        layover_core::namespace_of_principal(self.source.principal.as_deref()?).map(str::to_string)
    }

    /// The destination port: explicit, else the authority's port, else the scheme default.
    pub fn destination_port(&self) -> u16 {
        if let Some(port) = self.destination.port {
            return port;
        }
        let from_authority = self
            .authority
            .as_deref()
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok());
        from_authority.unwrap_or(if self.scheme == "https" { 443 } else { 80 })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_minimal_request_with_defaults() {
        let r = RequestJson::parse(r#"{"path":"/x?y=1"}"#).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.scheme, "http");
        assert_eq!(r.destination_port(), 80);
    }

    #[test]
    fn header_lists_expand_in_order_and_names_lowercase() {
        let r = RequestJson::parse(r#"{"headers":{"X-A":["1","2"],"b":"3"}}"#).unwrap();
        assert_eq!(
            r.header_pairs(),
            vec![
                ("x-a".into(), "1".into()),
                ("x-a".into(), "2".into()),
                ("b".into(), "3".into())
            ]
        );
    }

    #[test]
    fn namespace_comes_from_the_spiffe_id() {
        let r = RequestJson::parse(
            r#"{"source":{"principal":"cluster.local/ns/bookinfo/sa/bookinfo-productpage"}}"#,
        )
        .unwrap();
        assert_eq!(r.source_namespace().as_deref(), Some("bookinfo"));
    }

    #[test]
    fn unknown_field_is_named() {
        let err = RequestJson::parse(r#"{"source":{"principle":"x"}}"#).unwrap_err();
        assert!(err.contains("source"), "{err}");
        assert!(err.contains("principle"), "{err}");
    }

    #[test]
    fn body_gives_content_length_unless_set() {
        let r = RequestJson::parse(r#"{"body":"abc"}"#).unwrap();
        assert_eq!(
            r.header_pairs(),
            vec![("content-length".into(), "3".into())]
        );
        let r = RequestJson::parse(r#"{"body":"abc","headers":{"Content-Length":"3"}}"#).unwrap();
        assert_eq!(r.header_pairs().len(), 1);
    }

    #[test]
    fn port_from_authority() {
        let r = RequestJson::parse(r#"{"authority":"reviews:9080"}"#).unwrap();
        assert_eq!(r.destination_port(), 9080);
    }
}
