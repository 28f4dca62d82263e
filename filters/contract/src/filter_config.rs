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

/// What the filter does with a request: everything a waypoint does, or only authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FilterMode {
    /// The whole waypoint L7: AuthorizationPolicy, then the service's routes (cluster choice,
    /// retries, timeouts, rewrites, header operations, faults, CORS, mirrors). What a bare
    /// policy means; route A and the drop-in waypoint.
    #[default]
    #[serde(rename = "waypoint")]
    Waypoint,
    /// AuthorizationPolicy only: a denied request gets 403 `RBAC: access denied`, an allowed one
    /// continues untouched (no header is added, removed or rewritten). Route B, where layover's
    /// wasm build runs as a WasmPlugin inside Istio's own waypoint and istiod's routes apply the
    /// VirtualServices: routing there too would apply them twice.
    #[serde(rename = "authorization")]
    Authorization,
}

impl FilterMode {
    /// The spelling on the wire (the filter configuration's `mode`).
    pub const fn wire_name(self) -> &'static str {
        match self {
            FilterMode::Waypoint => "waypoint",
            FilterMode::Authorization => "authorization",
        }
    }
}

/// The filter configuration: the [`FilterMode`], the [`ClusterSelection`] and the policy
/// (proto3 JSON or binary protobuf, as `layover compile` writes it).
///
/// On the wire it is either the policy itself (waypoint mode, header selection; what the
/// EnvoyFilter manifests carry) or the wrapper
/// `{"mode": "waypoint" | "authorization", "cluster_selection": "header" | "metadata",
/// "policy": {…}}` with `mode` and `cluster_selection` each optional (defaults: `waypoint`,
/// `header`). A policy never has a top-level `mode` or `cluster_selection` field, so the two
/// forms cannot be confused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterConfig<'a> {
    /// What the filter enforces.
    pub mode: FilterMode,
    /// How the cluster choice reaches the route (waypoint mode only).
    pub cluster_selection: ClusterSelection,
    /// The policy bytes, for the policy loader.
    pub policy: Cow<'a, [u8]>,
}

/// The wrapper form on the wire.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapper<'a> {
    #[serde(default, skip_serializing_if = "is_default")]
    mode: FilterMode,
    #[serde(default, skip_serializing_if = "is_default")]
    cluster_selection: ClusterSelection,
    #[serde(borrow)]
    policy: &'a RawValue,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Just enough of a JSON object to tell the wrapper from a bare policy (other fields skipped,
/// values never built: one pass over the bytes, no allocation).
#[derive(Deserialize)]
struct Probe {
    mode: Option<serde::de::IgnoredAny>,
    cluster_selection: Option<serde::de::IgnoredAny>,
}

impl FilterConfig<'_> {
    /// The configuration text for `policy_json` (the output of `layover compile --json`):
    /// the policy itself for [`ClusterSelection::Header`], the wrapper otherwise.
    pub fn encode(
        policy_json: &str,
        cluster_selection: ClusterSelection,
    ) -> Result<String, String> {
        FilterConfig::encode_with(policy_json, FilterMode::Waypoint, cluster_selection)
    }

    /// The configuration text for `policy_json` in `mode`: the policy itself for waypoint mode
    /// with header selection, the wrapper otherwise (fields at their default are left out).
    pub fn encode_with(
        policy_json: &str,
        mode: FilterMode,
        cluster_selection: ClusterSelection,
    ) -> Result<String, String> {
        if mode == FilterMode::Waypoint && cluster_selection == ClusterSelection::Header {
            return Ok(policy_json.to_string());
        }
        let policy: &RawValue = serde_json::from_str(policy_json)
            .map_err(|e| format!("filter configuration: the policy is not JSON: {e}"))?;
        serde_json::to_string(&Wrapper {
            mode,
            cluster_selection,
            policy,
        })
        .map_err(|e| format!("filter configuration: cannot encode: {e}"))
    }

    /// Reads a filter configuration as Envoy hands it over. Anything that is not a JSON object
    /// with a `mode` or `cluster_selection` field is a bare policy (waypoint mode, header
    /// selection), left for the policy loader to accept or report.
    pub fn decode(config: &[u8]) -> Result<FilterConfig<'_>, String> {
        let bare = FilterConfig {
            mode: FilterMode::Waypoint,
            cluster_selection: ClusterSelection::Header,
            policy: Cow::Borrowed(config),
        };
        let first = config.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Ok(bare);
        }
        match serde_json::from_slice::<Probe>(config) {
            Ok(Probe { mode: Some(_), .. })
            | Ok(Probe {
                cluster_selection: Some(_),
                ..
            }) => {}
            // Not a wrapper, or not JSON at all: the policy loader reports it.
            _ => return Ok(bare),
        }
        let wrapper: Wrapper<'_> = serde_json::from_slice(config).map_err(|e| {
            format!(
                "filter configuration: a wrapper is {{\"mode\": \"waypoint\" | \"authorization\", \
                 \"cluster_selection\": \"header\" | \"metadata\", \"policy\": {{…}}}} \
                 (mode and cluster_selection optional): {e}"
            )
        })?;
        Ok(FilterConfig {
            mode: wrapper.mode,
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
    fn authorization_mode_round_trips_and_defaults_stay_implicit() {
        let text =
            FilterConfig::encode_with(POLICY, FilterMode::Authorization, ClusterSelection::Header)
                .unwrap();
        assert_eq!(
            text,
            format!("{{\"mode\":\"authorization\",\"policy\":{POLICY}}}")
        );
        let c = FilterConfig::decode(text.as_bytes()).unwrap();
        assert_eq!(c.mode, FilterMode::Authorization);
        assert_eq!(c.cluster_selection, ClusterSelection::Header);
        assert_eq!(&*c.policy, POLICY.as_bytes());
        // Both fields, in either order; an explicit default is accepted.
        for text in [
            format!("{{\"cluster_selection\":\"metadata\",\"mode\":\"authorization\",\"policy\":{POLICY}}}"),
            format!("{{\"mode\":\"authorization\",\"cluster_selection\":\"metadata\",\"policy\":{POLICY}}}"),
        ] {
            let c = FilterConfig::decode(text.as_bytes()).unwrap();
            assert_eq!(
                (c.mode, c.cluster_selection),
                (FilterMode::Authorization, ClusterSelection::SpecifierPlugin)
            );
        }
        let explicit = format!("{{\"mode\":\"waypoint\",\"policy\":{POLICY}}}");
        let c = FilterConfig::decode(explicit.as_bytes()).unwrap();
        assert_eq!(c.mode, FilterMode::Waypoint);
        assert_eq!(
            FilterConfig::decode(POLICY.as_bytes()).unwrap().mode,
            FilterMode::Waypoint
        );
    }

    #[test]
    fn a_bad_mode_is_an_error() {
        for bad in [
            format!("{{\"mode\":\"route\",\"policy\":{POLICY}}}"),
            "{\"mode\":\"authorization\"}".to_string(),
            format!("{{\"mode\":\"authorization\",\"policy\":{POLICY},\"x\":1}}"),
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
