//! Reading YAML files into typed objects.

use crate::diag::{Error, Errors, Location, Notice, ObjRef, Severity};
use crate::model::{ConfigMapDoc, MeshConfigSpec};
use crate::object::{Bundle, Object, ObjectKind};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Loads files and directories. Directories are walked recursively for `*.yaml` / `*.yml`,
/// sorted by path so the result does not depend on the file system's listing order.
pub fn load_paths(paths: &[PathBuf]) -> Result<Bundle, Errors> {
    let (bundle, errors) = load_paths_partial(paths);
    if errors.is_empty() {
        Ok(bundle)
    } else {
        Err(Errors(errors))
    }
}

/// Loads what can be loaded and returns it with every error, so the compiler can still report
/// its own findings about the valid objects in the same run.
pub fn load_paths_partial(paths: &[PathBuf]) -> (Bundle, Vec<Error>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            if let Err(e) = walk(p, &mut files) {
                errors.push(Error {
                    at: Location::File(p.display().to_string()),
                    path: String::new(),
                    message: format!("cannot read directory: {e}"),
                });
            }
        } else {
            files.push(p.clone());
        }
    }
    // The same file named twice (a file and its directory) is loaded once.
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    let mut bundle = Bundle::default();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => {
                if let Err(mut e) = load_into(&mut bundle, &f.display().to_string(), &text) {
                    errors.append(&mut e.0);
                }
            }
            Err(e) => errors.push(Error {
                at: Location::File(f.display().to_string()),
                path: String::new(),
                message: format!("cannot read file: {e}"),
            }),
        }
    }
    (bundle, errors)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        ) {
            out.push(p);
        }
    }
    Ok(())
}

/// Loads YAML text; `file` names it in messages. Useful for tests and stdin.
pub fn load_str(file: &str, text: &str) -> Result<Bundle, Errors> {
    let (b, errors) = load_str_partial(file, text);
    if errors.is_empty() {
        Ok(b)
    } else {
        Err(Errors(errors))
    }
}

/// [`load_str`] that keeps the valid objects next to the errors.
pub fn load_str_partial(file: &str, text: &str) -> (Bundle, Vec<Error>) {
    let mut b = Bundle::default();
    let errors = match load_into(&mut b, file, text) {
        Ok(()) => Vec::new(),
        Err(e) => e.0,
    };
    (b, errors)
}

fn load_into(bundle: &mut Bundle, file: &str, text: &str) -> Result<(), Errors> {
    let mut errors = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let value = match Value::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                let loc = e
                    .location()
                    .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
                    .unwrap_or_default();
                errors.push(Error {
                    at: Location::File(format!("{file}: document {doc}")),
                    path: String::new(),
                    message: format!("invalid YAML{loc}: {e}"),
                });
                // A syntax error ends the stream: the parser cannot resynchronise.
                break;
            }
        };
        if let Err(e) = load_value(bundle, file, doc, value) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Errors(errors))
    }
}

fn str_at<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in keys {
        cur = cur.get(k)?;
    }
    cur.as_str()
}

const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "GatewayClass",
    "ClusterRole",
    "ClusterRoleBinding",
];

#[allow(clippy::result_large_err)] // Errors are collected, not propagated through hot paths.
fn load_value(bundle: &mut Bundle, file: &str, doc: usize, value: Value) -> Result<(), Error> {
    if value.is_null() {
        // Empty document (`---` at the end, comments only): kubectl ignores these too.
        return Ok(());
    }
    if !value.is_object() {
        return Err(Error {
            at: Location::File(format!("{file}: document {doc}")),
            path: String::new(),
            message: "expected a mapping with apiVersion, kind and metadata".into(),
        });
    }
    // `kubectl get -o yaml` output: a v1 List whose items are the objects.
    if str_at(&value, &["kind"]) == Some("List") {
        if let Some(items) = value.get("items").and_then(Value::as_array) {
            for item in items.clone() {
                load_value(bundle, file, doc, item)?;
            }
            return Ok(());
        }
    }
    let kind = str_at(&value, &["kind"]).unwrap_or("").to_string();
    let api_version = str_at(&value, &["apiVersion"]).map(str::to_string);
    let name = str_at(&value, &["metadata", "name"])
        .unwrap_or("")
        .to_string();
    let namespace = if CLUSTER_SCOPED.contains(&kind.as_str()) {
        String::new()
    } else {
        str_at(&value, &["metadata", "namespace"])
            .unwrap_or("default")
            .to_string()
    };
    let at = ObjRef {
        file: file.to_string(),
        doc,
        kind: kind.clone(),
        namespace,
        name,
    };
    let notice = |bundle: &mut Bundle, msg: String| {
        bundle.notices.push(Notice {
            severity: Severity::Info,
            at: Location::Object(at.clone()),
            path: String::new(),
            message: msg,
        })
    };
    if kind.is_empty() {
        return Err(Error {
            at: Location::Object(at),
            path: "kind".into(),
            message: "missing kind".into(),
        });
    }
    let (group, version) = match &api_version {
        Some(av) => match av.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), av.clone()),
        },
        None => (String::new(), String::new()),
    };
    // The group a known kind belongs to, and the versions users write for it.
    let known: Option<(&str, &[&str])> = match kind.as_str() {
        "Service" | "Namespace" | "ConfigMap" => Some(("", &["v1"])),
        "VirtualService" | "DestinationRule" | "ServiceEntry" | "WorkloadEntry" => {
            Some(("networking.istio.io", &["v1", "v1beta1", "v1alpha3"]))
        }
        "AuthorizationPolicy" | "RequestAuthentication" => {
            Some(("security.istio.io", &["v1", "v1beta1"]))
        }
        "HTTPRoute" | "GRPCRoute" => Some(("gateway.networking.k8s.io", &["v1", "v1beta1"])),
        "Gateway" => {
            if group == "networking.istio.io" {
                notice(
                    bundle,
                    "skipped: networking.istio.io Gateway configures ingress/egress gateways, not waypoints".into(),
                );
                return Ok(());
            }
            Some(("gateway.networking.k8s.io", &["v1", "v1beta1"]))
        }
        _ => None,
    };
    let Some((want_group, versions)) = known else {
        notice(bundle, skip_reason(&kind, api_version.as_deref()));
        return Ok(());
    };
    match version_check(
        &kind,
        api_version.as_deref(),
        (&group, &version),
        want_group,
        versions,
    ) {
        VersionCheck::Read => {}
        VersionCheck::ReadWithNotice(msg) => notice(bundle, msg),
        VersionCheck::Skip(msg) => {
            notice(bundle, msg);
            return Ok(());
        }
        VersionCheck::Unsupported(message) => {
            return Err(Error {
                at: Location::Object(at),
                path: "apiVersion".into(),
                message,
            });
        }
    }
    if kind == "ConfigMap" && !(at.namespace == "istio-system" && at.name == "istio") {
        notice(
            bundle,
            "skipped: only ConfigMap istio-system/istio (MeshConfig) is read".into(),
        );
        return Ok(());
    }
    let kind = typed(&at, &kind, value)?;
    bundle.objects.push(Object { at, kind });
    Ok(())
}

/// What the apiVersion of a known kind means for reading it.
enum VersionCheck {
    /// A version layover reads.
    Read,
    /// No apiVersion: read as the kind's first version, with this notice.
    ReadWithNotice(String),
    /// Another group's kind of the same name: skipped with this notice.
    Skip(String),
    /// A version of the right group layover does not read: this error.
    Unsupported(String),
}

/// Checks `apiVersion` (split into `group_version`) against the group and versions layover
/// reads for `kind`.
fn version_check(
    kind: &str,
    api_version: Option<&str>,
    (group, version): (&str, &str),
    want_group: &str,
    versions: &[&str],
) -> VersionCheck {
    if api_version.is_none() {
        VersionCheck::ReadWithNotice(format!(
            "no apiVersion: read as {}{}{}",
            want_group,
            if want_group.is_empty() { "" } else { "/" },
            versions[0]
        ))
    } else if group != want_group {
        VersionCheck::Skip(format!(
            "skipped: kind {kind} of apiVersion {} is not the {} kind layover reads",
            api_version.unwrap_or(""),
            if want_group.is_empty() {
                "core/v1"
            } else {
                want_group
            }
        ))
    } else if !versions.contains(&version) {
        VersionCheck::Unsupported(format!(
            "unsupported version {:?} of {kind} (supported: {})",
            api_version.unwrap_or(""),
            versions
                .iter()
                .map(|v| if want_group.is_empty() {
                    v.to_string()
                } else {
                    format!("{want_group}/{v}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        VersionCheck::Read
    }
}

/// Why a document of an unknown kind is skipped.
fn skip_reason(kind: &str, api_version: Option<&str>) -> String {
    match kind {
    "EnvoyFilter" => "skipped: EnvoyFilter patches Envoy configuration, not policy; `layover envoy` applies it to the local waypoint".to_string(),
    "PeerAuthentication"
    | "Sidecar"
    | "WasmPlugin"
    | "Telemetry"
    | "ProxyConfig"
    | "WorkloadGroup" => {
        format!("skipped: {kind} is not compiled by layover")
    }
    _ => format!(
        "skipped: kind {kind} ({}) is not Istio traffic or security configuration",
        api_version.unwrap_or("no apiVersion")
    ),
}
}

/// Deserializes a document of a known `kind` into its typed object.
#[allow(clippy::result_large_err)]
fn typed(at: &ObjRef, kind: &str, v: Value) -> Result<ObjectKind, Error> {
    Ok(match kind {
        "Service" => ObjectKind::Service(de(at, v)?),
        "Namespace" => ObjectKind::Namespace(de(at, v)?),
        "ConfigMap" => {
            let cm: ConfigMapDoc = de(at, v)?;
            let mesh_text = cm.data.get("mesh").cloned().unwrap_or_default();
            let mesh = parse_mesh(at, &mesh_text)?;
            ObjectKind::MeshConfig(mesh, cm)
        }
        "ServiceEntry" => ObjectKind::ServiceEntry(de(at, v)?),
        "WorkloadEntry" => ObjectKind::WorkloadEntry(de(at, v)?),
        "VirtualService" => ObjectKind::VirtualService(de(at, v)?),
        "DestinationRule" => ObjectKind::DestinationRule(de(at, v)?),
        "Gateway" => ObjectKind::Gateway(de(at, v)?),
        "HTTPRoute" => ObjectKind::HttpRoute(de(at, v)?),
        "GRPCRoute" => ObjectKind::HttpRoute(grpc_route(at, v)?),
        "RequestAuthentication" => ObjectKind::RequestAuthentication(de(at, v)?),
        _ => ObjectKind::AuthorizationPolicy(de(at, v)?),
    })
}

/// A GRPCRoute, read as the HTTPRoute istiod converts it to (conversion.go:265-346 @ 1.30.3).
#[allow(clippy::result_large_err)]
fn grpc_route(
    at: &ObjRef,
    v: Value,
) -> Result<crate::model::Doc<crate::model::HttpRouteSpec>, Error> {
    let d: crate::model::Doc<crate::model::GrpcRouteSpec> = de(at, v)?;
    let spec = crate::gwapi::grpc_to_http_route(d.spec).map_err(|(path, message)| Error {
        at: Location::Object(at.clone()),
        path,
        message,
    })?;
    Ok(crate::model::Doc {
        api_version: d.api_version,
        kind: d.kind,
        metadata: d.metadata,
        spec,
        status: d.status,
    })
}

/// Deserializes `v` into `T`, turning the serde error into one with a field path.
#[allow(clippy::result_large_err)]
fn de<T: DeserializeOwned>(at: &ObjRef, v: Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        Error {
            at: Location::Object(at.clone()),
            path,
            message: e.into_inner().to_string(),
        }
    })
}

#[allow(clippy::result_large_err)]
fn parse_mesh(at: &ObjRef, text: &str) -> Result<MeshConfigSpec, Error> {
    if text.trim().is_empty() {
        return Ok(MeshConfigSpec::default());
    }
    let v: Value = serde_yaml_ng::from_str(text).map_err(|e| Error {
        at: Location::Object(at.clone()),
        path: "data.mesh".into(),
        message: format!("invalid MeshConfig YAML: {e}"),
    })?;
    if v.is_null() {
        return Ok(MeshConfigSpec::default());
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        Error {
            at: Location::Object(at.clone()),
            path: format!("data.mesh.{path}"),
            message: e.into_inner().to_string(),
        }
    })
}
