//! The harness's one error type (its own module, so every part of the harness can use it
//! without depending on another part).

/// Why the harness could not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No Envoy binary was found.
    #[error("Envoy not found ({0}); run `cargo xtask install-envoy` or set LAYOVER_ENVOY")]
    EnvoyNotFound(String),
    /// A filesystem or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `envoy --mode validate` rejected a config.
    #[error("envoy --mode validate rejected the config:\n{0}")]
    Invalid(String),
    /// Envoy exited or did not start listening in time.
    #[error("Envoy did not start: {reason}\n--- last lines of the Envoy log ---\n{log_tail}")]
    Start {
        /// What went wrong.
        reason: String,
        /// The end of Envoy's stderr/stdout.
        log_tail: String,
    },
    /// The config callback failed.
    #[error("building the Envoy config: {0}")]
    Config(String),
    /// An HTTP exchange failed.
    #[error("http: {0}")]
    Http(String),
}
