//! The layover waypoint under a real Envoy 1.40: Istio YAML for real backends is compiled with
//! `layover_config`, loaded into Envoy as the layover filter's configuration, and requests go
//! through the plain-HTTP listener (the service is resolved from the `Host` header).
//!
//! Every test body is written once and runs once per filter build ([`FilterBuild`]): the
//! `both_builds!` macro generates one `#[tokio::test]` per build, in `mod wasm` and (once the
//! module exists) `mod dynamic_module`. Each test starts its own backends and Envoy on
//! kernel-picked ports, so tests run in parallel.
//!
//! Each test names the Istio document whose behaviour it encodes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use layover_integration::waypoint::{
    app_yaml, compile_yaml, policy_json, subsets_yaml, waypoint_bootstrap, FilterBuild, Waypoint,
};
use layover_integration::{validate_config_with, Backend, Echo, Envoy, Reply};

/// Generates, for each `async fn name(build: FilterBuild) { … }`, the body once and one
/// `#[tokio::test]` per filter build.
macro_rules! both_builds {
    ($($(#[$attr:meta])* async fn $name:ident($build:ident: FilterBuild) $body:block)*) => {
        $($(#[$attr])* async fn $name($build: FilterBuild) $body)*

        per_build!(wasm, FilterBuild::Wasm, $($name)*);
        // ┌───────────────────────────────────────────────────────────────────────────────┐
        // │ The dynamic-module build: uncomment the next line once `filters/dynamic-module` │
        // │ builds liblayover_module.so (see layover_integration::waypoint).                │
        // └───────────────────────────────────────────────────────────────────────────────┘
        // per_build!(dynamic_module, FilterBuild::DynamicModule, $($name)*);
    };
}

macro_rules! per_build {
    ($module:ident, $build:expr, $($name:ident)*) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($build).await;
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------------- fixtures

const REVIEWS: &str = "reviews:9080";

/// Starts one backend per version of `app` (name `<app>-<version>`, subset `<version>`).
async fn backends(app: &str, versions: &[&str]) -> Vec<Backend> {
    let mut out = Vec::new();
    for v in versions {
        out.push(Backend::start(&format!("{app}-{v}"), v).await.unwrap());
    }
    out
}

/// reviews with backends v1, v2, v3 and a DestinationRule with those subsets, plus `extra`
/// YAML (VirtualServices, policies).
async fn reviews(build: FilterBuild, extra: &str) -> (Waypoint, Vec<Backend>) {
    let bs = backends("reviews", &["v1", "v2", "v3"]).await;
    let yaml = format!(
        "{}{}{extra}",
        app_yaml("reviews", &bs.iter().collect::<Vec<_>>()),
        subsets_yaml("reviews", &["v1", "v2", "v3"]),
    );
    let wp = start(build, &yaml).await;
    (wp, bs)
}

async fn start(build: FilterBuild, yaml: &str) -> Waypoint {
    Waypoint::start(build, yaml)
        .await
        .unwrap_or_else(|e| panic!("[{}] {e}", build.name()))
}

/// A VirtualService for `host` with the given `http:` list (YAML, items indented by two
/// spaces; the first line may lose its indentation to a `\` string continuation).
fn vs(host: &str, http: &str) -> String {
    let pad = if http.starts_with("  ") { "" } else { "  " };
    format!(
        "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {host}
  namespace: default
spec:
  hosts: [{host}]
  http:
{pad}{http}"
    )
}

fn echo(reply: &Reply) -> Echo {
    assert_eq!(reply.status, 200, "body: {}", reply.text());
    reply.json().unwrap()
}

/// The subset of the backend that answered (`x-backend` is `<app>-<version>`).
fn served_by(reply: &Reply) -> String {
    echo(reply).subset
}

fn counts(bs: &[Backend]) -> Vec<usize> {
    bs.iter().map(Backend::request_count).collect()
}

/// Sends `n` GETs over `concurrency` keep-alive connections and returns the replies.
async fn many(wp: &Waypoint, n: usize, concurrency: usize, path: &str) -> Vec<Reply> {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..concurrency {
        let client = wp.client.clone();
        let url = wp.envoy.url(path);
        let share = n / concurrency + usize::from(c < n % concurrency);
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(share);
            for _ in 0..share {
                out.push(client.get_with(&url, &[("host", REVIEWS)]).await.unwrap());
            }
            out
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        all.extend(done.unwrap());
    }
    all
}

/// Pearson's chi-square statistic of `observed` counts against `weights` (any scale).
fn chi_square(observed: &[usize], weights: &[f64]) -> f64 {
    let n: usize = observed.iter().sum();
    let total: f64 = weights.iter().sum();
    observed
        .iter()
        .zip(weights)
        .map(|(&o, &w)| {
            let e = n as f64 * w / total;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

fn is_rbac_denied(reply: &Reply) -> bool {
    reply.status == 403 && reply.text() == "RBAC: access denied"
}

// ------------------------------------------------------------------------------------ tests

both_builds! {
    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPMatchRequest
    // `uri.exact`: the whole path (without the query) equals the value.
    async fn uri_exact_match(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - match: [{uri: {exact: /exact}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
")).await;
        assert_eq!(served_by(&wp.get(REVIEWS, "/exact").await.unwrap()), "v2");
        assert_eq!(served_by(&wp.get(REVIEWS, "/exact?x=1").await.unwrap()), "v2");
        assert_eq!(served_by(&wp.get(REVIEWS, "/exact/").await.unwrap()), "v1");
        assert_eq!(served_by(&wp.get(REVIEWS, "/exactly").await.unwrap()), "v1");
        assert_eq!(counts(&bs), [2, 2, 0]);
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPMatchRequest
    // `uri.prefix`: a plain string prefix of the path; no match at all answers 404.
    async fn uri_prefix_match(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews, subset: v3}}]
")).await;
        for path in ["/api", "/api/v1/x?q=/y", "/apiary"] {
            let reply = wp.get(REVIEWS, path).await.unwrap();
            assert_eq!(served_by(&reply), "v3", "{path}");
            assert_eq!(echo(&reply).path, path);
        }
        // No route of the VirtualService matches: Envoy's 404 (route not found).
        let reply = wp.get(REVIEWS, "/other").await.unwrap();
        assert_eq!(reply.status, 404, "{}", reply.text());
        assert_eq!(counts(&bs), [0, 0, 3]);
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#StringMatch
    // `regex`: RE2 syntax, matched against the whole path.
    async fn uri_regex_match(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - match: [{uri: {regex: '/reviews/[0-9]+'}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
")).await;
        assert_eq!(served_by(&wp.get(REVIEWS, "/reviews/123").await.unwrap()), "v2");
        assert_eq!(served_by(&wp.get(REVIEWS, "/reviews/123?x=abc").await.unwrap()), "v2");
        // Full match: a trailing or leading extra does not match.
        assert_eq!(served_by(&wp.get(REVIEWS, "/reviews/123x").await.unwrap()), "v1");
        assert_eq!(served_by(&wp.get(REVIEWS, "/x/reviews/1").await.unwrap()), "v1");
        assert_eq!(counts(&bs), [2, 2, 0]);
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPMatchRequest
    // `headers`: keys lower-case, exact / prefix / regex values (the request-routing task's
    // `end-user: jason` rule: https://istio.io/latest/docs/tasks/traffic-management/request-routing/).
    async fn header_match(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{headers: {x-canary: {regex: 'yes|true'}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]
")).await;
        let get = |h: &'static [(&'static str, &'static str)]| wp.get_with(REVIEWS, "/", h);
        assert_eq!(served_by(&get(&[("end-user", "jason")]).await.unwrap()), "v2");
        assert_eq!(served_by(&get(&[("End-User", "jason")]).await.unwrap()), "v2");
        assert_eq!(served_by(&get(&[("end-user", "Jason")]).await.unwrap()), "v1");
        assert_eq!(served_by(&get(&[("x-canary", "true")]).await.unwrap()), "v3");
        assert_eq!(served_by(&get(&[("x-canary", "truex")]).await.unwrap()), "v1");
        assert_eq!(served_by(&get(&[]).await.unwrap()), "v1");
        assert_eq!(counts(&bs), [3, 2, 1]);
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPMatchRequest
    // `queryParams`: exact (and regex) on the decoded query parameter value.
    async fn query_param_match(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - match: [{queryParams: {version: {exact: v2}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
")).await;
        assert_eq!(served_by(&wp.get(REVIEWS, "/r?version=v2").await.unwrap()), "v2");
        assert_eq!(served_by(&wp.get(REVIEWS, "/r?a=1&version=v2").await.unwrap()), "v2");
        assert_eq!(served_by(&wp.get(REVIEWS, "/r?version=v22").await.unwrap()), "v1");
        assert_eq!(served_by(&wp.get(REVIEWS, "/r?xversion=v2").await.unwrap()), "v1");
        assert_eq!(served_by(&wp.get(REVIEWS, "/r/version=v2").await.unwrap()), "v1");
        assert_eq!(counts(&bs), [3, 2, 0]);
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPMatchRequest
    // `method`: matched against `:method`.
    async fn method_match(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - match: [{method: {exact: POST}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
")).await;
        let post = wp.send(Method::POST, REVIEWS, "/", &[], "x").await.unwrap();
        assert_eq!(served_by(&post), "v2");
        assert_eq!(echo(&post).method, "POST");
        let put = wp.send(Method::PUT, REVIEWS, "/", &[], "x").await.unwrap();
        assert_eq!(served_by(&put), "v1");
        assert_eq!(served_by(&wp.get(REVIEWS, "/").await.unwrap()), "v1");
        assert_eq!(counts(&bs), [2, 1, 0]);
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#VirtualService
    // "Routing rules are evaluated in sequential order from top to bottom, with the first rule
    // in the list given the highest priority": an earlier broader rule shadows a later one.
    // Within one rule, several match blocks are ORed; conditions inside a block are ANDed.
    async fn first_match_wins(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - match:
    - uri: {prefix: /api}
      headers: {x-team: {exact: a}}
    - uri: {exact: /legacy}
    route: [{destination: {host: reviews, subset: v3}}]
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {exact: /api/special}}]
    route: [{destination: {host: reviews, subset: v2}}]
")).await;
        assert_eq!(served_by(&wp.get(REVIEWS, "/api/special").await.unwrap()), "v1");
        let a = wp.get_with(REVIEWS, "/api/special", &[("x-team", "a")]).await.unwrap();
        assert_eq!(served_by(&a), "v3");
        assert_eq!(served_by(&wp.get(REVIEWS, "/legacy").await.unwrap()), "v3");
        assert_eq!(counts(&bs), [1, 0, 2]);
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRouteDestination
    // `weight`: the proportion of traffic each destination gets
    // (https://istio.io/latest/docs/tasks/traffic-management/traffic-shifting/).
    async fn weighted_split(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 60}
    - {destination: {host: reviews, subset: v2}, weight: 30}
    - {destination: {host: reviews, subset: v3}, weight: 10}
")).await;
        const N: usize = 1200;
        let replies = many(&wp, N, 8, "/split").await;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for r in &replies {
            *seen.entry(served_by(r)).or_default() += 1;
        }
        let observed = [
            seen.get("v1").copied().unwrap_or(0),
            seen.get("v2").copied().unwrap_or(0),
            seen.get("v3").copied().unwrap_or(0),
        ];
        assert_eq!(observed.iter().sum::<usize>(), N, "{seen:?}");
        assert_eq!(counts(&bs), observed);
        // 2 degrees of freedom; 13.82 is the 0.999 quantile: a correct split fails 1 run in 1000.
        let chi2 = chi_square(&observed, &[60.0, 30.0, 10.0]);
        assert!(chi2 < 13.82, "chi-square {chi2:.2} for {observed:?} vs 60/30/10");
    }

    // https://istio.io/latest/docs/reference/config/networking/destination-rule/#Subset
    // A subset selects the endpoints carrying its labels; a route to a subset reaches only
    // them. A service without a VirtualService balances over all its endpoints.
    async fn subset_routing(build: FilterBuild) {
        let bs = backends("reviews", &["v1", "v2"]).await;
        let ratings = backends("ratings", &["v1", "v2"]).await;
        let yaml = format!(
            "{}{}{}{}{}",
            app_yaml("reviews", &bs.iter().collect::<Vec<_>>()),
            subsets_yaml("reviews", &["v1", "v2"]),
            vs("reviews", "  - route: [{destination: {host: reviews, subset: v2}}]\n"),
            app_yaml("ratings", &ratings.iter().collect::<Vec<_>>()),
            subsets_yaml("ratings", &["v1", "v2"]),
        );
        let wp = start(build, &yaml).await;
        for _ in 0..10 {
            assert_eq!(served_by(&wp.get(REVIEWS, "/").await.unwrap()), "v2");
        }
        assert_eq!(counts(&bs), [0, 10]);
        // No VirtualService for ratings: the default route to the whole service.
        let replies: Vec<Reply> = {
            let mut v = Vec::new();
            for _ in 0..20 {
                v.push(wp.get("ratings:9080", "/").await.unwrap());
            }
            v
        };
        assert!(replies.iter().all(|r| echo(r).name.starts_with("ratings-")));
        assert_eq!(counts(&ratings).iter().sum::<usize>(), 20);
        assert!(counts(&ratings).iter().all(|&c| c > 0), "{:?}", counts(&ratings));
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRetry
    // `retryOn` with a status code: a 503 is retried, up to `attempts` retries.
    async fn retry_succeeds_on_third_attempt(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 2, retryOn: '503'}
")).await;
        bs[0].fail_next(2);
        let reply = wp.get(REVIEWS, "/retry").await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(bs[0].request_count(), 3);
        let log = wp.envoy.access_log(1).await.unwrap();
        assert_eq!(log[0]["attempts"], 3, "{log:?}");
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRetry
    // `attempts` bounds the retries: 1 try + 2 retries, then the last 503 reaches the client.
    async fn retry_attempts_exhausted(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 2, retryOn: 5xx}
")).await;
        bs[0].fail_next(10);
        let reply = wp.get(REVIEWS, "/retry").await.unwrap();
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert_eq!(bs[0].request_count(), 3);
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRetry
    // `perTryTimeout`: a try that takes longer is abandoned and retried (5xx covers timeouts).
    async fn per_try_timeout_retries(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 2, perTryTimeout: 300ms, retryOn: 5xx}
")).await;
        let stall = Duration::from_secs(5);
        bs[0].stall_next(stall);
        let started = Instant::now();
        let reply = wp.get(REVIEWS, "/slow").await.unwrap();
        let took = started.elapsed();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(bs[0].request_count(), 2);
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < stall, "the stalled try was waited out: {took:?}");
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRoute
    // `timeout`: the whole request (all tries) gets 504 once it elapses.
    async fn route_timeout_504(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route: [{destination: {host: reviews, subset: v1}}]
    timeout: 400ms
")).await;
        let stall = Duration::from_secs(5);
        bs[0].stall_next(stall);
        let started = Instant::now();
        let reply = wp.get(REVIEWS, "/slow").await.unwrap();
        let took = started.elapsed();
        assert_eq!(reply.status, 504, "{}", reply.text());
        assert_eq!(reply.text(), "upstream request timeout");
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        // A fast answer is unaffected.
        assert_eq!(wp.get(REVIEWS, "/fast").await.unwrap().status, 200);
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPFaultInjection-Abort
    // An abort at 100% answers the status without contacting the destination.
    async fn fault_abort_always(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route: [{destination: {host: reviews, subset: v1}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
")).await;
        for _ in 0..5 {
            let reply = wp.get(REVIEWS, "/").await.unwrap();
            assert_eq!(reply.status, 418);
            assert_eq!(reply.text(), "fault filter abort");
        }
        assert_eq!(counts(&bs), [0, 0, 0]);
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPFaultInjection-Abort
    // `percentage`: the share of requests aborted.
    async fn fault_abort_percentage(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route: [{destination: {host: reviews, subset: v1}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 30}}}
")).await;
        const N: usize = 600;
        let replies = many(&wp, N, 8, "/").await;
        let aborted = replies
            .iter()
            .filter(|r| r.status == 503 && r.text() == "fault filter abort")
            .count();
        let ok = replies.iter().filter(|r| r.status == 200).count();
        assert_eq!(aborted + ok, N);
        assert_eq!(bs[0].request_count(), ok);
        // Binomial(600, 0.3): mean 180, sd 11.2; ±5 sd.
        let (mean, sd) = (N as f64 * 0.3, (N as f64 * 0.3 * 0.7).sqrt());
        assert!(
            (aborted as f64 - mean).abs() < 5.0 * sd,
            "{aborted} of {N} aborted, expected about {mean}"
        );
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPFaultInjection-Delay
    // `fixedDelay`: the request is held before it is forwarded (its body included).
    async fn fault_delay(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route: [{destination: {host: reviews, subset: v1}}]
    fault: {delay: {fixedDelay: 500ms, percentage: {value: 100}}}
")).await;
        let body = Bytes::from(vec![b'x'; 64 * 1024]);
        let timed = |reply: Reply, started: Instant| (reply, started.elapsed());
        let (get, post) = tokio::join!(
            async {
                let started = Instant::now();
                timed(wp.get(REVIEWS, "/delayed").await.unwrap(), started)
            },
            // A request with a body: the delay must hold the body too, not let it through.
            async {
                let started = Instant::now();
                let reply = wp
                    .send(Method::POST, REVIEWS, "/delayed", &[], body.clone())
                    .await
                    .unwrap();
                timed(reply, started)
            },
        );
        assert_eq!(echo(&get.0).path, "/delayed");
        assert_eq!(echo(&post.0).body_len, body.len());
        for (what, took) in [("GET", get.1), ("POST", post.1)] {
            assert!(took >= Duration::from_millis(500), "{what} took {took:?}");
            assert!(took < Duration::from_secs(3), "{what} took {took:?}");
        }
        assert_eq!(bs[0].request_count(), 2);
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#Headers
    // Route-level and destination-level `headers.request` / `headers.response` with set, add
    // and remove.
    async fn header_operations(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route:
    - destination: {host: reviews, subset: v1}
      headers:
        request: {set: {x-dest: v1}}
        response: {set: {x-dest-resp: v1}}
    headers:
      request:
        set: {x-req-set: layover}
        add: {x-req-add: added}
        remove: [x-req-remove]
      response:
        set: {x-resp-set: layover}
        add: {x-resp-add: added}
        remove: [x-resp-remove]
")).await;
        bs[0].respond_next(1, 200, &[("x-resp-remove", "1"), ("x-resp-add", "orig"), ("x-resp-set", "orig")]);
        let reply = wp
            .get_with(REVIEWS, "/h", &[("x-req-set", "client"), ("x-req-add", "orig"), ("x-req-remove", "1")])
            .await
            .unwrap();
        let e = echo(&reply);
        assert_eq!(e.headers.get("x-req-set").map(String::as_str), Some("layover"));
        assert_eq!(e.headers.get("x-req-add").map(String::as_str), Some("orig,added"));
        assert!(!e.headers.contains_key("x-req-remove"), "{:?}", e.headers);
        assert_eq!(e.headers.get("x-dest").map(String::as_str), Some("v1"));
        assert_eq!(reply.header("x-resp-set"), Some("layover"));
        let added: Vec<&str> = reply
            .headers
            .get_all("x-resp-add")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(added, ["orig", "added"]);
        assert_eq!(reply.header("x-resp-remove"), None);
        assert_eq!(reply.header("x-dest-resp"), Some("v1"));
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRewrite
    // `uri` rewrites the matched prefix (the query is kept).
    async fn prefix_uri_rewrite(build: FilterBuild) {
        let (wp, _bs) = reviews(build, &vs("reviews", "\
  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new}
    route: [{destination: {host: reviews, subset: v1}}]
")).await;
        assert_eq!(echo(&wp.get(REVIEWS, "/old/page?q=1").await.unwrap()).path, "/new/page?q=1");
        assert_eq!(echo(&wp.get(REVIEWS, "/old").await.unwrap()).path, "/new");
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#RegexRewrite
    // The documented example: `^/service/([^/]+)(/.*)$` → `\2/instance/\1`.
    async fn regex_uri_rewrite(build: FilterBuild) {
        let (wp, _bs) = reviews(build, &vs("reviews", r"
  - match: [{uri: {prefix: /service}}]
    rewrite:
      uriRegexRewrite: {match: '^/service/([^/]+)(/.*)$', rewrite: '\2/instance/\1'}
    route: [{destination: {host: reviews, subset: v1}}]
".trim_start_matches('\n'))).await;
        let e = echo(&wp.get(REVIEWS, "/service/foo/v1/api?x=1").await.unwrap());
        assert_eq!(e.path, "/v1/api/instance/foo?x=1");
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRewrite
    // `authority` rewrites the Host / :authority the destination sees.
    async fn authority_rewrite(build: FilterBuild) {
        let (wp, _bs) = reviews(build, &vs("reviews", "\
  - rewrite: {authority: reviews.example.com}
    route: [{destination: {host: reviews, subset: v1}}]
")).await;
        let e = echo(&wp.get(REVIEWS, "/a").await.unwrap());
        assert_eq!(e.authority, "reviews.example.com");
        assert_eq!(e.path, "/a");
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRedirect
    // `uri` / `authority` replace those parts of the URL; `redirectCode` defaults to 301.
    async fn redirect(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - match: [{uri: {exact: /v1/getProductRatings}}]
    redirect: {uri: /v1/bookRatings}
  - match: [{uri: {exact: /moved}}]
    redirect: {uri: /new, authority: newreviews.default.svc.cluster.local, redirectCode: 302}
")).await;
        let reply = wp.get(REVIEWS, "/v1/getProductRatings").await.unwrap();
        assert_eq!(reply.status, 301, "{}", reply.text());
        assert_eq!(reply.header("location"), Some("http://reviews:9080/v1/bookRatings"));
        let reply = wp.get(REVIEWS, "/moved").await.unwrap();
        assert_eq!(reply.status, 302, "{}", reply.text());
        let location = reply.header("location").unwrap();
        assert!(
            location.starts_with("http://newreviews.default.svc.cluster.local")
                && location.ends_with("/new"),
            "{location}"
        );
        assert_eq!(counts(&bs), [0, 0, 0]);
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPDirectResponse
    // The proxy answers with the status and body; no destination is contacted.
    async fn direct_response(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - match: [{uri: {prefix: /maintenance}}]
    directResponse: {status: 503, body: {string: 'down for maintenance'}}
  - route: [{destination: {host: reviews, subset: v1}}]
")).await;
        let reply = wp.get(REVIEWS, "/maintenance/x").await.unwrap();
        assert_eq!(reply.status, 503);
        assert_eq!(reply.text(), "down for maintenance");
        assert_eq!(reply.header("x-backend"), None);
        assert_eq!(counts(&bs), [0, 0, 0]);
        assert_eq!(wp.get(REVIEWS, "/").await.unwrap().status, 200);
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#CorsPolicy
    // A preflight from an allowed origin is answered by the proxy with the Access-Control-*
    // headers; an actual cross-origin request is forwarded and its response gets
    // `access-control-allow-origin` (and the exposed headers) for allowed origins only.
    async fn cors(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route: [{destination: {host: reviews, subset: v1}}]
    corsPolicy:
      allowOrigins: [{exact: 'https://example.com'}]
      allowMethods: [POST, GET]
      allowHeaders: [x-custom]
      exposeHeaders: [x-exposed]
      maxAge: 24h
")).await;
        let preflight = wp
            .send(
                Method::OPTIONS,
                REVIEWS,
                "/cors",
                &[("origin", "https://example.com"), ("access-control-request-method", "POST")],
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(preflight.status, 200, "{}", preflight.text());
        assert_eq!(preflight.header("access-control-allow-origin"), Some("https://example.com"));
        assert_eq!(preflight.header("access-control-allow-methods"), Some("POST,GET"));
        assert_eq!(preflight.header("access-control-allow-headers"), Some("x-custom"));
        assert_eq!(preflight.header("access-control-max-age"), Some("86400"));
        assert_eq!(preflight.header("x-backend"), None);
        assert_eq!(bs[0].request_count(), 0, "the preflight reached the backend");

        let actual = wp.get_with(REVIEWS, "/cors", &[("origin", "https://example.com")]).await.unwrap();
        assert_eq!(actual.status, 200);
        assert_eq!(actual.header("access-control-allow-origin"), Some("https://example.com"));
        assert_eq!(actual.header("access-control-expose-headers"), Some("x-exposed"));

        let other = wp.get_with(REVIEWS, "/cors", &[("origin", "https://evil.example")]).await.unwrap();
        assert_eq!(other.status, 200);
        assert_eq!(other.header("access-control-allow-origin"), None);
        assert_eq!(bs[0].request_count(), 2);
    }

    // https://istio.io/latest/docs/reference/config/security/authorization-policy/
    // DENY rules on `to.operation.methods`, `to.operation.paths` and `when` request headers:
    // a matching request gets 403 `RBAC: access denied` and never reaches the destination.
    async fn authz_deny(build: FilterBuild) {
        let (wp, bs) = reviews(build, "\
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-deny, namespace: default}
spec:
  targetRefs: [{kind: Service, group: '', name: reviews}]
  action: DENY
  rules:
  - to: [{operation: {methods: [DELETE]}}]
  - to: [{operation: {paths: ['/admin/*']}}]
  - when: [{key: 'request.headers[x-block]', values: ['yes']}]
").await;
        let delete = wp.send(Method::DELETE, REVIEWS, "/r", &[], Bytes::new()).await.unwrap();
        assert!(is_rbac_denied(&delete), "{} {}", delete.status, delete.text());
        assert!(is_rbac_denied(&wp.get(REVIEWS, "/admin/users").await.unwrap()));
        assert!(is_rbac_denied(&wp.get_with(REVIEWS, "/r", &[("x-block", "yes")]).await.unwrap()));
        let before = bs[0].request_count() + bs[1].request_count() + bs[2].request_count();
        assert_eq!(before, 0);
        for reply in [
            wp.get(REVIEWS, "/r").await.unwrap(),
            wp.get(REVIEWS, "/administrator").await.unwrap(),
            wp.get_with(REVIEWS, "/r", &[("x-block", "no")]).await.unwrap(),
            wp.send(Method::POST, REVIEWS, "/r", &[], "b").await.unwrap(),
        ] {
            assert_eq!(reply.status, 200, "{}", reply.text());
        }
    }

    // https://istio.io/latest/docs/reference/config/security/authorization-policy/
    // With an ALLOW policy, only requests matching one of its rules are allowed (method AND
    // path AND header condition of one rule); everything else is denied.
    async fn authz_allow(build: FilterBuild) {
        let (wp, bs) = reviews(build, "\
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-allow, namespace: default}
spec:
  targetRefs: [{kind: Service, group: '', name: reviews}]
  action: ALLOW
  rules:
  - to: [{operation: {methods: [GET], paths: ['/public/*']}}]
  - to: [{operation: {methods: [POST]}}]
    when: [{key: 'request.headers[x-token]', values: ['secret']}]
").await;
        assert_eq!(wp.get(REVIEWS, "/public/a").await.unwrap().status, 200);
        let ok = wp.send(Method::POST, REVIEWS, "/x", &[("x-token", "secret")], "b").await.unwrap();
        assert_eq!(ok.status, 200);
        let allowed = bs.iter().map(Backend::request_count).sum::<usize>();
        assert_eq!(allowed, 2);
        for reply in [
            wp.get(REVIEWS, "/private").await.unwrap(),
            wp.send(Method::PUT, REVIEWS, "/public/a", &[], "b").await.unwrap(),
            wp.send(Method::POST, REVIEWS, "/x", &[("x-token", "wrong")], "b").await.unwrap(),
            wp.send(Method::POST, REVIEWS, "/x", &[], "b").await.unwrap(),
        ] {
            assert!(is_rbac_denied(&reply), "{} {}", reply.status, reply.text());
        }
        assert_eq!(bs.iter().map(Backend::request_count).sum::<usize>(), allowed);
    }

    // https://istio.io/latest/docs/reference/config/security/authorization-policy/#Source
    // Source conditions on the plain listener, where the peer is 127.0.0.1 without mTLS:
    // `ipBlocks` match the peer address; `principals` never match a peer without an identity,
    // so such an ALLOW denies it; `notPrincipals: ["*"]` matches exactly the unauthenticated
    // peers (the "deny plaintext" pattern of the authorization docs). One service per case.
    async fn authz_source(build: FilterBuild) {
        let apps = ["ipallow", "ipdeny", "principal", "plaintext", "otherip"];
        let mut bs = Vec::new();
        for app in apps {
            bs.push(Backend::start(app, "v1").await.unwrap());
        }
        let mut yaml = String::new();
        for (app, b) in apps.iter().zip(&bs) {
            yaml.push_str(&app_yaml(app, &[b]));
        }
        let policy = |app: &str, action: &str, source: &str| {
            format!("---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {app}, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: '', name: {app}}}]
  action: {action}
  rules:
  - from: [{{source: {source}}}]
")
        };
        yaml.push_str(&policy("ipallow", "ALLOW", "{ipBlocks: ['127.0.0.0/8']}"));
        yaml.push_str(&policy("ipdeny", "DENY", "{ipBlocks: ['127.0.0.1']}"));
        yaml.push_str(&policy("principal", "ALLOW", "{principals: ['cluster.local/ns/default/sa/sleep']}"));
        yaml.push_str(&policy("plaintext", "DENY", "{notPrincipals: ['*']}"));
        yaml.push_str(&policy("otherip", "ALLOW", "{ipBlocks: ['10.0.0.0/8']}"));
        let wp = start(build, &yaml).await;
        let status = |app: &'static str| {
            let wp = &wp;
            async move {
                let reply = wp.get(&format!("{app}:9080"), "/").await.unwrap();
                if reply.status == 403 {
                    assert!(is_rbac_denied(&reply), "{app}: {}", reply.text());
                }
                reply.status.as_u16()
            }
        };
        assert_eq!(status("ipallow").await, 200);
        assert_eq!(status("ipdeny").await, 403);
        assert_eq!(status("principal").await, 403);
        assert_eq!(status("plaintext").await, 403);
        assert_eq!(status("otherip").await, 403);
        assert_eq!(counts(&bs), [1, 0, 0, 0, 0]);

        // The peer address is the socket's, not whatever the client writes in
        // x-forwarded-for: a forged header neither unlocks `otherip` nor escapes `ipdeny`.
        for (app, expected) in [("otherip:9080", 403), ("ipdeny:9080", 403), ("ipallow:9080", 200)] {
            let reply = wp
                .get_with(app, "/", &[("x-forwarded-for", "10.1.2.3")])
                .await
                .unwrap();
            assert_eq!(reply.status, expected, "{app} with a forged x-forwarded-for");
        }
    }

    // https://istio.io/latest/docs/ambient/usage/waypoint/ — a waypoint serves the services
    // it was configured for; a Host naming no known service (or not a port of it) gets 404
    // (Envoy's "no route" for an unknown virtual host).
    async fn unknown_service_404(build: FilterBuild) {
        let (wp, bs) = reviews(build, "").await;
        assert_eq!(wp.get(REVIEWS, "/").await.unwrap().status, 200);
        for host in ["nope:9080", "reviews:9999", "reviews.other:9080"] {
            let reply = wp.get(host, "/").await.unwrap();
            assert_eq!(reply.status, 404, "{host}: {}", reply.text());
        }
        assert_eq!(counts(&bs).iter().sum::<usize>(), 1);
    }

    // Fail closed (design.md): a policy the engine rejects makes the filter's configuration
    // fail (proxy-wasm `on_configure` returns false), so `envoy --mode validate` fails and
    // Envoy does not start serving.
    async fn invalid_policy_rejected(build: FilterBuild) {
        let b = Backend::start("reviews-v1", "v1").await.unwrap();
        let compiled = compile_yaml(&app_yaml("reviews", &[&b])).unwrap();
        let good = policy_json(&compiled).unwrap();
        let opts = build.envoy_options().unwrap();
        let config = |policy: &str| {
            let launch = layover_integration::Launch {
                dir: std::env::temp_dir(),
                access_log: "/dev/null".into(),
            };
            waypoint_bootstrap(&compiled, build.http_filter(policy).unwrap(), &launch).unwrap()
        };
        // The valid policy passes, so the failures below are the policy's.
        validate_config_with(&config(&good), &opts).unwrap();

        let mut bad: serde_json::Value = serde_json::from_str(&good).unwrap();
        bad["schemaVersion"] = 999.into();
        let bad = bad.to_string();
        for policy in [bad.as_str(), "{not json", "{}"] {
            let err = validate_config_with(&config(policy), &opts)
                .expect_err(&format!("validate accepted policy {policy:.60}"));
            assert!(err.to_string().contains("layover"), "{err}");
        }
        let started = Envoy::start_with(&opts, |launch| {
            waypoint_bootstrap(&compiled, build.http_filter(&bad).unwrap(), launch)
        })
        .await;
        let err = started.expect_err("Envoy started with an invalid policy");
        assert!(err.to_string().contains("schema_version"), "{err}");
        assert_eq!(b.request_count(), 0);
    }

    // Security (design.md "The client cannot steer internals"): a client-sent
    // `x-layover-cluster` neither picks the cluster nor reaches the upstream.
    async fn client_cannot_pick_the_cluster(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route: [{destination: {host: reviews, subset: v1}}]
")).await;
        let v2 = "outbound|9080|v2|reviews.default.svc.cluster.local";
        for _ in 0..3 {
            let reply = wp.get_with(REVIEWS, "/", &[("x-layover-cluster", v2)]).await.unwrap();
            let e = echo(&reply);
            assert_eq!(e.subset, "v1");
            assert!(!e.headers.contains_key("x-layover-cluster"), "{:?}", e.headers);
        }
        // Not even where layover picks no cluster at all (unknown service, denied, direct).
        let reply = wp.get_with("nope:9080", "/", &[("x-layover-cluster", v2)]).await.unwrap();
        assert_eq!(reply.status, 404);
        assert_eq!(counts(&bs), [3, 0, 0]);
    }

    // Security: client-sent router controls (`x-envoy-retry-on`, `x-envoy-max-retries`,
    // `x-envoy-upstream-rq-timeout-ms`, per-try timeout) change nothing: the route's own
    // (Istio default: 2 retries on 503 etc.; no timeout) apply, and the upstream never sees them.
    async fn client_cannot_steer_retries_or_timeouts(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 0}
")).await;
        // Retries are off for this route: a client asking for 5 retries on 5xx gets one try.
        bs[0].fail_next(1);
        let reply = wp
            .get_with(REVIEWS, "/", &[("x-envoy-retry-on", "5xx,retriable-status-codes"), ("x-envoy-max-retries", "5"), ("x-envoy-retriable-status-codes", "503")])
            .await
            .unwrap();
        assert_eq!(reply.status, 503);
        assert_eq!(bs[0].request_count(), 1, "the client's retry policy was applied");

        // The route has no timeout: a client's 50 ms upstream (and per-try) timeout is ignored.
        let stall = Duration::from_millis(600);
        bs[0].stall_next(stall);
        let started = Instant::now();
        let reply = wp
            .get_with(REVIEWS, "/", &[("x-envoy-upstream-rq-timeout-ms", "50"), ("x-envoy-upstream-rq-per-try-timeout-ms", "50")])
            .await
            .unwrap();
        assert!(started.elapsed() >= stall);
        let e = echo(&reply);
        for h in ["x-envoy-retry-on", "x-envoy-max-retries", "x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms"] {
            assert!(!e.headers.contains_key(h), "upstream saw {h}: {:?}", e.headers);
        }
    }

    // Security: with a retry policy on the route, a client cannot raise the attempts.
    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRetry
    async fn client_cannot_raise_retries(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 1, retryOn: 5xx}
")).await;
        bs[0].fail_next(5);
        let reply = wp
            .get_with(REVIEWS, "/", &[("x-envoy-max-retries", "4"), ("x-envoy-retry-on", "5xx")])
            .await
            .unwrap();
        assert_eq!(reply.status, 503);
        assert_eq!(bs[0].request_count(), 2);
    }

    // Security: the fault filter's header controls (`x-envoy-fault-delay-request`,
    // `x-envoy-fault-abort-request`) are not stripped by Envoy itself (envoy-1.40-facts.md); the
    // filter removes them so no client can inject delays or aborts anywhere downstream of it.
    async fn client_cannot_inject_faults(build: FilterBuild) {
        let (wp, bs) = reviews(build, &vs("reviews", "\
  - route: [{destination: {host: reviews, subset: v1}}]
")).await;
        let started = Instant::now();
        let reply = wp
            .get_with(
                REVIEWS,
                "/",
                &[
                    ("x-envoy-fault-delay-request", "3000"),
                    ("x-envoy-fault-abort-request", "503"),
                    ("x-envoy-fault-abort-request-percentage", "100"),
                    ("x-envoy-fault-delay-request-percentage", "100"),
                ],
            )
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        let e = echo(&reply);
        assert!(
            !e.headers.keys().any(|k| k.starts_with("x-envoy-fault")),
            "upstream saw fault controls: {:?}",
            e.headers
        );
        assert_eq!(bs[0].request_count(), 1);
    }
}
