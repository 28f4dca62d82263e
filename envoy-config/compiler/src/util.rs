//! Small parsers shared by the translators: durations, hosts, base64, CIDRs.

use std::net::IpAddr;

/// Parses a duration as Istio and Gateway API accept it: Go-style units
/// (`1h`, `2m`, `1.5s`, `100ms`, `250us`, `10ns`, combinations like `1m30s`) and the
/// protobuf JSON form (`"2.5s"`). Returns milliseconds (sub-millisecond parts round up so a
/// non-zero duration never becomes "no timeout").
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if t == "0" {
        return Ok(0);
    }
    let mut rest = t;
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("invalid duration {s:?}: expected a number"));
        }
        let num: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let mul = match unit {
            "h" => 3_600e9,
            "m" => 60e9,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            "" => {
                return Err(format!(
                    "invalid duration {s:?}: missing unit (e.g. \"2s\")"
                ))
            }
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        total_ns += num * mul;
    }
    Ok((total_ns / 1e6).ceil() as u64)
}

/// Resolves a short host to an FQDN the way istiod does (`ResolveShortnameToFQDN`): names
/// without a dot get `.<namespace>.svc.<domain>`; wildcards and dotted names stay.
pub fn fqdn(host: &str, namespace: &str) -> String {
    if host.starts_with('*') || host.contains('.') {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.cluster.local")
    }
}

/// Istio `host.Name.Matches`: `*` matches everything, `*.x` matches names ending in `.x`.
pub fn host_matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(sfx) = pattern.strip_prefix('*') {
        return name.ends_with(sfx) && name.len() > sfx.len();
    }
    pattern.eq_ignore_ascii_case(name)
}

/// Decodes standard base64 (with or without padding).
pub fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => return Err(format!("invalid base64 character {:?}", c as char)),
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Validates an address or CIDR as Istio's `ValidateIPAddress`/`ValidateIPSubnet` do.
pub fn validate_cidr(s: &str) -> Result<(), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("invalid IP address or CIDR {s:?}"))?;
    if let Some(l) = len {
        let bits: u8 = l
            .parse()
            .map_err(|_| format!("invalid CIDR prefix length in {s:?}"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(format!("invalid CIDR {s:?}: prefix length {bits} > {max}"));
        }
    }
    Ok(())
}

/// Validates a regex (Istio uses RE2; the `regex` crate accepts the same syntax minus
/// a few RE2 extensions, so what passes here Envoy accepts too).
/// An HTTP header name as Istio validates it (istio/istio pkg/config/validation
/// `ValidateHTTPHeaderName`: not empty, RFC 7230 token characters only; the Gateway API CRD
/// schema has the same pattern for `HTTPHeaderMatch.name`).
pub fn validate_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.bytes().all(token) {
        return Err(format!(
            "invalid header name {name:?} (RFC 7230 token characters only)"
        ));
    }
    Ok(())
}

pub fn validate_regex(re: &str) -> Result<(), String> {
    regex::Regex::new(re)
        .map(|_| ())
        .map_err(|e| format!("invalid regex {re:?}: {}", first_line(&e.to_string())))
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

/// Splits `weights` (all > 0 or all distributed) into integers summing to 100, keeping the
/// ratios as closely as integers allow (largest remainder; ties go to the earlier entry).
pub fn normalize_weights(weights: &[u64]) -> Vec<u32> {
    let total: u64 = weights.iter().sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let mut out: Vec<u32> = weights.iter().map(|w| (w * 100 / total) as u32).collect();
    let assigned: u32 = out.iter().sum();
    let mut rema: Vec<(usize, u64)> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| (i, (w * 100) % total))
        .collect();
    rema.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (i, _) in rema.into_iter().take((100 - assigned) as usize) {
        out[i] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{base64_decode, normalize_weights, parse_duration_ms, validate_cidr};

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("2s"), Ok(2000));
        assert_eq!(parse_duration_ms("0.5s"), Ok(500));
        assert_eq!(parse_duration_ms("100ms"), Ok(100));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("10us"), Ok(1));
        assert!(parse_duration_ms("10").is_err());
        assert!(parse_duration_ms("abc").is_err());
    }

    #[test]
    fn weights() {
        assert_eq!(normalize_weights(&[1, 1, 1]), vec![34, 33, 33]);
        assert_eq!(normalize_weights(&[90, 10]), vec![90, 10]);
        assert_eq!(normalize_weights(&[1, 3]), vec![25, 75]);
        assert_eq!(normalize_weights(&[40, 30, 30]), vec![40, 30, 30]);
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8="), Ok(b"hello".to_vec()));
        assert!(base64_decode("***").is_err());
    }

    #[test]
    fn cidrs() {
        assert!(validate_cidr("10.0.0.0/8").is_ok());
        assert!(validate_cidr("1.2.3.4").is_ok());
        assert!(validate_cidr("::1/128").is_ok());
        assert!(validate_cidr("10.0.0.0/33").is_err());
        assert!(validate_cidr("10.0.0/8").is_err());
    }
}
