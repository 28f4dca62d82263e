use super::*;
use layover_envoyfilter::DEFAULT_ROOT_NAMESPACE;

fn doc(spec: Value) -> WasmPluginDoc {
    let mut spec = spec;
    if let Some(obj) = spec.as_object_mut() {
        obj.entry("url")
            .or_insert_with(|| json!("file:///var/lib/layover/layover_wasm.wasm"));
    }
    serde_json::from_value(json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": { "name": "layover-waypoint", "namespace": "default" },
        "spec": spec,
    }))
    .unwrap()
}

fn waypoint() -> Target {
    Target {
        namespace: "default".into(),
        gateway: "waypoint".into(),
    }
}

fn gateway_ref(name: &str) -> Value {
    json!([{ "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name }])
}

fn attach(spec: Value) -> Attachment {
    attachment(&doc(spec), &waypoint(), DEFAULT_ROOT_NAMESPACE)
}

#[test]
fn the_emitted_plugin_becomes_istiods_filter() {
    let policy = json!({ "services": [] });
    let config = crate::manifests::route_b_plugin_config(&policy.to_string()).unwrap();
    let wp = layover_envoyfilter::emit::wasm_plugin(
        "layover-waypoint",
        &waypoint(),
        "file:///tmp/layover_wasm.wasm",
        &config,
    );
    let doc = layover_envoyfilter::emit::check_wasm_plugin(&wp).unwrap();
    let p = waypoint_plugin(
        &doc,
        &waypoint(),
        DEFAULT_ROOT_NAMESPACE,
        IstioVersion::PINNED,
    )
    .unwrap();
    assert_eq!(p.attachment, Attachment::EveryChain);
    assert_eq!(p.phase, Phase::Authz);
    assert_eq!(
        p.filter["name"],
        "extensions.istio.io/trafficextension/default.layover-waypoint~istio-translated-wasmplugin"
    );
    let c = &p.filter["typed_config"]["config"];
    assert_eq!(
        c["name"],
        "default.layover-waypoint~istio-translated-wasmplugin"
    );
    assert_eq!(c["root_id"], "layover");
    assert_eq!(c["failure_policy"], "FAIL_CLOSED");
    assert_eq!(
        c["vm_config"]["code"]["local"]["filename"],
        "/tmp/layover_wasm.wasm"
    );
    assert_eq!(c["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    // The configuration is the pluginConfig's JSON text: the authorization-only wrapper.
    let text = c["configuration"]["value"].as_str().unwrap();
    let fc = layover_contract::FilterConfig::decode(text.as_bytes()).unwrap();
    assert_eq!(fc.mode, layover_contract::FilterMode::Authorization);
    assert_eq!(serde_json::from_slice::<Value>(&fc.policy).unwrap(), policy);
}

#[test]
fn names_follow_the_release() {
    assert_eq!(
        filter_name("ns", "p", "1.30.3".parse().unwrap()),
        "extensions.istio.io/trafficextension/ns.p~istio-translated-wasmplugin"
    );
    assert_eq!(
        filter_name("ns", "p", "1.26.8".parse().unwrap()),
        "extensions.istio.io/wasmplugin/ns.p"
    );
    let d = doc(json!({ "targetRefs": gateway_ref("waypoint") }));
    let f = http_filter(&d, "1.29.6".parse().unwrap()).unwrap();
    assert_eq!(
        f["name"],
        "extensions.istio.io/wasmplugin/default.layover-waypoint"
    );
    assert_eq!(
        f["typed_config"]["config"]["name"],
        "default.layover-waypoint"
    );
    // No pluginConfig: an empty configuration; no pluginName: no root_id.
    assert_eq!(f["typed_config"]["config"]["configuration"], json!({}));
    assert!(f["typed_config"]["config"].get("root_id").is_none());
}

#[test]
fn fail_strategy_maps_as_istiod_maps_it() {
    for (strategy, policy) in [
        (None, "FAIL_CLOSED"),
        (Some("FAIL_CLOSE"), "FAIL_CLOSED"),
        (Some("FAIL_OPEN"), "FAIL_OPEN"),
        (Some("FAIL_RELOAD"), "FAIL_RELOAD"),
    ] {
        let mut spec = json!({ "targetRefs": gateway_ref("waypoint") });
        if let Some(s) = strategy {
            spec["failStrategy"] = json!(s);
        }
        let f = http_filter(&doc(spec), IstioVersion::PINNED).unwrap();
        assert_eq!(
            f["typed_config"]["config"]["failure_policy"], policy,
            "{strategy:?}"
        );
    }
}

#[test]
fn attachment_follows_should_attach_policy() {
    assert_eq!(
        attach(json!({ "targetRefs": gateway_ref("waypoint") })),
        Attachment::EveryChain
    );
    // The deprecated singular targetRef counts when targetRefs is empty.
    assert_eq!(
        attach(
            json!({ "targetRef": { "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint" } })
        ),
        Attachment::EveryChain
    );
    assert_eq!(
        attach(json!({ "targetRefs": gateway_ref("other") })),
        Attachment::Nowhere
    );
    // Selector-only never attaches to a waypoint. (The wire type spells the selector's labels
    // `labels`, as EnvoyFilter's `workloadSelector`; the WasmPlugin API says `matchLabels`.)
    assert_eq!(
        attach(
            json!({ "selector": { "matchLabels": { "gateway.networking.k8s.io/gateway-name": "waypoint" } } })
        ),
        Attachment::Nowhere
    );
    assert_eq!(attach(json!({})), Attachment::Nowhere);
    // A Service in the plugin's namespace: that service's chains only.
    assert_eq!(
        attach(json!({ "targetRefs": [{ "group": "", "kind": "Service", "name": "reviews" }] })),
        Attachment::Services(vec![("default".into(), "reviews".into())])
    );
    // GatewayClass istio-waypoint, from the root namespace only.
    let class = json!({ "targetRefs": [{ "group": "gateway.networking.k8s.io", "kind": "GatewayClass", "name": "istio-waypoint" }] });
    assert_eq!(attach(class.clone()), Attachment::Nowhere);
    let mut in_root = doc(class);
    in_root.metadata.namespace = DEFAULT_ROOT_NAMESPACE.into();
    assert_eq!(
        attachment(&in_root, &waypoint(), DEFAULT_ROOT_NAMESPACE),
        Attachment::EveryChain
    );
    // A Gateway in another namespace than the plugin's.
    let mut elsewhere = doc(json!({ "targetRefs": gateway_ref("waypoint") }));
    elsewhere.metadata.namespace = "other".into();
    assert_eq!(
        attachment(&elsewhere, &waypoint(), DEFAULT_ROOT_NAMESPACE),
        Attachment::Nowhere
    );
    // NETWORK plugins never go into HTTP chains.
    assert_eq!(
        attach(json!({ "targetRefs": gateway_ref("waypoint"), "type": "NETWORK" })),
        Attachment::Nowhere
    );
}

#[test]
fn match_ports_and_client_mode_never_match_a_waypoint() {
    let with = |m: Value| attach(json!({ "targetRefs": gateway_ref("waypoint"), "match": m }));
    assert_eq!(
        with(json!([{ "ports": [{ "number": 9080 }] }])),
        Attachment::Nowhere
    );
    assert_eq!(with(json!([{ "mode": "CLIENT" }])), Attachment::Nowhere);
    assert_eq!(
        with(json!([{ "mode": "SERVER", "ports": [{ "number": 9080 }] }])),
        Attachment::Nowhere
    );
    assert_eq!(with(json!([{ "mode": "SERVER" }])), Attachment::EveryChain);
    assert_eq!(
        with(json!([{ "mode": "CLIENT_AND_SERVER" }])),
        Attachment::EveryChain
    );
    assert_eq!(
        with(json!([{ "mode": "CLIENT" }, {}])),
        Attachment::EveryChain
    );
}

#[test]
fn only_file_urls_run_locally_and_plugin_config_is_an_object() {
    let d = doc(json!({ "targetRefs": gateway_ref("waypoint"), "url": "oci://ghcr.io/x/y:1" }));
    assert!(http_filter(&d, IstioVersion::PINNED).is_err());
    let d = doc(json!({ "targetRefs": gateway_ref("waypoint"), "pluginConfig": [1] }));
    assert!(http_filter(&d, IstioVersion::PINNED).is_err());
}

#[test]
fn phases_and_priorities_order_the_chain() {
    let svc = Service {
        name: "reviews".into(),
        namespace: "default".into(),
        ..Default::default()
    };
    let plugin = |phase, priority, name: &str| WaypointPlugin {
        attachment: Attachment::EveryChain,
        phase,
        priority,
        filter: json!(name),
    };
    let plugins = [
        plugin(Phase::Authz, None, "low"),
        plugin(Phase::Authz, Some(10), "high"),
        plugin(Phase::Authn, Some(99), "authn"),
        plugin(Phase::Authz, Some(10), "high-second"),
    ];
    let names: Vec<&Value> = in_phase(&plugins, &svc, Phase::Authz);
    assert_eq!(
        names,
        [&json!("high"), &json!("high-second"), &json!("low")]
    );
    assert_eq!(in_phase(&plugins, &svc, Phase::Authn), [&json!("authn")]);
    assert!(in_phase(&plugins, &svc, Phase::Stats).is_empty());
}
