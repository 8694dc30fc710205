//! Wiring: drain threads, the control server, signals, graceful stop.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::drain::{DrainOptions, DrainThread};
use crate::exactly_once::{self, ExactlyOnce, Settings};
use crate::kafka::{client_errors, ProducerOptions, ThreadPinning};
use crate::log_summary::{Held, Observation, Summaries, ALL_BROKERS_DOWN};
use crate::metrics::{DrainStats, Endpoint, Telemetry};
use crate::notify::Notifier;
use crate::registry::{DrainSlot, Registry};
use crate::server::{AccessPolicy, ControlServer};

/// Runs the daemon until SIGTERM or SIGINT; returns after a graceful stop.
pub fn run(config: Config) -> anyhow::Result<()> {
    // First, so a busy or refused metrics address stops the start before
    // anything else is set up.
    let metrics_listener = Endpoint::bind(&config.metrics)?;
    let stopping = Arc::new(AtomicBool::new(false));
    let kafka = config.kafka_config();
    let producer_options = ProducerOptions {
        thread_pinning: if config.drain.kafka_thread_cpus.is_empty() {
            None
        } else {
            Some(ThreadPinning::new(
                config.drain.kafka_thread_cpus.iter().copied(),
            )?)
        },
        // Each drain thread gives its producers a feed of its own.
        statistics: None,
        // Set per drain thread in the exactly-once mode.
        transactional_id: None,
    };

    let mut inboxes = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..config.drain.threads {
        let (tx, rx) = mpsc::channel();
        inboxes.push(DrainSlot {
            inbox: tx,
            load: AtomicUsize::new(0),
        });
        receivers.push(rx);
    }
    let registry = Arc::new(Registry::new(inboxes));
    registry
        .client_series()
        .set_limit(config.metrics.max_client_series);

    crate::spool::probe_dir(&config.spool.dir);
    let exactly_once = config.exactly_once.enabled.then(|| {
        ExactlyOnce::new(Settings::new(
            &config.exactly_once,
            &kafka,
            config.drain.threads,
        ))
    });
    let exactly_once_start = exactly_once
        .as_ref()
        .map(|eos| exactly_once::spawn_start(Arc::clone(eos), Arc::clone(&stopping)))
        .transpose()?;
    let mut drain_handles = Vec::new();
    let mut drain_stats = Vec::new();
    let mut telemetry = Telemetry::new(Arc::clone(&registry), config.spool.dir.clone());
    for (index, inbox) in receivers.into_iter().enumerate() {
        let stats = Arc::new(DrainStats::default());
        let options = DrainOptions {
            index,
            cpu: (!config.drain.cpus.is_empty())
                .then(|| config.drain.cpus[index % config.drain.cpus.len()]),
            spin: Duration::from_micros(config.drain.spin_us),
            batch_per_ring: config.drain.batch_per_ring,
            copy_records: config.drain.copy_records,
            shutdown_timeout: config.shutdown_timeout(),
            spool: config.spool.clone(),
        };
        let thread = DrainThread::new(
            &kafka,
            producer_options.clone(),
            options,
            inbox,
            Arc::clone(&registry),
            Arc::clone(&stopping),
            Arc::clone(&stats),
            exactly_once.clone(),
        )?;
        telemetry.add_drain(Arc::clone(&stats), thread.statistics_feed());
        drain_stats.push(stats);
        drain_handles.push(
            std::thread::Builder::new()
                .name(format!("shmkafkad-drain-{index}"))
                .spawn(move || thread.run())?,
        );
    }

    let telemetry = Arc::new(telemetry);
    let mut metrics = Endpoint::start(metrics_listener, &telemetry)?;
    let policy = Arc::new(Mutex::new(access_policy(&config)));
    let server = Arc::new(ControlServer::bind(
        &config.daemon.socket_path,
        config.daemon.socket_mode,
        Arc::clone(&policy),
        Arc::clone(&registry),
        Arc::clone(&telemetry),
        Arc::clone(&stopping),
    )?);
    info!(socket = %server.path().display(), drain_threads = config.drain.threads, "shmkafkad ready");
    let accept = {
        let server = Arc::clone(&server);
        std::thread::Builder::new()
            .name("shmkafkad-accept".into())
            .spawn(move || server.run())?
    };

    warn_if_kernel_caps_buffers(&config);
    let mut notifier = Notifier::from_env();
    notifier.ready();
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let mut health = Health::new(&drain_stats);
    let mut summaries = Summaries::new(config.log_summary_interval(), Instant::now());
    let mut current = config;
    'serve: loop {
        for signal in signals.pending() {
            if signal == SIGHUP {
                notifier.reloading();
                if let Some(reloaded) = reload(&current, &policy) {
                    metrics.reload(&reloaded.metrics, &telemetry);
                    current = reloaded;
                }
                notifier.ready();
            } else {
                info!(signal, "stopping: no new clients, draining rings");
                break 'serve;
            }
        }
        telemetry.tick();
        summaries.tick(Instant::now(), observe(&telemetry, &drain_stats));
        let healthy = health.check(&drain_stats);
        notifier.watchdog(healthy);
        if health.status_due() {
            notifier.status(&health.status_line(&registry, &drain_stats));
        }
        std::thread::sleep(SUPERVISOR_TICK);
    }
    notifier.stopping();
    // Scrapes keep working during the drain; the endpoint stops with `run`.
    // SYNC POINT (stopping): pairs with the Acquire loads of `stopping` in
    // the drain threads' loop and the accept loop; the flag is all they
    // learn, the Release keeps the signal handling before it in order.
    stopping.store(true, Ordering::Release);
    server.wake();
    if accept.join().is_err() {
        error!("accept thread panicked");
    }
    for handle in drain_handles {
        if handle.join().is_err() {
            error!("a drain thread panicked");
        }
    }
    if exactly_once_start.is_some_and(|h| h.join().is_err()) {
        error!("the exactly-once start-up thread panicked");
    }
    let delivered: u64 = drain_stats
        .iter()
        .map(|s| s.delivered.load(Ordering::Relaxed))
        .sum();
    let failed: u64 = drain_stats
        .iter()
        .map(|s| s.failed.load(Ordering::Relaxed))
        .sum();
    info!(delivered, failed, "shmkafkad stopped");
    Ok(())
}

/// What the log summaries need: deliveries, broker reports, what is held.
fn observe(telemetry: &Telemetry, stats: &[Arc<DrainStats>]) -> Observation {
    let mut held = Held::default();
    for client in telemetry.clients() {
        if client.fill_bytes > 0 {
            held.rings += 1;
            held.bytes += client.fill_bytes;
            held.in_flight += client.in_flight();
        }
    }
    Observation {
        delivered: stats
            .iter()
            .map(|s| s.delivered.load(Ordering::Relaxed))
            .sum(),
        all_brokers_down: client_errors::last_seen(ALL_BROKERS_DOWN),
        held,
    }
}

/// How often the main thread looks at signals, health and status.
const SUPERVISOR_TICK: Duration = Duration::from_millis(100);
/// A drain thread whose loop counter has not moved for this long is wedged
/// (an idle thread still loops every few milliseconds).
const WEDGED_AFTER: Duration = Duration::from_secs(5);
/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// Drain-thread liveness and rates, for the watchdog and `STATUS=`.
struct Health {
    heartbeats: Vec<(u64, Instant)>,
    last_status: Instant,
    last_delivered: u64,
}

impl Health {
    fn new(stats: &[Arc<DrainStats>]) -> Self {
        let now = Instant::now();
        Self {
            heartbeats: stats
                .iter()
                .map(|s| (s.heartbeat.load(Ordering::Relaxed), now))
                .collect(),
            last_status: now,
            last_delivered: 0,
        }
    }

    /// True while every drain thread's loop counter keeps moving.
    fn check(&mut self, stats: &[Arc<DrainStats>]) -> bool {
        let now = Instant::now();
        let mut healthy = true;
        for (seen, stat) in self.heartbeats.iter_mut().zip(stats) {
            let beat = stat.heartbeat.load(Ordering::Relaxed);
            if beat != seen.0 {
                *seen = (beat, now);
            } else if now.duration_since(seen.1) > WEDGED_AFTER {
                healthy = false;
            }
        }
        if !healthy {
            error!("a drain thread has made no progress for {WEDGED_AFTER:?}; withholding watchdog pings");
        }
        healthy
    }

    fn status_due(&self) -> bool {
        self.last_status.elapsed() >= STATUS_EVERY
    }

    fn status_line(&mut self, registry: &Registry, stats: &[Arc<DrainStats>]) -> String {
        let delivered: u64 = stats
            .iter()
            .map(|s| s.delivered.load(Ordering::Relaxed))
            .sum();
        let failed: u64 = stats.iter().map(|s| s.failed.load(Ordering::Relaxed)).sum();
        let rate =
            (delivered - self.last_delivered) as f64 / self.last_status.elapsed().as_secs_f64();
        let backlog: u64 = registry
            .clients()
            .iter()
            .map(|c| {
                let (tail, released) = c.segment.cursors();
                tail.saturating_sub(released)
            })
            .sum();
        self.last_delivered = delivered;
        self.last_status = Instant::now();
        format!(
            "{} clients, {rate:.0} records/s delivered, {backlog} bytes unacknowledged, {failed} failed",
            registry.len()
        )
    }
}

/// Re-reads the configuration file and applies what can change without a
/// restart (access list, topic allowlist); logs what would need one. An
/// invalid file is refused and the running configuration stays.
fn reload(current: &Config, policy: &Mutex<AccessPolicy>) -> Option<Config> {
    let Some(path) = current.source.clone() else {
        warn!("SIGHUP: started without --config, nothing to reload");
        return None;
    };
    let mut next = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "SIGHUP: new configuration refused; keeping the running one");
            return None;
        }
    };
    next.apply_overrides(&current.overrides);
    if let Err(e) = next.validate() {
        error!(error = %e, "SIGHUP: new configuration refused; keeping the running one");
        return None;
    }
    *policy.lock().unwrap_or_else(|p| p.into_inner()) = access_policy(&next);
    for (what, changed) in [
        ("[kafka]", next.kafka != current.kafka),
        (
            "[drain]",
            format!("{:?}", next.drain) != format!("{:?}", current.drain),
        ),
        (
            "daemon.socket_path",
            next.daemon.socket_path != current.daemon.socket_path,
        ),
        (
            "daemon.log_level",
            next.daemon.log_level != current.daemon.log_level,
        ),
        (
            "statistics.interval.ms (metrics.statistics_interval_ms, [kafka])",
            next.kafka_config().get("statistics.interval.ms")
                != current.kafka_config().get("statistics.interval.ms"),
        ),
    ] {
        if changed {
            warn!(
                section = what,
                "SIGHUP: change needs a restart; not applied"
            );
        }
    }
    info!(path = %path.display(), "SIGHUP: access list and topic allowlist reloaded, with [limits]");
    Some(next)
}

/// The kernel silently caps socket buffers at `net.core.{w,r}mem_max`.
fn warn_if_kernel_caps_buffers(config: &Config) {
    for (property, sysctl) in [
        ("socket.send.buffer.bytes", "net/core/wmem_max"),
        ("socket.receive.buffer.bytes", "net/core/rmem_max"),
    ] {
        let wanted = config
            .kafka
            .get(property)
            .and_then(|v| v.to_string().parse::<u64>().ok());
        let limit = std::fs::read_to_string(format!("/proc/sys/{sysctl}"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if let (Some(wanted), Some(limit)) = (wanted, limit) {
            if wanted > limit {
                warn!(property, wanted, kernel_max = limit, sysctl = %sysctl.replace('/', "."),
                    "the kernel caps this socket buffer; raise the sysctl (shmkafkad tune apply)");
            }
        }
    }
}

fn access_policy(config: &Config) -> AccessPolicy {
    let (mut uids, mut gids) = (
        config.access.allowed_uids.clone(),
        config.access.allowed_gids.clone(),
    );
    if uids.is_empty() && gids.is_empty() {
        uids.push(nix::unistd::getuid().as_raw());
        gids.push(nix::unistd::getgid().as_raw());
    }
    AccessPolicy {
        uids,
        gids,
        topics: config.topics.allow.clone(),
        max_clients: config.daemon.max_clients,
        limits: config.limits.clone(),
    }
}
