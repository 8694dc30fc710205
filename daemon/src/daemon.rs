//! Wiring: drain threads, the control server, signals, graceful stop.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::drain::{DrainOptions, DrainStats, DrainThread};
use crate::kafka::{ProducerOptions, ThreadPinning};
use crate::registry::{DrainSlot, Registry};
use crate::server::{AccessPolicy, ControlServer};

/// Runs the daemon until SIGTERM or SIGINT; returns after a graceful stop.
pub fn run(config: Config) -> anyhow::Result<()> {
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

    let mut drain_handles = Vec::new();
    let mut drain_stats = Vec::new();
    for (index, inbox) in receivers.into_iter().enumerate() {
        let stats = Arc::new(DrainStats::default());
        let options = DrainOptions {
            index,
            cpu: (!config.drain.cpus.is_empty())
                .then(|| config.drain.cpus[index % config.drain.cpus.len()]),
            spin: std::time::Duration::from_micros(config.drain.spin_us),
            batch_per_ring: config.drain.batch_per_ring,
            shutdown_timeout: config.shutdown_timeout(),
        };
        let thread = DrainThread::new(
            &kafka,
            producer_options.clone(),
            options,
            inbox,
            Arc::clone(&registry),
            Arc::clone(&stopping),
            Arc::clone(&stats),
        )?;
        drain_stats.push(stats);
        drain_handles.push(
            std::thread::Builder::new()
                .name(format!("shmkafkad-drain-{index}"))
                .spawn(move || thread.run())?,
        );
    }

    let policy = Arc::new(Mutex::new(access_policy(&config)));
    let server = Arc::new(ControlServer::bind(
        &config.daemon.socket_path,
        config.daemon.socket_mode,
        Arc::clone(&policy),
        Arc::clone(&registry),
        Arc::clone(&stopping),
    )?);
    info!(socket = %server.path().display(), drain_threads = config.drain.threads, "shmkafkad ready");
    let accept = {
        let server = Arc::clone(&server);
        std::thread::Builder::new()
            .name("shmkafkad-accept".into())
            .spawn(move || server.run())?
    };

    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    for signal in signals.forever() {
        match signal {
            SIGHUP => {
                // Reload of the access list and topics is handled by the
                // operations work; log so operators see the signal arrived.
                warn!("SIGHUP received; configuration reload is not supported by this build");
            }
            _ => {
                info!(signal, "stopping: no new clients, draining rings");
                break;
            }
        }
    }
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
    }
}
