//! DestinationRule traffic policy → what each cluster gets, as istiod 1.30.3 builds a
//! waypoint's `inbound-vip` clusters (`buildWaypointInboundVIP`,
//! `pilot/pkg/networking/core/cluster_waypoint.go:319-364`; connection pool, outlier detection
//! and load balancer at `:219-227`): port-level settings replace the rule's
//! (`util.GetPortLevelTrafficPolicy`, `pilot/pkg/networking/util/util.go:810-835`), and a
//! subset's policy overrides per component (`MergeSubsetTrafficPolicy` / `mergeTrafficPolicy`,
//! `util.go:838-880`). What the Envoy configuration generator cannot express yet is a warning
//! naming the field — never dropped in silence.

use crate::diag::ObjRef;
use crate::model::{
    ConnectionPoolSettings, DestinationRuleSpec, LoadBalancer, OutlierDetection, TrafficPolicy,
};
use crate::resolve::Ctx;
use crate::util::parse_duration_ms;
use layover_proto::v1 as pb;

/// The policy components a cluster gets.
#[derive(Debug, Clone, Default)]
struct Effective<'a> {
    load_balancer: Option<&'a LoadBalancer>,
    connection_pool: Option<&'a ConnectionPoolSettings>,
    outlier_detection: Option<&'a OutlierDetection>,
}

/// `GetPortLevelTrafficPolicy`: the port's `portLevelSettings` entry, if any, replaces the
/// whole policy (omitted fields take defaults); `bool` says whether one applied.
fn port_level(policy: Option<&TrafficPolicy>, port: u32) -> (Effective<'_>, bool) {
    let Some(tp) = policy else {
        return (Effective::default(), false);
    };
    match tp
        .port_level_settings
        .iter()
        .find(|p| p.port.as_ref().is_some_and(|s| s.number == port))
    {
        Some(p) => (
            Effective {
                load_balancer: p.load_balancer.as_ref(),
                connection_pool: p.connection_pool.as_ref(),
                outlier_detection: p.outlier_detection.as_ref(),
            },
            true,
        ),
        None => (
            Effective {
                load_balancer: tp.load_balancer.as_ref(),
                connection_pool: tp.connection_pool.as_ref(),
                outlier_detection: tp.outlier_detection.as_ref(),
            },
            false,
        ),
    }
}

/// `MergeSubsetTrafficPolicy`: the rule's (port-level) policy, each component replaced by the
/// subset's when the subset sets it — or always when the subset has a port-level entry.
fn merged<'a>(
    rule: Option<&'a TrafficPolicy>,
    subset: Option<&'a TrafficPolicy>,
    port: u32,
) -> Effective<'a> {
    let (base, _) = port_level(rule, port);
    let Some(sp) = subset else {
        return base;
    };
    let (sub, has_port_level) = port_level(Some(sp), port);
    Effective {
        load_balancer: if sub.load_balancer.is_some() || has_port_level {
            sub.load_balancer
        } else {
            base.load_balancer
        },
        connection_pool: if sub.connection_pool.is_some() || has_port_level {
            sub.connection_pool
        } else {
            base.connection_pool
        },
        outlier_detection: if sub.outlier_detection.is_some() || has_port_level {
            sub.outlier_detection
        } else {
            base.outlier_detection
        },
    }
}

/// The settings of one cluster.
#[derive(Debug, Clone, Default)]
pub(super) struct ClusterSettings {
    pub load_balancer: String,
    pub connection_pool: Option<pb::ConnectionPool>,
    pub outlier_detection: Option<pb::OutlierDetection>,
}

/// The settings of the cluster for `port` (`subset`: `None` for the subset-less cluster,
/// `Some(policy)` for a subset with its own policy or none). `at` is the DestinationRule, for
/// errors in durations.
pub(super) fn cluster_settings(
    ctx: &mut Ctx,
    at: Option<&ObjRef>,
    rule: Option<&TrafficPolicy>,
    subset: Option<Option<&TrafficPolicy>>,
    port: u32,
) -> ClusterSettings {
    let eff = match subset {
        None => port_level(rule, port).0,
        Some(sp) => merged(rule, sp, port),
    };
    let mut durations = Durations { ctx, at };
    let connection_pool = eff.connection_pool.map(|cp| durations.pool(cp));
    let outlier_detection = eff.outlier_detection.map(|od| durations.outlier(od));
    ClusterSettings {
        load_balancer: eff.load_balancer.map(lb_name).unwrap_or_default(),
        connection_pool,
        outlier_detection,
    }
}

/// The load balancer's name as the Envoy generator reads it. `consistentHash` has no
/// route-level hash policy behind it yet (warned in [`check_unsupported`]), so such a cluster
/// keeps the default balancer instead of a ring that would hash nothing.
fn lb_name(lb: &LoadBalancer) -> String {
    lb.simple.clone().unwrap_or_default()
}

/// Duration parsing with errors reported on the DestinationRule.
struct Durations<'c, 'a, 'o> {
    ctx: &'c mut Ctx<'a>,
    at: Option<&'o ObjRef>,
}

impl Durations<'_, '_, '_> {
    fn ms(&mut self, field: &str, v: Option<&String>) -> u64 {
        let Some(s) = v else { return 0 };
        match parse_duration_ms(s) {
            Ok(ms) => ms,
            Err(e) => {
                if let Some(at) = self.at {
                    self.ctx.err(
                        at,
                        format!("spec.trafficPolicy.{field}"),
                        format!("invalid duration {s:?}: {e}"),
                    );
                }
                0
            }
        }
    }

    /// `applyConnectionPool` (cluster_traffic_policy.go:94-178 @ 1.30.3): only positive values
    /// change istiod's defaults.
    fn pool(&mut self, cp: &ConnectionPoolSettings) -> pb::ConnectionPool {
        let pos = |v: Option<i64>| {
            v.filter(|n| *n > 0)
                .map_or(0, |n| n.min(u32::MAX as i64) as u32)
        };
        let mut out = pb::ConnectionPool::default();
        if let Some(h) = &cp.http {
            out.http2_max_requests = pos(h.http2_max_requests);
            out.http1_max_pending_requests = pos(h.http1_max_pending_requests);
            out.max_retries = pos(h.max_retries);
            out.max_requests_per_connection = pos(h.max_requests_per_connection);
            out.max_concurrent_streams = pos(h.max_concurrent_streams);
            out.idle_timeout_ms =
                self.ms("connectionPool.http.idleTimeout", h.idle_timeout.as_ref());
            out.h2_upgrade = h.h2_upgrade_policy.as_deref() == Some("UPGRADE")
                && h.use_client_protocol != Some(true);
        }
        if let Some(t) = &cp.tcp {
            out.connect_timeout_ms = self.ms(
                "connectionPool.tcp.connectTimeout",
                t.connect_timeout.as_ref(),
            );
            out.max_connections = pos(t.max_connections);
            out.max_connection_duration_ms = self.ms(
                "connectionPool.tcp.maxConnectionDuration",
                t.max_connection_duration.as_ref(),
            );
            // The HTTP idle timeout wins over the TCP one (cluster_traffic_policy.go:139-141).
            if out.idle_timeout_ms == 0 {
                out.idle_timeout_ms =
                    self.ms("connectionPool.tcp.idleTimeout", t.idle_timeout.as_ref());
            }
        }
        out
    }

    /// `applyOutlierDetection` (cluster_traffic_policy.go:454-521 @ 1.30.3).
    fn outlier(&mut self, od: &OutlierDetection) -> pb::OutlierDetection {
        pb::OutlierDetection {
            consecutive_5xx_errors: od.consecutive_5xx_errors,
            consecutive_gateway_errors: od.consecutive_gateway_errors,
            interval_ms: self.ms("outlierDetection.interval", od.interval.as_ref()),
            base_ejection_time_ms: self.ms(
                "outlierDetection.baseEjectionTime",
                od.base_ejection_time.as_ref(),
            ),
            max_ejection_percent: od
                .max_ejection_percent
                .filter(|p| *p > 0)
                .map_or(0, |p| p.min(100) as u32),
            min_health_percent: od.min_health_percent.map_or(0, |p| p.clamp(0, 100) as u32),
            split_external_local_origin_errors: od.split_external_local_origin_errors == Some(true),
            consecutive_local_origin_failures: od.consecutive_local_origin_failures.unwrap_or(0),
        }
    }
}

/// Warns, naming the field, about every traffic-policy setting the Envoy configuration does not
/// carry yet (and the deprecated one istiod ignores).
pub(super) fn check_unsupported(ctx: &mut Ctx, at: &ObjRef, spec: &DestinationRuleSpec) {
    let mut policies: Vec<(String, &TrafficPolicy)> = Vec::new();
    if let Some(tp) = &spec.traffic_policy {
        policies.push(("spec.trafficPolicy".into(), tp));
    }
    for (i, s) in spec.subsets.iter().enumerate() {
        if let Some(tp) = &s.traffic_policy {
            policies.push((format!("spec.subsets[{i}].trafficPolicy"), tp));
        }
    }
    for (path, tp) in policies {
        let mut found: Vec<(String, &str)> = Vec::new();
        check_components(
            &path,
            tp.load_balancer.as_ref(),
            tp.connection_pool.as_ref(),
            tp.outlier_detection.as_ref(),
            tp.tls.is_some(),
            &mut found,
        );
        for (i, p) in tp.port_level_settings.iter().enumerate() {
            check_components(
                &format!("{path}.portLevelSettings[{i}]"),
                p.load_balancer.as_ref(),
                p.connection_pool.as_ref(),
                p.outlier_detection.as_ref(),
                p.tls.is_some(),
                &mut found,
            );
        }
        for (field, set) in [
            ("tunnel", tp.tunnel.is_some()),
            ("proxyProtocol", tp.proxy_protocol.is_some()),
            ("retryBudget", tp.retry_budget.is_some()),
        ] {
            if set {
                found.push((
                    format!("{path}.{field}"),
                    "not applied to the waypoint's clusters yet",
                ));
            }
        }
        for (field, why) in found {
            ctx.warn(at, field, why);
        }
    }
}

fn check_components(
    path: &str,
    lb: Option<&LoadBalancer>,
    pool: Option<&ConnectionPoolSettings>,
    outlier: Option<&OutlierDetection>,
    tls: bool,
    found: &mut Vec<(String, &'static str)>,
) {
    const NOT_YET: &str = "not applied to the waypoint's clusters yet";
    if let Some(lb) = lb {
        if lb.consistent_hash.is_some() {
            found.push((
                format!("{path}.loadBalancer.consistentHash"),
                "not applied yet (needs route hash policies): the cluster keeps the default load balancer (LEAST_REQUEST)",
            ));
        }
        for (field, set) in [
            ("localityLbSetting", lb.locality_lb_setting.is_some()),
            ("warmupDurationSecs", lb.warmup_duration_secs.is_some()),
            ("warmup", lb.warmup.is_some()),
        ] {
            if set {
                found.push((format!("{path}.loadBalancer.{field}"), NOT_YET));
            }
        }
    }
    if let Some(t) = pool.and_then(|p| p.tcp.as_ref()) {
        if t.tcp_keepalive.is_some() {
            found.push((format!("{path}.connectionPool.tcp.tcpKeepalive"), NOT_YET));
        }
    }
    if let Some(h) = pool.and_then(|p| p.http.as_ref()) {
        if h.use_client_protocol == Some(true) {
            found.push((
                format!("{path}.connectionPool.http.useClientProtocol"),
                NOT_YET,
            ));
        }
    }
    if outlier.is_some_and(|o| o.consecutive_errors.is_some()) {
        found.push((
            format!("{path}.outlierDetection.consecutiveErrors"),
            "deprecated and ignored by istiod (cluster_traffic_policy.go:454-521 @ 1.30.3); use consecutive5xxErrors or consecutiveGatewayErrors",
        ));
    }
    if tls {
        found.push((
            format!("{path}.tls"),
            "not applied yet: upstream TLS (SIMPLE / MUTUAL) on the waypoint's clusters; ISTIO_MUTUAL is HBONE's and needs nothing (cluster_waypoint.go:287-316 @ 1.30.3)",
        ));
    }
}
