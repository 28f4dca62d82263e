//! HTTPRoute rule `retry` and `timeouts` (istiod convertHTTPRoute).

use crate::diag::ObjRef;
use crate::model::{HrRule, VsRetries};
use crate::resolve::{convert_retry, Ctx};
use crate::util::parse_duration_ms;
use layover_proto::v1 as pb;

/// Sets `r.retries` and `r.timeout_ms` from the rule (at `{rp}.retry` / `{rp}.timeouts`).
pub(super) fn retry_and_timeouts(
    ctx: &mut Ctx,
    at: &ObjRef,
    rp: &str,
    rule: &HrRule,
    r: &mut pb::HttpRoute,
) {
    if let Some(rt) = &rule.retry {
        // istiod convertHTTPRoute: connection errors are always retried, plus the listed
        // codes; attempts default to 2 (Istio's default retry count).
        let mut on = String::from("connect-failure,refused-stream,unavailable,cancelled");
        for c in &rt.codes {
            on.push_str(&format!(",{c}"));
        }
        let attempts = rt.attempts.unwrap_or(2);
        let spec = VsRetries {
            attempts: i64::from(attempts),
            per_try_timeout: None,
            retry_on: if attempts == 0 { None } else { Some(on) },
            retry_remote_localities: None,
            retry_ignore_previous_hosts: None,
            backoff: rt.backoff.clone(),
        };
        r.retries = convert_retry(ctx, at, &format!("{rp}.retry"), &spec);
    }
    if let Some(t) = &rule.timeouts {
        if let Some(req) = &t.request {
            match parse_duration_ms(req) {
                Ok(ms) => r.timeout_ms = ms,
                Err(e) => ctx.err(at, format!("{rp}.timeouts.request"), e),
            }
        }
        if let Some(b) = &t.backend_request {
            match parse_duration_ms(b) {
                // istiod convertHTTPRoute: with a retry stanza backendRequest is the per-try
                // timeout; without one it replaces the route timeout.
                Ok(ms) if ms > 0 => match r.retries.as_mut() {
                    Some(rt) if rt.attempts > 0 => rt.per_try_timeout_ms = ms,
                    _ => r.timeout_ms = ms,
                },
                Ok(_) => {}
                Err(e) => ctx.err(at, format!("{rp}.timeouts.backendRequest"), e),
            }
        }
    }
}
