//! Istio YAML → layover policy compiler.
//!
//! Two steps, both collecting every problem instead of stopping at the first:
//!
//! 1. [`load_paths`] / [`load_str`]: read files and directories (recursively, `*.yaml` /
//!    `*.yml`, sorted), split multi-document YAML as `kubectl apply` does, and deserialize each
//!    known kind into typed structs (unknown fields are errors with a field path; unknown kinds
//!    are skipped with a [`Notice`]). The result is a [`Bundle`].
//! 2. [`compile`]: resolve the bundle the way istiod translates it for an ambient waypoint
//!    (FQDNs, the services the waypoint serves, VirtualService / HTTPRoute route tables,
//!    DestinationRule subsets → clusters, AuthorizationPolicy bindings, MeshConfig) into a
//!    [`layover_proto::v1::Policy`], plus a [`Registry`] of endpoints for the Envoy config
//!    generator.
//!
//! [`compile_paths`] / [`compile_paths_with`] / [`compile_str`] do both and report load and
//! compile errors of one run together (objects that fail to load are left out of the compile).
//!
//! ```no_run
//! use layover_compiler::{compile_paths_with, CompileOptions};
//! # fn main() -> Result<(), layover_compiler::Errors> {
//! let opts = CompileOptions {
//!     waypoint: Some("bookinfo/waypoint".into()),
//!     ..CompileOptions::default()
//! };
//! let out = compile_paths_with(&["testdata/bookinfo".into()], &opts)?;
//! for n in &out.notices {
//!     eprintln!("{n}");
//! }
//! let policy: layover_proto::v1::Policy = out.policy; // what the filters evaluate
//! let endpoints = &out.registry.clusters; // cluster name → endpoints, for Envoy config
//! # let _ = (policy, endpoints);
//! # Ok(())
//! # }
//! ```
//!
//! Diagnostics:
//! - [`Error`] renders as `file: document N (Kind namespace/name): field.path: message`
//!   (`file: document N: message` for YAML syntax errors, `file: message` for I/O errors);
//!   [`Errors`] prints one `error: …` line per error.
//! - [`Notice`] renders as `notice: <location>: [field.path: ]message` (something skipped or
//!   defaulted as Istio would) or `warning: …` (probably not what the author meant, e.g. a
//!   subset no DestinationRule defines).
//!
//! Object identity follows `kubectl apply`: the same kind/namespace/name given twice keeps the
//! later definition (with a warning). Objects without `metadata.namespace` are in `default`.

pub mod model;

mod authz;
mod compile;
mod diag;
mod gwapi;
mod jwt;
mod load;
mod object;
mod resolve;
mod util;
mod vs;

use std::path::PathBuf;

pub use compile::{
    compile, compile_with, waypoint_bindings, Binding, CompileOptions, Compiled, Endpoint,
    Registry, ServiceBinding, WaypointBindings,
};
pub use diag::{Error, Errors, Location, Notice, ObjRef, Severity};
pub use load::{load_paths, load_paths_partial, load_str, load_str_partial};
pub use object::{Bundle, Object, ObjectKind};

/// Loads `paths` and compiles them with default options.
pub fn compile_paths(paths: &[PathBuf]) -> Result<Compiled, Errors> {
    compile_paths_with(paths, &CompileOptions::default())
}

/// Loads `paths` and compiles them; load notices are kept in front of compile notices.
/// Objects that fail to load are left out and the rest is still compiled, so one run reports
/// load errors and compile errors together.
pub fn compile_paths_with(paths: &[PathBuf], opts: &CompileOptions) -> Result<Compiled, Errors> {
    let (bundle, errors) = load_paths_partial(paths);
    merge(errors, compile_with(&bundle, opts))
}

/// Compiles YAML text (`file` names it in messages), reporting load and compile errors together.
pub fn compile_str(file: &str, text: &str, opts: &CompileOptions) -> Result<Compiled, Errors> {
    let (bundle, errors) = load_str_partial(file, text);
    merge(errors, compile_with(&bundle, opts))
}

fn merge(mut load: Vec<Error>, compiled: Result<Compiled, Errors>) -> Result<Compiled, Errors> {
    match compiled {
        Ok(c) if load.is_empty() => Ok(c),
        Ok(_) => Err(Errors(load)),
        Err(mut e) => {
            load.append(&mut e.0);
            Err(Errors(load))
        }
    }
}
