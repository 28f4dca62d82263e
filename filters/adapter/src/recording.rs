//! A [`StreamHost`] and [`ConnectionHost`] that records every call, for tests of the adapter and
//! of what is built on it (property tests, fuzz targets): one fake host instead of one per test
//! crate. Compiled for the crate's own tests and with the `recording-host` feature; never in the
//! filters.

use crate::{ConnectionHost, InternalError, LocalReply, StreamHost};

/// Records every host call; request headers start from the given list.
#[derive(Default)]
pub struct RecordingHost {
    /// The request headers, as the filter left them.
    pub request: Vec<(String, String)>,
    /// Response headers the filter set.
    pub response: Vec<(String, String)>,
    /// Local replies sent.
    pub replies: Vec<LocalReply>,
    /// Mirrored requests: cluster and headers.
    pub mirrors: Vec<(String, Vec<(String, String)>)>,
    /// Fail reading the request headers.
    pub fail_read: bool,
    /// Fail any request mutation of this header name (`*`: every one).
    pub fail_mutation: Option<&'static str>,
    /// Warnings logged.
    pub warnings: std::cell::RefCell<Vec<String>>,
    /// String filter-state objects the connection carries: (key, value).
    pub filter_state: Vec<(String, String)>,
    /// The peer certificate's URI SAN.
    pub peer_uri_san: Option<String>,
    /// The directly connected peer's `ip:port`.
    pub direct_remote_address: Option<String>,
    /// The stream's remote address (`source.address`).
    pub source_address: Option<String>,
    /// The TLS SNI.
    pub sni: Option<String>,
    /// Every connection property read, in order (`sni`, `peer_uri_san`,
    /// `direct_remote_address`, `source_address`, or the filter-state key), so tests can check
    /// that each is read at most once and only when needed.
    pub connection_reads: std::cell::RefCell<Vec<String>>,
    /// Every [`StreamHost`] call, in order (`request_headers`, `set_request_header <name>`,
    /// `send_local_reply <status>`, …), so tests can check the host-call pattern: how often the
    /// header map is read and which writes a decision costs.
    pub host_calls: std::cell::RefCell<Vec<String>>,
}

impl RecordingHost {
    /// A host whose request carries `headers`.
    pub fn new(headers: &[(&str, &str)]) -> Self {
        RecordingHost {
            request: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }
    /// Values of request header `name`.
    pub fn req(&self, name: &str) -> Vec<&str> {
        self.request
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// Values of response header `name`.
    pub fn resp(&self, name: &str) -> Vec<&str> {
        self.response
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl RecordingHost {
    fn call(&self, what: &str, name: &str) {
        let entry = if name.is_empty() {
            what.to_string()
        } else {
            format!("{what} {name}")
        };
        self.host_calls.borrow_mut().push(entry);
    }

    /// The [`StreamHost`] calls made so far (see [`RecordingHost::host_calls`]).
    pub fn calls(&self) -> Vec<String> {
        self.host_calls.borrow().clone()
    }

    fn mutation(&self, name: &str) -> Result<(), InternalError> {
        match self.fail_mutation {
            Some(n) if n == "*" || n == name => {
                Err(InternalError(format!("fake host refused to change {name}")))
            }
            _ => Ok(()),
        }
    }
}

impl RecordingHost {
    fn read(&self, what: &str, value: &Option<String>) -> Option<String> {
        self.connection_reads.borrow_mut().push(what.to_string());
        value.clone()
    }
}

impl ConnectionHost for RecordingHost {
    fn filter_state(&self, key: &str) -> Option<String> {
        self.connection_reads.borrow_mut().push(key.to_string());
        self.filter_state
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
    fn peer_uri_san(&self) -> Option<String> {
        self.read("peer_uri_san", &self.peer_uri_san)
    }
    fn direct_remote_address(&self) -> Option<String> {
        self.read("direct_remote_address", &self.direct_remote_address)
    }
    fn source_address(&self) -> Option<String> {
        self.read("source_address", &self.source_address)
    }
    fn sni(&self) -> Option<String> {
        self.read("sni", &self.sni)
    }
}

impl StreamHost for RecordingHost {
    fn request_headers(&self) -> Result<Vec<(String, String)>, InternalError> {
        self.call("request_headers", "");
        if self.fail_read {
            return Err(InternalError("fake host: header map unavailable".into()));
        }
        Ok(self.request.clone())
    }
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), InternalError> {
        self.call("set_request_header", name);
        self.mutation(name)?;
        self.request.retain(|(n, _)| n != name);
        self.request.push((name.into(), value.into()));
        Ok(())
    }
    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), InternalError> {
        self.call("add_request_header", name);
        self.mutation(name)?;
        self.request.push((name.into(), value.into()));
        Ok(())
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), InternalError> {
        self.call("remove_request_header", name);
        self.mutation(name)?;
        self.request.retain(|(n, _)| n != name);
        Ok(())
    }
    fn set_response_header(&mut self, name: &str, value: &str) {
        self.call("set_response_header", name);
        self.response.retain(|(n, _)| n != name);
        self.response.push((name.into(), value.into()));
    }
    fn add_response_header(&mut self, name: &str, value: &str) {
        self.call("add_response_header", name);
        self.response.push((name.into(), value.into()));
    }
    fn remove_response_header(&mut self, name: &str) {
        self.call("remove_response_header", name);
        self.response.retain(|(n, _)| n != name);
    }
    fn send_local_reply(&mut self, reply: &LocalReply) {
        self.call("send_local_reply", &reply.status.to_string());
        self.replies.push(reply.clone());
    }
    fn mirror(&mut self, cluster: &str, headers: &[(String, String)]) {
        self.call("mirror", cluster);
        self.mirrors.push((cluster.into(), headers.to_vec()));
    }
    fn warn(&self, message: &str) {
        self.warnings.borrow_mut().push(message.to_string());
    }
}
