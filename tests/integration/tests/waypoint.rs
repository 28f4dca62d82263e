//! The layover waypoint under a real Envoy 1.40: Istio YAML for real backends is compiled with
//! `layover_compiler`, loaded into Envoy as the layover filter's configuration, and requests go
//! through the plain-HTTP listener (the service is resolved from the `Host` header).
//!
//! Every test body is written once and runs once per filter build ([`FilterBuild`]): the
//! `both_builds!` macro generates one `#[tokio::test]` per build, in `mod wasm` and
//! `mod dynamic_module`. Each test starts its own backends and Envoy on kernel-picked ports, so
//! tests run in parallel. A test covers a few related behaviours, each on its own services
//! (own backends, own VirtualService) in the same Envoy: starting Envoy with the wasm module
//! (V8 compiling it) is what a test costs, and the suite must stay fast on a 2-core machine.
//!
//! Each behaviour names the Istio document it encodes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use layover_envoyfilter::IstioVersion;
use layover_integration::waypoint::{
    app_yaml, assign_vips, compile_yaml, launch_options, policy_json, subsets_yaml,
    waypoint_bootstrap, FilterBuild, Shape, Waypoint,
};
use layover_integration::{validate_config_with, Backend, Echo, Envoy, Launch, Reply};

/// Generates, for each `async fn name(build: FilterBuild) { … }`, the body once and one
/// `#[tokio::test]` per filter build, plus one against the native translation
/// ([`FilterBuild::Native`], the oracle) — against layover's own bootstrap (`mod wasm`,
/// `mod dynamic_module`, `mod native`) and against the istiod-shaped waypoint, layover attached
/// only by the route A EnvoyFilter (`mod istiod_wasm`, `mod istiod_dynamic_module`) and istiod's
/// own configuration (`mod istiod_native`); see [`Shape`]. Markers, in this order, each with
/// the reason:
/// - `layover_only("…")`: a behaviour only layover has — no native test in either shape;
/// - `own_bootstrap_only("…")`: specific to layover's own bootstrap — no istiod-shape test;
/// - `istiod_native_differs("…")`: istiod's own configuration is known to answer otherwise —
///   no `istiod_native` test.
macro_rules! both_builds {
    ($($(#[$attr:meta])*
       $(layover_only($why:literal))?
       $(own_bootstrap_only($own:literal))?
       $(istiod_native_differs($differs:literal))?
       async fn $name:ident($build:ident: FilterBuild) $body:block)*) => {
        $($(#[$attr])* async fn $name($build: FilterBuild) $body)*

        per_build!(wasm, FilterBuild::Wasm, $($name)*);
        // The one switch for the dynamic-module build (needs target/release/liblayover_module.so,
        // `cargo xtask build-dynamic-module`; LAYOVER_DYNAMIC_MODULE_DIR overrides the directory).
        // Comment this line out to run the suite on the wasm build only.
        per_build!(dynamic_module, FilterBuild::DynamicModule, $($name)*);
        mod native {
            use super::*;
            $(native_test!($name $(, $why)?);)*
        }
        mod istiod_wasm {
            use super::*;
            $(istiod_test!(FilterBuild::Wasm, $name [$($own)?]);)*
        }
        mod istiod_dynamic_module {
            use super::*;
            $(istiod_test!(FilterBuild::DynamicModule, $name [$($own)?]);)*
        }
        mod istiod_native {
            use super::*;
            $(istiod_test!(FilterBuild::Native, $name [$($why)? $($own)? $($differs)?]);)*
        }
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

/// The native variant of one test, unless it is marked `layover_only`.
macro_rules! native_test {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            super::$name(FilterBuild::Native).await;
        }
    };
    ($name:ident, $why:literal) => {
        // Layover-only: the reason is in the test's `layover_only(...)` marker.
        const _: &str = $why;
    };
}

/// The istiod-shape variant of one test for `$build`, unless a marker (its reason in brackets)
/// excludes it.
macro_rules! istiod_test {
    ($build:expr, $name:ident []) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            Shape::Istiod.scope(super::$name($build)).await;
        }
    };
    ($build:expr, $name:ident [$($why:literal)+]) => {
        // Excluded in the istiod shape: the reason is in the test's marker.
        $(const _: &str = $why;)+
    };
}

// ---------------------------------------------------------------------------------- fixtures

/// Every app of a test gets backends v1, v2 and v3 and a DestinationRule with those subsets.
const VERSIONS: [&str; 3] = ["v1", "v2", "v3"];

/// `Host` for an app's service port.
fn host(app: &str) -> String {
    format!("{app}:9080")
}

/// The running backends of each app, by app name.
struct Apps(BTreeMap<String, Vec<Backend>>);

impl Apps {
    fn of(&self, app: &str) -> &[Backend] {
        &self.0[app]
    }

    /// Requests each version of `app` received.
    fn counts(&self, app: &str) -> Vec<usize> {
        self.of(app).iter().map(Backend::request_count).collect()
    }

    fn total(&self, app: &str) -> usize {
        self.counts(app).iter().sum()
    }
}

/// Starts backends v1..v3 for each app, writes a Service, WorkloadEntries and a
/// DestinationRule per app plus `extra` (VirtualServices, policies), and starts the waypoint.
/// Several apps in one Envoy let one test cover related behaviours with one Envoy start (the
/// V8 compile of the module dominates a test's cost).
async fn mesh(build: FilterBuild, apps: &[&str], extra: &str) -> (Waypoint, Apps) {
    mesh_at(build, apps, extra, IstioVersion::PINNED).await
}

/// [`mesh`] with the routing defaults (and, in the istiod shape, the waypoint) of Istio
/// release `istio`.
async fn mesh_at(
    build: FilterBuild,
    apps: &[&str],
    extra: &str,
    istio: IstioVersion,
) -> (Waypoint, Apps) {
    let mut yaml = String::new();
    let mut out = BTreeMap::new();
    for app in apps {
        let mut bs = Vec::new();
        for v in VERSIONS {
            bs.push(Backend::start(&format!("{app}-{v}"), v).await.unwrap());
        }
        yaml.push_str(&app_yaml(app, &bs.iter().collect::<Vec<_>>()));
        yaml.push_str(&subsets_yaml(app, &VERSIONS));
        out.insert(app.to_string(), bs);
    }
    yaml.push_str(extra);
    let wp = Waypoint::start_at(Shape::current(), build, &yaml, istio)
        .await
        .unwrap_or_else(|e| panic!("[{}] {e}", build.name()));
    (wp, Apps(out))
}

/// A VirtualService for `app` with the given `http:` list (YAML, items indented by two
/// spaces; the first line may lose its indentation to a `\` string continuation).
fn vs(app: &str, http: &str) -> String {
    let pad = if http.starts_with("  ") { "" } else { "  " };
    format!(
        "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {app}
  namespace: default
spec:
  hosts: [{app}]
  http:
{pad}{http}"
    )
}

/// An AuthorizationPolicy bound to the Service `app` (the waypoint way: `targetRefs`), with
/// `rules` (YAML list items indented by two spaces).
fn authz(app: &str, action: &str, rules: &str) -> String {
    let pad = if rules.starts_with("  ") { "" } else { "  " };
    format!(
        "---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: {app}
  namespace: default
spec:
  targetRefs: [{{kind: Service, group: '', name: {app}}}]
  action: {action}
  rules:
{pad}{rules}"
    )
}

fn echo(reply: &Reply) -> Echo {
    assert_eq!(reply.status, 200, "body: {}", reply.text());
    reply.json().unwrap()
}

/// The subset (version) of the backend that answered.
fn served_by(reply: &Reply) -> String {
    echo(reply).subset
}

/// Sends `n` GETs for `app` over `concurrency` keep-alive connections (in the istiod shape,
/// `concurrency` requests in flight, each in its own CONNECT).
async fn many(wp: &Waypoint, app: &str, n: usize, concurrency: usize) -> Vec<Reply> {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..concurrency {
        let sender = wp.sender();
        let host = host(app);
        let share = n / concurrency + usize::from(c < n % concurrency);
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(share);
            for _ in 0..share {
                out.push(
                    sender
                        .send(Method::GET, &host, "/", &[], Bytes::new())
                        .await
                        .unwrap(),
                );
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

/// Lower bound for a duration Envoy's timers measure: they run on the event loop's cached
/// clock, so a timer armed for `ms` can fire a millisecond or two before `ms` of wall time passed
/// since the client sent the request (measured: 398 ms for a 400 ms route timeout).
fn at_least(ms: u64) -> Duration {
    Duration::from_millis(ms.saturating_sub(20))
}

fn assert_rbac_denied(reply: &Reply, what: &str) {
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (403, "RBAC: access denied"),
        "{what}"
    );
}

// ------------------------------------------------------------------------------------ tests

both_builds! {
    // VirtualService `mirror` (istiod: the route's request_mirror_policies,
    // route/route.go:518-548 @ 1.30.3): every request is copied to the shadow subset with
    // `-shadow` on the host before the port (Envoy's `shadowAppendedHost`), and the primary's
    // answer is what the client gets. The first five primaries stall, so their mirrors'
    // responses arrive while the request is still in flight (the wasm build is called back
    // for them); the rest answer at once.
    async fn mirror_copies_every_request(build: FilterBuild) {
        let yaml = vs("mirror", "\
  - route: [{destination: {host: mirror, subset: v1}}]
    mirror: {host: mirror, subset: v3}
    mirrorPercentage: {value: 100}
");
        let (wp, apps) = mesh(build, &["mirror"], &yaml).await;
        for i in 0..5 {
            apps.of("mirror")[0].stall_next(Duration::from_millis(200));
            let reply = wp.get(&host("mirror"), &format!("/m{i}")).await.unwrap();
            assert_eq!(served_by(&reply), "v1", "request {i}");
        }
        for i in 5..10 {
            let reply = wp.get(&host("mirror"), &format!("/m{i}")).await.unwrap();
            assert_eq!(served_by(&reply), "v1", "request {i}");
        }
        let shadow = &apps.of("mirror")[2];
        let started = Instant::now();
        while shadow.request_count() < 10 && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = shadow.received();
        assert_eq!(got.len(), 10, "every request mirrored once: {got:?}");
        for e in &got {
            assert_eq!(e.authority, "mirror-shadow:9080");
            assert!(e.path.starts_with("/m"), "{}", e.path);
        }
        assert_eq!(apps.of("mirror")[1].request_count(), 0);
    }

    // Route matching (VirtualService HTTPMatchRequest), one service per behaviour.
    async fn route_matching(build: FilterBuild) {
        let yaml = [
            vs("exact", "\
  - match: [{uri: {exact: /exact}}]
    route: [{destination: {host: exact, subset: v2}}]
  - route: [{destination: {host: exact, subset: v1}}]
"),
            vs("prefix", "\
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: prefix, subset: v3}}]
"),
            vs("regex", "\
  - match: [{uri: {regex: '/reviews/[0-9]+'}}]
    route: [{destination: {host: regex, subset: v2}}]
  - route: [{destination: {host: regex, subset: v1}}]
"),
            vs("headers", "\
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: headers, subset: v2}}]
  - match: [{headers: {x-canary: {regex: 'yes|true'}}}]
    route: [{destination: {host: headers, subset: v3}}]
  - route: [{destination: {host: headers, subset: v1}}]
"),
            vs("query", "\
  - match: [{queryParams: {version: {exact: v2}}}]
    route: [{destination: {host: query, subset: v2}}]
  - route: [{destination: {host: query, subset: v1}}]
"),
            vs("method", "\
  - match: [{method: {exact: POST}}]
    route: [{destination: {host: method, subset: v2}}]
  - route: [{destination: {host: method, subset: v1}}]
"),
            vs("order", "\
  - match:
    - uri: {prefix: /api}
      headers: {x-team: {exact: a}}
    - uri: {exact: /legacy}
    route: [{destination: {host: order, subset: v3}}]
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: order, subset: v1}}]
  - match: [{uri: {exact: /api/special}}]
    route: [{destination: {host: order, subset: v2}}]
"),
        ]
        .concat();
        let apps_list = ["exact", "prefix", "regex", "headers", "query", "method", "order", "known"];
        let (wp, apps) = mesh(build, &apps_list, &yaml).await;

        // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPMatchRequest
        // and #StringMatch: `uri.exact` is the whole path without the query; `uri.prefix` a plain
        // string prefix; `uri.regex` RE2 matched against the whole path. A request no route of the
        // VirtualService matches gets 404.
        let sub = |app: &'static str, path: &'static str| {
            let wp = &wp;
            async move { served_by(&wp.get(&host(app), path).await.unwrap()) }
        };
        // exact
        assert_eq!(sub("exact", "/exact").await, "v2");
        assert_eq!(sub("exact", "/exact?x=1").await, "v2");
        assert_eq!(sub("exact", "/exact/").await, "v1");
        assert_eq!(sub("exact", "/exactly").await, "v1");
        assert_eq!(apps.counts("exact"), [2, 2, 0]);
        // prefix: the path reaches the upstream unchanged, query included
        for path in ["/api", "/api/v1/x?q=/y", "/apiary"] {
            let reply = wp.get(&host("prefix"), path).await.unwrap();
            assert_eq!(served_by(&reply), "v3", "{path}");
            assert_eq!(echo(&reply).path, path);
        }
        let reply = wp.get(&host("prefix"), "/other").await.unwrap();
        assert_eq!(reply.status, 404, "{}", reply.text());
        assert_eq!(apps.counts("prefix"), [0, 0, 3]);
        // regex: full match only
        assert_eq!(sub("regex", "/reviews/123").await, "v2");
        assert_eq!(sub("regex", "/reviews/123?x=abc").await, "v2");
        assert_eq!(sub("regex", "/reviews/123x").await, "v1");
        assert_eq!(sub("regex", "/x/reviews/1").await, "v1");
        assert_eq!(apps.counts("regex"), [2, 2, 0]);

        // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPMatchRequest
        // `headers` (lower-case keys; exact / regex values — the `end-user: jason` rule of
        // https://istio.io/latest/docs/tasks/traffic-management/request-routing/), `queryParams`
        // (exact on the parameter value) and `method`.
        let h = host("headers");
        let with = |hs: &'static [(&'static str, &'static str)]| {
            let (wp, h) = (&wp, &h);
            async move { served_by(&wp.get_with(h, "/", hs).await.unwrap()) }
        };
        assert_eq!(with(&[("end-user", "jason")]).await, "v2");
        assert_eq!(with(&[("end-user", "Jason")]).await, "v1");
        assert_eq!(with(&[("x-canary", "true")]).await, "v3");
        assert_eq!(with(&[("x-canary", "truex")]).await, "v1");
        assert_eq!(with(&[]).await, "v1");
        assert_eq!(apps.counts("headers"), [3, 1, 1]);

        let q = host("query");
        for (path, subset) in [
            ("/r?version=v2", "v2"),
            ("/r?a=1&version=v2", "v2"),
            ("/r?version=v22", "v1"),
            ("/r?xversion=v2", "v1"),
            ("/r/version=v2", "v1"),
        ] {
            assert_eq!(served_by(&wp.get(&q, path).await.unwrap()), subset, "{path}");
        }
        assert_eq!(apps.counts("query"), [3, 2, 0]);

        let m = host("method");
        let post = wp.send(Method::POST, &m, "/", &[], "x").await.unwrap();
        assert_eq!(served_by(&post), "v2");
        assert_eq!(echo(&post).method, "POST");
        let put = wp.send(Method::PUT, &m, "/", &[], "x").await.unwrap();
        assert_eq!(served_by(&put), "v1");
        assert_eq!(served_by(&wp.get(&m, "/").await.unwrap()), "v1");
        assert_eq!(apps.counts("method"), [2, 1, 0]);

        // https://istio.io/latest/docs/reference/config/networking/virtual-service/#VirtualService
        // "Routing rules are evaluated in sequential order from top to bottom, with the first rule
        // in the list given the highest priority": an earlier broader rule shadows a later one.
        // Within one rule, several match blocks are ORed; conditions inside a block are ANDed.
        let h = host("order");
        assert_eq!(served_by(&wp.get(&h, "/api/special").await.unwrap()), "v1");
        let a = wp.get_with(&h, "/api/special", &[("x-team", "a")]).await.unwrap();
        assert_eq!(served_by(&a), "v3");
        assert_eq!(served_by(&wp.get(&h, "/legacy").await.unwrap()), "v3");
        assert_eq!(apps.counts("order"), [1, 0, 2]);

        // https://istio.io/latest/docs/ambient/usage/waypoint/ — a waypoint serves the services
        // it is configured for: a Host naming no known service (or not a port of it) gets 404.
        assert_eq!(wp.get(&host("known"), "/").await.unwrap().status, 200);
        // Own bootstrap only: there `Host` selects the service. In istiod's waypoint the
        // CONNECT's VIP:port selects the chain, and a Host naming no service port has no VIP
        // ztunnel could send it to (istiod has no chain for it).
        if wp.shape == Shape::OwnBootstrap {
            for h in ["nope:9080", "known:9999", "known.other:9080"] {
                let reply = wp.get(h, "/").await.unwrap();
                assert_eq!(reply.status, 404, "{h}: {}", reply.text());
            }
        }
        assert_eq!(apps.total("known"), 1);
    }

    // Destinations: weights and DestinationRule subsets.
    async fn weighted_split_and_subsets(build: FilterBuild) {
        let yaml = [
            vs("split", "\
  - route:
    - {destination: {host: split, subset: v1}, weight: 60}
    - {destination: {host: split, subset: v2}, weight: 30}
    - {destination: {host: split, subset: v3}, weight: 10}
"),
            vs("reviews", "\
  - route: [{destination: {host: reviews, subset: v2}}]
"),
        ]
        .concat();
        let (wp, apps) = mesh(build, &["split", "reviews", "ratings"], &yaml).await;

        // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRouteDestination
        // `weight`: the share of traffic each destination gets
        // (https://istio.io/latest/docs/tasks/traffic-management/traffic-shifting/).
        const N: usize = 1200;
        let replies = many(&wp, "split", N, 8).await;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for r in &replies {
            *seen.entry(served_by(r)).or_default() += 1;
        }
        let observed: Vec<usize> = VERSIONS
            .iter()
            .map(|v| seen.get(*v).copied().unwrap_or(0))
            .collect();
        assert_eq!(observed.iter().sum::<usize>(), N, "{seen:?}");
        assert_eq!(apps.counts("split"), observed);
        // 2 degrees of freedom; 13.82 is the 0.999 quantile: a correct split fails 1 run in 1000.
        let chi2 = chi_square(&observed, &[60.0, 30.0, 10.0]);
        assert!(chi2 < 13.82, "chi-square {chi2:.2} for {observed:?} vs 60/30/10");

        // https://istio.io/latest/docs/reference/config/networking/destination-rule/#Subset
        // A subset selects the endpoints carrying its labels: a route to a subset reaches only
        // them. A service without a VirtualService balances over all its endpoints.
        for _ in 0..10 {
            assert_eq!(served_by(&wp.get(&host("reviews"), "/").await.unwrap()), "v2");
        }
        assert_eq!(apps.counts("reviews"), [0, 10, 0]);
        for _ in 0..30 {
            let e = echo(&wp.get(&host("ratings"), "/").await.unwrap());
            assert!(e.name.starts_with("ratings-"), "{}", e.name);
        }
        let counts = apps.counts("ratings");
        assert_eq!(counts.iter().sum::<usize>(), 30);
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRetry
    // `retryOn` with a status code ('503') or `5xx`; `attempts` retries at most: a backend
    // failing twice answers on the third try; one failing always is tried 1 + attempts times
    // and its last 503 reaches the client.
    async fn retries(build: FilterBuild) {
        let (wp, apps) = mesh(build, &["ok3rd", "exhausted"], &format!("{}{}",
            vs("ok3rd", "\
  - route: [{destination: {host: ok3rd, subset: v1}}]
    retries: {attempts: 2, retryOn: '503'}
"),
            vs("exhausted", "\
  - route: [{destination: {host: exhausted, subset: v1}}]
    retries: {attempts: 2, retryOn: 5xx}
"),
        )).await;
        apps.of("ok3rd")[0].fail_next(2);
        let reply = wp.get(&host("ok3rd"), "/retry").await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(apps.counts("ok3rd"), [3, 0, 0]);
        // The access log of layover's own bootstrap; route A's chains log nothing (istiod's
        // access logging is the Telemetry API's, not the EnvoyFilter's), and istiod's
        // connect_terminate logs the CONNECT, one attempt.
        if wp.shape == Shape::OwnBootstrap {
            let log = wp.envoy.access_log(1).await.unwrap();
            assert_eq!(log[0]["attempts"], 3, "{log:?}");
        }

        apps.of("exhausted")[0].fail_next(10);
        let reply = wp.get(&host("exhausted"), "/retry").await.unwrap();
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert_eq!(apps.counts("exhausted"), [3, 0, 0]);
    }

    // DestinationRule `outlierDetection` on the waypoint's clusters (istiod
    // `applyOutlierDetection`, `cluster_traffic_policy.go:454-521 @ 1.30.3`, applied to
    // `inbound-vip` clusters at `cluster_waypoint.go:219-227`): with `consecutive5xxErrors: 1`
    // an endpoint is ejected on its first 5xx and gets nothing more; round robin would give it
    // every third request otherwise. The rule is the oldest of the host's two DestinationRules
    // (name order without timestamps), so its traffic policy is the one kept.
    async fn outlier_detection_ejects_a_failing_endpoint(build: FilterBuild) {
        let dr = "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a-ejecting-policy, namespace: default}
spec:
  host: ejecting
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 1, interval: 10s, baseEjectionTime: 5m, maxEjectionPercent: 100}
";
        let (wp, apps) = mesh(build, &["ejecting"], dr).await;
        apps.of("ejecting")[0].fail_next(1000);
        let mut statuses = Vec::new();
        for _ in 0..30 {
            statuses.push(wp.get(&host("ejecting"), "/").await.unwrap().status.as_u16());
        }
        let failed = statuses.iter().filter(|s| **s != 200).count();
        assert_eq!(failed, 1, "{statuses:?}");
        assert_eq!(apps.counts("ejecting")[0], 1, "{:?}", apps.counts("ejecting"));
        assert_eq!(apps.total("ejecting"), 30);
    }

    // The mesh default retry policy of a route without `retries`, per release
    // (`--istio-version`): up to 1.23 it retries a 503 (`retry/retry.go:48 @ 1.23.6`); from 1.24
    // it does not (commit 65aaaf4f8c5; `retry.go:34-56 @ 1.30.3`). In the istiod shape the
    // waypoint and the EnvoyFilter's attachment are that release's too.
    async fn mesh_default_retry_follows_the_release(build: FilterBuild) {
        for (istio, status, tries) in [("1.23.6", 200, 2), ("1.30.3", 503, 1)] {
            let route = vs("flaky", "  - route: [{destination: {host: flaky, subset: v1}}]\n");
            let (wp, apps) = mesh_at(build, &["flaky"], &route, istio.parse().unwrap()).await;
            apps.of("flaky")[0].fail_next(1);
            let reply = wp.get(&host("flaky"), "/").await.unwrap();
            assert_eq!(reply.status, status, "{istio}: {}", reply.text());
            assert_eq!(apps.counts("flaky"), [tries, 0, 0], "{istio}");
        }
    }

    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRetry
    // `perTryTimeout`: a try that takes longer is abandoned and retried (`5xx` covers timeouts).
    // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRoute
    // `timeout`: the whole request gets 504 once it elapses.
    async fn per_try_and_route_timeouts(build: FilterBuild) {
        let (wp, apps) = mesh(build, &["pertry", "timeout"], &format!("{}{}",
            vs("pertry", "\
  - route: [{destination: {host: pertry, subset: v1}}]
    retries: {attempts: 2, perTryTimeout: 300ms, retryOn: 5xx}
"),
            vs("timeout", "\
  - route: [{destination: {host: timeout, subset: v1}}]
    timeout: 400ms
"),
        )).await;
        let stall = Duration::from_secs(5);
        apps.of("pertry")[0].stall_next(stall);
        apps.of("timeout")[0].stall_next(stall);
        let timed = |app: &'static str| {
            let wp = &wp;
            async move {
                let started = Instant::now();
                let reply = wp.get(&host(app), "/slow").await.unwrap();
                (reply, started.elapsed())
            }
        };
        let ((pertry, pertry_took), (timeout, timeout_took)) =
            tokio::join!(timed("pertry"), timed("timeout"));

        assert_eq!(pertry.status, 200, "{}", pertry.text());
        assert_eq!(apps.counts("pertry"), [2, 0, 0]);
        assert!(pertry_took >= at_least(300), "{pertry_took:?}");
        assert!(pertry_took < Duration::from_secs(3), "stalled try waited out: {pertry_took:?}");

        assert_eq!(timeout.status, 504, "{}", timeout.text());
        assert_eq!(timeout.text(), "upstream request timeout");
        assert!(timeout_took >= at_least(400), "{timeout_took:?}");
        assert!(timeout_took < Duration::from_secs(3), "{timeout_took:?}");
        // A fast answer is unaffected by the route timeout.
        assert_eq!(wp.get(&host("timeout"), "/fast").await.unwrap().status, 200);
    }

    // Fault injection (VirtualService HTTPFaultInjection).
    async fn faults(build: FilterBuild) {
        let yaml = [
            vs("always", "\
  - route: [{destination: {host: always, subset: v1}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
"),
            vs("some", "\
  - route: [{destination: {host: some, subset: v1}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 30}}}
"),
            vs("delay", "\
  - route: [{destination: {host: delay, subset: v1}}]
    fault: {delay: {fixedDelay: 500ms, percentage: {value: 100}}}
"),
            vs("delayabort", "\
  - route: [{destination: {host: delayabort, subset: v1}}]
    fault:
      delay: {fixedDelay: 500ms, percentage: {value: 100}}
      abort: {httpStatus: 429, percentage: {value: 100}}
"),
        ]
        .concat();
        let (wp, apps) = mesh(build, &["always", "some", "delay", "delayabort"], &yaml).await;

        // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPFaultInjection-Abort
        // An abort answers the status without contacting the destination, for `percentage` of
        // the requests (100% and 30% here).
        for _ in 0..5 {
            let reply = wp.get(&host("always"), "/").await.unwrap();
            assert_eq!((reply.status.as_u16(), reply.text().as_str()), (418, "fault filter abort"));
        }
        assert_eq!(apps.total("always"), 0);

        const N: usize = 600;
        let replies = many(&wp, "some", N, 8).await;
        let aborted = replies
            .iter()
            .filter(|r| r.status == 503 && r.text() == "fault filter abort")
            .count();
        let ok = replies.iter().filter(|r| r.status == 200).count();
        assert_eq!(aborted + ok, N);
        assert_eq!(apps.total("some"), ok);
        // Binomial(600, 0.3): mean 180, sd 11.2; accept ±5 sd.
        let (mean, sd) = (N as f64 * 0.3, (N as f64 * 0.3 * 0.7).sqrt());
        assert!(
            (aborted as f64 - mean).abs() < 5.0 * sd,
            "{aborted} of {N} aborted, expected about {mean}"
        );

        // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPFaultInjection-Delay
        // `fixedDelay`: the request (its body included) is held before it is forwarded. With an
        // abort as well, the abort answers after the delay (Envoy's fault filter order).
        let h = host("delay");
        let body = Bytes::from(vec![b'x'; 64 * 1024]);
        let (get, post, aborted) = tokio::join!(
            async {
                let started = Instant::now();
                (wp.get(&h, "/delayed").await.unwrap(), started.elapsed())
            },
            // A request with a body: the delay must hold the body too, not let it through.
            async {
                let started = Instant::now();
                let reply = wp.send(Method::POST, &h, "/delayed", &[], body.clone()).await.unwrap();
                (reply, started.elapsed())
            },
            async {
                let started = Instant::now();
                (wp.get(&host("delayabort"), "/").await.unwrap(), started.elapsed())
            },
        );
        assert_eq!(
            (aborted.0.status.as_u16(), aborted.0.text().as_str()),
            (429, "fault filter abort")
        );
        assert_eq!(apps.total("delayabort"), 0);
        assert_eq!(echo(&get.0).path, "/delayed");
        assert_eq!(echo(&post.0).body_len, body.len());
        for (what, took) in [("GET", get.1), ("POST", post.1), ("delay+abort", aborted.1)] {
            assert!(took >= at_least(500), "{what} took {took:?}");
            assert!(took < Duration::from_secs(3), "{what} took {took:?}");
        }
        assert_eq!(apps.counts("delay"), [2, 0, 0]);
    }

    // Header manipulation and CORS.
    async fn header_operations_and_cors(build: FilterBuild) {
        let yaml = [
            vs("hdrs", "\
  - route:
    - destination: {host: hdrs, subset: v1}
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
"),
            vs("cors", "\
  - route: [{destination: {host: cors, subset: v1}}]
    corsPolicy:
      allowOrigins: [{exact: 'https://example.com'}]
      allowMethods: [POST, GET]
      allowHeaders: [x-custom]
      exposeHeaders: [x-exposed]
      maxAge: 24h
"),
        ]
        .concat();
        let (wp, apps) = mesh(build, &["hdrs", "cors"], &yaml).await;

        // https://istio.io/latest/docs/reference/config/networking/virtual-service/#Headers
        // Route-level and destination-level `headers.request` / `headers.response` with set, add
        // and remove.
        apps.of("hdrs")[0].respond_next(
            1,
            200,
            &[("x-resp-remove", "1"), ("x-resp-add", "orig"), ("x-resp-set", "orig")],
        );
        let reply = wp
            .get_with(
                &host("hdrs"),
                "/h",
                &[("x-req-set", "client"), ("x-req-add", "orig"), ("x-req-remove", "1")],
            )
            .await
            .unwrap();
        let e = echo(&reply);
        let req = |name: &str| e.headers.get(name).map(String::as_str);
        assert_eq!(req("x-req-set"), Some("layover"));
        assert_eq!(req("x-req-add"), Some("orig,added"));
        assert_eq!(req("x-req-remove"), None, "{:?}", e.headers);
        assert_eq!(req("x-dest"), Some("v1"));
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

        // https://istio.io/latest/docs/reference/config/networking/virtual-service/#CorsPolicy
        // A preflight from an allowed origin is answered by the proxy with the Access-Control-*
        // headers; an actual cross-origin request is forwarded and its response gets
        // `access-control-allow-origin` (and the exposed headers) for allowed origins only.
        let h = host("cors");
        let preflight = wp
            .send(
                Method::OPTIONS,
                &h,
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
        assert_eq!(apps.total("cors"), 0, "the preflight reached the backend");

        let actual = wp.get_with(&h, "/cors", &[("origin", "https://example.com")]).await.unwrap();
        assert_eq!(actual.status, 200);
        assert_eq!(actual.header("access-control-allow-origin"), Some("https://example.com"));
        assert_eq!(actual.header("access-control-expose-headers"), Some("x-exposed"));

        let other = wp.get_with(&h, "/cors", &[("origin", "https://evil.example")]).await.unwrap();
        assert_eq!(other.status, 200);
        assert_eq!(other.header("access-control-allow-origin"), None);
        assert_eq!(apps.total("cors"), 2);
    }

    // Rewrites, redirects and direct responses.
    async fn rewrites_redirect_direct_response(build: FilterBuild) {
        let yaml = [
            vs("rewrite", r"
  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new}
    route: [{destination: {host: rewrite, subset: v1}}]
  - match: [{uri: {prefix: /service}}]
    rewrite:
      uriRegexRewrite: {match: '^/service/([^/]+)(/.*)$', rewrite: '\2/instance/\1'}
    route: [{destination: {host: rewrite, subset: v1}}]
  - match: [{uri: {prefix: /authority}}]
    rewrite: {authority: reviews.example.com}
    route: [{destination: {host: rewrite, subset: v1}}]
".trim_start_matches('\n')),
            vs("redirect", "\
  - match: [{uri: {exact: /v1/getProductRatings}}]
    redirect: {uri: /v1/bookRatings}
  - match: [{uri: {exact: /moved}}]
    redirect: {uri: /new, authority: newreviews.default.svc.cluster.local, redirectCode: 302}
  - match: [{uri: {prefix: /maintenance}}]
    directResponse: {status: 503, body: {string: 'down for maintenance'}}
  - route: [{destination: {host: redirect, subset: v1}}]
"),
        ]
        .concat();
        let (wp, apps) = mesh(build, &["rewrite", "redirect"], &yaml).await;

        // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRewrite
        // `uri` replaces the matched prefix (the query is kept); `authority` replaces the Host the
        // destination sees. #RegexRewrite: the documented example `^/service/([^/]+)(/.*)$` →
        // `\2/instance/\1`.
        let h = host("rewrite");
        let seen = |path: &'static str| {
            let (wp, h) = (&wp, &h);
            async move { echo(&wp.get(h, path).await.unwrap()) }
        };
        assert_eq!(seen("/old/page?q=1").await.path, "/new/page?q=1");
        assert_eq!(seen("/old").await.path, "/new");
        assert_eq!(seen("/service/foo/v1/api?x=1").await.path, "/v1/api/instance/foo?x=1");
        let e = seen("/authority/a").await;
        assert_eq!((e.authority.as_str(), e.path.as_str()), ("reviews.example.com", "/authority/a"));
        // The prefix is a plain string prefix; the authority is untouched without `authority`.
        let e = seen("/old-not").await;
        assert_eq!(e.path, "/new-not");
        assert_eq!(e.authority, h);

        // https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRedirect
        // `uri` / `authority` replace those parts of the URL; `redirectCode` defaults to 301.
        // #HTTPDirectResponse: the proxy answers with the status and body. Neither contacts a
        // destination.
        let h = host("redirect");
        let reply = wp.get(&h, "/v1/getProductRatings").await.unwrap();
        assert_eq!(reply.status, 301, "{}", reply.text());
        assert_eq!(reply.header("location"), Some("http://redirect:9080/v1/bookRatings"));
        let reply = wp.get(&h, "/moved").await.unwrap();
        assert_eq!(reply.status, 302, "{}", reply.text());
        let location = reply.header("location").unwrap();
        assert!(
            location.starts_with("http://newreviews.default.svc.cluster.local")
                && location.ends_with("/new"),
            "{location}"
        );
        let reply = wp.get(&h, "/maintenance/x").await.unwrap();
        assert_eq!((reply.status.as_u16(), reply.text().as_str()), (503, "down for maintenance"));
        assert_eq!(reply.header("x-backend"), None);
        assert_eq!(apps.total("redirect"), 0);
        assert_eq!(wp.get(&h, "/").await.unwrap().status, 200);
    }

    // AuthorizationPolicy on operations, conditions and the source.
    async fn authz_allow_deny_and_source(build: FilterBuild) {
        let cases = [
            ("ipallow", "ALLOW", "{ipBlocks: ['127.0.0.0/8']}", 200),
            ("ipdeny", "DENY", "{ipBlocks: ['127.0.0.1']}", 403),
            ("otherip", "ALLOW", "{ipBlocks: ['10.0.0.0/8']}", 403),
            ("principal", "ALLOW", "{principals: ['cluster.local/ns/default/sa/sleep']}", 403),
            ("plaintext", "DENY", "{notPrincipals: ['*']}", 403),
            ("anyprincipal", "ALLOW", "{principals: ['*']}", 403),
        ];
        let apps: Vec<&str> = cases.iter().map(|c| c.0).collect();
        let policies: String = cases
            .iter()
            .map(|(app, action, source, _)| authz(app, action, &format!("  - from: [{{source: {source}}}]\n")))
            .collect();
        let mut all: Vec<&str> = vec!["deny", "allow"];
        all.extend(apps.iter().copied());
        let yaml = [
            authz("deny", "DENY", "\
  - to: [{operation: {methods: [DELETE]}}]
  - to: [{operation: {paths: ['/admin/*']}}]
  - when: [{key: 'request.headers[x-block]', values: ['yes']}]
"),
            authz("allow", "ALLOW", "\
  - to: [{operation: {methods: [GET], paths: ['/public/*']}}]
  - to: [{operation: {methods: [POST]}}]
    when: [{key: 'request.headers[x-token]', values: ['secret']}]
"),
            policies,
        ]
        .concat();
        let (wp, apps) = mesh(build, &all, &yaml).await;

        // https://istio.io/latest/docs/reference/config/security/authorization-policy/
        // DENY rules on `to.operation.methods`, `to.operation.paths` and `when` request headers:
        // a matching request gets 403 `RBAC: access denied` and never reaches the destination.
        // With an ALLOW policy only requests matching one of its rules (method AND path AND header
        // condition of one rule) are allowed; everything else is denied.
        let d = host("deny");
        let denied = [
            ("DELETE", wp.send(Method::DELETE, &d, "/r", &[], Bytes::new()).await.unwrap()),
            ("path", wp.get(&d, "/admin/users").await.unwrap()),
            ("header", wp.get_with(&d, "/r", &[("x-block", "yes")]).await.unwrap()),
        ];
        for (what, reply) in &denied {
            assert_rbac_denied(reply, what);
        }
        assert_eq!(apps.total("deny"), 0);
        for reply in [
            wp.get(&d, "/r").await.unwrap(),
            wp.get(&d, "/administrator").await.unwrap(),
            wp.get_with(&d, "/r", &[("x-block", "no")]).await.unwrap(),
            wp.send(Method::POST, &d, "/r", &[], "b").await.unwrap(),
        ] {
            assert_eq!(reply.status, 200, "{}", reply.text());
        }

        let a = host("allow");
        assert_eq!(wp.get(&a, "/public/a").await.unwrap().status, 200);
        let ok = wp.send(Method::POST, &a, "/x", &[("x-token", "secret")], "b").await.unwrap();
        assert_eq!(ok.status, 200);
        assert_eq!(apps.total("allow"), 2);
        for (what, reply) in [
            ("GET /private", wp.get(&a, "/private").await.unwrap()),
            ("PUT /public/a", wp.send(Method::PUT, &a, "/public/a", &[], "b").await.unwrap()),
            ("wrong token", wp.send(Method::POST, &a, "/x", &[("x-token", "wrong")], "b").await.unwrap()),
            ("no token", wp.send(Method::POST, &a, "/x", &[], "b").await.unwrap()),
        ] {
            assert_rbac_denied(&reply, what);
        }
        assert_eq!(apps.total("allow"), 2);

        if wp.shape == Shape::Istiod {
            // https://istio.io/latest/docs/reference/config/security/authorization-policy/#Source
            // Through HBONE the caller is a mesh workload (`default/client`, peer 127.0.0.1):
            // `principals` match its certificate, so `principals: ['*']` allows it and
            // `notPrincipals: ['*']` never matches it.
            let from = |sa: &'static str, app: &'static str| {
                let wp = &wp;
                async move {
                    wp.send_as(sa, Method::GET, &host(app), "/", &[], Bytes::new()).await.unwrap()
                }
            };
            assert_rbac_denied(&from("client", "principal").await, "principal: sa/client");
            assert_eq!(from("sleep", "principal").await.status, 200, "principal: sa/sleep");
            assert_eq!(from("client", "plaintext").await.status, 200, "notPrincipals: sa/client");
            assert_eq!(from("client", "anyprincipal").await.status, 200, "principals *");
            assert_eq!(apps.total("principal") + apps.total("plaintext") + apps.total("anyprincipal"), 3);
            // ipBlocks: layover matches the HBONE peer (route A records it at
            // connect_terminate), as on the plain listener. istiod's own RBAC matches
            // `direct_remote_ip`, which inside main_internal is the internal listener's address
            // on Envoy 1.40 (tests/integration/tests/istiod_waypoint.rs `serves`): natively no
            // ipBlocks rule matches this peer, so the native run stops here.
            if build == FilterBuild::Native {
                return;
            }
            for (app, _, source, expected) in &cases[..3] {
                let reply = wp.get(&host(app), "/").await.unwrap();
                assert_eq!(reply.status, *expected, "{app} {source}: {}", reply.text());
            }
            return;
        }
        // https://istio.io/latest/docs/reference/config/security/authorization-policy/#Source
        // Source conditions on the plain listener, where the peer is 127.0.0.1 without mTLS:
        // `ipBlocks` match the peer address; `principals` never match a peer without an identity,
        // so such an ALLOW denies it; `notPrincipals: ["*"]` matches exactly the unauthenticated
        // peers (the "deny plaintext" pattern of the authorization docs). One service per case.
        for (app, _, source, expected) in cases {
            let reply = wp.get(&host(app), "/").await.unwrap();
            if expected == 403 {
                assert_rbac_denied(&reply, &format!("{app} {source}"));
                assert_eq!(apps.total(app), 0, "{app}");
            } else {
                assert_eq!(reply.status, expected, "{app} {source}: {}", reply.text());
                assert_eq!(apps.total(app), 1, "{app}");
            }
        }
    }

    // https://istio.io/latest/docs/reference/config/security/authorization-policy/#Source
    // `ipBlocks` are matched against the *direct* peer (istiod translates them to RBAC
    // `direct_remote_ip`); only `remoteIpBlocks` consider X-Forwarded-For. A client writing
    // x-forwarded-for must neither unlock an ipBlocks ALLOW nor escape an ipBlocks DENY.
    // Known failure on the wasm build until the bootstrap hands the filter the direct peer:
    // proxy-wasm's `source.address` is the XFF-derived address under `use_remote_address: false`
    // (see `layover_contract::filter_state::DIRECT_REMOTE_ADDRESS`).
    // In the istiod shape the forged header is inside the tunnel; the peer is the HBONE peer.
    istiod_native_differs("istiod's RBAC matches ipBlocks against direct_remote_ip, which inside main_internal is the internal listener's address on Envoy 1.40: natively the DENY never fires (tests/integration/tests/istiod_waypoint.rs `serves`)")
    async fn authz_ip_blocks_ignore_forged_xff(build: FilterBuild) {
        let (wp, apps) = mesh(build, &["ipdeny", "otherip"], &format!("{}{}",
            authz("ipdeny", "DENY", "  - from: [{source: {ipBlocks: ['127.0.0.1']}}]\n"),
            authz("otherip", "ALLOW", "  - from: [{source: {ipBlocks: ['10.0.0.0/8']}}]\n"),
        )).await;
        for app in ["ipdeny", "otherip"] {
            let reply = wp
                .get_with(&host(app), "/", &[("x-forwarded-for", "10.1.2.3")])
                .await
                .unwrap();
            assert_rbac_denied(&reply, &format!("{app} with a forged x-forwarded-for"));
            assert_eq!(apps.total(app), 0, "{app}");
        }
    }

    // The generated waypoint for the default configuration (testdata/bookinfo: four services,
    // subsets, VirtualServices, AuthorizationPolicies) loads in Envoy with this build:
    // `envoy --mode validate` compiles the module and runs the filter's config callback.
    async fn default_config_passes_envoy_validate(build: FilterBuild) {
        let root = layover_integration::repo_root();
        let compiled =
            layover_compiler::compile_paths(&[root.join("testdata/bookinfo")]).unwrap();
        let launch = Launch {
            dir: std::env::temp_dir(),
            access_log: "/dev/null".into(),
        };
        // The istiod shape's HBONE certificates: alive until Envoy has validated the config.
        let certs = layover_integration::mesh::Certs::new().unwrap();
        let config = match Shape::current() {
            Shape::OwnBootstrap => build.bootstrap(&compiled, launch_options(&launch)).unwrap(),
            Shape::Istiod => {
                let mut compiled = compiled;
                assign_vips(&mut compiled);
                let opts = layover_bootstrap::BootstrapOptions {
                    hbone: Some(certs.hbone.clone()),
                    ..launch_options(&launch)
                };
                build.istiod_bootstrap(&compiled, opts).unwrap()
            }
        };
        let opts = build.envoy_options().unwrap();
        tokio::task::spawn_blocking(move || validate_config_with(&config, &opts))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("envoy --mode validate rejected the default config: {e}"));
        drop(certs);
    }

    // Fail closed (design.md): a policy the engine rejects makes the filter's configuration
    // fail (proxy-wasm `on_configure` returns false), so `envoy --mode validate` fails and
    // Envoy does not start serving.
    layover_only("the filter's own fail-closed load; the native translation refuses the same policy before Envoy starts (NativeError::InvalidPolicy, envoy-config/bootstrap/src/native/tests.rs)")
    own_bootstrap_only("the filter's configuration callback fails the same whichever listener carries it; route A carries the same filter configuration (istiod_waypoint.rs validates route A with a good policy)")
    async fn invalid_policy_rejected(build: FilterBuild) {
        let b = Backend::start("reviews-v1", "v1").await.unwrap();
        let compiled = compile_yaml(&app_yaml("reviews", &[&b])).unwrap();
        let good = policy_json(&compiled).unwrap();
        let opts = build.envoy_options().unwrap();
        let config = |policy: &str| {
            let launch = Launch {
                dir: std::env::temp_dir(),
                access_log: "/dev/null".into(),
            };
            waypoint_bootstrap(&compiled, build.http_filter(policy).unwrap(), &launch).unwrap()
        };
        // The same bootstrap with the valid policy is what every other test starts, so the
        // failures below are the policy's. (Each load compiles the module: kept to two.)
        let mut bad: serde_json::Value = serde_json::from_str(&good).unwrap();
        bad["schemaVersion"] = 999.into();
        let bad_config = config(&bad.to_string());
        let validate = tokio::task::spawn_blocking({
            let opts = opts.clone();
            move || validate_config_with(&bad_config, &opts)
        });
        let started = Envoy::start_with(&opts, |launch| {
            waypoint_bootstrap(&compiled, build.http_filter("{not json").unwrap(), launch)
        })
        .await;
        let err = started.expect_err("Envoy started with a policy that is not JSON");
        assert!(err.to_string().contains("layover"), "{err}");
        let err = validate
            .await
            .unwrap()
            .expect_err("envoy --mode validate accepted schema_version 999");
        assert!(err.to_string().contains("schema_version"), "{err}");
        assert_eq!(b.request_count(), 0);
    }

    // Security (design.md "The client cannot steer internals"; envoy-1.40-facts.md): nothing a
    // client sends changes what layover decided.
    // - `x-layover-cluster` neither picks the cluster nor reaches the upstream;
    // - router controls (`x-envoy-retry-on`, `x-envoy-max-retries`,
    //   `x-envoy-retriable-status-codes`, `x-envoy-upstream-rq-timeout-ms`,
    //   `x-envoy-upstream-rq-per-try-timeout-ms`) neither add nor raise retries nor set
    //   timeouts (https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRetry);
    // - the fault filter's header controls (`x-envoy-fault-delay-request`,
    //   `x-envoy-fault-abort-request`), which Envoy does not strip itself, are removed.
    layover_only("native Envoy honours x-envoy-* router and fault headers from private-address clients, as istiod's configuration does; stripping them is layover's (README \"Native translation\")")
    async fn client_cannot_steer_internals(build: FilterBuild) {
        let (wp, apps) = mesh(build, &["noretry", "oneretry"], &format!("{}{}",
            vs("noretry", "\
  - route: [{destination: {host: noretry, subset: v1}}]
    retries: {attempts: 0}
"),
            vs("oneretry", "\
  - route: [{destination: {host: oneretry, subset: v1}}]
    retries: {attempts: 1, retryOn: 5xx}
"),
        )).await;
        let (n, o) = (host("noretry"), host("oneretry"));

        // The cluster header: v2 asked, v1 decided.
        let v2 = "inbound-vip|9080|http/v2|noretry.default.svc.cluster.local";
        for _ in 0..3 {
            let e = echo(&wp.get_with(&n, "/", &[("x-layover-cluster", v2)]).await.unwrap());
            assert_eq!(e.subset, "v1");
            assert!(!e.headers.contains_key("x-layover-cluster"), "{:?}", e.headers);
        }
        // Not even where layover picks no cluster at all (own bootstrap: a Host naming no
        // service; in istiod's waypoint such a request has no VIP to reach a chain by).
        if wp.shape == Shape::OwnBootstrap {
            let reply = wp.get_with("nope:9080", "/", &[("x-layover-cluster", v2)]).await.unwrap();
            assert_eq!(reply.status, 404);
        }
        assert_eq!(apps.counts("noretry"), [3, 0, 0]);

        // Retries off for the route: a client asking for 5 retries gets one try.
        let retry_asks = [
            ("x-envoy-retry-on", "5xx,retriable-status-codes"),
            ("x-envoy-max-retries", "5"),
            ("x-envoy-retriable-status-codes", "503"),
        ];
        let noretry = &apps.of("noretry")[0];
        noretry.fail_next(1);
        assert_eq!(wp.get_with(&n, "/", &retry_asks).await.unwrap().status, 503);
        assert_eq!(noretry.request_count(), 4, "the client's retry policy was applied");
        // One retry for the route: the client cannot raise it.
        let oneretry = &apps.of("oneretry")[0];
        oneretry.fail_next(5);
        assert_eq!(wp.get_with(&o, "/", &retry_asks).await.unwrap().status, 503);
        assert_eq!(oneretry.request_count(), 2, "the client raised the retries");

        // No route timeout: a client's 50 ms upstream and per-try timeouts are ignored.
        let stall = Duration::from_millis(600);
        noretry.stall_next(stall);
        let started = Instant::now();
        let reply = wp
            .get_with(
                &n,
                "/",
                &[("x-envoy-upstream-rq-timeout-ms", "50"), ("x-envoy-upstream-rq-per-try-timeout-ms", "50")],
            )
            .await
            .unwrap();
        assert!(started.elapsed() >= stall);
        let e = echo(&reply);
        for h in [
            "x-envoy-retry-on",
            "x-envoy-max-retries",
            "x-envoy-upstream-rq-timeout-ms",
            "x-envoy-upstream-rq-per-try-timeout-ms",
        ] {
            assert!(!e.headers.contains_key(h), "upstream saw {h}: {:?}", e.headers);
        }

        // Fault controls: no delay, no abort, and the upstream never sees them.
        let started = Instant::now();
        let reply = wp
            .get_with(
                &n,
                "/",
                &[
                    ("x-envoy-fault-delay-request", "3000"),
                    ("x-envoy-fault-delay-request-percentage", "100"),
                    ("x-envoy-fault-abort-request", "503"),
                    ("x-envoy-fault-abort-request-percentage", "100"),
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
    }

}
