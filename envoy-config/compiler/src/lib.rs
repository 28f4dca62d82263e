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
//! let opts = CompileOptions { waypoint: Some("bookinfo/waypoint".into()) };
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
mod gwapi;
mod load;
mod util;
mod vs;

use std::fmt;
use std::path::PathBuf;

pub use compile::{compile, compile_with, CompileOptions, Compiled, Endpoint, Registry};
pub use load::{
    load_paths, load_paths_partial, load_str, load_str_partial, Bundle, Object, ObjectKind,
};

/// Where an object came from: file, 1-based document index in the YAML stream, kind and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjRef {
    /// File path as given (or a label for in-memory input).
    pub file: String,
    /// 1-based index of the document in the file's YAML stream.
    pub doc: usize,
    /// `kind` of the object (may be empty when the document has none).
    pub kind: String,
    /// Namespace (`default` when omitted; empty for cluster-scoped kinds).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ObjRef {
    /// `Kind namespace/name` (or `Kind name` for cluster-scoped objects).
    pub fn object(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

impl fmt::Display for ObjRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind.is_empty() {
            write!(f, "{}: document {}", self.file, self.doc)
        } else {
            write!(
                f,
                "{}: document {} ({})",
                self.file,
                self.doc,
                self.object()
            )
        }
    }
}

/// Location of a diagnostic: an object, or only a file (I/O and YAML syntax errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file (or directory) as a whole.
    File(String),
    /// A document / object inside a file.
    Object(ObjRef),
    /// Not tied to one input (e.g. "several waypoints").
    Input,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(p) => write!(f, "{p}"),
            Location::Object(o) => write!(f, "{o}"),
            Location::Input => write!(f, "input"),
        }
    }
}

/// One error: location, field path (may be empty) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Where.
    pub at: Location,
    /// Field path inside the object, e.g. `spec.http[0].route[0].weight`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}: {}", self.at, self.message)
        } else {
            write!(f, "{}: {}: {}", self.at, self.path, self.message)
        }
    }
}

/// Every error found; rendering prints one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors(pub Vec<Error>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

/// How much attention a notice deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Something was skipped or defaulted as Istio would; nothing to fix.
    Info,
    /// The configuration probably does not do what its author meant (e.g. unknown subset).
    Warning,
}

/// A non-fatal diagnostic: skipped objects, ignored fields, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Info or warning.
    pub severity: Severity,
    /// Where.
    pub at: Location,
    /// Field path, may be empty.
    pub path: String,
    /// What happened and why.
    pub message: String,
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Info => "notice",
            Severity::Warning => "warning",
        };
        if self.path.is_empty() {
            write!(f, "{sev}: {}: {}", self.at, self.message)
        } else {
            write!(f, "{sev}: {}: {}: {}", self.at, self.path, self.message)
        }
    }
}

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
