//! Small JSON builders more than one layer uses: socket addresses and durations.

use std::time::Duration;

use serde_json::{json, Value};

/// An Envoy `Address` with a socket address.
pub(crate) fn socket_address(address: &str, port: u16) -> Value {
    json!({ "socket_address": { "address": address, "port_value": port } })
}

/// A duration in Envoy's JSON form.
pub(crate) fn duration(d: Duration) -> String {
    // Envoy's JSON mapping of google.protobuf.Duration: seconds with an "s" suffix.
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn durations_use_proto_json_form() {
        assert_eq!(duration(Duration::from_secs(10)), "10s");
        assert_eq!(duration(Duration::from_millis(250)), "0.250000000s");
    }
}
