//! CIDR tables for `ipBlocks`, `remoteIpBlocks`, `source.ip`, `remote.ip` and `destination.ip`.
//!
//! istiod turns every value into an Envoy `CidrRange` (`util.AddrStrToCidrRange`: a bare address
//! becomes a /32 or /128, anything with a `/` goes through Go's `netip.ParsePrefix`). Envoy masks
//! the host bits and only compares addresses of the same family, so a v4 range never matches a
//! v6 (even v4-mapped) address. Parsing here follows the same acceptance rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One parsed range, already masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cidr {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

/// Parses `addr` or `addr/len` the way istiod accepts it. `None` when Envoy would never see a
/// valid `CidrRange` for it.
pub(crate) fn parse_cidr(s: &str) -> Option<Cidr> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(parse_prefix_len(l)?)),
        None => (s, None),
    };
    // Rust's parser, like Go's netip, rejects zones, leading zeros in IPv4 octets and spaces.
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let len = len.unwrap_or(32);
            if len > 32 {
                return None;
            }
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Some(Cidr::V4 {
                net: u32::from(a) & mask,
                mask,
            })
        }
        IpAddr::V6(a) => {
            let len = len.unwrap_or(128);
            if len > 128 {
                return None;
            }
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            Some(Cidr::V6 {
                net: u128::from(a) & mask,
                mask,
            })
        }
    }
}

/// Go's `netip.ParsePrefix` wants plain decimal digits without a sign or leading zeros.
fn parse_prefix_len(l: &str) -> Option<u32> {
    if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if l.len() > 1 && l.starts_with('0') {
        return None;
    }
    l.parse().ok()
}

/// A set of ranges, split by family so a lookup scans only what can match.
#[derive(Debug, Clone, Default)]
pub(crate) struct CidrSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl CidrSet {
    pub(crate) fn push(&mut self, c: Cidr) {
        match c {
            Cidr::V4 { net, mask } => {
                if !self.v4.contains(&(net, mask)) {
                    self.v4.push((net, mask));
                }
            }
            Cidr::V6 { net, mask } => {
                if !self.v6.contains(&(net, mask)) {
                    self.v6.push((net, mask));
                }
            }
        }
    }

    /// Whether `ip` falls in any range of the set (same family only, as Envoy compares).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.contains_v4(a),
            IpAddr::V6(a) => self.contains_v6(a),
        }
    }

    fn contains_v4(&self, a: Ipv4Addr) -> bool {
        let a = u32::from(a);
        self.v4.iter().any(|&(net, mask)| a & mask == net)
    }

    fn contains_v6(&self, a: Ipv6Addr) -> bool {
        let a = u128::from(a);
        self.v6.iter().any(|&(net, mask)| a & mask == net)
    }
}
