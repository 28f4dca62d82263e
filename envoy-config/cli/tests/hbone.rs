//! `layover hbone serve` + `layover hbone curl` end to end, running the built binary against a
//! tiny HTTP/1.1 backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("layover-cli-hbone-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn layover() -> Command {
    Command::new(env!("CARGO_BIN_EXE_layover"))
}

/// Answers every HTTP/1.1 request with 200, an `x-backend` header and the request line.
fn tiny_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).to_string();
                let line = text.lines().next().unwrap_or_default().to_string();
                let saw_header = text.to_ascii_lowercase().contains("x-caller: cli");
                let body = format!("hello from backend: {line} x-caller={saw_header}\n");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-backend: tiny\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes());
            });
        }
    });
    addr
}

/// Kills the server when the test ends, passing or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hbone_serve_and_curl_through_a_tunnel() {
    let certs = tmp("certs");
    let o = layover()
        .args(["certs", "--out", certs.to_str().unwrap()])
        .args(["--identity", "bookinfo/productpage"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let backend = tiny_backend();

    // A free port for the server (bound and released; nothing else races for it here).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = layover()
        .args(["hbone", "serve", "--listen", &listen])
        .args(["--certs", certs.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _server = Server(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |needle: &str| {
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no {needle:?} from hbone serve; saw {seen:?}"),
            }
        }
    };
    wait_for("listening on");

    let authority = backend.to_string();
    let o = layover()
        .args(["hbone", "curl", "--waypoint", &listen])
        .args(["--certs", certs.to_str().unwrap()])
        .args(["--identity", "bookinfo/productpage"])
        .args(["--authority", &authority])
        .args(["--expect-server", "bookinfo/waypoint"])
        .args(["-H", "x-caller: cli", "/productpage?u=1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("HTTP/1.1 200 OK\n"), "{stdout}");
    assert!(stdout.contains("x-backend: tiny\n"), "{stdout}");
    assert!(
        stdout.contains("hello from backend: GET /productpage?u=1 HTTP/1.1 x-caller=true"),
        "{stdout}"
    );
    assert!(
        stderr.contains("server spiffe://cluster.local/ns/bookinfo/sa/waypoint"),
        "{stderr}"
    );
    let logged = wait_for("CONNECT");
    assert!(
        logged.contains(&format!(
            "CONNECT {authority} from spiffe://cluster.local/ns/bookinfo/sa/productpage"
        )),
        "{logged}"
    );

    // A server identity the client does not expect: refused, non-zero exit.
    let o = layover()
        .args(["hbone", "curl", "--waypoint", &listen])
        .args(["--certs", certs.to_str().unwrap()])
        .args(["--identity", "bookinfo/productpage"])
        .args(["--authority", &authority])
        .args(["--expect-server", "istio-system/ztunnel", "/"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("server identity"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An h2c (prior knowledge) + HTTP/1.1 backend on its own runtime, answering with the
/// request's version and path.
fn h2_backend() -> SocketAddr {
    use http_body_util::Full;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            let body = format!("{:?} {}\n", req.version(), req.uri().path());
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                bytes::Bytes::from(body),
                            )))
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

#[test]
fn hbone_curl_speaks_http2_inside_the_tunnel() {
    let certs = tmp("certs-h2");
    let o = layover()
        .args(["certs", "--out", certs.to_str().unwrap()])
        .args(["--identity", "bookinfo/productpage"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let backend = h2_backend();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = layover()
        .args(["hbone", "serve", "--listen", &listen])
        .args(["--certs", certs.to_str().unwrap()])
        .args(["--target", &format!("10.96.0.10:9080={backend}")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _server = Server(child);
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines.next().expect("hbone serve exited").unwrap();
        if line.contains("listening on") {
            break;
        }
    }
    let o = layover()
        .args(["hbone", "curl", "--waypoint", &listen, "--http2"])
        .args(["--certs", certs.to_str().unwrap()])
        .args(["--identity", "bookinfo/productpage"])
        .args(["--authority", "10.96.0.10:9080"])
        .arg("http://reviews:9080/reviews/1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.starts_with("HTTP/2.0 200 OK\n"), "{stdout}");
    assert!(stdout.ends_with("HTTP/2.0 /reviews/1\n"), "{stdout}");
}
