//! Diagnostics: where something was found ([`ObjRef`], [`Location`]) and what was found
//! ([`Error`], [`Notice`]). Plain data shared by the loader, the resolver and the translators.

use std::fmt;

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
