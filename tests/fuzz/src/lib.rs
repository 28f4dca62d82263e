//! Fuzz target bodies. Each takes arbitrary bytes; a panic is a crash (AFL++ records the
//! input). The AFL++ binaries in `src/bin` (feature `afl`) only call these; `cargo xtask fuzz`
//! builds and runs them, and the unit tests below replay the seed corpus (`seeds/`) in CI.
//!
//! - [`policy_decoder`]: the filters' configuration decoder (`load_policy`: proto3 JSON or
//!   binary protobuf → validated engine) — what Envoy hands the filter at config time.
//! - [`yaml_compiler`]: Istio YAML → `layover compile`; whatever it accepts must round-trip
//!   through the binary encoding and be accepted by the engine (the compiler must never emit a
//!   policy the filters refuse).
//! - [`decide`]: a request built from the bytes against fixed policies, decided by the engine
//!   and applied by the adapter against a fake host; client-sent internal signals never
//!   survive.

// A fuzz target reports a bug by panicking: that is its whole interface.
#![allow(clippy::panic, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::OnceLock;

use layover_adapter::recording::RecordingHost;
use layover_adapter::{is_internal_signal, load_policy, Connection, StreamFilter, Verdict};
use layover_core::CompiledPolicy;

/// Decodes `data` as a filter configuration: an error or a policy, never a panic.
pub fn policy_decoder(data: &[u8]) {
    let _ = load_policy(data);
}

/// Compiles `data` as Istio YAML; an accepted policy must round-trip and load in the engine.
pub fn yaml_compiler(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(bundle) = layover_compiler::load_str("fuzz.yaml", text) else {
        return;
    };
    let Ok(compiled) = layover_compiler::compile(&bundle) else {
        return;
    };
    let bytes = prost::Message::encode_to_vec(&compiled.policy);
    let back: layover_core::wire::Policy =
        prost::Message::decode(bytes.as_slice()).expect("a compiled policy must decode");
    assert_eq!(
        back, compiled.policy,
        "binary round trip changed the policy"
    );
    if let Err(e) = load_policy(&bytes) {
        panic!("the engine refused a policy the compiler accepted: {e}");
    }
}

/// The policies [`decide`] runs against: testdata/bookinfo and a policy using every routing
/// and authorization feature the decide path has.
fn policies() -> &'static [CompiledPolicy] {
    static POLICIES: OnceLock<Vec<CompiledPolicy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let bookinfo = [
            include_str!("../../../testdata/bookinfo/00-namespace.yaml"),
            include_str!("../../../testdata/bookinfo/01-waypoint.yaml"),
            include_str!("../../../testdata/bookinfo/02-services.yaml"),
            include_str!("../../../testdata/bookinfo/03-workloads.yaml"),
            include_str!("../../../testdata/bookinfo/04-destination-rules.yaml"),
            include_str!("../../../testdata/bookinfo/05-virtual-services.yaml"),
            include_str!("../../../testdata/bookinfo/06-authorization.yaml"),
        ]
        .join("\n---\n");
        [bookinfo.as_str(), RICH]
            .iter()
            .map(|yaml| {
                let bundle =
                    layover_compiler::load_str("fuzz.yaml", yaml).expect("seed YAML loads");
                let compiled = layover_compiler::compile(&bundle).expect("seed YAML compiles");
                load_policy(&prost::Message::encode_to_vec(&compiled.policy))
                    .expect("engine accepts the seed policy")
            })
            .collect()
    })
}

const RICH: &str = include_str!("rich.yaml");

/// A request from the bytes: `<policy byte><entropy 8 bytes>` then newline-separated fields
/// `method`, `path`, `authority`, `principal`, `ip`, `service`, then `name: value` headers.
pub fn decide(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (entropy, rest) = if rest.len() >= 8 {
        let (e, r) = rest.split_at(8);
        let mut b = [0u8; 8];
        b.copy_from_slice(e);
        (u64::from_le_bytes(b), r)
    } else {
        (0, rest)
    };
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let mut next = || lines.next().unwrap_or("").to_string();
    let (method, path, authority, principal, ip, service) =
        (next(), next(), next(), next(), next(), next());
    let pseudo = vec![
        (":method".to_string(), method),
        (":path".to_string(), path),
        (":authority".to_string(), authority),
        (":scheme".to_string(), "http".to_string()),
    ];
    let headers: Vec<(String, String)> = text
        .split('\n')
        .skip(6)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let policies = policies();
    let policy = &policies[usize::from(which) % policies.len()];
    let conn = Connection {
        principal: (!principal.is_empty()).then_some(principal),
        source_ip: ip.parse::<IpAddr>().ok(),
        remote_ip: None,
        destination_service: (!service.is_empty()).then_some(service),
        destination_ip: None,
        destination_port: u16::from(which),
        sni: None,
    };
    let run = |with_internal: bool| {
        let mut request = pseudo.clone();
        request.extend(
            headers
                .iter()
                .filter(|(n, _)| with_internal || !is_internal_signal(n))
                .cloned(),
        );
        let mut host = RecordingHost {
            request,
            ..RecordingHost::default()
        };
        let mut filter = StreamFilter::default();
        if let Verdict::Delay(_) = filter.on_request_headers(policy, Ok(&conn), entropy, &mut host)
        {
            filter.on_delay_elapsed(&mut host);
        }
        filter.on_response_headers(&mut host);
        assert!(host.replies.len() <= 1, "more than one local reply");
        let mut internal: Vec<(String, String)> = host
            .request
            .into_iter()
            .filter(|(n, _)| is_internal_signal(n))
            .collect();
        internal.sort();
        (internal, host.replies)
    };
    // The client's x-envoy-* / x-layover-* headers change nothing: the internal signals layover
    // leaves for Envoy and its local replies are the same as without them.
    let with = run(true);
    let without = run(false);
    assert_eq!(
        with, without,
        "client-sent internal headers changed the outcome"
    );
}

#[cfg(test)]
mod tests {
    //! The seed corpus through every target (and the crashes fuzzing found, as regressions).
    use super::*;
    use std::path::Path;

    fn replay(dir: &str, target: fn(&[u8])) -> usize {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("seed dir") {
            let path = entry.expect("entry").path();
            target(&std::fs::read(&path).expect("seed"));
            n += 1;
        }
        n
    }

    #[test]
    fn seed_corpus_passes_every_target() {
        assert!(replay("seeds/policy_decoder", policy_decoder) > 0);
        // The YAML seeds are the repo's own test data (valid and invalid) plus rich.yaml.
        assert!(replay("../../testdata/bookinfo", yaml_compiler) > 0);
        assert!(replay("../../testdata/invalid", yaml_compiler) > 0);
        yaml_compiler(RICH.as_bytes());
        assert!(replay("seeds/decide", decide) > 0);
        // Crashes AFL++ found. decide-client-value-equals-policy-value: the client sent
        // `x-envoy-max-retries: 3` and the route's own retry policy is 3 attempts; the first
        // oracle ("the client's value is gone") could not tell them apart — a harness false
        // positive, now judged by comparing with the same request without client signals.
        assert!(replay("seeds/regressions", decide) > 0);
        // yaml_compiler crashes: the compiler accepted a Service clusterIP that is not an IP, a
        // VIP two services share, and path templates the engine refuses (it now reports them).
        assert!(replay("seeds/regressions-yaml", yaml_compiler) > 0);
    }
}
