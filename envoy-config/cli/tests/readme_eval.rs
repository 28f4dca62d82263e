//! Every `layover eval` example in the README prints what the README says.
//!
//! An example is a `<!-- eval: ARGS -->` marker followed by a fenced block. A `json` block must be
//! a subset of the real output (objects: every key shown has the value shown; arrays: same length,
//! element-wise), so abridged examples stay honest; a `text` block must match exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// (args, fence language, block text) for every marked example.
fn examples(readme: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(args) = line
            .trim()
            .strip_prefix("<!-- eval:")
            .and_then(|s| s.strip_suffix("-->"))
        else {
            continue;
        };
        let fence = lines.next().expect("a fenced block follows the marker");
        let lang = fence.trim().trim_start_matches("```").to_string();
        let mut body = String::new();
        for l in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        out.push((args.trim().to_string(), lang, body));
    }
    out
}

fn contains(actual: &Value, shown: &Value, at: &str) -> Result<(), String> {
    match (actual, shown) {
        (Value::Object(a), Value::Object(s)) => {
            for (k, v) in s {
                let got = a.get(k).ok_or_else(|| format!("{at}.{k}: missing"))?;
                contains(got, v, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(s)) if a.len() == s.len() => a
            .iter()
            .zip(s)
            .enumerate()
            .try_for_each(|(i, (x, y))| contains(x, y, &format!("{at}[{i}]"))),
        _ if actual == shown => Ok(()),
        _ => Err(format!("{at}: README shows {shown}, eval prints {actual}")),
    }
}

#[test]
fn readme_eval_examples_match_real_output() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let examples = examples(&readme);
    assert!(examples.len() >= 3, "the README lost its eval examples");
    for (args, lang, body) in examples {
        let out = Command::new(env!("CARGO_BIN_EXE_layover"))
            .arg("eval")
            .args(args.split_whitespace())
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "layover eval {args} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        match lang.as_str() {
            "json" => {
                let actual: Value = serde_json::from_str(stdout.trim()).unwrap();
                let shown: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("README example for `{args}` is not JSON: {e}"));
                if let Err(diff) = contains(&actual, &shown, "$") {
                    panic!("layover eval {args}: {diff}");
                }
            }
            "text" => {
                let trim = |s: &str| -> Vec<String> {
                    s.lines().map(|l| l.trim_end().to_string()).collect()
                };
                assert_eq!(trim(&stdout), trim(&body), "layover eval {args}");
            }
            other => panic!("unexpected fence language `{other}` for `{args}`"),
        }
    }
}

#[test]
fn eval_rejects_bad_request_json_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("layover-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"source": {"principle": "x"}}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_layover"))
        .args(["eval", "--config", "testdata/bookinfo", "--request"])
        .arg(&bad)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("principle"), "{err}");
    assert!(err.contains("bad.json"), "{err}");
}

#[test]
fn eval_applies_envoy_path_normalization_before_matching() {
    // Istio's default pathNormalization BASE: Envoy resolves dot segments before any filter, so
    // policies see the normalized path (istio.io/latest/docs/ops/best-practices/security/#path-normalization-in-authorization-policy).
    let out = Command::new(env!("CARGO_BIN_EXE_layover"))
        .args(["eval", "--config", "testdata/bookinfo", "--request", "-"])
        .current_dir(repo_root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(
                br#"{"path":"/a/../reviews/./0?x=1","source":{"principal":"cluster.local/ns/bookinfo/sa/bookinfo-productpage"},"destination":{"service":"reviews.bookinfo.svc.cluster.local","port":9080}}"#,
            )?;
            child.wait_with_output()
        })
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["normalized_path"], "/reviews/0");
    assert_eq!(v["path"], "/reviews/0?x=1");
    assert_eq!(v["action"], "route");
}
