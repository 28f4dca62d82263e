//! A running waypoint's Envoy admin config dump, as a static bootstrap Envoy loads offline.
//!
//! Input: the output of `istioctl proxy-config all -o json`, which is the raw admin
//! `/config_dump?include_eds=true` (`istioctl/pkg/proxyconfig/proxyconfig.go:460-484 @
//! 1.30.3`): `{"configs": [BootstrapConfigDump, ClustersConfigDump, ListenersConfigDump,
//! RoutesConfigDump, EndpointsConfigDump, SecretsConfigDump, EcdsConfigDump…]}`.
//!
//! What [`from_config_dump`] does, and why:
//! - listeners and clusters, static and dynamic (`active_state`), become static resources; the
//!   `@type` of each packed `Any` is dropped (a bootstrap holds the messages themselves);
//! - an EDS cluster becomes STATIC with the `load_assignment` of its endpoint configuration in
//!   the dump; without one it gets an empty assignment and a warning naming it;
//! - an HTTP connection manager's `rds` becomes the inline `route_config` of that name from
//!   the dump, and a filter's `config_discovery` (ECDS) the `typed_config` of that name;
//! - TLS secrets from SDS (`tls_certificate_sds_secret_configs`,
//!   `validation_context_sds_secret_config`, `combined_validation_context`), and inline
//!   certificates whose key admin redacted (`"[redacted]"`, even a key file's path), and trust
//!   bundle files this machine does not have, become files the caller writes ([`SecretPlaceholder`]): the dump never holds key material, and an
//!   SDS server is not there offline;
//! - `dynamic_resources` (ADS) is dropped: everything it served is now static. `admin`, `node`
//!   and the rest of the bootstrap stay as they were.
//!
//! Anything still naming an xDS source afterwards is reported in [`Converted::warnings`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The node fields Envoy describes itself with (`config/core/v3/base.proto` `Node`).
const NODE_SELF_DESCRIPTION: &[&str] = &[
    "user_agent_name",
    "user_agent_version",
    "user_agent_build_version",
    "extensions",
    "client_features",
];

/// What admin prints in place of key material.
const REDACTED: &str = "[redacted]";

/// Why a file is not a config dump this converter can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigDumpError {
    /// The top level has no `configs` list.
    #[error("not an Envoy admin config dump: no top-level `configs` list (expected the output of `istioctl proxy-config all -o json` or admin `/config_dump?include_eds=true`)")]
    NotADump,
    /// There is no `BootstrapConfigDump` (the `admin` and `node` of the bootstrap).
    #[error("the config dump has no BootstrapConfigDump (`configs[].bootstrap`): dump with `istioctl proxy-config all -o json` or admin `/config_dump`, not a single resource type")]
    NoBootstrap,
}

/// Where the converted bootstrap reads placeholder secrets from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Directory of the placeholder secret files (written by the caller).
    pub secrets_dir: PathBuf,
}

/// A secret the running proxy got from SDS, replaced by files the caller writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretPlaceholder {
    /// A certificate and key (`tls_certificate_sds_secret_configs`, e.g. istio's `default`).
    Certificate {
        /// SDS secret name.
        secret: String,
        /// PEM certificate chain path.
        cert_chain: PathBuf,
        /// PEM private key path.
        private_key: PathBuf,
    },
    /// A trust bundle (`validation_context_sds_secret_config`, e.g. istio's `ROOTCA`).
    TrustedCa {
        /// SDS secret name.
        secret: String,
        /// PEM CA certificates path.
        path: PathBuf,
    },
}

/// The bootstrap made from a config dump, and what the conversion changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// A static Envoy bootstrap (proto JSON).
    pub bootstrap: Value,
    /// What was changed so the bootstrap loads offline.
    pub notes: Vec<String>,
    /// What could not be carried over faithfully (missing endpoints, unresolved xDS).
    pub warnings: Vec<String>,
    /// Secret files the bootstrap reads and the caller must write.
    pub placeholders: Vec<SecretPlaceholder>,
    /// The waypoint Gateway (`namespace`, `name`) named by the dump's node, if it names one
    /// ([`waypoint_from_node`]).
    pub waypoint: Option<(String, String)>,
}

/// The resources of a dump by kind, with the `@type` of each packed message dropped.
#[derive(Default)]
struct Dump {
    bootstrap: Option<Value>,
    listeners: Vec<Value>,
    clusters: Vec<Value>,
    endpoints: BTreeMap<String, Value>,
    routes: BTreeMap<String, Value>,
    ecds: BTreeMap<String, Value>,
    secrets: Vec<String>,
    warming: Vec<String>,
}

/// Converts an admin config dump into a static bootstrap (see the module docs).
pub fn from_config_dump(dump: &Value, opts: &ConvertOptions) -> Result<Converted, ConfigDumpError> {
    let configs = dump
        .get("configs")
        .and_then(Value::as_array)
        .ok_or(ConfigDumpError::NotADump)?;
    let d = collect(configs);
    let mut bootstrap = d.bootstrap.clone().ok_or(ConfigDumpError::NoBootstrap)?;
    let mut conv = Converted {
        bootstrap: Value::Null,
        notes: Vec::new(),
        warnings: d.warming.clone(),
        placeholders: Vec::new(),
        waypoint: bootstrap.get("node").and_then(waypoint_from_node),
    };
    if let Some(obj) = bootstrap.as_object_mut() {
        if obj.remove("dynamic_resources").is_some() {
            conv.notes.push(
                "dynamic_resources (ADS) dropped: listeners, clusters, routes and endpoints come from the dump, static".into(),
            );
        }
        // Envoy fills these in itself at start (its build and extension list): the dump's
        // would describe the proxy that printed it, not the one loading the bootstrap.
        if let Some(Value::Object(node)) = obj.get_mut("node") {
            for k in NODE_SELF_DESCRIPTION {
                node.remove(*k);
            }
        }
        if obj.remove("hds_config").is_some() {
            conv.notes
                .push("hds_config dropped: no health discovery offline".into());
        }
    }
    let mut listeners = d.listeners.clone();
    let mut clusters = d.clusters.clone();
    for c in &mut clusters {
        static_cluster(c, &d.endpoints, &mut conv);
    }
    let mut fix = Fixer {
        dump: &d,
        opts,
        conv: &mut conv,
    };
    for l in &mut listeners {
        let name = str_of(l, "name").to_string();
        fix.walk(l, &format!("listener {name}"));
    }
    for c in &mut clusters {
        let name = str_of(c, "name").to_string();
        fix.walk(c, &format!("cluster {name}"));
    }
    if !d.secrets.is_empty() {
        conv.notes.push(format!(
            "secrets in the dump (key material redacted by admin, not used): {}",
            d.secrets.join(", ")
        ));
    }
    if let Some(obj) = bootstrap.as_object_mut() {
        let mut sr = Map::new();
        sr.insert("listeners".into(), Value::Array(listeners));
        sr.insert("clusters".into(), Value::Array(clusters));
        obj.insert("static_resources".into(), Value::Object(sr));
    }
    for path in xds_references(&bootstrap, "") {
        conv.warnings.push(format!(
            "{path}: still names an xDS config source; nothing serves it offline"
        ));
    }
    conv.bootstrap = bootstrap;
    Ok(conv)
}

/// The waypoint Gateway a proxy's `node` names: namespace from metadata `NAMESPACE`
/// (`pkg/model/proxy.go:224 @ 1.30.3`), else the node id's DNS domain
/// (`pilot/pkg/model/context.go:760-769 @ 1.30.3`: `<ns>.svc.cluster.local`); name from the
/// pod label `gateway.networking.k8s.io/gateway-name` in metadata `LABELS`
/// (`pkg/model/proxy.go:212`, read by `workloadGatewayName`,
/// `pilot/pkg/model/policyattachment.go:102-107 @ 1.30.3`), or `istio.io/gateway-name`.
pub fn waypoint_from_node(node: &Value) -> Option<(String, String)> {
    let meta = node.get("metadata");
    let labels = meta.and_then(|m| m.get("LABELS"));
    let name = [
        "gateway.networking.k8s.io/gateway-name",
        "istio.io/gateway-name",
    ]
    .iter()
    .find_map(|k| labels.and_then(|l| l.get(*k)).and_then(Value::as_str))
    .filter(|n| !n.is_empty())?;
    let ns = meta
        .and_then(|m| m.get("NAMESPACE"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| {
            // serviceNodeSeparator `~`: type~ip~id~dnsDomain (context.go:709-738 @ 1.30.3).
            let id = node.get("id").and_then(Value::as_str)?;
            let domain = id.split('~').nth(3)?;
            let (ns, _) = domain.split_once('.')?;
            Some(ns.to_string())
        })?;
    Some((ns, name.to_string()))
}

fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A packed `Any` as the message it holds.
fn unpack(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("@type");
    }
    v
}

fn items<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Sorts the dump's configs by kind (by the suffix of their `@type`).
fn collect(configs: &[Value]) -> Dump {
    let mut d = Dump::default();
    for c in configs {
        let ty = str_of(c, "@type");
        let kind = ty.rsplit('.').next().unwrap_or("");
        match kind {
            "BootstrapConfigDump" => d.bootstrap = c.get("bootstrap").cloned(),
            "ListenersConfigDump" => collect_listeners(c, &mut d),
            "ClustersConfigDump" => {
                for e in items(c, "static_clusters")
                    .iter()
                    .chain(items(c, "dynamic_active_clusters"))
                {
                    push_named(&mut d.clusters, e.get("cluster"));
                }
                for e in items(c, "dynamic_warming_clusters") {
                    let name = e.pointer("/cluster/name").and_then(Value::as_str);
                    d.warming.push(format!(
                        "cluster {}: only warming (not yet active) in the dump, left out",
                        name.unwrap_or("?")
                    ));
                }
            }
            "EndpointsConfigDump" => {
                for e in items(c, "static_endpoint_configs")
                    .iter()
                    .chain(items(c, "dynamic_endpoint_configs"))
                {
                    if let Some(cla) = e.get("endpoint_config") {
                        let name = str_of(cla, "cluster_name").to_string();
                        d.endpoints.entry(name).or_insert_with(|| unpack(cla));
                    }
                }
            }
            "RoutesConfigDump" => {
                for e in items(c, "static_route_configs")
                    .iter()
                    .chain(items(c, "dynamic_route_configs"))
                {
                    if let Some(rc) = e.get("route_config") {
                        let name = str_of(rc, "name").to_string();
                        d.routes.entry(name).or_insert_with(|| unpack(rc));
                    }
                }
            }
            "EcdsConfigDump" => {
                for e in items(c, "ecds_filters") {
                    if let Some(f) = e.get("ecds_filter") {
                        let name = str_of(f, "name").to_string();
                        if let Some(tc) = f.get("typed_config") {
                            d.ecds.entry(name).or_insert_with(|| tc.clone());
                        }
                    }
                }
            }
            "SecretsConfigDump" => {
                for e in items(c, "static_secrets")
                    .iter()
                    .chain(items(c, "dynamic_active_secrets"))
                {
                    d.secrets.push(str_of(e, "name").to_string());
                }
            }
            _ => {}
        }
    }
    d
}

fn collect_listeners(c: &Value, d: &mut Dump) {
    for e in items(c, "static_listeners") {
        push_named(&mut d.listeners, e.get("listener"));
    }
    for e in items(c, "dynamic_listeners") {
        match e.pointer("/active_state/listener") {
            Some(l) => push_named(&mut d.listeners, Some(l)),
            None => d.warming.push(format!(
                "listener {}: not active in the dump (warming or draining), left out",
                str_of(e, "name")
            )),
        }
    }
}

/// Adds a resource unless one of the same name is there (static entries come first).
fn push_named(out: &mut Vec<Value>, v: Option<&Value>) {
    let Some(v) = v else { return };
    let v = unpack(v);
    let name = str_of(&v, "name");
    if !out.iter().any(|o| str_of(o, "name") == name) {
        out.push(v);
    }
}

/// An EDS cluster as a STATIC one with the dump's endpoints.
fn static_cluster(c: &mut Value, endpoints: &BTreeMap<String, Value>, conv: &mut Converted) {
    let is_eds = str_of(c, "type") == "EDS" || c.get("eds_cluster_config").is_some();
    let Some(obj) = c.as_object_mut() else { return };
    if !is_eds {
        return;
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    // EDS asks for `service_name` when set, else the cluster name (envoy cluster.proto).
    let service = obj
        .get("eds_cluster_config")
        .and_then(|e| e.get("service_name"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(&name)
        .to_string();
    obj.remove("eds_cluster_config");
    obj.insert("type".into(), json!("STATIC"));
    let cla = match endpoints.get(&service).or_else(|| endpoints.get(&name)) {
        Some(cla) => {
            let n: usize = items(cla, "endpoints")
                .iter()
                .map(|l| items(l, "lb_endpoints").len())
                .sum();
            conv.notes.push(format!(
                "cluster {name}: EDS → STATIC with the dump's {n} endpoint{}",
                if n == 1 { "" } else { "s" }
            ));
            let mut cla = cla.clone();
            unset_zero_locality_weights(&mut cla);
            if let Some(o) = cla.as_object_mut() {
                o.insert("cluster_name".into(), json!(name));
            }
            cla
        }
        None => {
            conv.warnings.push(format!(
                "cluster {name}: EDS cluster without endpoints in the dump (dump with include_eds=true); STATIC with an empty load_assignment"
            ));
            json!({ "cluster_name": name })
        }
    };
    obj.insert("load_assignment".into(), cla);
}

/// Admin dumps an EDS locality without a weight as `load_balancing_weight: 0` (measured on
/// Envoy 1.40), which a bootstrap may not hold (the field's minimum is 1): unset means no
/// locality weight, as the running proxy had it.
fn unset_zero_locality_weights(cla: &mut Value) {
    let Some(Value::Array(localities)) = cla.get_mut("endpoints") else {
        return;
    };
    for l in localities {
        let zero = match l.get("load_balancing_weight") {
            Some(Value::Number(n)) => n.as_u64() == Some(0),
            Some(Value::Object(o)) => o.get("value").is_none_or(|v| v.as_u64() == Some(0)),
            _ => false,
        };
        if zero {
            if let Some(o) = l.as_object_mut() {
                o.remove("load_balancing_weight");
            }
        }
    }
}

/// Replaces references to xDS-served objects inside listeners and clusters.
struct Fixer<'a> {
    dump: &'a Dump,
    opts: &'a ConvertOptions,
    conv: &'a mut Converted,
}

impl Fixer<'_> {
    fn walk(&mut self, v: &mut Value, at: &str) {
        match v {
            Value::Object(obj) => {
                self.rds(obj, at);
                self.tls(obj, at);
                for (_, child) in obj.iter_mut() {
                    self.walk(child, at);
                }
            }
            Value::Array(list) => {
                list.retain_mut(|item| self.ecds(item, at));
                for item in list.iter_mut() {
                    self.walk(item, at);
                }
            }
            _ => {}
        }
    }

    /// A connection manager's `rds` → the dump's route configuration of that name.
    fn rds(&mut self, obj: &mut Map<String, Value>, at: &str) {
        let Some(rds) = obj.get("rds") else { return };
        if !obj.contains_key("http_filters") && !obj.contains_key("stat_prefix") {
            return;
        }
        let name = str_of(rds, "route_config_name").to_string();
        obj.remove("rds");
        let rc = match self.dump.routes.get(&name) {
            Some(rc) => {
                self.conv
                    .notes
                    .push(format!("{at}: RDS {name} inlined from the dump"));
                rc.clone()
            }
            None => {
                self.conv.warnings.push(format!(
                    "{at}: RDS route configuration {name} is not in the dump; an empty one is used"
                ));
                json!({ "name": name })
            }
        };
        obj.insert("route_config".into(), rc);
    }

    /// A filter with `config_discovery` (ECDS) → its `typed_config` from the dump; `false`
    /// drops the filter (it cannot be configured offline).
    fn ecds(&mut self, item: &mut Value, at: &str) -> bool {
        let Some(obj) = item.as_object_mut() else {
            return true;
        };
        if !obj.contains_key("config_discovery") {
            return true;
        }
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        obj.remove("config_discovery");
        match self.dump.ecds.get(&name) {
            Some(tc) => {
                obj.insert("typed_config".into(), tc.clone());
                self.conv.notes.push(format!(
                    "{at}: filter {name}: ECDS config inlined from the dump"
                ));
                true
            }
            None => {
                self.conv.warnings.push(format!(
                    "{at}: filter {name} is configured by ECDS and its config is not in the dump: dropped"
                ));
                false
            }
        }
    }

    /// SDS secrets of a `common_tls_context` → placeholder files.
    fn tls(&mut self, obj: &mut Map<String, Value>, at: &str) {
        self.redacted_keys(obj, at);
        if let Some(Value::Array(sds)) = obj.remove("tls_certificate_sds_secret_configs") {
            let mut certs = match obj.remove("tls_certificates") {
                Some(Value::Array(c)) => c,
                _ => Vec::new(),
            };
            for s in &sds {
                let name = str_of(s, "name");
                let (chain, key) = self.certificate(name, at);
                certs.push(json!({
                    "certificate_chain": { "filename": chain },
                    "private_key": { "filename": key },
                }));
            }
            obj.insert("tls_certificates".into(), Value::Array(certs));
        }
        if let Some(sds) = obj.remove("validation_context_sds_secret_config") {
            let path = self.trusted_ca(str_of(&sds, "name"), at);
            obj.insert(
                "validation_context".into(),
                json!({ "trusted_ca": { "filename": path } }),
            );
        }
        if let Some(combined) = obj.remove("combined_validation_context") {
            let mut vc = combined
                .get("default_validation_context")
                .cloned()
                .unwrap_or_else(|| json!({}));
            let name = combined
                .pointer("/validation_context_sds_secret_config/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let path = self.trusted_ca(name, at);
            if let Some(o) = vc.as_object_mut() {
                o.insert("trusted_ca".into(), json!({ "filename": path }));
            }
            obj.insert("validation_context".into(), vc);
        }
        self.missing_trusted_ca(obj, at);
    }

    /// Admin redacts every private key of a dump, files included (`filename: "[redacted]"`,
    /// measured on Envoy 1.40): such a certificate is replaced whole by a placeholder (a key
    /// alone would not match its certificate).
    /// A trust bundle file the dump names but this machine does not have (a cluster path such
    /// as `/var/run/secrets/…`) cannot load: a placeholder CA stands in for it.
    fn missing_trusted_ca(&mut self, obj: &mut Map<String, Value>, at: &str) {
        let Some(file) = obj
            .get_mut("validation_context")
            .and_then(|vc| vc.pointer_mut("/trusted_ca/filename"))
        else {
            return;
        };
        let Some(name) = file.as_str().map(str::to_string) else {
            return;
        };
        // Our own placeholders (written after conversion) and files that are here stay.
        if Path::new(&name).starts_with(&self.opts.secrets_dir) || Path::new(&name).exists() {
            return;
        }
        let secret = format!("{}_{}", sanitize(at), sanitize(&name));
        let path = self.trusted_ca(&secret, &format!("{at} (file {name} is not here)"));
        *file = json!(path);
    }

    fn redacted_keys(&mut self, obj: &mut Map<String, Value>, at: &str) {
        let Some(Value::Array(certs)) = obj.get_mut("tls_certificates") else {
            return;
        };
        let secret = sanitize(at);
        let mut replaced = None;
        for c in certs.iter_mut() {
            let redacted = c.get("private_key").is_some_and(|k| {
                k.as_object()
                    .is_some_and(|o| o.values().any(|v| v == REDACTED))
            });
            if redacted {
                let (chain, key) = replaced
                    .get_or_insert_with(|| self.certificate(&secret, at))
                    .clone();
                *c = json!({
                    "certificate_chain": { "filename": chain },
                    "private_key": { "filename": key },
                });
            }
        }
    }

    fn file(&self, secret: &str, suffix: &str) -> String {
        let safe: String = secret
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let safe = if safe.is_empty() {
            "secret".into()
        } else {
            safe
        };
        path_text(&self.opts.secrets_dir.join(format!("{safe}{suffix}")))
    }

    fn certificate(&mut self, secret: &str, at: &str) -> (String, String) {
        let (chain, key) = (self.file(secret, ".crt"), self.file(secret, ".key"));
        let known =
            self.conv.placeholders.iter().any(
                |p| matches!(p, SecretPlaceholder::Certificate { secret: s, .. } if s == secret),
            );
        if !known {
            self.conv.notes.push(format!(
                "{at}: certificate {secret} (SDS, or a key redacted by admin) → placeholder files {chain}, {key} (a throwaway certificate: the dump has no key material)"
            ));
            self.conv.placeholders.push(SecretPlaceholder::Certificate {
                secret: secret.into(),
                cert_chain: chain.clone().into(),
                private_key: key.clone().into(),
            });
        }
        (chain, key)
    }

    fn trusted_ca(&mut self, secret: &str, at: &str) -> String {
        let path = self.file(secret, "-ca.crt");
        let known =
            self.conv.placeholders.iter().any(
                |p| matches!(p, SecretPlaceholder::TrustedCa { secret: s, .. } if s == secret),
            );
        if !known {
            self.conv.notes.push(format!(
                "{at}: SDS trust bundle {secret} → placeholder file {path} (a throwaway CA)"
            ));
            self.conv.placeholders.push(SecretPlaceholder::TrustedCa {
                secret: secret.into(),
                path: path.clone().into(),
            });
        }
        path
    }
}

/// PEM text for the placeholder files: one throwaway certificate and key for every
/// certificate placeholder, and the CA that issued it for every trust bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceholderPem {
    /// Certificate chain (PEM).
    pub cert_chain: String,
    /// Its private key (PEM).
    pub private_key: String,
    /// The issuing CA (PEM).
    pub ca: String,
}

/// Writes the placeholder files of `placeholders` (creating their directories); the key file
/// is readable by its owner only.
pub fn write_placeholders(
    placeholders: &[SecretPlaceholder],
    pem: &PlaceholderPem,
) -> std::io::Result<()> {
    let write = |path: &Path, text: &str, secret: bool| -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text)?;
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        #[cfg(not(unix))]
        let _ = secret;
        Ok(())
    };
    for p in placeholders {
        match p {
            SecretPlaceholder::Certificate {
                cert_chain,
                private_key,
                ..
            } => {
                write(cert_chain, &pem.cert_chain, false)?;
                write(private_key, &pem.private_key, true)?;
            }
            SecretPlaceholder::TrustedCa { path, .. } => write(path, &pem.ca, false)?,
        }
    }
    Ok(())
}

/// `text` with every character but ASCII letters and digits as `_` (a file name part).
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// JSON paths of xDS config sources left in `v` (`ads`, `api_config_source`).
fn xds_references(v: &Value, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Object(obj) => {
            for (k, child) in obj {
                let p = format!("{at}/{k}");
                if k == "ads" || k == "api_config_source" {
                    out.push(p);
                } else {
                    out.extend(xds_references(child, &p));
                }
            }
        }
        Value::Array(list) => {
            for (i, child) in list.iter().enumerate() {
                out.extend(xds_references(child, &format!("{at}/{i}")));
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const T: &str = "type.googleapis.com/envoy.admin.v3.";

    /// A small Istio-like waypoint dump: ADS bootstrap, an RDS + SDS + ECDS listener, EDS
    /// clusters with and without endpoints.
    fn dump() -> Value {
        json!({"configs": [
            {"@type": format!("{T}BootstrapConfigDump"), "bootstrap": {
                "node": {"id": "waypoint~10.0.0.5~waypoint-7d9.default~default.svc.cluster.local",
                         "metadata": {"LABELS": {"gateway.networking.k8s.io/gateway-name": "waypoint"}}},
                "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}},
                "dynamic_resources": {"lds_config": {"ads": {}}, "cds_config": {"ads": {}}},
                "static_resources": {"clusters": [{"name": "xds-grpc"}]},
            }},
            {"@type": format!("{T}ClustersConfigDump"),
             "static_clusters": [{"cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "xds-grpc", "type": "STATIC"}}],
             "dynamic_active_clusters": [
                {"cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "inbound-vip|9080|http|r.default.svc.cluster.local", "type": "EDS",
                             "eds_cluster_config": {"eds_config": {"ads": {}}}}},
                {"cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "empty", "type": "EDS",
                             "eds_cluster_config": {"eds_config": {"ads": {}}, "service_name": "svc-empty"}}},
             ]},
            {"@type": format!("{T}ListenersConfigDump"), "dynamic_listeners": [
                {"name": "connect_terminate", "active_state": {"listener": {
                    "@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "connect_terminate",
                    "filter_chains": [{
                        "transport_socket": {"name": "tls", "typed_config": {"@type": "t", "common_tls_context": {
                            "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": {"api_config_source": {}}}],
                            "combined_validation_context": {
                                "default_validation_context": {"match_typed_subject_alt_names": [{"san_type": "URI"}]},
                                "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": {"ads": {}}}}}}},
                        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                            "@type": "hcm", "stat_prefix": "s",
                            "rds": {"route_config_name": "r1", "config_source": {"ads": {}}},
                            "http_filters": [
                                {"name": "wasm", "config_discovery": {"config_source": {"ads": {}}}},
                                {"name": "gone", "config_discovery": {"config_source": {"ads": {}}}},
                                {"name": "envoy.filters.http.router", "typed_config": {"@type": "r"}}]}}]}]}}},
                {"name": "draining"},
            ]},
            {"@type": format!("{T}RoutesConfigDump"), "dynamic_route_configs": [
                {"route_config": {"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": "r1", "virtual_hosts": []}}]},
            {"@type": format!("{T}EcdsConfigDump"), "ecds_filters": [
                {"ecds_filter": {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", "name": "wasm", "typed_config": {"@type": "w"}}}]},
            {"@type": format!("{T}EndpointsConfigDump"), "dynamic_endpoint_configs": [
                {"endpoint_config": {"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                    "cluster_name": "inbound-vip|9080|http|r.default.svc.cluster.local",
                    "endpoints": [{"load_balancing_weight": 0, "lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "10.1.0.1", "port_value": 9080}}}}]}]}}]},
            {"@type": format!("{T}SecretsConfigDump"), "dynamic_active_secrets": [{"name": "default"}, {"name": "ROOTCA"}]},
        ]})
    }

    fn convert() -> Converted {
        let opts = ConvertOptions {
            secrets_dir: "/s".into(),
        };
        from_config_dump(&dump(), &opts).unwrap()
    }

    #[test]
    fn resources_become_static_and_lose_their_any_type() {
        let c = convert();
        let b = &c.bootstrap;
        assert!(b.get("dynamic_resources").is_none());
        assert_eq!(b["admin"]["address"]["socket_address"]["port_value"], 15000);
        let names = |k: &str| -> Vec<&str> {
            b["static_resources"][k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["name"].as_str().unwrap())
                .collect()
        };
        assert_eq!(names("listeners"), ["connect_terminate"]);
        assert_eq!(
            names("clusters"),
            [
                "xds-grpc",
                "inbound-vip|9080|http|r.default.svc.cluster.local",
                "empty"
            ]
        );
        assert!(b["static_resources"]["listeners"][0].get("@type").is_none());
        assert!(c.warnings.iter().any(|w| w.contains("listener draining")));
        assert!(
            xds_references(b, "").is_empty(),
            "{:?}",
            xds_references(b, "")
        );
    }

    #[test]
    fn eds_clusters_get_the_dump_endpoints_or_a_warning() {
        let c = convert();
        let clusters = &c.bootstrap["static_resources"]["clusters"];
        let eds = &clusters[1];
        assert_eq!(eds["type"], "STATIC");
        assert!(eds.get("eds_cluster_config").is_none());
        assert_eq!(
            eds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["address"],
            "10.1.0.1"
        );
        assert!(eds["load_assignment"].get("@type").is_none());
        assert!(
            eds["load_assignment"]["endpoints"][0]
                .get("load_balancing_weight")
                .is_none(),
            "a zero locality weight is unset"
        );
        assert_eq!(
            clusters[2]["load_assignment"],
            json!({"cluster_name": "empty"})
        );
        assert!(c
            .warnings
            .iter()
            .any(|w| w.starts_with("cluster empty: EDS cluster without endpoints")));
    }

    #[test]
    fn rds_ecds_and_sds_are_inlined_or_replaced() {
        let c = convert();
        let l = &c.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0];
        let hcm = &l["filters"][0]["typed_config"];
        assert_eq!(
            hcm["route_config"],
            json!({"name": "r1", "virtual_hosts": []})
        );
        let filters: Vec<&Value> = hcm["http_filters"].as_array().unwrap().iter().collect();
        assert_eq!(
            filters.len(),
            2,
            "the filter without ECDS config is dropped"
        );
        assert_eq!(
            filters[0],
            &json!({"name": "wasm", "typed_config": {"@type": "w"}})
        );
        assert!(c.warnings.iter().any(|w| w.contains("filter gone")));
        let tls = &l["transport_socket"]["typed_config"]["common_tls_context"];
        assert_eq!(
            tls["tls_certificates"][0],
            json!({"certificate_chain": {"filename": "/s/default.crt"}, "private_key": {"filename": "/s/default.key"}})
        );
        assert_eq!(
            tls["validation_context"],
            json!({"match_typed_subject_alt_names": [{"san_type": "URI"}], "trusted_ca": {"filename": "/s/ROOTCA-ca.crt"}})
        );
        assert_eq!(c.placeholders.len(), 2);
    }

    #[test]
    fn a_trust_bundle_file_that_is_not_here_gets_a_placeholder() {
        let mut d = dump();
        d["configs"][2]["dynamic_listeners"][0]["active_state"]["listener"]["filter_chains"][0]
            ["transport_socket"]["typed_config"]["common_tls_context"] = json!({
            "validation_context": {"trusted_ca": {"filename": "/var/run/secrets/istio/root-cert.pem"}},
        });
        let opts = ConvertOptions {
            secrets_dir: "/s".into(),
        };
        let c = from_config_dump(&d, &opts).unwrap();
        let tls = &c.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]
            ["transport_socket"]["typed_config"]["common_tls_context"];
        assert_eq!(
            tls["validation_context"]["trusted_ca"]["filename"],
            "/s/listener_connect_terminate__var_run_secrets_istio_root_cert_pem-ca.crt"
        );
        assert!(matches!(
            c.placeholders.as_slice(),
            [SecretPlaceholder::TrustedCa { .. }]
        ));
    }

    #[test]
    fn the_waypoint_comes_from_the_node() {
        assert_eq!(
            convert().waypoint,
            Some(("default".into(), "waypoint".into()))
        );
        let with_ns =
            json!({"metadata": {"NAMESPACE": "apps", "LABELS": {"istio.io/gateway-name": "wp"}}});
        assert_eq!(
            waypoint_from_node(&with_ns),
            Some(("apps".into(), "wp".into()))
        );
        assert_eq!(waypoint_from_node(&json!({"id": "layover"})), None);
    }

    #[test]
    fn not_a_dump_is_a_clear_error() {
        let opts = ConvertOptions {
            secrets_dir: "/s".into(),
        };
        assert_eq!(
            from_config_dump(&json!({"static_resources": {}}), &opts),
            Err(ConfigDumpError::NotADump)
        );
        assert_eq!(
            from_config_dump(&json!({"configs": []}), &opts),
            Err(ConfigDumpError::NoBootstrap)
        );
    }
}
