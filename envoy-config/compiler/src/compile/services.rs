//! Services and ServiceEntry hosts → the services the compiler resolves against.

use crate::model::{Doc, ServiceEntrySpec, ServiceSpec};
use crate::object::{Object, ObjectKind};
use crate::resolve::{Ctx, Svc, SvcPort};
use crate::util::fqdn;

/// Istio protocol selection from the port name prefix / appProtocol (`protocol.Parse`).
fn port_protocol(name: &str, app_protocol: Option<&str>, k8s_protocol: Option<&str>) -> String {
    if k8s_protocol.is_some_and(|p| p.eq_ignore_ascii_case("UDP")) {
        return "UDP".into();
    }
    let known = |p: &str| -> Option<String> {
        let p = p.to_ascii_lowercase();
        let r = match p.as_str() {
            "http" => "HTTP",
            "http2" | "h2c" | "kubernetes.io/h2c" => "HTTP2",
            "grpc" | "grpc-web" => "GRPC",
            "https" => "HTTPS",
            "tls" => "TLS",
            "tcp" => "TCP",
            "mongo" => "Mongo",
            "redis" => "Redis",
            "mysql" => "MySQL",
            "kubernetes.io/ws" | "kubernetes.io/wss" => "HTTP",
            _ => return None,
        };
        Some(r.to_string())
    };
    if let Some(p) = app_protocol.and_then(known) {
        return p;
    }
    let prefix = name.split('-').next().unwrap_or("");
    known(prefix).unwrap_or_else(|| "UNSUPPORTED".into())
}

/// Collects every Service and ServiceEntry host into `ctx.services` (first definition of a
/// host wins).
pub(super) fn collect_services(ctx: &mut Ctx) {
    let bundle = ctx.bundle;
    for o in &bundle.objects {
        match &o.kind {
            ObjectKind::Service(d) => kubernetes_service(ctx, o, d),
            ObjectKind::ServiceEntry(d) => service_entry(ctx, o, d),
            _ => {}
        }
    }
}

/// A Kubernetes Service: `name.namespace.svc.cluster.local`, cluster IPs, ports with their
/// protocol and target port.
fn kubernetes_service(ctx: &mut Ctx, o: &Object, d: &Doc<ServiceSpec>) {
    let ns = o.at.namespace.clone();
    let hostname = format!("{}.{}.svc.cluster.local", d.metadata.name, ns);
    let mut addresses: Vec<String> = if d.spec.cluster_ips.is_empty() {
        d.spec.cluster_ip.iter().cloned().collect()
    } else {
        d.spec.cluster_ips.clone()
    };
    addresses.retain(|a| !a.is_empty() && a != "None");
    let field = if d.spec.cluster_ips.is_empty() {
        "spec.clusterIP"
    } else {
        "spec.clusterIPs"
    };
    for a in &addresses {
        if a.parse::<std::net::IpAddr>().is_err() {
            // Kubernetes API validation: clusterIP is an IP address or "None".
            ctx.err(&o.at, field, format!("{a:?} is not an IP address"));
        }
    }
    let mut ports = Vec::new();
    for (i, p) in d.spec.ports.iter().enumerate() {
        let name = p.name.clone().unwrap_or_default();
        let (target_port, target_name) = match &p.target_port {
            None => (p.port, None),
            Some(serde_json::Value::Number(n)) => {
                (n.as_u64().unwrap_or(p.port as u64) as u32, None)
            }
            Some(serde_json::Value::String(s)) => match s.parse::<u32>() {
                Ok(n) => (n, None),
                Err(_) => (p.port, Some(s.clone())),
            },
            Some(_) => {
                ctx.err(
                    &o.at,
                    format!("spec.ports[{i}].targetPort"),
                    "expected a port number or name",
                );
                (p.port, None)
            }
        };
        ports.push(SvcPort {
            number: p.port,
            protocol: port_protocol(&name, p.app_protocol.as_deref(), p.protocol.as_deref()),
            name,
            target_port,
            target_name,
        });
    }
    add_service(
        ctx,
        o,
        Svc {
            hostname,
            namespace: ns,
            name: d.metadata.name.clone(),
            addresses,
            ports,
            selector: d.spec.selector.clone().filter(|s| !s.is_empty()),
            inline_endpoints: Vec::new(),
            labels: d.metadata.labels.clone(),
            origin: o.at.object(),
            se_name: None,
        },
    );
}

/// A ServiceEntry: one service per (non-wildcard) host, sharing ports and endpoints.
fn service_entry(ctx: &mut Ctx, o: &Object, d: &Doc<ServiceEntrySpec>) {
    let ns = o.at.namespace.clone();
    if d.spec.hosts.is_empty() {
        ctx.err(
            &o.at,
            "spec.hosts",
            "a ServiceEntry needs at least one host",
        );
    }
    let ports: Vec<SvcPort> = d
        .spec
        .ports
        .iter()
        .map(|p| {
            let name = p.name.clone().unwrap_or_default();
            SvcPort {
                number: p.number,
                protocol: p
                    .protocol
                    .clone()
                    .map(|s| s.to_ascii_uppercase())
                    .unwrap_or_else(|| port_protocol(&name, None, None)),
                name,
                target_port: p.target_port.unwrap_or(p.number),
                target_name: None,
            }
        })
        .collect();
    for (hi, h) in d.spec.hosts.iter().enumerate() {
        if h.starts_with('*') {
            ctx.info(
                &o.at,
                format!("spec.hosts[{hi}]"),
                format!("wildcard host {h:?} cannot be served by a waypoint (no VIP); skipped"),
            );
            continue;
        }
        add_service(
            ctx,
            o,
            Svc {
                hostname: fqdn(h, &ns),
                namespace: ns.clone(),
                name: h.clone(),
                addresses: d.spec.addresses.clone(),
                ports: ports.clone(),
                selector: d.spec.workload_selector.as_ref().map(|w| w.labels.clone()),
                inline_endpoints: d
                    .spec
                    .endpoints
                    .iter()
                    .map(|e| (e.clone(), o.at.clone()))
                    .collect(),
                labels: d.metadata.labels.clone(),
                origin: o.at.object(),
                se_name: Some(format!("{ns}/{}", d.metadata.name)),
            },
        );
    }
}

fn add_service(ctx: &mut Ctx, o: &Object, svc: Svc) {
    if let Some(&i) = ctx.by_host.get(&svc.hostname) {
        let first = ctx.services[i].origin.clone();
        ctx.warn(
            &o.at,
            "",
            format!(
                "host {} is already defined by {first}; this definition is ignored (first one wins)",
                svc.hostname
            ),
        );
        return;
    }
    ctx.by_host.insert(svc.hostname.clone(), ctx.services.len());
    ctx.services.push(svc);
}
