//! A small HTTP/1.1 responder for `GET /metrics` on a std `TcpListener`.
//!
//! Hand-written on purpose. The endpoint is loopback-only but any local
//! process can connect, so it must keep bounded memory and threads and
//! must not be stalled by a peer that connects and never sends. `tiny_http`
//! hands each connection to a pool that grows a thread per waiting
//! connection with no request deadline; `hyper` needs an async runtime
//! (tokio) for one route. Here:
//! - at most [`MAX_CONNECTIONS`] connections are served at once, each on
//!   its own short-lived thread; a new one beyond that evicts the oldest
//!   (preferring one still sending its request), so idle or trickling
//!   peers cannot keep a scrape out;
//! - a request head is at most [`MAX_REQUEST_BYTES`] and must arrive
//!   whole within [`IO_TIMEOUT`] (a deadline for the head, not per read);
//! - the answer is written with [`IO_TIMEOUT`] per write and the
//!   connection closed (`Connection: close`).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;
use tracing::debug;

/// Largest request head accepted (request line and headers); Prometheus
/// sends a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long a peer may take to send its whole request head, and each
/// write of the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; a further one evicts the oldest.
pub const MAX_CONNECTIONS: usize = 8;
/// Threads alive at once: the served connections plus evicted ones still
/// winding down (their socket is shut down, so they end at once).
const MAX_THREADS: usize = 2 * MAX_CONNECTIONS;

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A connection being served, as the accepting thread sees it.
struct Open {
    id: u64,
    /// A handle on the same socket, to shut it down when evicted.
    socket: TcpStream,
    /// Still reading the request (not yet answering).
    reading: Arc<AtomicBool>,
}

#[derive(Default)]
struct Connections {
    open: VecDeque<Open>,
    threads: usize,
}

#[derive(Default)]
struct Tracker {
    state: Mutex<Connections>,
    thread_ended: Condvar,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, Connections> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room for one more connection: evicts the oldest beyond
    /// [`MAX_CONNECTIONS`], waits while [`MAX_THREADS`] are alive.
    fn admit(&self, id: u64, socket: TcpStream, reading: Arc<AtomicBool>) {
        let mut state = self.lock();
        if state.open.len() >= MAX_CONNECTIONS {
            let victim = state
                .open
                .iter()
                .position(|c| c.reading.load(Ordering::Relaxed))
                .unwrap_or(0);
            if let Some(evicted) = state.open.remove(victim) {
                let _ = evicted.socket.shutdown(Shutdown::Both);
            }
        }
        while state.threads >= MAX_THREADS {
            state = self
                .thread_ended
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.threads += 1;
        state.open.push_back(Open {
            id,
            socket,
            reading,
        });
    }

    fn done(&self, id: u64) {
        let mut state = self.lock();
        state.open.retain(|c| c.id != id);
        state.threads -= 1;
        self.thread_ended.notify_all();
    }

    fn shut_all(&self) {
        for c in &self.lock().open {
            let _ = c.socket.shutdown(Shutdown::Both);
        }
    }
}

/// Serves `registry` on `listener` until `stop` is set (the setter then
/// connects once to unblock `accept`).
pub fn serve(listener: &TcpListener, registry: &Registry, stop: &Arc<AtomicBool>) {
    let tracker = Tracker::default();
    std::thread::scope(|scope| {
        for (id, stream) in (0u64..).zip(listener.incoming()) {
            // SYNC POINT (metrics-stop): see `Endpoint::stop`.
            if stop.load(Ordering::Acquire) {
                break;
            }
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => {
                    debug!(error = %e, "metrics accept failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let Ok(handle) = stream.try_clone() else {
                continue;
            };
            let reading = Arc::new(AtomicBool::new(true));
            tracker.admit(id, handle, Arc::clone(&reading));
            let tracker = &tracker;
            let spawned = std::thread::Builder::new()
                .name("shmkafkad-scrape".into())
                .spawn_scoped(scope, move || {
                    if let Err(e) = answer(stream, registry, &reading) {
                        debug!(error = %e, "metrics request failed");
                    }
                    tracker.done(id);
                });
            if let Err(e) = spawned {
                debug!(error = %e, "cannot start a metrics thread");
                tracker.done(id);
            }
        }
        tracker.shut_all();
    });
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

fn answer(mut stream: TcpStream, registry: &Registry, reading: &AtomicBool) -> io::Result<()> {
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let request = match read_head(&mut stream, Instant::now() + IO_TIMEOUT)? {
        Some(head) => parse(&head),
        None => Request::Bad,
    };
    reading.store(false, Ordering::Relaxed);
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

/// Reads up to the blank line ending the head by `deadline`; `None` if the
/// peer sent more than [`MAX_REQUEST_BYTES`] without one or hung up early.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not complete in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
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

    /// A server of one counter, `probe_total 3`.
    struct Probe {
        addr: std::net::SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Probe {
        fn start() -> Probe {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut registry = Registry::default();
                    let counter: prometheus_client::metrics::counter::Counter = Default::default();
                    counter.inc_by(3);
                    registry.register("probe", "A probe", counter);
                    serve(&listener, &registry, &stop);
                })
            };
            Probe {
                addr,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            // SYNC POINT (metrics-stop), as in `Endpoint::stop`.
            self.stop.store(true, Ordering::Release);
            let _ = TcpStream::connect(self.addr);
            if let Some(thread) = self.thread.take() {
                thread.join().unwrap();
            }
        }
    }

    #[test]
    fn idle_and_trickling_peers_do_not_keep_a_scrape_out() {
        let probe = Probe::start();
        // Peers that connect and send nothing, or a request that never ends.
        let idle: Vec<TcpStream> = (0..4 * MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(probe.addr).unwrap())
            .collect();
        let mut trickler = TcpStream::connect(probe.addr).unwrap();
        trickler.write_all(b"GET /metr").unwrap();
        let started = Instant::now();
        let mut scrape = TcpStream::connect(probe.addr).unwrap();
        scrape
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        scrape.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut answer = String::new();
        scrape
            .read_to_string(&mut answer)
            .expect("the scrape is answered while idle peers hold connections");
        assert!(answer.ends_with("probe_total 3\n"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // The oldest idle peers were let go to make room.
        let closed = idle
            .iter()
            .filter(|peer| {
                let mut peer: &TcpStream = peer;
                peer.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                match peer.read(&mut [0u8; 16]) {
                    Ok(n) => n == 0,
                    Err(e) => !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ),
                }
            })
            .count();
        assert!(closed >= 3 * MAX_CONNECTIONS, "{closed} closed");
        // A request head trickling in is cut at the deadline, however
        // often bytes come.
        let trickled = Instant::now();
        trickler.set_read_timeout(Some(IO_TIMEOUT * 2)).unwrap();
        let ended = loop {
            let _ = trickler.write_all(b"i");
            let mut buf = [0u8; 64];
            trickler
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            match trickler.read(&mut buf) {
                Ok(_) => break trickled.elapsed(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break trickled.elapsed(),
            }
            assert!(trickled.elapsed() < IO_TIMEOUT * 2, "never cut");
        };
        assert!(ended <= IO_TIMEOUT + Duration::from_secs(1), "{ended:?}");
    }

    #[test]
    fn serves_metrics_404_and_refuses_oversized_heads() {
        let probe = Probe::start();
        let addr = probe.addr;
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
    }
}
