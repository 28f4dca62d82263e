//! Bad input: every file under testdata/invalid fails with a message naming the file, the
//! document, the object and the field path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

fn invalid(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/invalid")
        .join(name);
    match layover_compiler::compile_paths(&[p]) {
        Ok(_) => panic!("{name} compiled"),
        Err(e) => e.to_string(),
    }
}

/// (file, object, field path, message fragment)
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "malformed-yaml.yaml",
        "document 1",
        "",
        "invalid YAML (line 7, column 7)",
    ),
    (
        "unknown-field.yaml",
        "document 2 (VirtualService default/reviews)",
        "spec.http[0].route[0].wieght",
        "unknown field `wieght`",
    ),
    (
        "invalid-regex.yaml",
        "document 2 (VirtualService default/reviews)",
        "spec.http[0].match[0].uri.regex",
        "invalid regex \"/api/(v1|v2\"",
    ),
    (
        "bad-cidr.yaml",
        "document 2 (AuthorizationPolicy default/reviews-ip)",
        "spec.rules[0].from[0].source.ipBlocks[0]",
        "invalid CIDR \"10.0.0.0/33\"",
    ),
    (
        "negative-weight.yaml",
        "document 2 (VirtualService default/reviews)",
        "spec.http[0].route[1].weight",
        "weight -10 < 0",
    ),
    (
        "non-numeric-weight.yaml",
        "document 2 (VirtualService default/reviews)",
        "spec.http[0].route[0].weight",
        "invalid type: string \"x\"",
    ),
    (
        // istiod convertGRPCRoute (conversion.go:320-324 @ 1.30.3): unsupported filter type.
        "grpcroute-filter.yaml",
        "document 2 (GRPCRoute default/reviews)",
        "spec.rules[0].filters[0].type",
        "unsupported filter type \"URLRewrite\" for a GRPCRoute",
    ),
    (
        "zero-total-weight.yaml",
        "document 2 (VirtualService default/reviews)",
        "spec.http[0].route",
        "total destination weight = 0",
    ),
    (
        "negative-backend-weight.yaml",
        "document 2 (HTTPRoute default/reviews)",
        "spec.rules[0].backendRefs[0].weight",
        "weight -1 is outside 0..1000000",
    ),
    (
        "custom-action.yaml",
        "document 2 (AuthorizationPolicy default/ext-authz)",
        "spec.action",
        "CUSTOM (ext_authz) is not supported yet",
    ),
    (
        "request-auth.yaml",
        "document 2 (RequestAuthentication default/jwt-no-issuer)",
        "spec.jwtRules[0].issuer",
        "issuer or jwksUri must be non-empty string",
    ),
    (
        "request-auth-claims.yaml",
        "document 2 (AuthorizationPolicy default/jwt-claims)",
        "spec.rules[0].when[0].key",
        "unknown condition key \"request.auth.claim[iss]\"",
    ),
    (
        "delegate.yaml",
        "document 2 (VirtualService default/reviews)",
        "spec.http[0].delegate",
        "VirtualService delegation is not supported yet",
    ),
    (
        "unsupported-filter.yaml",
        "document 2 (HTTPRoute default/reviews)",
        "spec.rules[0].filters[0].extensionRef",
        "ExtensionRef filters are not supported",
    ),
    (
        "bad-duration.yaml",
        "document 2 (VirtualService default/reviews)",
        "spec.http[0].timeout",
        "invalid duration \"10\": missing unit",
    ),
    (
        "bad-port.yaml",
        "document 2 (AuthorizationPolicy default/reviews-port)",
        "spec.rules[0].to[0].operation.ports[0]",
        "invalid port \"http\"",
    ),
    (
        "unsupported-api-version.yaml",
        "document 1 (VirtualService default/reviews)",
        "apiVersion",
        "unsupported version \"networking.istio.io/v2\"",
    ),
];

#[test]
fn every_invalid_file_names_file_object_and_field() {
    for (file, object, path, msg) in CASES {
        let e = invalid(file);
        let expected = if path.is_empty() {
            format!("testdata/invalid/{file}: {object}: {msg}")
        } else {
            format!("testdata/invalid/{file}: {object}: {path}: {msg}")
        };
        assert!(
            e.contains(&expected),
            "{file}:\nwant: {expected}\ngot:  {e}"
        );
        assert!(e.starts_with("error: "), "{e}");
    }
}

#[test]
fn every_invalid_file_is_covered() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/invalid");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    files.sort();
    for f in &files {
        assert!(
            CASES.iter().any(|c| c.0 == f),
            "{f} has no expected message"
        );
    }
}

#[test]
fn unknown_field_in_metadata_and_spec_of_each_kind() {
    for kind in [
        (
            "networking.istio.io/v1",
            "DestinationRule",
            "spec: {host: a, subsetz: []}",
            "spec.subsetz",
        ),
        (
            "networking.istio.io/v1",
            "ServiceEntry",
            "spec: {hosts: [a.b], portz: []}",
            "spec.portz",
        ),
        (
            "networking.istio.io/v1",
            "WorkloadEntry",
            "spec: {adress: 1.2.3.4}",
            "spec.adress",
        ),
        (
            "security.istio.io/v1",
            "AuthorizationPolicy",
            "spec: {rules: [{form: []}]}",
            "spec.rules[0].form",
        ),
        (
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            "spec: {rules: [{matchs: []}]}",
            "spec.rules[0].matchs",
        ),
        (
            "v1",
            "Service",
            "spec: {ports: [{prot: 80}]}",
            "spec.ports[0]",
        ),
    ] {
        let yaml = format!(
            "apiVersion: {}\nkind: {}\nmetadata: {{name: x, lables: {{}}}}\n{}\n",
            kind.0, kind.1, kind.2
        );
        let e = layover_compiler::load_str("k.yaml", &yaml)
            .err()
            .unwrap()
            .to_string();
        // Metadata is checked too; the first unknown field in document order is reported.
        assert!(
            e.contains(&format!(
                "k.yaml: document 1 ({} default/x): metadata.lables: unknown field",
                kind.1
            )),
            "{e}"
        );
        let yaml = format!(
            "apiVersion: {}\nkind: {}\nmetadata: {{name: x}}\n{}\n",
            kind.0, kind.1, kind.2
        );
        let e = layover_compiler::load_str("k.yaml", &yaml)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(&format!("({} default/x): {}", kind.1, kind.3)),
            "{e}"
        );
    }
}

#[test]
fn errors_in_several_files_are_all_reported() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/invalid");
    let e = layover_compiler::compile_paths(&[dir]).err().unwrap();
    // Objects with the same kind/namespace/name replace each other (kubectl apply), so not
    // every file's error survives; errors from many files are still reported in one run.
    let files: std::collections::HashSet<String> =
        e.0.iter()
            .map(|x| x.to_string().split(':').next().unwrap_or("").to_string())
            .collect();
    assert!(files.len() >= 10, "{e}");
}
