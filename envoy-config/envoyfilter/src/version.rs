//! The Istio release whose istiod rules layover follows, and the rules that differ between the
//! releases it supports.
//!
//! Every rule cites istiod at the release tag (istio/istio, `path:line @ tag`).

use std::fmt;
use std::str::FromStr;

/// An Istio release (`major.minor.patch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IstioVersion {
    /// Major version (1).
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// Patch version.
    pub patch: u16,
}

/// How istiod decides which EnvoyFilters a waypoint gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// Up to 1.26.x: `workloadSelector` only (`pilot/pkg/model/push_context.go:2334-2342 @
    /// 1.26.8`, `getMatchedEnvoyFilters`): a filter without a selector applies to every proxy
    /// of its namespace (and of every namespace from the root namespace); `targetRefs` is not
    /// read at all.
    Selector,
    /// From 1.27.0: `targetRefs` only (`pilot/pkg/model/policyattachment.go:139-148 @ 1.30.3`,
    /// "waypoints never use selector", via `push_context.go:2358-2367 @ 1.30.3`): a Gateway in
    /// the waypoint's namespace; `GatewayClass istio-waypoint` from the root namespace only
    /// when `gateway_class` (`policyattachment.go:176-182`, reachable once
    /// `getMatchedEnvoyFilters` passes the root namespace: `push_context.go:2350 @ 1.27.4`,
    /// absent at 1.27.3).
    TargetRefs {
        /// `GatewayClass istio-waypoint` in the root namespace attaches.
        gateway_class: bool,
    },
}

impl IstioVersion {
    /// The release layover implements by default: the newest Istio release (not a
    /// prerelease) in the public istio/istio snapshot, 1.30.3 (commit 56df41f63e5).
    pub const PINNED: IstioVersion = IstioVersion::new(1, 30, 3);

    /// The oldest release layover can shape its output for.
    pub const OLDEST: IstioVersion = IstioVersion::new(1, 22, 0);

    /// `major.minor.patch`.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        IstioVersion {
            major,
            minor,
            patch,
        }
    }

    /// How this release attaches EnvoyFilters to a waypoint (see [`Attachment`]).
    pub fn envoy_filter_attachment(self) -> Attachment {
        if self < IstioVersion::new(1, 27, 0) {
            Attachment::Selector
        } else {
            Attachment::TargetRefs {
                gateway_class: self >= IstioVersion::new(1, 27, 4),
            }
        }
    }

    /// Whether the EnvoyFilter API of this release has the `MERGE_AND_REPLACE_LIST` patch
    /// operation: from 1.31 (istio/api commit 28b8d466c, first in v1.31.0-alpha.0; the api
    /// that 1.30.3 pins ends `Patch.Operation` at `REPLACE = 7`).
    pub fn has_merge_and_replace_list(self) -> bool {
        self >= IstioVersion::new(1, 31, 0)
    }
}

impl Default for IstioVersion {
    fn default() -> Self {
        IstioVersion::PINNED
    }
}

impl fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for IstioVersion {
    type Err = String;

    /// `1.30`, `1.30.3` or `v1.26.8`; a minor version alone means its `.0` release (the
    /// version-dependent rules change at minor releases, except where a patch is named). Only
    /// releases from [`IstioVersion::OLDEST`] up to the pinned minor version are accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "unknown Istio version `{s}`: expected a release like {} (supported: {} to {}.{}.x)",
                IstioVersion::PINNED,
                IstioVersion::OLDEST,
                IstioVersion::PINNED.major,
                IstioVersion::PINNED.minor
            )
        };
        let text = s.trim().trim_start_matches('v');
        let mut parts = text.split('.');
        let mut next = |required: bool| -> Result<u16, String> {
            match parts.next() {
                Some(p) => p.parse::<u16>().map_err(|_| bad()),
                None if required => Err(bad()),
                None => Ok(0),
            }
        };
        let v = IstioVersion::new(next(true)?, next(true)?, next(false)?);
        if parts.next().is_some() {
            return Err(bad());
        }
        let newest_minor = (IstioVersion::PINNED.major, IstioVersion::PINNED.minor);
        if v < IstioVersion::OLDEST || (v.major, v.minor) > newest_minor {
            return Err(bad());
        }
        Ok(v)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parses_releases_and_refuses_unknown_ones() {
        assert_eq!("1.30.3".parse(), Ok(IstioVersion::PINNED));
        assert_eq!("v1.26.8".parse(), Ok(IstioVersion::new(1, 26, 8)));
        assert_eq!("1.27".parse(), Ok(IstioVersion::new(1, 27, 0)));
        for bad in [
            "", "1", "1.31.0", "2.0", "1.21.6", "1.30.x", "1.30.3.1", "latest",
        ] {
            let e = bad.parse::<IstioVersion>().unwrap_err();
            assert!(
                e.contains("unknown Istio version") && e.contains("1.30.3"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn attachment_follows_istiod_per_release() {
        let a = |s: &str| s.parse::<IstioVersion>().unwrap().envoy_filter_attachment();
        assert_eq!(a("1.22.0"), Attachment::Selector);
        assert_eq!(a("1.26.8"), Attachment::Selector);
        assert_eq!(
            a("1.27.0"),
            Attachment::TargetRefs {
                gateway_class: false
            }
        );
        assert_eq!(
            a("1.27.3"),
            Attachment::TargetRefs {
                gateway_class: false
            }
        );
        assert_eq!(
            a("1.27.4"),
            Attachment::TargetRefs {
                gateway_class: true
            }
        );
        assert_eq!(
            a("1.30.3"),
            Attachment::TargetRefs {
                gateway_class: true
            }
        );
    }

    #[test]
    fn merge_and_replace_list_is_not_in_the_pinned_release() {
        assert!(!IstioVersion::PINNED.has_merge_and_replace_list());
        assert!(IstioVersion::new(1, 31, 0).has_merge_and_replace_list());
    }
}
