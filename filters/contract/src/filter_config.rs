//! The layover filter's configuration, as the bootstrap writes it and the filters read it.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// How the filter hands its cluster choice to the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ClusterSelection {
    /// The filter writes [`crate::CLUSTER_HEADER`] and clears the route cache; the route reads
    /// the header (`cluster_header`). Both builds. The default: it measured 1–2 µs of Envoy CPU
    /// per request cheaper than [`ClusterSelection::SpecifierPlugin`] (within noise, never
    /// worse; `cargo xtask bench-cluster-selection`).
    #[default]
    #[serde(rename = "header")]
    Header,
    /// The dynamic module writes its choice to dynamic metadata ([`crate::metadata`]) and
    /// refreshes the route's cluster; the route's cluster specifier plugin
    /// (`envoy.router.cluster_specifier_plugin.dynamic_modules`) reads it. Dynamic-module build
    /// only. On the wire (the filter configuration) it is `"metadata"`.
    #[serde(rename = "metadata")]
    SpecifierPlugin,
}

impl ClusterSelection {
    /// The command-line spelling (`--cluster-selection`).
    pub const fn cli_name(self) -> &'static str {
        match self {
            ClusterSelection::Header => "header",
            ClusterSelection::SpecifierPlugin => "specifier-plugin",
        }
    }

    /// The spelling on the wire (the filter configuration's `cluster_selection`).
    pub const fn wire_name(self) -> &'static str {
        match self {
            ClusterSelection::Header => "header",
            ClusterSelection::SpecifierPlugin => "metadata",
        }
    }

    /// Every value, in the order `--help` lists them.
    pub const ALL: [ClusterSelection; 2] =
        [ClusterSelection::Header, ClusterSelection::SpecifierPlugin];
}

impl fmt::Display for ClusterSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name())
    }
}

impl FromStr for ClusterSelection {
    type Err = String;

    /// Parses the command-line spelling ([`ClusterSelection::cli_name`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClusterSelection::ALL
            .into_iter()
            .find(|c| c.cli_name() == s)
            .ok_or_else(|| format!("expected `header` or `specifier-plugin`, got `{s}`"))
    }
}

/// The filter configuration: which [`ClusterSelection`] and the policy (proto3 JSON or binary
/// protobuf, as `layover compile` writes it).
///
/// On the wire it is either the policy itself (header mode; what every manifest carries) or the
/// wrapper `{"cluster_selection": "header" | "metadata", "policy": {…}}`. A policy never has a
/// top-level `cluster_selection` field, so the two cannot be confused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterConfig<'a> {
    /// How the cluster choice reaches the route.
    pub cluster_selection: ClusterSelection,
    /// The policy bytes, for the policy loader.
    pub policy: Cow<'a, [u8]>,
}

/// The wrapper form on the wire.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapper<'a> {
    cluster_selection: ClusterSelection,
    #[serde(borrow)]
    policy: &'a RawValue,
}

/// Just enough of a JSON object to tell the wrapper from a bare policy (other fields skipped).
#[derive(Deserialize)]
struct Probe {
    cluster_selection: Option<serde::de::IgnoredAny>,
}

impl FilterConfig<'_> {
    /// The configuration text for `policy_json` (the output of `layover compile --json`):
    /// the policy itself for [`ClusterSelection::Header`], the wrapper otherwise.
    pub fn encode(
        policy_json: &str,
        cluster_selection: ClusterSelection,
    ) -> Result<String, String> {
        if cluster_selection == ClusterSelection::Header {
            return Ok(policy_json.to_string());
        }
        let policy: &RawValue = serde_json::from_str(policy_json)
            .map_err(|e| format!("filter configuration: the policy is not JSON: {e}"))?;
        serde_json::to_string(&Wrapper {
            cluster_selection,
            policy,
        })
        .map_err(|e| format!("filter configuration: cannot encode: {e}"))
    }

    /// Reads a filter configuration as Envoy hands it over. Anything that is not a JSON object
    /// with a `cluster_selection` field is a bare policy (header mode), left for the policy
    /// loader to accept or report.
    pub fn decode(config: &[u8]) -> Result<FilterConfig<'_>, String> {
        let bare = FilterConfig {
            cluster_selection: ClusterSelection::Header,
            policy: Cow::Borrowed(config),
        };
        let first = config.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Ok(bare);
        }
        match serde_json::from_slice::<Probe>(config) {
            Ok(Probe {
                cluster_selection: Some(_),
            }) => {}
            // Not a wrapper, or not JSON at all: the policy loader reports it.
            _ => return Ok(bare),
        }
        let wrapper: Wrapper<'_> = serde_json::from_slice(config).map_err(|e| {
            format!(
                "filter configuration: a `cluster_selection` wrapper is \
                 {{\"cluster_selection\": \"header\" | \"metadata\", \"policy\": {{…}}}}: {e}"
            )
        })?;
        Ok(FilterConfig {
            cluster_selection: wrapper.cluster_selection,
            policy: Cow::Borrowed(wrapper.policy.get().as_bytes()),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{"version":"v1","services":[]}"#;

    #[test]
    fn a_bare_policy_passes_through_untouched() {
        let c = FilterConfig::decode(POLICY.as_bytes()).unwrap();
        assert_eq!(c.cluster_selection, ClusterSelection::Header);
        assert_eq!(&*c.policy, POLICY.as_bytes());
    }

    #[test]
    fn binary_protobuf_passes_through() {
        let c = FilterConfig::decode(b"\x0a\x02ab").unwrap();
        assert_eq!(c.cluster_selection, ClusterSelection::Header);
        assert_eq!(&*c.policy, b"\x0a\x02ab");
    }

    #[test]
    fn encode_then_decode_round_trips_each_mode() {
        for mode in ClusterSelection::ALL {
            let text = FilterConfig::encode(POLICY, mode).unwrap();
            let c = FilterConfig::decode(text.as_bytes()).unwrap();
            assert_eq!(c.cluster_selection, mode);
            assert_eq!(&*c.policy, POLICY.as_bytes());
        }
        assert_eq!(
            FilterConfig::encode(POLICY, ClusterSelection::SpecifierPlugin).unwrap(),
            format!("{{\"cluster_selection\":\"metadata\",\"policy\":{POLICY}}}")
        );
    }

    #[test]
    fn a_bad_wrapper_is_an_error() {
        for bad in [
            format!("{{\"cluster_selection\":\"cookie\",\"policy\":{POLICY}}}"),
            "{\"cluster_selection\":\"metadata\"}".to_string(),
            format!("{{\"cluster_selection\":\"metadata\",\"policy\":{POLICY},\"extra\":1}}"),
        ] {
            assert!(FilterConfig::decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_names_parse_back() {
        for mode in ClusterSelection::ALL {
            assert_eq!(mode.cli_name().parse::<ClusterSelection>(), Ok(mode));
        }
        assert!("metadata".parse::<ClusterSelection>().is_err());
    }
}
