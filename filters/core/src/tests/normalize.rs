//! `normalize_path` against the expectations of Istio's own integration test
//! (istio/istio `tests/integration/security/normalization_test.go`, `TestNormalization`), which
//! runs real Envoy under each MeshConfig `pathNormalization` mode.

// The same tables run compiled to wasm32 (the target the filter ships in) under
// wasm-bindgen-test, so regex, hashing and arithmetic behave identically there.
use crate::wire::PathNormalization as N;
use crate::{normalize_path, PathRejected};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// (input, NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES)
const ISTIO_VECTORS: &[(&str, &str, &str, &str, &str)] = &[
    ("/", "/", "/", "/", "/"),
    ("/app#foo", "/app", "/app", "/app", "/app"),
    ("/app/", "/app/", "/app/", "/app/", "/app/"),
    (
        "/app/../admin",
        "/app/../admin",
        "/admin",
        "/admin",
        "/admin",
    ),
    ("/app", "/app", "/app", "/app", "/app"),
    ("/app//", "/app//", "/app//", "/app/", "/app/"),
    ("/app/%2f", "/app/%2f", "/app/%2f", "/app/%2f", "/app/"),
    ("/app%2f/", "/app%2f/", "/app%2f/", "/app%2f/", "/app/"),
    (
        "/xyz%30..//abc",
        "/xyz%30..//abc",
        "/xyz0..//abc",
        "/xyz0../abc",
        "/xyz0../abc",
    ),
    (
        "/app/%2E./admin",
        "/app/%2E./admin",
        "/admin",
        "/admin",
        "/admin",
    ),
    (
        r"/app\admin",
        r"/app\admin",
        "/app/admin",
        "/app/admin",
        "/app/admin",
    ),
    (
        r"/app/\/\/\admin",
        r"/app/\/\/\admin",
        "/app//////admin",
        "/app/admin",
        "/app/admin",
    ),
    (
        r"/%2Fapp%5cadmin%5Cabc",
        r"/%2Fapp%5cadmin%5Cabc",
        r"/%2Fapp%5cadmin%5Cabc",
        r"/%2Fapp%5cadmin%5Cabc",
        "/app/admin/abc",
    ),
    (
        r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc",
        r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc",
        "/%5Capp%2f%5c%2F..%2fadmin%5c/abc",
        "/%5Capp%2f%5c%2F..%2fadmin%5c/abc",
        "/app/admin/abc",
    ),
    (
        "/app//../admin",
        "/app//../admin",
        "/app/admin",
        "/app/admin",
        "/app/admin",
    ),
    (
        "/app//../../admin",
        "/app//../../admin",
        "/admin",
        "/admin",
        "/admin",
    ),
];

#[test]
fn istio_integration_vectors_all_modes() {
    for (input, none, base, merge, decode) in ISTIO_VECTORS {
        for (mode, want) in [
            (N::None, none),
            (N::Base, base),
            (N::MergeSlashes, merge),
            (N::DecodeAndMergeSlashes, decode),
        ] {
            assert_eq!(
                normalize_path(input, mode).as_deref(),
                Ok(*want),
                "{input} under {mode:?}"
            );
        }
    }
}

// "DecodeAndMergeSlashes" extras and the "NotNormalized" group: things that must stay as they are.
#[test]
fn istio_decode_and_not_normalized_vectors() {
    let rows: &[(&str, &str)] = &[
        ("/%c0%2e%c0%2e/admin", "/%c0.%c0./admin"),
        ("/%c0%2fadmin", "/%c0/admin"),
        ("/0x2e0x2e/admin", "/0x2e0x2e/admin"),
        ("/0x2e0x2e0x2fadmin", "/0x2e0x2e0x2fadmin"),
        ("/0x2e0x2e0x5cadmin", "/0x2e0x2e0x5cadmin"),
        ("/0x2f0x2fadmin", "/0x2f0x2fadmin"),
        ("/0x5c0x5cadmin", "/0x5c0x5cadmin"),
        ("/%25c0%25ae%25c1%259cadmin", "/%25c0%25ae%25c1%259cadmin"),
        ("/%25c0%25ae%25c0%25ae/admin", "/%25c0%25ae%25c0%25ae/admin"),
        ("/%25c0%25afadmin", "/%25c0%25afadmin"),
        ("/%25c1%259cadmin", "/%25c1%259cadmin"),
        ("/%252e%252e/admin", "/%252e%252e/admin"),
        ("/%252e%252e%252fadmin", "/%252e%252e%252fadmin"),
        ("/%c1%9cadmin", "/%c1%9cadmin"),
        ("/%c0%ae%c0%ae/admin", "/%c0%ae%c0%ae/admin"),
        ("/%c0%afadmin", "/%c0%afadmin"),
        ("/.../admin", "/.../admin"),
        ("/..../admin", "/..../admin"),
        ("/..;/admin", "/..;/admin"),
        ("/;/admin", "/;/admin"),
        ("/admin;a=b", "/admin;a=b"),
        ("/admin;a=b/xyz", "/admin;a=b/xyz"),
        ("/admin,a=b/xyz", "/admin,a=b/xyz"),
        ("/Admin", "/Admin"),
        ("/ADMIN", "/ADMIN"),
    ];
    for (input, want) in rows {
        assert_eq!(
            normalize_path(input, N::DecodeAndMergeSlashes).as_deref(),
            Ok(*want),
            "{input}"
        );
    }
}

// "PercentEncoded": /admin%01 … /admin%ff. Unreserved characters (ALPHA, DIGIT, - . _ ~) are
// decoded, %2f / %5c become "/" under DECODE_AND_MERGE_SLASHES, everything else is kept as sent.
#[test]
fn istio_percent_encoded_sweep() {
    for i in 1u8..=0xff {
        let input = format!("/admin%{i:02x}");
        let c = char::from(i);
        let want = if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~') {
            format!("/admin{c}")
        } else if matches!(c, '/' | '\\') {
            "/admin/".to_string()
        } else {
            input.clone()
        };
        assert_eq!(
            normalize_path(&input, N::DecodeAndMergeSlashes),
            Ok(want),
            "{input}"
        );
    }
}

// "Invalid": %00 answers 400 (canonicalPath fails → path_normalization_failed).
#[test]
fn rejects() {
    let rows: &[(&str, N, PathRejected, u16)] = &[
        (
            "/admin%00",
            N::DecodeAndMergeSlashes,
            PathRejected::Invalid,
            400,
        ),
        ("/admin%00", N::Base, PathRejected::Invalid, 400),
        ("/a\0b", N::Base, PathRejected::Invalid, 400),
        ("", N::Base, PathRejected::Empty, 400),
        // A non-origin-form path never reaches the filters: Envoy's HTTP/1 codec answers 400
        // (measured in tests/integration/tests/envoy_smoke.rs).
        ("admin", N::Base, PathRejected::NotOriginForm, 400),
        ("admin", N::None, PathRejected::NotOriginForm, 400),
    ];
    for (input, mode, err, status) in rows {
        let got = normalize_path(input, *mode);
        assert_eq!(got, Err(*err), "{input:?} {mode:?}");
        assert_eq!(err.status(), *status);
    }
    // NONE does not canonicalize, so %00 passes through.
    assert_eq!(
        normalize_path("/admin%00", N::None).as_deref(),
        Ok("/admin%00")
    );
}

#[test]
fn query_untouched_fragment_stripped() {
    let rows: &[(&str, N, &str)] = &[
        // The query is not canonicalized (rfcNormalize only touches the part before '?').
        (
            "/a/../b?x=/../y&z=%2f",
            N::DecodeAndMergeSlashes,
            "/b?x=/../y&z=%2f",
        ),
        ("/a//b?c//d", N::MergeSlashes, "/a/b?c//d"),
        // The fragment is cut at the first '#', even inside the query.
        ("/a?x=1#frag", N::Base, "/a?x=1"),
        ("/a#x?y", N::None, "/a"),
        // Characters that must be escaped are escaped (Chromium kPathCharLookup).
        ("/a b\"<>`{}|^", N::Base, "/a%20b%22%3C%3E%60%7B%7D%7C%5E"),
        // Escapes of reserved characters keep their hex case.
        ("/%3a%3A", N::Base, "/%3a%3A"),
        ("/a/./b/.", N::Base, "/a/b/"),
        ("/../../a", N::Base, "/a"),
        ("/a/..", N::Base, "/"),
        ("/a/%2e%2E/b", N::Base, "/b"),
        ("/é", N::Base, "/%C3%A9"),
        // mergeSlashes keeps one leading and one trailing slash.
        ("///a///b///", N::MergeSlashes, "/a/b/"),
    ];
    for (input, mode, want) in rows {
        assert_eq!(
            normalize_path(input, *mode).as_deref(),
            Ok(*want),
            "{input} {mode:?}"
        );
    }
}
