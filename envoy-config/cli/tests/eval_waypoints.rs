//! `layover eval` on an input with several waypoints (`testdata/multi-waypoint`): each request is
//! evaluated at the waypoint istiod puts in front of its destination service
//! (`pilot/pkg/serviceregistry/ambient/waypoints.go` @ 1.30.3), `--waypoint` forces one, and the
//! decision says which waypoint answered and why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn eval(extra: &[&str], request: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_layover"))
        .args([
            "eval",
            "--config",
            "testdata/multi-waypoint",
            "--request",
            "-",
        ])
        .args(extra)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn decide(extra: &[&str], request: &str) -> Value {
    let out = eval(extra, request);
    assert!(
        out.status.success(),
        "eval failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One row: request JSON, extra flags, expected action, waypoint, and a fragment of `chosen_by`.
macro_rules! case {
    ($name:ident, $request:expr, $flags:expr, action: $action:expr, waypoint: $wp:expr, why: $why:expr) => {
        #[test]
        fn $name() {
            let d = decide(&$flags, $request);
            assert_eq!(d["action"], $action, "{d}");
            let wp: Option<&str> = $wp;
            assert_eq!(d["waypoint"]["name"].as_str(), wp, "{d}");
            let why = d["waypoint"]["chosen_by"].as_str().unwrap();
            assert!(why.contains($why), "chosen_by {why:?} lacks {:?}", $why);
        }
    };
}

// waypoints.go:130-145: the Namespace's label names the waypoint.
case!(namespace_label_picks_the_namespace_waypoint,
    r#"{"authority": "cart.shop.svc.cluster.local:8080"}"#, [],
    action: "route", waypoint: Some("shop/waypoint"), why: "Namespace shop carries istio.io/use-waypoint");
// A short Host resolves in the source's namespace, as Kubernetes DNS search paths do.
case!(short_name_resolves_in_the_source_namespace,
    r#"{"authority": "cart:8080", "source": {"principal": "cluster.local/ns/shop/sa/web"}}"#, [],
    action: "route", waypoint: Some("shop/waypoint"), why: "cart.shop.svc.cluster.local");
// waypoints.go:112-128 and :446-448: the Service's label, another namespace admitted by selector.
case!(service_label_picks_a_shared_waypoint_by_vip,
    r#"{"method": "POST", "destination": {"ip": "10.96.30.1", "port": 8080}}"#, [],
    action: "deny", waypoint: Some("infra/shared"), why: "Service pay/billing carries istio.io/use-waypoint: shared");
case!(service_label_picks_a_shared_waypoint_by_fqdn,
    r#"{"destination": {"service": "billing.pay.svc.cluster.local", "port": 8080}}"#, [],
    action: "route", waypoint: Some("infra/shared"), why: "use-waypoint: shared");
// waypoints.go:107-111: `none` on the Service opts out of its Namespace's waypoint.
case!(service_none_passes_no_waypoint,
    r#"{"destination": {"service": "search.shop.svc.cluster.local", "port": 8080}}"#, [],
    action: "no_waypoint", waypoint: None, why: "opts out");
// waypoints.go:120-121, :524-528: allowedRoutes defaults to Same.
case!(attachment_from_another_namespace_is_denied,
    r#"{"authority": "ledger.legacy:8080"}"#, [],
    action: "no_waypoint", waypoint: None, why: "WaypointAttachmentDenied");
case!(an_unknown_destination_says_how_to_choose,
    r#"{"authority": "nowhere:80"}"#, [],
    action: "no_waypoint", waypoint: None, why: "--waypoint");
case!(forced_waypoint_by_full_name,
    r#"{"authority": "cart.shop.svc.cluster.local:8080"}"#, ["--waypoint", "infra/shared"],
    action: "unknown_service", waypoint: Some("infra/shared"), why: "--waypoint");
case!(forced_waypoint_by_unique_short_name,
    r#"{"destination": {"service": "billing.pay.svc.cluster.local", "port": 8080}}"#, ["--waypoint", "shared"],
    action: "route", waypoint: Some("infra/shared"), why: "--waypoint");

#[test]
fn source_labels_and_body_are_noted_not_ignored() {
    let d = decide(
        &[],
        r#"{"authority": "cart.shop.svc.cluster.local:8080", "source": {"labels": {"app": "admin"}}, "body": "x"}"#,
    );
    // The sourceLabels route is dropped (listener_waypoint.go:1198-1203 @ 1.30.3): the admin
    // caller gets the default route, and the decision says why.
    assert_eq!(d["route"]["index"], 1, "{d}");
    let notes = d["notes"].as_array().unwrap();
    assert!(
        notes[0]
            .as_str()
            .unwrap()
            .contains("VirtualService shop/cart spec.http[0].match[0].sourceLabels"),
        "{d}"
    );
    assert!(notes[1].as_str().unwrap().starts_with("body:"), "{d}");
}

#[test]
fn a_missing_forced_waypoint_is_an_error_naming_it() {
    let out = eval(
        &["--waypoint", "infra/nope"],
        r#"{"authority": "cart:8080"}"#,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("waypoint Gateway \"infra/nope\" is not in the input"),
        "{err}"
    );
}

#[test]
fn other_waypoints_objects_are_not_reported_as_skipped() {
    // With several waypoints every compile would call the others' objects skipped; only
    // warnings are printed then.
    let out = eval(&[], r#"{"authority": "cart.shop.svc.cluster.local:8080"}"#);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("not the waypoint being compiled"), "{err}");
}
