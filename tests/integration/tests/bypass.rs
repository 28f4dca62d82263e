//! Authorization-bypass suite: the request forms behind Istio's published authorization-bypass
//! advisories and their neighbours, sent byte for byte (raw HTTP/1.1) through a real Envoy 1.40
//! running each layover build, under the three path-normalization modes an operator can pick
//! (MeshConfig `pathNormalization`: `BASE`, Istio's default; `MERGE_SLASHES`;
//! `DECODE_AND_MERGE_SLASHES`).
//!
//! Each build runs the rows twice: on layover's own bootstrap (plain listener) and in the
//! waypoint istiod generates with layover attached only by the route A EnvoyFilter, every raw
//! request inside an HBONE tunnel to its app's VIP ([`Shape::Istiod`]; rows answered otherwise
//! there are listed, with why, in `ISTIOD_ANSWERS`).
//!
//! Every row gives, per mode, what Istio answers: the status of a local reply, or the path the
//! backend received (the request was allowed). Sources, cited per row:
//! - `[norm]` https://istio.io/latest/docs/reference/config/security/normalization/
//!   (percent-decoding table, backslash, slash merging, dot segments, query, method case,
//!   header-name case, duplicate headers joined with `,`);
//! - `[bp]` https://istio.io/latest/docs/ops/best-practices/security/#understand-path-normalization-in-authorization-policy
//!   (which mode to pick; case is never normalized: prefer ALLOW with positive matching);
//! - `[2021-005]` https://istio.io/latest/news/security/istio-security-2021-005/
//!   (CVE-2021-31920: `//admin`, `%2F`, `%5C` bypass DENY `/admin` unless slashes are merged
//!   and escaped slashes decoded);
//! - `[2021-008]` https://istio.io/latest/news/security/istio-security-2021-008/
//!   (CVE-2021-39156: a `#fragment` bypassed path rules — Envoy now strips it, istiod sets
//!   `http_reject_path_with_fragment: false`; CVE-2021-39155: `hosts` rules were case-sensitive —
//!   now matched case-insensitively);
//! - `[hcm]` what Envoy does with the connection-manager settings istiod emits per mode
//!   (`normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action`; istio/istio
//!   pilot/pkg/networking/core/listener_builder.go, mirrored by `layover_bootstrap::hcm_normalization`
//!   and checked by tests/integration/tests/envoy_smoke.rs `path_normalization_modes_do_what_istio_promises`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use layover_integration::client::RawResponse;
use layover_integration::waypoint::{app_yaml, FilterBuild, Shape, Waypoint};
use layover_integration::{Backend, Echo};

/// The modes, in the column order of [`Case::want`].
const MODES: [&str; 3] = ["BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"];

/// What Istio gives for a request in one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Allowed: the backend received this path (and query).
    Fwd(&'static str),
    /// Answered by the proxy with this status (403 `RBAC: access denied`, 400 from Envoy).
    Status(u16),
}
use Want::{Fwd, Status};

const DENIED: Want = Status(403);

/// One raw request and its expected outcome per mode.
struct Case {
    /// Which advisory or document the row encodes.
    cite: &'static str,
    /// The app (service) whose backend must see the request when it is allowed.
    app: &'static str,
    /// The request line's method and target, sent verbatim.
    method: &'static str,
    target: &'static str,
    /// Raw header lines (`name: value\r\n` each); `None` for `host: <app>:9080`.
    headers: Option<&'static str>,
    /// Outcome under BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES.
    want: [Want; 3],
}

const fn get(cite: &'static str, app: &'static str, target: &'static str, want: [Want; 3]) -> Case {
    Case {
        cite,
        app,
        method: "GET",
        target,
        headers: None,
        want,
    }
}

const fn all(w: Want) -> [Want; 3] {
    [w, w, w]
}

/// The table. `denyapp`: DENY `/admin`, `/admin/*`; `allowapp`: ALLOW only `/public`,
/// `/public/*`; `hostapp`: DENY hosts `hostapp`, `hostapp:*`; `methodapp`: DENY `DELETE`;
/// `hdrapp`: DENY `request.headers[x-block] == yes`.
fn cases() -> Vec<Case> {
    vec![
        // ---- DENY /admin: every spelling of /admin that the backend would serve as /admin.
        get("[norm] exact path", "denyapp", "/admin", all(DENIED)),
        get(
            "[norm] trailing slash matches /admin/*",
            "denyapp",
            "/admin/",
            all(DENIED),
        ),
        get("[norm] prefix rule", "denyapp", "/admin/users", all(DENIED)),
        get(
            "[norm] /adminx is neither /admin nor /admin/*",
            "denyapp",
            "/adminx",
            all(Fwd("/adminx")),
        ),
        get(
            "[norm] dot-dot resolved (RFC 3986)",
            "denyapp",
            "/public/../admin",
            all(DENIED),
        ),
        get(
            "[norm] dot-dot resolved",
            "denyapp",
            "/admin/../public",
            all(Fwd("/public")),
        ),
        get(
            "[norm] dot-dot above the root",
            "denyapp",
            "/../admin",
            all(DENIED),
        ),
        get("[norm] single dot", "denyapp", "/./admin/./x", all(DENIED)),
        get(
            "[norm] %2e is decoded by BASE",
            "denyapp",
            "/public/%2e%2e/admin",
            all(DENIED),
        ),
        get(
            "[norm] %2E upper-case hex too",
            "denyapp",
            "/public/%2E%2E/admin",
            all(DENIED),
        ),
        get(
            "[norm] unreserved %61 (a) decoded",
            "denyapp",
            "/%61dmin",
            all(DENIED),
        ),
        get(
            "[norm] backslash is a separator",
            "denyapp",
            "/public\\..\\admin",
            all(DENIED),
        ),
        get(
            "[2021-005] //admin bypasses DENY /admin under BASE; merged from MERGE_SLASHES",
            "denyapp",
            "//admin",
            [Fwd("//admin"), DENIED, DENIED],
        ),
        get(
            "[2021-005] ///admin",
            "denyapp",
            "///admin",
            [Fwd("///admin"), DENIED, DENIED],
        ),
        get(
            "[2021-005] //admin//x",
            "denyapp",
            "//admin//x",
            [Fwd("//admin//x"), DENIED, DENIED],
        ),
        get(
            "[2021-005] %2F only decoded by DECODE_AND_MERGE_SLASHES",
            "denyapp",
            "/admin%2Fusers",
            [Fwd("/admin%2Fusers"), Fwd("/admin%2Fusers"), DENIED],
        ),
        get(
            "[2021-005] %2f (lower-case hex)",
            "denyapp",
            "/admin%2fusers",
            [Fwd("/admin%2fusers"), Fwd("/admin%2fusers"), DENIED],
        ),
        get(
            "[2021-005] %2F..%2F resolved only after decoding",
            "denyapp",
            "/public%2F..%2Fadmin",
            [
                Fwd("/public%2F..%2Fadmin"),
                Fwd("/public%2F..%2Fadmin"),
                DENIED,
            ],
        ),
        get(
            "[2021-005] %5C (backslash)",
            "denyapp",
            "/public%5C..%5Cadmin",
            [
                Fwd("/public%5C..%5Cadmin"),
                Fwd("/public%5C..%5Cadmin"),
                DENIED,
            ],
        ),
        get(
            "[norm] %5c lower-case hex",
            "denyapp",
            "/public%5c..%5cadmin",
            [
                Fwd("/public%5c..%5cadmin"),
                Fwd("/public%5c..%5cadmin"),
                DENIED,
            ],
        ),
        get(
            "[hcm] %2e%2e%2f: dots decoded by BASE, the slash only by DECODE",
            "denyapp",
            "/public/%2e%2e%2fadmin",
            [Fwd("/public/..%2fadmin"), Fwd("/public/..%2fadmin"), DENIED],
        ),
        get(
            "[hcm] %2F%2F merged after decoding",
            "denyapp",
            "/%2F%2Fadmin",
            [Fwd("/%2F%2Fadmin"), Fwd("/%2F%2Fadmin"), DENIED],
        ),
        get(
            "[norm] only one level of decoding",
            "denyapp",
            "/admin%252Fx",
            all(Fwd("/admin%252Fx")),
        ),
        get(
            "[norm] %00 is always rejected",
            "denyapp",
            "/admin%00",
            all(Status(400)),
        ),
        get(
            "[2021-008] fragment stripped before matching",
            "denyapp",
            "/admin#x",
            all(DENIED),
        ),
        get(
            "[2021-008] fragment hides nothing",
            "denyapp",
            "/admin/#/../../public",
            all(DENIED),
        ),
        get(
            "[2021-008] fragment stripped",
            "denyapp",
            "/public#/../admin",
            all(Fwd("/public")),
        ),
        get(
            "[norm] query ignored by path rules",
            "denyapp",
            "/admin?x=1",
            all(DENIED),
        ),
        get("[norm] empty query", "denyapp", "/admin?", all(DENIED)),
        get(
            "[norm] query never normalized",
            "denyapp",
            "/public?/../admin",
            all(Fwd("/public?/../admin")),
        ),
        get(
            "[bp] paths are case-sensitive: /ADMIN is another path (DENY misses it; prefer ALLOW)",
            "denyapp",
            "/ADMIN",
            all(Fwd("/ADMIN")),
        ),
        get(
            "[bp] case not normalized",
            "denyapp",
            "/Admin/users",
            all(Fwd("/Admin/users")),
        ),
        // ---- ALLOW only /public: positive matching fails closed on unusual spellings.
        get(
            "[norm] allowed path",
            "allowapp",
            "/public",
            all(Fwd("/public")),
        ),
        get(
            "[norm] allowed prefix",
            "allowapp",
            "/public/a",
            all(Fwd("/public/a")),
        ),
        get(
            "[norm] query kept for the backend",
            "allowapp",
            "/public?q=/admin",
            all(Fwd("/public?q=/admin")),
        ),
        get(
            "[norm] dot-dot out of /public",
            "allowapp",
            "/public/../admin",
            all(DENIED),
        ),
        get(
            "[norm] %2e%2e out of /public",
            "allowapp",
            "/public/%2e%2e/admin",
            all(DENIED),
        ),
        get(
            "[bp] case-sensitive: /PUBLIC is not allowed",
            "allowapp",
            "/PUBLIC",
            all(DENIED),
        ),
        get(
            "[2021-005] //public only matches once slashes are merged",
            "allowapp",
            "//public",
            [DENIED, Fwd("/public"), Fwd("/public")],
        ),
        get(
            "[2021-005] /public/..%2F: under BASE a %2F-decoding backend would serve /admin",
            "allowapp",
            "/public/..%2Fadmin",
            [Fwd("/public/..%2Fadmin"), Fwd("/public/..%2Fadmin"), DENIED],
        ),
        get(
            "[2021-005] %2F before the prefix slash",
            "allowapp",
            "/public%2F..%2Fadmin",
            all(DENIED),
        ),
        get(
            "[2021-008] fragment",
            "allowapp",
            "/public#frag",
            all(Fwd("/public")),
        ),
        // ---- hosts: case-insensitive, matched against the whole Host header.
        host_case(
            "[2021-008] CVE-2021-39155 exact host",
            "host: hostapp:9080\r\n",
            all(DENIED),
        ),
        host_case(
            "[2021-008] mixed-case host",
            "host: HostApp:9080\r\n",
            all(DENIED),
        ),
        host_case(
            "[2021-008] upper-case host, no port",
            "host: HOSTAPP\r\n",
            all(DENIED),
        ),
        host_case(
            "[norm] hosts match the Host header as sent: the FQDN is another host (list it)",
            "host: hostapp.default.svc.cluster.local:9080\r\n",
            all(Fwd("/")),
        ),
        // ---- methods.
        Case {
            cite: "[norm] DENY methods",
            app: "methodapp",
            method: "DELETE",
            target: "/",
            headers: None,
            want: all(DENIED),
        },
        Case {
            cite: "[norm] a method not in upper case is rejected with 400",
            app: "methodapp",
            method: "delete",
            target: "/",
            headers: None,
            want: all(Status(400)),
        },
        Case {
            cite: "[norm] mixed-case method: 400",
            app: "methodapp",
            method: "DeLeTe",
            target: "/",
            headers: None,
            want: all(Status(400)),
        },
        host_case(
            "[norm] repeated Host headers are joined (`other:9080,hostapp:9080`): no service has \
             that name, so nothing is forwarded (404, as a sidecar's virtual-host lookup)",
            "host: other:9080\r\nhost: hostapp:9080\r\n",
            all(Status(404)),
        ),
        Case {
            cite: "RFC 9112 3.2.2: absolute-form wins over Host; the hosts rule sees hostapp:9080",
            app: "hostapp",
            method: "GET",
            target: "http://hostapp:9080/",
            headers: Some("host: denyapp:9080\r\n"),
            want: all(DENIED),
        },
        Case {
            cite: "[2021-005] absolute-form: the path is normalized like any other",
            app: "denyapp",
            method: "GET",
            target: "http://denyapp:9080//admin",
            headers: Some("host: hostapp:9080\r\n"),
            want: [Fwd("//admin"), DENIED, DENIED],
        },
        // ---- headers: names case-insensitive; duplicates joined with "," before matching.
        hdr_case(
            "[norm] header rule",
            "hdrapp",
            "host: hdrapp:9080\r\nx-block: yes\r\n",
            all(DENIED),
        ),
        hdr_case(
            "[norm] header names are case-insensitive",
            "hdrapp",
            "host: hdrapp:9080\r\nX-Block: yes\r\n",
            all(DENIED),
        ),
        hdr_case(
            "[norm] duplicates are matched as the joined `no,yes`: an exact rule misses it",
            "hdrapp",
            "host: hdrapp:9080\r\nx-block: no\r\nx-block: yes\r\n",
            all(Fwd("/")),
        ),
    ]
}

fn host_case(cite: &'static str, headers: &'static str, want: [Want; 3]) -> Case {
    Case {
        cite,
        app: "hostapp",
        method: "GET",
        target: "/",
        headers: Some(headers),
        want,
    }
}

/// A header case; `headers` carries the Host line too.
fn hdr_case(cite: &'static str, app: &'static str, headers: &'static str, want: [Want; 3]) -> Case {
    Case {
        cite,
        app,
        method: "GET",
        target: "/",
        headers: Some(headers),
        want,
    }
}

/// Rows whose answer in istiod's waypoint ([`Shape::Istiod`]) is not the plain listener's:
/// `(start of the row's cite, answer per mode, why)`.
const ISTIOD_ANSWERS: &[(&str, [Want; 3], &str)] = &[(
    "[norm] repeated Host headers are joined",
    all(Fwd("/")),
    "the CONNECT's VIP selects hostapp's chain (virtual host `*`), not the Host header, and the \
     joined authority matches neither `hostapp` nor `hostapp:*`: forwarded — istiod's own \
     configuration answers the same (measured)",
)];

const APPS: [&str; 5] = ["denyapp", "allowapp", "hostapp", "methodapp", "hdrapp"];

/// An AuthorizationPolicy bound to Service `app` (`targetRefs`, the waypoint way).
fn policy(app: &str, action: &str, rule: &str) -> String {
    format!(
        "---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {app}, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: '', name: {app}}}]
  action: {action}
  rules: [{rule}]
"
    )
}

fn mesh_yaml(mode: &str, backends: &[Backend]) -> String {
    let mut yaml = format!(
        "---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |-
    pathNormalization:
      normalization: {mode}
"
    );
    for (app, b) in APPS.iter().zip(backends) {
        yaml.push_str(&app_yaml(app, &[b]));
    }
    yaml.push_str(&policy(
        "denyapp",
        "DENY",
        "{to: [{operation: {paths: [/admin, /admin/*]}}]}",
    ));
    yaml.push_str(&policy(
        "allowapp",
        "ALLOW",
        "{to: [{operation: {paths: [/public, /public/*]}}]}",
    ));
    yaml.push_str(&policy(
        "hostapp",
        "DENY",
        "{to: [{operation: {hosts: [hostapp, 'hostapp:*']}}]}",
    ));
    yaml.push_str(&policy(
        "methodapp",
        "DENY",
        "{to: [{operation: {methods: [DELETE]}}]}",
    ));
    yaml.push_str(&policy(
        "hdrapp",
        "DENY",
        "{when: [{key: 'request.headers[x-block]', values: ['yes']}]}",
    ));
    yaml
}

/// What happened, in the terms of [`Want`]: `Ok(Err(status))` for a local reply,
/// `Ok(Ok(path))` when the backend got the request; `Err` for anything inconsistent.
fn outcome(
    reply: &RawResponse,
    backend: &Backend,
    before: usize,
) -> Result<Result<String, u16>, String> {
    let reached = backend.request_count() - before;
    match (reply.status, reached) {
        (200, 1) => {
            let echo: Echo = serde_json::from_str(&reply.body)
                .map_err(|e| format!("200 without an echo ({e}): {:?}", reply.body))?;
            Ok(Ok(echo.path))
        }
        (status, 0) if status != 200 => {
            if status == 403 && reply.body != "RBAC: access denied" {
                return Err(format!("403 with body {:?}", reply.body));
            }
            Ok(Err(status))
        }
        (status, n) => Err(format!(
            "status {status} but the backend saw {n} requests: {:?}",
            reply.body
        )),
    }
}

async fn bypass_suite(shape: Shape, build: FilterBuild) {
    // One Envoy per mode, started concurrently (startup dominates the cost).
    let mut starts = Vec::new();
    for mode in MODES {
        starts.push(tokio::spawn(async move {
            let mut backends = Vec::new();
            for app in APPS {
                backends.push(Backend::start(app, "v1").await.unwrap());
            }
            let wp = Waypoint::start_in(shape, build, &mesh_yaml(mode, &backends))
                .await
                .unwrap_or_else(|e| panic!("[{}] {mode}: {e}", build.name()));
            (wp, backends)
        }));
    }
    let mut waypoints = Vec::new();
    for s in starts {
        waypoints.push(s.await.unwrap());
    }

    let mut failures = Vec::new();
    let cases = cases();
    for case in &cases {
        let app_index = APPS.iter().position(|a| *a == case.app).unwrap();
        let default_host = format!("host: {}:9080\r\n", case.app);
        let headers = case.headers.unwrap_or(&default_host);
        let request = format!(
            "{} {} HTTP/1.1\r\n{headers}connection: close\r\n\r\n",
            case.method, case.target
        );
        let want = match ISTIOD_ANSWERS
            .iter()
            .find(|(cite, ..)| case.cite.starts_with(cite))
        {
            Some((_, istiod, _why)) if shape == Shape::Istiod => *istiod,
            _ => case.want,
        };
        for (i, (wp, backends)) in waypoints.iter().enumerate() {
            let backend = &backends[app_index];
            let before = backend.request_count();
            let reply = wp
                .raw(&format!("{}:9080", case.app), request.as_bytes())
                .await
                .unwrap();
            let got = outcome(&reply, backend, before);
            let ok = match (&got, want[i]) {
                (Ok(Ok(path)), Fwd(want)) => path == want,
                (Ok(Err(status)), Status(want)) => *status == want,
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{} {:?} on {} under {}: want {:?}, got {:?}  ({})",
                    case.method, case.target, case.app, MODES[i], want[i], got, case.cite
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "[{} {}] {} of {} rows × modes differ from Istio:\n{}",
        shape.name(),
        build.name(),
        failures.len(),
        cases.len() * MODES.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_bypass_forms_get_istios_answer_in_every_mode_wasm() {
    bypass_suite(Shape::OwnBootstrap, FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_bypass_forms_get_istios_answer_in_every_mode_dynamic_module() {
    bypass_suite(Shape::OwnBootstrap, FilterBuild::DynamicModule).await;
}

// The same rows in istiod's waypoint, layover attached only by the route A EnvoyFilter: each
// raw request in an HBONE tunnel to the VIP of the row's app (its chain carries istiod's
// connection-manager normalization settings for the mode).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_bypass_forms_get_istios_answer_in_every_mode_istiod_wasm() {
    bypass_suite(Shape::Istiod, FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_bypass_forms_get_istios_answer_in_every_mode_istiod_dynamic_module() {
    bypass_suite(Shape::Istiod, FilterBuild::DynamicModule).await;
}
