//! `layover eval`: the offline explain (owned by the eval work; stub until it lands).

use std::io::Write;
use std::path::PathBuf;

/// Arguments of `layover eval`.
pub struct EvalArgs {
    /// YAML files or directories holding the Istio configuration.
    pub config: Vec<PathBuf>,
    /// One request as JSON (`-` for stdin).
    pub request: Option<PathBuf>,
    /// Many requests, one JSON object per line.
    pub requests: Option<PathBuf>,
}

/// Runs `layover eval`, writing decisions to `out`. Returns the error message on failure.
pub fn run(_args: &EvalArgs, _out: &mut dyn Write) -> Result<(), String> {
    Err("eval is not implemented yet".to_string())
}
