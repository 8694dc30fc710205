//! The metrics endpoint's lifecycle: bind at start (a bad or busy address
//! stops the start, as any listener of a daemon would), move or stop on
//! reload (where a failure keeps the endpoint that works).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::registry::Registry;
use tracing::{error, info, warn};

use crate::config::MetricsSection;
use crate::metrics::collector::TelemetryCollector;
use crate::metrics::{http, Telemetry};

/// The running endpoint, if metrics are on.
#[derive(Default)]
pub struct Endpoint {
    server: Option<Server>,
}

struct Server {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Endpoint {
    /// Binds the configured address (nothing if metrics are off).
    pub fn bind(section: &MetricsSection) -> io::Result<Option<TcpListener>> {
        section
            .address()
            .map(|address| {
                TcpListener::bind(address).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot listen for metrics on {address} (metrics.listen): {e}"),
                    )
                })
            })
            .transpose()
    }

    /// Serves `telemetry` on `listener`, if there is one.
    pub fn start(listener: Option<TcpListener>, telemetry: &Arc<Telemetry>) -> io::Result<Self> {
        let Some(listener) = listener else {
            return Ok(Self::default());
        };
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(TelemetryCollector(Arc::clone(telemetry))));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("shmkafkad-metrics".into())
                .spawn(move || http::serve(&listener, &registry, &stop))?
        };
        info!(%address, "metrics served at http://{address}/metrics");
        Ok(Self {
            server: Some(Server {
                address,
                stop,
                thread,
            }),
        })
    }

    /// The address served, if any.
    pub fn address(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|s| s.address)
    }

    /// Applies a reloaded `[metrics]` section: starts, moves or stops the
    /// endpoint. If the new address cannot be bound the old endpoint stays.
    pub fn reload(&mut self, section: &MetricsSection, telemetry: &Arc<Telemetry>) {
        let wanted = section.address();
        if wanted == self.address() {
            return;
        }
        let listener = match Self::bind(section) {
            Ok(listener) => listener,
            Err(e) => {
                error!(error = %e, "SIGHUP: metrics endpoint not moved; keeping the running one");
                return;
            }
        };
        self.stop();
        match Self::start(listener, telemetry) {
            Ok(endpoint) => *self = endpoint,
            Err(e) => warn!(error = %e, "SIGHUP: cannot start the metrics thread; metrics off"),
        }
        if wanted.is_none() {
            info!("SIGHUP: metrics endpoint stopped");
        }
    }

    /// Stops serving and joins the thread.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            // SYNC POINT (metrics-stop): pairs with the Acquire load in
            // `http::serve`, which returns on seeing it.
            server.stop.store(true, Ordering::Release);
            // Unblocks `accept`; the thread sees `stop` and returns.
            let _ = TcpStream::connect(server.address);
            let _ = server.thread.join();
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop();
    }
}
