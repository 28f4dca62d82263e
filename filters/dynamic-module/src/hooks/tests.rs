//! The hooks called directly, over the fake host (`abi::fake`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::abi::fake::{self, STREAM};

const YAML: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
"#;

fn policy_json() -> String {
    let bundle = layover_compiler::load_str("t.yaml", YAML).unwrap();
    let compiled = layover_compiler::compile(&bundle).unwrap();
    serde_json::to_string(&compiled.policy).unwrap()
}

#[test]
fn filter_config_wrapper_is_recognised_and_checked() {
    // The wrapper's parsing is `layover_contract::FilterConfig`'s (tested there); here: the
    // module takes the mode from it and refuses a bad one.
    let policy = policy_json();
    let wrapped = format!("{{\"cluster_selection\":\"metadata\",\"policy\":{policy}}}");
    assert!(super::config_new(b"t", wrapped.as_bytes()).is_some());
    // The authorization-only mode (route B) reaches each stream.
    let authz = format!("{{\"mode\":\"authorization\",\"policy\":{policy}}}");
    let config = super::config_new(b"t", authz.as_bytes()).unwrap();
    assert_eq!(config.mode, layover_contract::FilterMode::Authorization);
    for bad in [
        format!("{{\"cluster_selection\":\"cookie\",\"policy\":{policy}}}"),
        "{\"cluster_selection\":\"metadata\"}".to_string(),
        format!("{{\"cluster_selection\":\"metadata\",\"policy\":{policy},\"extra\":1}}"),
        format!("{{\"mode\":\"routing\",\"policy\":{policy}}}"),
    ] {
        STREAM.with(|st| *st.borrow_mut() = fake::Stream::default());
        assert!(super::config_new(b"t", bad.as_bytes()).is_none(), "{bad}");
    }
}
