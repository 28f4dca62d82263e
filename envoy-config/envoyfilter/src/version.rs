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

/// The retry policy of a waypoint's default route (a served service without VirtualService or
/// HTTPRoute), per release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultRouteRetry {
    /// No retry policy: the inbound default route of 1.22.x (`route.go:1218-1229 @ 1.22.0`,
    /// `BuildDefaultHTTPInboundRoute` sets none) and 1.23.x (`ENABLE_INBOUND_RETRY_POLICY`
    /// defaults to false: `features/pilot.go:248 @ 1.23.0`).
    None,
    /// `retry_on: reset-before-request`, two retries, on the inbound default route
    /// (`route.go:1242-1260 @ 1.24.0`); `grpc: false` when gRPC ports get no retry
    /// (commit c39842db8ef, istio/istio#55110: from 1.24.5, 1.25.2 and 1.26.0;
    /// `route.go:1256-1257 @ 1.26.8`).
    ResetBeforeRequest {
        /// gRPC ports get the retry too (before the fix).
        grpc: bool,
    },
    /// The mesh default retry policy: from 1.30.3 the waypoint's default route is built like a
    /// sidecar outbound route (commit f830a7d4ba6, istio/istio#60846;
    /// `httproute.go:119-122 @ 1.30.3`).
    MeshDefault,
}

impl IstioVersion {
    /// Whether Istio's built-in default retry policy lists 503 as a retriable status code:
    /// up to 1.23.x (`retry.go:48 @ 1.23.6`); from 1.24.0 `EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY`
    /// (default true) drops it (commit 65aaaf4f8c5, istio/istio#52111; `retry.go:52-54 @
    /// 1.24.0`), and 1.27 removed the flag (`retry.go:34-56 @ 1.30.3`).
    pub fn default_retry_includes_503(self) -> bool {
        self < IstioVersion::new(1, 24, 0)
    }

    /// The retry policy of a waypoint's default route (see [`DefaultRouteRetry`]).
    pub fn waypoint_default_route_retry(self) -> DefaultRouteRetry {
        let v = |minor, patch| IstioVersion::new(1, minor, patch);
        if self >= v(30, 3) {
            DefaultRouteRetry::MeshDefault
        } else if self < v(24, 0) {
            DefaultRouteRetry::None
        } else {
            let grpc_fixed = match self.minor {
                24 => self >= v(24, 5),
                25 => self >= v(25, 2),
                _ => true,
            };
            DefaultRouteRetry::ResetBeforeRequest { grpc: !grpc_fixed }
        }
    }

    /// Whether a waypoint merges the HTTP routes of every VirtualService for a host (oldest
    /// first) instead of using only the first one with `http` routes: commit da25675dc27
    /// (istio/istio#59484), in 1.30.0 and backported to 1.29.2 and 1.28.6
    /// (`listener_waypoint.go:1132-1142 @ 1.30.3`; first-only at `:771-779 @ 1.26.8`).
    pub fn waypoint_merges_virtual_services(self) -> bool {
        let v = |minor, patch| IstioVersion::new(1, minor, patch);
        match self.minor {
            28 => self >= v(28, 6),
            29 => self >= v(29, 2),
            m => m >= 30,
        }
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

    /// One row per release boundary of a routing default (`version_row!(name, "x.y.z", method, want)`).
    macro_rules! version_row {
        ($name:ident, $v:expr, $method:ident, $want:expr) => {
            #[test]
            fn $name() {
                let v: IstioVersion = $v.parse().unwrap();
                assert_eq!(v.$method(), $want, "{v}");
            }
        };
    }

    version_row!(
        retry_503_up_to_1_23,
        "1.23.6",
        default_retry_includes_503,
        true
    );
    version_row!(
        retry_no_503_from_1_24,
        "1.24.0",
        default_retry_includes_503,
        false
    );
    version_row!(
        retry_no_503_pinned,
        "1.30.3",
        default_retry_includes_503,
        false
    );
    version_row!(
        default_route_no_retry_1_22,
        "1.22.8",
        waypoint_default_route_retry,
        DefaultRouteRetry::None
    );
    version_row!(
        default_route_no_retry_1_23,
        "1.23.6",
        waypoint_default_route_retry,
        DefaultRouteRetry::None
    );
    version_row!(
        default_route_reset_1_24_0,
        "1.24.0",
        waypoint_default_route_retry,
        DefaultRouteRetry::ResetBeforeRequest { grpc: true }
    );
    version_row!(
        default_route_reset_1_24_5,
        "1.24.5",
        waypoint_default_route_retry,
        DefaultRouteRetry::ResetBeforeRequest { grpc: false }
    );
    version_row!(
        default_route_reset_1_25_1,
        "1.25.1",
        waypoint_default_route_retry,
        DefaultRouteRetry::ResetBeforeRequest { grpc: true }
    );
    version_row!(
        default_route_reset_1_25_2,
        "1.25.2",
        waypoint_default_route_retry,
        DefaultRouteRetry::ResetBeforeRequest { grpc: false }
    );
    version_row!(
        default_route_reset_1_30_2,
        "1.30.2",
        waypoint_default_route_retry,
        DefaultRouteRetry::ResetBeforeRequest { grpc: false }
    );
    version_row!(
        default_route_mesh_1_30_3,
        "1.30.3",
        waypoint_default_route_retry,
        DefaultRouteRetry::MeshDefault
    );
    version_row!(
        vs_first_only_1_28_5,
        "1.28.5",
        waypoint_merges_virtual_services,
        false
    );
    version_row!(
        vs_merged_1_28_6,
        "1.28.6",
        waypoint_merges_virtual_services,
        true
    );
    version_row!(
        vs_first_only_1_29_1,
        "1.29.1",
        waypoint_merges_virtual_services,
        false
    );
    version_row!(
        vs_merged_1_29_2,
        "1.29.2",
        waypoint_merges_virtual_services,
        true
    );
    version_row!(
        vs_first_only_1_26_8,
        "1.26.8",
        waypoint_merges_virtual_services,
        false
    );
    version_row!(
        vs_merged_1_30_0,
        "1.30.0",
        waypoint_merges_virtual_services,
        true
    );

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
