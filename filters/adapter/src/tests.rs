//! Adapter behaviour against a fake host: what each decision turns into in Envoy's vocabulary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

use crate::connection::peer_addresses;
use crate::recording::RecordingHost as FakeHost;

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#;

fn policy(extra: &str) -> CompiledPolicy {
    let yaml = format!("{SERVICES}\n---\n{extra}");
    let bundle = layover_compiler::load_str("test.yaml", &yaml).expect("loads");
    let compiled = layover_compiler::compile(&bundle).expect("compiles");
    let bytes = prost::Message::encode_to_vec(&compiled.policy);
    load_policy(&bytes).expect("engine accepts the policy")
}

fn conn() -> Connection {
    Connection {
        principal: Some("cluster.local/ns/default/sa/productpage".into()),
        destination_service: Some("reviews.default.svc.cluster.local".into()),
        destination_port: 9080,
        ..Default::default()
    }
}

fn get(path: &str) -> FakeHost {
    FakeHost::new(&[
        (":method", "GET"),
        (":path", path),
        (":authority", "reviews:9080"),
        (":scheme", "http"),
    ])
}

#[test]
fn default_route_writes_cluster_and_mesh_default_retries() {
    // istio.io ambient: a service without VirtualService goes to itself with the mesh default
    // retry policy (2 attempts).
    let p = policy("");
    let mut host = get("/");
    let v = StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(v, Verdict::Continue);
    assert_eq!(
        host.req(CLUSTER_HEADER),
        ["inbound-vip|9080|http|reviews.default.svc.cluster.local"]
    );
    assert_eq!(host.req("x-envoy-max-retries"), ["2"]);
    assert!(host.replies.is_empty());
}

#[test]
fn client_sent_internal_headers_are_removed_before_anything() {
    // Security: a client must not steer cluster choice, retries, timeouts or faults.
    let p = policy("");
    let mut host = get("/");
    host.request.extend([
        (
            CLUSTER_HEADER.to_string(),
            "inbound-vip|9080|http/v2|evil".to_string(),
        ),
        ("x-envoy-fault-delay-request".into(), "10000".into()),
        ("x-envoy-upstream-rq-timeout-ms".into(), "1".into()),
        ("x-layover-anything".into(), "x".into()),
    ]);
    StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(
        host.req(CLUSTER_HEADER),
        ["inbound-vip|9080|http|reviews.default.svc.cluster.local"]
    );
    assert!(host.req("x-envoy-fault-delay-request").is_empty());
    assert!(host.req("x-envoy-upstream-rq-timeout-ms").is_empty());
    assert!(host.req("x-layover-anything").is_empty());
}

#[test]
fn client_sent_cluster_header_cannot_satisfy_a_header_match() {
    // The engine must not see internal signals either: a VS matching on x-envoy-* / x-layover-*
    // headers can never be triggered by a client.
    let p = policy(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {x-layover-cluster: {exact: v2}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#,
    );
    let mut host = get("/");
    host.request.push((CLUSTER_HEADER.into(), "v2".into()));
    StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(
        host.req(CLUSTER_HEADER),
        ["inbound-vip|9080|http/v1|reviews.default.svc.cluster.local"]
    );
}

#[test]
fn deny_sends_403_rbac_body_and_nothing_else() {
    // Envoy RBAC filter: 403 "RBAC: access denied".
    let p = policy(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-get, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: DENY
  rules: [{to: [{operation: {methods: [GET]}}]}]
"#,
    );
    let mut host = get("/");
    let mut f = StreamFilter::default();
    assert_eq!(
        f.on_request_headers(&p, Ok(&conn()), 1, &mut host),
        Verdict::Replied
    );
    assert_eq!(host.replies[0].status, 403);
    assert_eq!(host.replies[0].body, b"RBAC: access denied");
    assert!(host.req(CLUSTER_HEADER).is_empty());
    f.on_response_headers(&mut host);
    assert!(host.response.is_empty());
}

#[test]
fn retries_timeout_rewrite_and_header_ops_become_router_controls() {
    // VirtualService retries / timeout / rewrite / headers → x-envoy-* router headers, :path,
    // :authority, header mutations (istio.io .../virtual-service/#HTTPRoute).
    let p = policy(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new, authority: reviews.internal}
    timeout: 3s
    retries: {attempts: 4, perTryTimeout: 500ms, retryOn: "5xx,503"}
    headers:
      request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
      response: {set: {x-resp: yes}}
    route: [{destination: {host: reviews, subset: v2}}]
"#,
    );
    let mut host = get("/old/page?q=1");
    host.request.push(("x-c".into(), "gone".into()));
    let mut f = StreamFilter::default();
    assert_eq!(
        f.on_request_headers(&p, Ok(&conn()), 1, &mut host),
        Verdict::Continue
    );
    assert_eq!(host.req(":path"), ["/new/page?q=1"]);
    assert_eq!(host.req(":authority"), ["reviews.internal"]);
    assert_eq!(host.req("x-envoy-max-retries"), ["4"]);
    assert_eq!(host.req("x-envoy-upstream-rq-per-try-timeout-ms"), ["500"]);
    assert_eq!(host.req("x-envoy-upstream-rq-timeout-ms"), ["3000"]);
    assert!(host.req("x-envoy-retry-on")[0].contains("5xx"));
    assert_eq!(host.req("x-a"), ["1"]);
    assert_eq!(host.req("x-b"), ["2"]);
    assert!(host.req("x-c").is_empty());
    // Envoy's route keeps what it rewrote (finalizeRequestHeaders; istiod leaves the router's
    // suppress_envoy_headers off).
    assert_eq!(host.req("x-envoy-original-path"), ["/old/page?q=1"]);
    assert_eq!(host.req("x-envoy-original-host"), ["reviews:9080"]);
    f.on_response_headers(&mut host);
    assert_eq!(host.resp("x-resp"), ["yes"]);
}

#[test]
fn no_original_path_or_host_without_a_rewrite() {
    let p = policy(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v2}}]
"#,
    );
    let mut host = get("/page");
    // A client cannot plant them either.
    host.request
        .push(("x-envoy-original-path".into(), "/forged".into()));
    let mut f = StreamFilter::default();
    f.on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert!(host.req("x-envoy-original-path").is_empty());
    assert!(host.req("x-envoy-original-host").is_empty());
}

#[test]
fn local_replies_on_a_forwarding_route_carry_its_response_header_ops() {
    // envoyproxy/envoy source/common/http/filter_manager.cc sendLocalReply: the resolved route
    // entry's finalizeResponseHeaders runs on every local reply — RBAC's 403, the fault
    // filter's abort, the router's cluster-not-found — with istiod's route-level (and, for a
    // single destination, merged destination-level) response operations. The differential
    // test (tests/integration/tests/differential.rs) found this against the native translation.
    let p = policy(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    headers: {response: {set: {x-route: abort}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /missing}}]
    headers: {response: {set: {x-route: missing}}}
    route: [{destination: {host: reviews, subset: v9}}]
  - match: [{uri: {prefix: /redirect}}]
    redirect: {uri: /elsewhere}
    headers: {response: {set: {x-route: redirect}}}
  - headers: {response: {set: {x-route: forward}, remove: [x-gone]}}
    route:
    - destination: {host: reviews, subset: v1}
      headers: {response: {set: {x-dest: v1}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-delete, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
"#,
    );
    let reply = |method: &str, path: &str| {
        let mut host = get(path);
        host.set_request_header(":method", method).unwrap();
        let mut f = StreamFilter::default();
        f.on_request_headers(&p, Ok(&conn()), 1, &mut host);
        host.replies.pop().unwrap()
    };
    let header = |r: &LocalReply, name: &str| {
        r.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let denied = reply("DELETE", "/page");
    assert_eq!(denied.status, 403);
    assert_eq!(header(&denied, "x-route"), ["forward"]);
    assert_eq!(header(&denied, "x-dest"), ["v1"]);
    let aborted = reply("GET", "/abort");
    assert_eq!(aborted.status, 418);
    assert_eq!(header(&aborted, "x-route"), ["abort"]);
    let missing = reply("GET", "/missing");
    assert_eq!(missing.status, 503);
    assert_eq!(header(&missing, "x-route"), ["missing"]);
    // A denied request whose route redirects: a redirect is no route entry, nothing applies.
    let denied = reply("DELETE", "/redirect");
    assert_eq!(denied.status, 403);
    assert!(header(&denied, "x-route").is_empty(), "{denied:?}");
    // The redirect itself carries its route's operations, as before.
    let redirect = reply("GET", "/redirect");
    assert_eq!(header(&redirect, "x-route"), ["redirect"]);
}

#[test]
fn fault_delay_then_abort_replies_after_the_delay() {
    // Envoy fault filter: the delay runs first, the abort replies afterwards.
    let p = policy(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - fault:
      delay: {fixedDelay: 1s, percentage: {value: 100}}
      abort: {httpStatus: 418, percentage: {value: 100}}
    route: [{destination: {host: reviews, subset: v1}}]
"#,
    );
    let mut host = get("/");
    let mut f = StreamFilter::default();
    assert_eq!(
        f.on_request_headers(&p, Ok(&conn()), 7, &mut host),
        Verdict::Delay(1000)
    );
    assert!(host.replies.is_empty());
    assert_eq!(f.on_delay_elapsed(&mut host), Verdict::Replied);
    assert_eq!(host.replies[0].status, 418);
    assert_eq!(host.replies[0].body, FAULT_ABORT_BODY);
}

#[test]
fn fault_delay_alone_forwards_after_the_delay() {
    let p = policy(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - fault: {delay: {fixedDelay: 250ms, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
"#,
    );
    let mut host = get("/");
    let mut f = StreamFilter::default();
    assert_eq!(
        f.on_request_headers(&p, Ok(&conn()), 7, &mut host),
        Verdict::Delay(250)
    );
    // Mutations are in place before the pause, so resuming needs no further host calls.
    assert_eq!(
        host.req(CLUSTER_HEADER),
        ["inbound-vip|9080|http/v1|reviews.default.svc.cluster.local"]
    );
    assert_eq!(f.on_delay_elapsed(&mut host), Verdict::Continue);
    assert!(host.replies.is_empty());
}

#[test]
fn redirect_and_direct_response_are_local_replies() {
    // VirtualService redirect (301 default) and directResponse.
    let p = policy(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {exact: /moved}}]
    redirect: {uri: /new, authority: other.example}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
"#,
    );
    let mut host = get("/moved");
    StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(host.replies[0].status, 301);
    let location = &host.replies[0]
        .headers
        .iter()
        .find(|(n, _)| n == "location")
        .unwrap()
        .1;
    assert_eq!(location, "http://other.example/new");

    let mut host = get("/teapot");
    StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(host.replies[0].status, 418);
    assert_eq!(host.replies[0].body, b"short and stout");
}

#[test]
fn weighted_split_follows_entropy_and_weights() {
    // Weighted destinations: every candidate is reachable, in proportion to its weight.
    let p = policy(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 75}
    - {destination: {host: reviews, subset: v2}, weight: 25}
"#,
    );
    let mut rng = Entropy::new(42);
    let mut v1 = 0;
    for _ in 0..4000 {
        let mut host = get("/");
        StreamFilter::default().on_request_headers(&p, Ok(&conn()), rng.next_u64(), &mut host);
        if host.req(CLUSTER_HEADER)[0].contains("|http/v1|") {
            v1 += 1;
        }
    }
    // 3000 expected; 6 sigma ≈ 164.
    assert!((2836..=3164).contains(&v1), "v1 picked {v1}/4000");
}

#[test]
fn mirror_sends_shadow_copy() {
    // VirtualService mirror: Envoy shadows with "<host>-shadow[:port]" (shadowAppendedHost,
    // source/common/router/shadow_writer_impl.cc, Envoy 1.40).
    let p = policy(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
"#,
    );
    let mut host = get("/m");
    StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(host.mirrors.len(), 1);
    assert_eq!(
        host.mirrors[0].0,
        "inbound-vip|9080|http/v2|reviews.default.svc.cluster.local"
    );
    assert!(host.mirrors[0]
        .1
        .contains(&(":authority".to_string(), "reviews-shadow:9080".to_string())));
}

#[test]
fn shadow_authority_goes_before_the_port() {
    assert_eq!(
        crate::shadow_authority("reviews:9080"),
        "reviews-shadow:9080"
    );
    assert_eq!(crate::shadow_authority("reviews"), "reviews-shadow");
    assert_eq!(crate::shadow_authority("[::1]:80"), "[::1]-shadow:80");
    assert_eq!(crate::shadow_authority("[::1]"), "[::1]-shadow");
    assert_eq!(crate::shadow_authority("a.b:"), "a.b-shadow:");
}

#[test]
fn service_found_by_authority_without_hbone() {
    // Plain-HTTP listener: the Host header names the service like a sidecar virtual host.
    let p = policy("");
    let mut host = get("/");
    let c = Connection {
        destination_port: 9080,
        ..Default::default()
    };
    StreamFilter::default().on_request_headers(&p, Ok(&c), 1, &mut host);
    assert_eq!(
        host.req(CLUSTER_HEADER),
        ["inbound-vip|9080|http|reviews.default.svc.cluster.local"]
    );
}

#[test]
fn unknown_service_is_404() {
    let p = policy("");
    let mut host = FakeHost::new(&[(":method", "GET"), (":path", "/"), (":authority", "nope")]);
    let c = Connection::default();
    StreamFilter::default().on_request_headers(&p, Ok(&c), 1, &mut host);
    assert_eq!(host.replies[0].status, 404);
}

#[test]
fn policy_loads_from_json_and_binary_and_rejects_garbage() {
    let bundle = layover_compiler::load_str("t.yaml", SERVICES).unwrap();
    let compiled = layover_compiler::compile(&bundle).unwrap();
    let json = serde_json::to_vec(&compiled.policy).unwrap();
    assert!(load_policy(&json).is_ok());
    assert!(load_policy(&prost::Message::encode_to_vec(&compiled.policy)).is_ok());
    assert!(load_policy(b"").unwrap_err().contains("empty"));
    assert!(load_policy(b"{not json").unwrap_err().contains("JSON"));
    assert!(load_policy(&[0xff, 0xff, 0xff])
        .unwrap_err()
        .contains("protobuf"));
}

#[test]
fn forged_xff_cannot_unlock_ip_blocks_when_the_direct_peer_is_known() {
    let p = policy(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ip, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: ALLOW
  rules:
  - from: [{source: {ipBlocks: ["10.0.0.0/8"]}}]
"#,
    );
    let run = |direct: Option<&str>| {
        let (source_ip, remote_ip) = peer_addresses(direct, Some("10.1.2.3:0"));
        let c = Connection {
            source_ip,
            remote_ip,
            ..conn()
        };
        let mut host = get("/");
        let verdict = StreamFilter::default().on_request_headers(&p, Ok(&c), 0, &mut host);
        (verdict, host.replies.first().map(|r| r.status))
    };
    assert_eq!(run(Some("127.0.0.1:40000")), (Verdict::Replied, Some(403)));
}

// Fail closed (README "Security"): every internal error denies with 500 and forwards nothing.
#[test]
fn internal_errors_deny_with_500() {
    let p = policy("");
    let is_500 = |host: &FakeHost| {
        assert_eq!(host.replies.len(), 1, "{:?}", host.replies);
        assert_eq!(host.replies[0].status, 500);
        assert_eq!(host.replies[0].body, INTERNAL_ERROR_BODY);
        assert!(
            !host.warnings.borrow().is_empty(),
            "the error was not logged"
        );
    };
    // The request headers cannot be read.
    let mut host = get("/");
    host.fail_read = true;
    let v = StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(v, Verdict::Replied);
    is_500(&host);
    // The host handed over no :path.
    let mut host = FakeHost::new(&[(":method", "GET"), (":authority", "reviews:9080")]);
    let v = StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(v, Verdict::Replied);
    is_500(&host);
    // The connection could not be read (e.g. bad HBONE filter state).
    let mut host = get("/");
    let err = InternalError("bad filter state".into());
    let v = StreamFilter::default().on_request_headers(&p, Err(&err), 1, &mut host);
    assert_eq!(v, Verdict::Replied);
    is_500(&host);
    assert!(host.req(CLUSTER_HEADER).is_empty());
    // A client-sent internal signal cannot be removed.
    let mut host = get("/");
    host.request.push((
        "x-layover-cluster".into(),
        "inbound-vip|9080|http/v2|x".into(),
    ));
    host.fail_mutation = Some("x-layover-cluster");
    let v = StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(v, Verdict::Replied);
    is_500(&host);
    // The cluster choice, a router control, or a rewrite cannot be written.
    for name in [CLUSTER_HEADER, "x-envoy-max-retries", "*"] {
        let mut host = get("/");
        host.fail_mutation = Some(name);
        let v = StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
        assert_eq!(v, Verdict::Replied, "{name}");
        is_500(&host);
    }
    let p = policy(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - rewrite: {uri: /v2}
    route: [{destination: {host: reviews}}]
"#,
    );
    let mut host = get("/x");
    host.fail_mutation = Some(":path");
    let v = StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(v, Verdict::Replied);
    is_500(&host);
}

#[test]
fn internal_error_after_a_fault_delay_denies_when_the_delay_ends() {
    let p = policy(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}
    route: [{destination: {host: reviews}}]
"#,
    );
    let mut host = get("/");
    host.fail_mutation = Some(CLUSTER_HEADER);
    let mut f = StreamFilter::default();
    assert_eq!(
        f.on_request_headers(&p, Ok(&conn()), 1, &mut host),
        Verdict::Delay(1000)
    );
    assert!(host.replies.is_empty());
    assert_eq!(f.on_delay_elapsed(&mut host), Verdict::Replied);
    assert_eq!(host.replies.len(), 1);
    assert_eq!(host.replies[0].status, 500);
}

#[test]
fn destination_port_comes_from_the_tunnel_else_from_the_host_header() {
    // Inside HBONE the CONNECT authority's port (already in the connection) wins; on the plain
    // listener the Host header's port is the service port a sidecar's virtual host would match.
    assert_eq!(super::destination_port(9080, "reviews:8080"), 9080);
    assert_eq!(super::destination_port(0, "reviews:8080"), 8080);
    assert_eq!(super::destination_port(0, "reviews"), 0);
    assert_eq!(super::destination_port(0, "[fd00::1]:9443"), 9443);
    assert_eq!(super::destination_port(0, "[fd00::1]"), 0);
    assert_eq!(super::destination_port(0, "reviews:notaport"), 0);
}

// Authorization-only mode (route B): AuthorizationPolicy decides; nothing else is touched.
const ROUTED_AND_GUARDED: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v2}}]
    retries: {attempts: 5}
    timeout: 3s
    rewrite: {uri: /rewritten}
    headers: {request: {set: {x-added: "1"}}, response: {set: {x-resp: "1"}}}
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: viewer, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/productpage]}}]
"#;

#[test]
fn authorization_mode_allows_untouched_and_denies_with_rbac_403() {
    let p = policy(ROUTED_AND_GUARDED);
    let mut host = get("/reviews/1");
    let client_headers = [
        (CLUSTER_HEADER, "inbound-vip|9080|http/v1|reviews"),
        ("x-envoy-max-retries", "7"),
        ("end-user", "jason"),
    ];
    host.request
        .extend(client_headers.map(|(n, v)| (n.to_string(), v.to_string())));
    let before = host.request.clone();
    let mut filter = StreamFilter::new(FilterMode::Authorization);
    let v = filter.on_request_headers(&p, Ok(&conn()), 1, &mut host);
    // No fault abort, no rewrite, no cluster choice, no router control, no header operation:
    // istiod's route does all of that on route B.
    assert_eq!(v, Verdict::Continue);
    assert!(host.replies.is_empty(), "{:?}", host.replies);
    assert_eq!(host.request, before, "the request is forwarded as it came");
    filter.on_response_headers(&mut host);
    assert!(host.response.is_empty(), "{:?}", host.response);

    let denied = Connection {
        principal: Some("cluster.local/ns/default/sa/ratings".into()),
        ..conn()
    };
    let mut host = get("/reviews/1");
    let v = StreamFilter::new(FilterMode::Authorization).on_request_headers(
        &p,
        Ok(&denied),
        1,
        &mut host,
    );
    assert_eq!(v, Verdict::Replied);
    assert_eq!(host.replies.len(), 1);
    assert_eq!(host.replies[0].status, 403);
    assert_eq!(host.replies[0].body, layover_core::RBAC_DENIED_BODY);
    // Waypoint mode answers the same request with the route's fault (after the ALLOW).
    let mut host = get("/reviews/1");
    StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(host.replies.first().map(|r| r.status), Some(418));
}

#[test]
fn authorization_mode_denies_unknown_services_and_fails_closed_on_errors() {
    let p = policy(ROUTED_AND_GUARDED);
    let stranger = Connection {
        destination_service: Some("nowhere.default.svc.cluster.local".into()),
        ..conn()
    };
    let mut host = get("/");
    let v = StreamFilter::new(FilterMode::Authorization).on_request_headers(
        &p,
        Ok(&stranger),
        1,
        &mut host,
    );
    assert_eq!(v, Verdict::Replied);
    assert_eq!(host.replies[0].status, 403);
    let mut host = get("/");
    let err = InternalError("unreadable".into());
    let v = StreamFilter::new(FilterMode::Authorization).on_request_headers(
        &p,
        Err(&err),
        1,
        &mut host,
    );
    assert_eq!(v, Verdict::Replied);
    assert_eq!(host.replies[0].status, 500);
}

#[test]
fn load_config_reads_the_mode() {
    let compiled =
        layover_compiler::compile(&layover_compiler::load_str("t.yaml", SERVICES).expect("loads"))
            .expect("compiles");
    let json = serde_json::to_string(&compiled.policy).unwrap();
    assert_eq!(
        load_config(json.as_bytes()).unwrap().mode,
        FilterMode::Waypoint
    );
    let wrapped =
        FilterConfig::encode_with(&json, FilterMode::Authorization, ClusterSelection::Header)
            .unwrap();
    let loaded = load_config(wrapped.as_bytes()).unwrap();
    assert_eq!(loaded.mode, FilterMode::Authorization);
    assert_eq!(loaded.cluster_selection, ClusterSelection::Header);
    assert!(load_config(b"{\"mode\":\"authorization\"}").is_err());
}

/// RequestAuthentication bound to reviews, and an ALLOW for `iss/alice`.
const JWT_POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  jwtRules: [{issuer: iss, jwks: '{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}'}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: alice, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  rules: [{from: [{source: {requestPrincipals: [iss/alice]}}]}]
"#;

fn with_payload(value: &str) -> FakeHost {
    FakeHost::new(&[
        (":method", "GET"),
        (":path", "/"),
        (":authority", "reviews:9080"),
        (":scheme", "http"),
        (layover_contract::JWT_PAYLOAD_HEADER, value),
    ])
}

#[test]
fn verified_payload_header_gives_the_principal_and_is_removed() {
    // {"iss":"iss","sub":"alice"} as jwt_authn's forward_payload_header writes it.
    let p = policy(JWT_POLICY);
    let mut host = with_payload("eyJpc3MiOiJpc3MiLCJzdWIiOiJhbGljZSJ9");
    let v = StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(v, Verdict::Continue);
    assert!(host.req(layover_contract::JWT_PAYLOAD_HEADER).is_empty());
}

#[test]
fn undecodable_payload_header_fails_closed() {
    let p = policy(JWT_POLICY);
    let mut host = with_payload("not base64url!");
    let v = StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(v, Verdict::Replied);
    assert_eq!(host.replies[0].status, internal_error_reply().status);
}

#[test]
fn no_payload_header_means_no_principal() {
    let p = policy(JWT_POLICY);
    let mut host = get("/");
    let v = StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(v, Verdict::Replied);
    assert_eq!(host.replies[0].status, 403);
}

// ------------------------------------------------------------ host-call pattern (issue 15)
// Every host call is a crossing of the proxy-wasm ABI (a copy into or out of the VM), so the
// pattern is part of the contract: the header map is read once, and a decision costs only the
// writes that carry it. Deterministic counts, not timings.

const DENY_PRINCIPAL: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-sleep, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]}]
"#;

#[test]
fn a_forwarded_request_reads_the_headers_once_and_writes_only_router_controls() {
    let p = policy("");
    let mut host = get("/");
    StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    assert_eq!(
        host.calls(),
        [
            "request_headers".to_string(),
            format!("set_request_header {CLUSTER_HEADER}"),
            "set_request_header x-envoy-max-retries".into(),
            "set_request_header x-envoy-retry-on".into(),
        ]
    );
}

#[test]
fn a_denied_request_reads_the_headers_once_and_only_replies() {
    let p = policy(DENY_PRINCIPAL);
    let mut host = get("/");
    let sleep = Connection {
        principal: Some("cluster.local/ns/default/sa/sleep".into()),
        ..conn()
    };
    StreamFilter::default().on_request_headers(&p, Ok(&sleep), 1, &mut host);
    assert_eq!(host.calls(), ["request_headers", "send_local_reply 403"]);
}

#[test]
fn a_repeated_internal_header_is_removed_once() {
    // Security first: every client-sent internal signal goes, but one removal drops all values.
    let p = policy("");
    let mut host = get("/");
    host.request.extend([
        ("x-envoy-retry-on".to_string(), "5xx".to_string()),
        ("x-layover-anything".into(), "a".into()),
        ("x-envoy-retry-on".into(), "reset".into()),
        ("x-layover-anything".into(), "b".into()),
    ]);
    StreamFilter::default().on_request_headers(&p, Ok(&conn()), 1, &mut host);
    let removals: Vec<String> = host
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("remove_request_header"))
        .collect();
    assert_eq!(
        removals,
        [
            "remove_request_header x-envoy-retry-on",
            "remove_request_header x-layover-anything"
        ]
    );
    assert!(host.req("x-layover-anything").is_empty());
    // The mesh default retry policy's own value, not the client's.
    let retry_on = host.req("x-envoy-retry-on");
    assert_eq!(retry_on.len(), 1);
    assert!(!retry_on.contains(&"5xx") && !retry_on.contains(&"reset"));
}

#[test]
fn the_connection_is_read_only_as_far_as_the_policy_needs() {
    // Without principal or address predicates no identity or address property is fetched;
    // with a principal predicate exactly the peer identity is.
    let mut host = FakeHost {
        peer_uri_san: Some("spiffe://cluster.local/ns/default/sa/sleep".into()),
        direct_remote_address: Some("10.0.0.1:1".into()),
        source_address: Some("10.0.0.2:0".into()),
        sni: Some("reviews".into()),
        ..get("/")
    };
    connection(&host, policy("").needs()).unwrap();
    assert_eq!(
        *host.connection_reads.borrow(),
        [layover_contract::filter_state::CONNECT_AUTHORITY]
    );
    host.connection_reads.borrow_mut().clear();
    let p = policy(DENY_PRINCIPAL);
    let conn = connection(&host, p.needs()).unwrap();
    assert_eq!(
        *host.connection_reads.borrow(),
        [
            layover_contract::filter_state::CONNECT_AUTHORITY,
            "peer_uri_san"
        ]
    );
    let v = StreamFilter::default().on_request_headers(&p, Ok(&conn), 1, &mut host);
    assert_eq!(v, Verdict::Replied);
}
