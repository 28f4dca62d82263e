//! The verified JWT payload of a request, read from what Envoy's `jwt_authn` filter wrote
//! ([`JWT_PAYLOAD_HEADER`], or a rule's `outputPayloadToHeader`); never the raw token.
//!
//! The generated configuration removes a client's copy of every such header before
//! `jwt_authn` runs (`envoy-config/bootstrap`), so what is there was verified. Read only when
//! the policy has RequestAuthentication rules; any decoding error fails the request closed.

use layover_contract::JWT_PAYLOAD_HEADER;
use layover_core::jwt::{Claim, JwtPayload};
use layover_core::CompiledPolicy;

use crate::InternalError;

/// The payload `jwt_authn` verified for this request, if any. `Err` when a payload header is
/// present but is not base64url JSON (the host or configuration is broken: fail closed).
pub(crate) fn verified_payload(
    policy: &CompiledPolicy,
    headers: &[(String, String)],
) -> Result<Option<JwtPayload>, InternalError> {
    let jwt = policy.jwt();
    if !jwt.enabled {
        return Ok(None);
    }
    let names = std::iter::once(JWT_PAYLOAD_HEADER)
        .chain(jwt.output_payload_headers.iter().map(String::as_str));
    for name in names {
        if let Some((_, v)) = headers.iter().find(|(n, _)| n == name) {
            let root = decode(v)
                .map_err(|e| InternalError(format!("verified JWT payload in {name}: {e}")))?;
            return Ok(Some(JwtPayload::new(root, &jwt.space_delimited_claims)));
        }
    }
    Ok(None)
}

/// base64url (padding optional, as `pad_forward_payload_header` decides) → JSON object.
fn decode(v: &str) -> Result<Claim, String> {
    let bytes = base64url(v.trim()).ok_or("not base64url")?;
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
    if !json.is_object() {
        return Err("not a JSON object".into());
    }
    Ok(claim(&json))
}

fn claim(v: &serde_json::Value) -> Claim {
    use serde_json::Value as V;
    match v {
        V::String(s) => Claim::Str(s.clone()),
        V::Array(a) => Claim::List(a.iter().map(claim).collect()),
        V::Object(o) => Claim::Object(o.iter().map(|(k, v)| (k.clone(), claim(v))).collect()),
        V::Null | V::Bool(_) | V::Number(_) => Claim::Other,
    }
}

/// Decodes unpadded or padded base64url.
fn base64url(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone trailing sextet cannot be a byte.
    (s.len() % 4 != 1).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_unpadded_and_padded() {
        // {"a":"b"} → eyJhIjoiYiJ9
        assert_eq!(
            base64url("eyJhIjoiYiJ9").as_deref(),
            Some(&b"{\"a\":\"b\"}"[..])
        );
        assert_eq!(base64url("YQ").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64url("YQ==").as_deref(), Some(&b"a"[..]));
        assert!(base64url("Y").is_none());
        assert!(base64url("a+b/").is_none());
    }

    #[test]
    fn payload_must_be_an_object() {
        assert!(decode("eyJhIjoiYiJ9").is_ok());
        assert!(decode("WzFd").is_err()); // [1]
        assert!(decode("!!").is_err());
    }
}
