//! A DestinationRule's connection pool and outlier detection on an Envoy cluster, field by field
//! as istiod 1.30.3 writes them (`pilot/pkg/networking/core/cluster_traffic_policy.go`:
//! `applyConnectionPool` :94-178, `getDefaultCircuitBreakerThresholds` :438-452,
//! `applyOutlierDetection` :454-521). The compiler has already merged port-level and subset
//! settings (`layover_compiler`, `compile/traffic.rs`).

use std::time::Duration;

use layover_proto::v1::{ConnectionPool, OutlierDetection};
use serde_json::{json, Map, Value};

use crate::common::duration;

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

fn ms(v: u64) -> String {
    duration(Duration::from_millis(v))
}

/// The circuit breaker thresholds: istiod's defaults (every limit `u32::MAX`, remaining counts
/// tracked), each replaced by a positive connection-pool value.
pub(crate) fn circuit_breakers(pool: Option<&ConnectionPool>) -> Value {
    let pick = |v: u32| if v > 0 { v } else { u32::MAX };
    let p = pool.cloned().unwrap_or_default();
    json!({
        "thresholds": [{
            "max_connections": pick(p.max_connections),
            "max_pending_requests": pick(p.http1_max_pending_requests),
            "max_requests": pick(p.http2_max_requests),
            "max_retries": pick(p.max_retries),
            "track_remaining": true,
        }],
    })
}

/// Sets the connection-pool fields that are not circuit breaker thresholds on `cluster`:
/// the connect timeout, the HTTP protocol options (idle timeout, max requests per connection,
/// max connection duration) and the HTTP/2 upgrade.
pub(crate) fn apply_connection_pool(cluster: &mut Map<String, Value>, pool: &ConnectionPool) {
    if pool.connect_timeout_ms > 0 {
        cluster.insert("connect_timeout".into(), json!(ms(pool.connect_timeout_ms)));
    }
    let mut common = Map::new();
    if pool.idle_timeout_ms > 0 {
        common.insert("idle_timeout".into(), json!(ms(pool.idle_timeout_ms)));
    }
    if pool.max_requests_per_connection > 0 {
        common.insert(
            "max_requests_per_connection".into(),
            json!(pool.max_requests_per_connection),
        );
    }
    if pool.max_connection_duration_ms > 0 {
        common.insert(
            "max_connection_duration".into(),
            json!(ms(pool.max_connection_duration_ms)),
        );
    }
    if pool.h2_upgrade {
        set_http2(cluster);
    }
    if common.is_empty() && pool.max_concurrent_streams == 0 {
        return;
    }
    let Some(options) = protocol_options(cluster) else {
        return;
    };
    if !common.is_empty() {
        options.insert("common_http_protocol_options".into(), Value::Object(common));
    }
    // Only on a cluster that speaks HTTP/2 (cluster_traffic_policy.go:168-171).
    if pool.max_concurrent_streams > 0 {
        if let Some(h2) = options
            .get_mut("explicit_http_config")
            .and_then(|c| c.get_mut("http2_protocol_options"))
            .and_then(Value::as_object_mut)
        {
            h2.insert(
                "max_concurrent_streams".into(),
                json!(pool.max_concurrent_streams),
            );
        }
    }
}

/// The cluster's `HttpProtocolOptions`, created on first use (`None` only if the cluster
/// already holds a non-object there, which this crate never writes).
fn protocol_options(cluster: &mut Map<String, Value>) -> Option<&mut Map<String, Value>> {
    cluster
        .entry("typed_extension_protocol_options")
        .or_insert_with(|| json!({}))
        .as_object_mut()?
        .entry(HTTP_PROTOCOL_OPTIONS)
        .or_insert_with(|| {
            json!({
                "@type": format!("type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}"),
                "explicit_http_config": { "http_protocol_options": {} },
            })
        })
        .as_object_mut()
}

/// HTTP/2 to the upstream (`setH2Options`).
pub(crate) fn set_http2(cluster: &mut Map<String, Value>) {
    let Some(options) = protocol_options(cluster) else {
        return;
    };
    let keep = options
        .get("explicit_http_config")
        .and_then(|c| c.get("http2_protocol_options"))
        .cloned();
    options.insert(
        "explicit_http_config".into(),
        json!({ "http2_protocol_options": keep.unwrap_or_else(|| json!({})) }),
    );
}

/// `outlier_detection` and the panic threshold it implies.
pub(crate) fn apply_outlier_detection(cluster: &mut Map<String, Value>, od: &OutlierDetection) {
    // Success-rate ejection stays off (cluster_traffic_policy.go:461-462).
    let mut out = Map::new();
    out.insert("enforcing_success_rate".into(), json!(0));
    if let Some(v) = od.consecutive_5xx_errors {
        out.insert("consecutive_5xx".into(), json!(v));
        out.insert(
            "enforcing_consecutive_5xx".into(),
            json!(if v > 0 { 100 } else { 0 }),
        );
    }
    if let Some(v) = od.consecutive_gateway_errors {
        out.insert("consecutive_gateway_failure".into(), json!(v));
        out.insert(
            "enforcing_consecutive_gateway_failure".into(),
            json!(if v > 0 { 100 } else { 0 }),
        );
    }
    if od.interval_ms > 0 {
        out.insert("interval".into(), json!(ms(od.interval_ms)));
    }
    if od.base_ejection_time_ms > 0 {
        out.insert(
            "base_ejection_time".into(),
            json!(ms(od.base_ejection_time_ms)),
        );
    }
    if od.max_ejection_percent > 0 {
        out.insert(
            "max_ejection_percent".into(),
            json!(od.max_ejection_percent),
        );
    }
    if od.split_external_local_origin_errors {
        out.insert("split_external_local_origin_errors".into(), json!(true));
        if od.consecutive_local_origin_failures > 0 {
            out.insert(
                "consecutive_local_origin_failure".into(),
                json!(od.consecutive_local_origin_failures),
            );
            out.insert(
                "enforcing_consecutive_local_origin_failure".into(),
                json!(100),
            );
        }
        out.insert("enforcing_local_origin_success_rate".into(), json!(0));
    }
    cluster.insert("outlier_detection".into(), Value::Object(out));
    // The panic threshold is set even at 0, which disables it (:507-520).
    cluster.insert(
        "common_lb_config".into(),
        json!({ "healthy_panic_threshold": { "value": od.min_health_percent as f64 } }),
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn unset_thresholds_stay_istiods_unlimited_defaults() {
        // getDefaultCircuitBreakerThresholds (:438-452) with http2MaxRequests replaced.
        let pool = ConnectionPool {
            http2_max_requests: 6,
            ..ConnectionPool::default()
        };
        let t = &circuit_breakers(Some(&pool))["thresholds"][0];
        assert_eq!(t["max_requests"], 6);
        assert_eq!(t["max_connections"], u32::MAX);
        assert_eq!(t["max_pending_requests"], u32::MAX);
        assert_eq!(t["max_retries"], u32::MAX);
        assert_eq!(t["track_remaining"], true);
    }

    #[test]
    fn connection_pool_writes_timeouts_and_protocol_options() {
        let mut c = Map::new();
        apply_connection_pool(
            &mut c,
            &ConnectionPool {
                connect_timeout_ms: 3000,
                idle_timeout_ms: 4000,
                max_requests_per_connection: 2,
                max_connection_duration_ms: 1500,
                h2_upgrade: true,
                max_concurrent_streams: 9,
                ..ConnectionPool::default()
            },
        );
        assert_eq!(c["connect_timeout"], "3s");
        let o = &c["typed_extension_protocol_options"][HTTP_PROTOCOL_OPTIONS];
        assert_eq!(
            o["common_http_protocol_options"],
            json!({"idle_timeout": "4s", "max_requests_per_connection": 2, "max_connection_duration": "1.500000000s"})
        );
        assert_eq!(
            o["explicit_http_config"],
            json!({"http2_protocol_options": {"max_concurrent_streams": 9}})
        );
    }

    #[test]
    fn outlier_detection_enforces_what_is_set_and_disables_success_rate() {
        let mut c = Map::new();
        apply_outlier_detection(
            &mut c,
            &OutlierDetection {
                consecutive_5xx_errors: Some(3),
                consecutive_gateway_errors: Some(0),
                interval_ms: 5000,
                base_ejection_time_ms: 30000,
                max_ejection_percent: 50,
                ..OutlierDetection::default()
            },
        );
        assert_eq!(
            c["outlier_detection"],
            json!({
                "enforcing_success_rate": 0,
                "consecutive_5xx": 3, "enforcing_consecutive_5xx": 100,
                "consecutive_gateway_failure": 0, "enforcing_consecutive_gateway_failure": 0,
                "interval": "5s", "base_ejection_time": "30s", "max_ejection_percent": 50,
            })
        );
        // minHealthPercent unset (0) still sets the panic threshold: 0 disables it (:507-520).
        assert_eq!(
            c["common_lb_config"]["healthy_panic_threshold"]["value"],
            0.0
        );
    }
}
