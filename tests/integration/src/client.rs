//! A small HTTP client for tests: HTTP/1.1 or h2c (prior knowledge), bounded by a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::HarnessError;
use crate::TEST_TIMEOUT;

/// A complete response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Protocol version of the response.
    pub version: Version,
    /// Response headers.
    pub headers: HeaderMap,
    /// Whole response body.
    pub body: Bytes,
}

impl Reply {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HarnessError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            HarnessError::Http(format!(
                "response body is not the expected JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            ))
        })
    }

    /// A response header as a string (`None` when absent or not UTF-8).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A pooled HTTP client; cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// HTTP/1.1 client.
    pub fn http1() -> Self {
        HttpClient {
            inner: Client::builder(TokioExecutor::new()).build_http(),
            timeout: TEST_TIMEOUT,
        }
    }

    /// HTTP/2 cleartext client (prior knowledge, no upgrade).
    pub fn h2c() -> Self {
        HttpClient {
            inner: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
            timeout: TEST_TIMEOUT,
        }
    }

    /// Changes the per-request timeout (default [`TEST_TIMEOUT`]).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Reply, HarnessError> {
        let what = format!("{} {}", req.method(), req.uri());
        let exchange = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| HarnessError::Http(format!("{what}: {e:?}")))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| HarnessError::Http(format!("{what}: reading body: {e}")))?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                HarnessError::Http(format!("{what}: no response within {:?}", self.timeout))
            })?
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<Reply, HarnessError> {
        self.request(Method::GET, url, &[], Bytes::new()).await
    }

    /// `GET url` with extra request headers.
    pub async fn get_with(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, HarnessError> {
        self.request(Method::GET, url, headers, Bytes::new()).await
    }

    /// Any method, headers and body.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, HarnessError> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder
            .body(Full::new(body.into()))
            .map_err(|e| HarnessError::Http(format!("building request for {url}: {e}")))?;
        self.send(req).await
    }
}

/// Sends raw bytes over a fresh TCP connection and returns the response: everything up to the
/// end of the first response when it has a `content-length`, else everything until the server
/// closes the connection. For requests a well-behaved client cannot build (odd paths, malformed
/// headers). Stopping at the end of the response matters: after a local error reply Envoy
/// waits for the client to close (delayed close, 1 s by default).
pub async fn raw_http1(addr: SocketAddr, request: &[u8]) -> Result<String, HarnessError> {
    let connect = async {
        tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| HarnessError::Http(format!("connecting to {addr}: {e}")))
    };
    let stream = tokio::time::timeout(TEST_TIMEOUT, connect)
        .await
        .map_err(|_| {
            HarnessError::Http(format!("{addr}: no connection within {TEST_TIMEOUT:?}"))
        })??;
    raw_http1_over(stream, &addr.to_string(), request).await
}

/// [`raw_http1`] on an open byte stream (a TCP connection, an HBONE tunnel); `peer` names it
/// in errors.
pub async fn raw_http1_over<S>(
    mut stream: S,
    peer: &str,
    request: &[u8],
) -> Result<String, HarnessError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let exchange = async {
        stream
            .write_all(request)
            .await
            .map_err(|e| HarnessError::Http(format!("writing to {peer}: {e}")))?;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| HarnessError::Http(format!("reading from {peer}: {e}")))?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if response_complete(&out) {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(TEST_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            HarnessError::Http(format!(
                "{peer}: no complete response within {TEST_TIMEOUT:?}"
            ))
        })?
}

/// Whether `data` holds a complete HTTP/1 response head plus a `content-length` body.
fn response_complete(data: &[u8]) -> bool {
    let Some(head_end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&data[..head_end]);
    let length = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    length.is_some_and(|len| data.len() >= head_end + 4 + len)
}

/// A response read off the wire by [`raw_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Response headers, names lower-case, in order.
    pub headers: Vec<(String, String)>,
    /// Body (as text).
    pub body: String,
}

impl RawResponse {
    /// First value of a response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` byte for byte ([`raw_http1`]) and parses the status line, headers and body
/// of the answer: for requests only a raw client can write (`//admin`, `%2F`, `#frag`, repeated
/// `Host`, lower-case methods).
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> Result<RawResponse, HarnessError> {
    parse_raw(&addr.to_string(), &raw_http1(addr, request).await?)
}

/// Parses what [`raw_http1`] / [`raw_http1_over`] read from `peer` into a [`RawResponse`].
pub fn parse_raw(peer: &str, text: &str) -> Result<RawResponse, HarnessError> {
    let addr = peer;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| HarnessError::Http(format!("{addr}: no response head in {text:?}")))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| HarnessError::Http(format!("{addr}: no status line in {text:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(RawResponse {
        status,
        headers,
        body: body.to_string(),
    })
}
