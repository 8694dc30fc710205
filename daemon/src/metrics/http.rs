//! A minimal HTTP/1.1 responder for `GET /metrics` on a std `TcpListener`.
//!
//! Prometheus sends one small GET per scrape; a full HTTP stack would add
//! dependencies and attack surface for nothing. One thread serves one
//! connection at a time: the request is bounded in size and time, the
//! answer is written and the connection closed (`Connection: close`), so a
//! slow or hostile peer holds the endpoint for at most the timeouts below.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;
use tracing::debug;

/// Largest request head accepted (request line and headers); Prometheus
/// sends a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long a peer may take to send its request, and to take the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `registry` on `listener` until `stop` is set (the setter then
/// connects once to unblock `accept`).
pub fn serve(listener: &TcpListener, registry: &Registry, stop: &Arc<AtomicBool>) {
    for stream in listener.incoming() {
        // SYNC POINT (metrics-stop): see `Endpoint::stop`.
        if stop.load(Ordering::Acquire) {
            break;
        }
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(stream, registry) {
                    debug!(error = %e, "metrics request failed");
                }
            }
            Err(e) => {
                debug!(error = %e, "metrics accept failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// What the request asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics`, preferring OpenMetrics if the `Accept` header says so.
    Metrics {
        /// The client accepts `application/openmetrics-text`.
        openmetrics: bool,
    },
    /// A GET of another path.
    NotFound,
    /// Another method.
    MethodNotAllowed,
    /// Not HTTP, or too long.
    Bad,
}

/// Parses a request head (everything up to the blank line).
pub fn parse(head: &[u8]) -> Request {
    let Ok(head) = std::str::from_utf8(head) else {
        return Request::Bad;
    };
    let mut lines = head.split("\r\n");
    let mut words = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") || words.next().is_some() {
        return Request::Bad;
    }
    if method != "GET" {
        return Request::MethodNotAllowed;
    }
    let path = target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return Request::NotFound;
    }
    let openmetrics = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("accept") && value.contains("application/openmetrics-text")
        })
    });
    Request::Metrics { openmetrics }
}

fn answer(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let request = match read_head(&mut stream)? {
        Some(head) => parse(&head),
        None => Request::Bad,
    };
    let (status, content_type, body) = match request {
        Request::Metrics { openmetrics } => {
            let mut body = String::with_capacity(16 * 1024);
            let encoded = if openmetrics {
                text::encode(&mut body, registry)
            } else {
                prometheus_text::encode(&mut body, registry)
            };
            if encoded.is_err() {
                (
                    "500 Internal Server Error",
                    "text/plain",
                    "encoding failed\n".to_owned(),
                )
            } else if openmetrics {
                ("200 OK", OPENMETRICS_CONTENT_TYPE, body)
            } else {
                ("200 OK", prometheus_text::CONTENT_TYPE, body)
            }
        }
        Request::NotFound => ("404 Not Found", "text/plain", "try /metrics\n".to_owned()),
        Request::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_owned(),
        ),
        Request::Bad => ("400 Bad Request", "text/plain", "bad request\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Reads up to the blank line ending the head; `None` if the peer sent more
/// than [`MAX_REQUEST_BYTES`] without one or hung up early.
fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(Some(head));
        }
        if head.len() > MAX_REQUEST_BYTES {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Request::Metrics { openmetrics: false }
        );
        assert_eq!(
            parse(
                b"GET /metrics?x=1 HTTP/1.0\r\naccept: application/openmetrics-text;version=1.0.0"
            ),
            Request::Metrics { openmetrics: true }
        );
        assert_eq!(parse(b"GET / HTTP/1.1"), Request::NotFound);
        assert_eq!(parse(b"GET /metricsx HTTP/1.1"), Request::NotFound);
        assert_eq!(parse(b"POST /metrics HTTP/1.1"), Request::MethodNotAllowed);
        assert_eq!(parse(b"GET /metrics"), Request::Bad);
        assert_eq!(parse(b"GET /metrics SPDY/3"), Request::Bad);
        assert_eq!(parse(&[0xff, 0xfe]), Request::Bad);
    }

    fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn serves_metrics_404_and_refuses_oversized_heads() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut registry = Registry::default();
                let counter: prometheus_client::metrics::counter::Counter = Default::default();
                counter.inc_by(3);
                registry.register("probe", "A probe", counter);
                serve(&listener, &registry, &stop);
            })
        };
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(ok.ends_with("probe_total 3\n"), "{ok}");
        let open = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n",
        );
        assert!(open.contains("application/openmetrics-text"), "{open}");
        assert!(open.ends_with("# EOF\n"), "{open}");
        let missing = exchange(addr, b"GET /other HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        // One byte over: the server has read it all when it answers, so it
        // closes cleanly instead of resetting over unread bytes.
        let huge = vec![b'a'; MAX_REQUEST_BYTES + 1];
        let bad = exchange(addr, &huge);
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        // SYNC POINT (metrics-stop), as in `Endpoint::stop`.
        stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(addr);
        server.join().unwrap();
    }
}
