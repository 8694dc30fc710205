//! `shmkafkad`: parse arguments, set up logging, run the daemon.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shmkafkad::config::{Config, Overrides};
use shmkafkad::kafka::MockCluster;
use tracing::{error, info, warn};

/// Host-local Kafka producer daemon: delivers what local applications write
/// into shared-memory rings.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML); `status` reads the socket path from it.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Control socket path (overrides daemon.socket_path).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Kafka bootstrap servers (overrides kafka."bootstrap.servers").
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// librdkafka property, as `kcat -X key=value`; repeatable.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    kafka_property: Vec<String>,
    /// Demo/test mode: start librdkafka's in-memory mock cluster with N
    /// brokers in this process and produce to it. Never for production.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1")]
    embedded_broker: Option<i32>,
    /// With --embedded-broker: create topic NAME with PARTITIONS partitions
    /// (default 4) up front; repeatable. The mock cluster keeps at most
    /// 100,000 records or 5 MB per partition, so spread large demos wide.
    #[arg(long, value_name = "NAME[:PARTITIONS]")]
    embedded_topic: Vec<String>,
    /// Drain threads (overrides drain.threads).
    #[arg(long)]
    drain_threads: Option<usize>,
    /// Dead-letter spool directory (overrides spool.dir).
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (overrides metrics.listen;
    /// empty: off), e.g. `127.0.0.1:9187`.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
    /// Log filter (overrides daemon.log_level), e.g. `debug`.
    #[arg(long)]
    log_level: Option<String>,
    /// Validate the configuration, print it with secrets masked, and exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask the running daemon for its clients and counters.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Control socket of the daemon (default: daemon.socket_path of
        /// --config, else $SHMKAFKA_SOCKET, else the default path).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// The daemon's configuration file, for its socket path.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Kernel settings the daemon needs (socket buffers, listen backlog),
    /// from its configuration: compare them, or install them.
    Tune {
        #[command(subcommand)]
        command: TuneCommand,
        /// The daemon's configuration file (default:
        /// /etc/shmkafka/shmkafkad.toml if it exists).
        #[arg(long, short = 'c', global = true)]
        config: Option<PathBuf>,
    },
    /// Dead-letter spool: list, replay or purge records that failed
    /// permanently.
    Spool {
        #[command(subcommand)]
        command: shmkafkad::spool::cli::SpoolCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TuneCommand {
    /// Print current against recommended values; exit 1 if any is lower.
    Check,
    /// Write the settings into /etc/sysctl.d/60-shmkafka.conf (never
    /// lowering a value the host raised) and run `sysctl --system`.
    /// $SHMKAFKA_SYSCTL_DIR and $SHMKAFKA_PROC_SYS replace /etc/sysctl.d
    /// and /proc/sys.
    Apply {
        /// Only show what would be written.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let args = parse_args();
    if let Some(Command::Status {
        json,
        socket,
        config,
    }) = &args.command
    {
        let socket = match socket.clone().or(args.socket.clone()) {
            Some(socket) => Some(socket),
            // The daemon started with this file listens where it says.
            None => match config.as_ref().or(args.config.as_ref()) {
                Some(path) => match Config::load(path) {
                    Ok(config) => Some(config.daemon.socket_path),
                    Err(e) => {
                        eprintln!("shmkafkad status: {e}");
                        return ExitCode::from(2);
                    }
                },
                None => None,
            },
        };
        return status(socket, *json);
    }
    if let Some(Command::Tune { command, config }) = &args.command {
        let tune = match shmkafkad::tune::Tune::from_config_file(
            config.as_deref().or(args.config.as_deref()),
        ) {
            Ok(tune) => tune,
            Err(e) => {
                eprintln!("shmkafkad tune: {e}");
                return ExitCode::from(2);
            }
        };
        return match command {
            TuneCommand::Check => shmkafkad::tune::run_check(&tune),
            TuneCommand::Apply { dry_run } => shmkafkad::tune::run_apply(&tune, *dry_run),
        };
    }
    if let Some(Command::Spool { command }) = &args.command {
        let inherited = shmkafkad::spool::cli::Inherited {
            config: args.config.clone(),
            bootstrap_servers: args.bootstrap_servers.clone(),
            kafka_property: args.kafka_property.clone(),
        };
        return shmkafkad::spool::cli::run(command, &inherited);
    }
    let mut config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("shmkafkad: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    let mut overrides = Overrides {
        socket_path: args.socket.clone(),
        drain_threads: args.drain_threads,
        log_level: args.log_level.clone(),
        spool_dir: args.spool_dir.clone(),
        metrics_listen: args.metrics_listen.clone(),
        kafka: Vec::new(),
    };
    if let Some(servers) = &args.bootstrap_servers {
        overrides
            .kafka
            .push(("bootstrap.servers".to_owned(), servers.clone()));
    }
    for property in &args.kafka_property {
        let Some((key, value)) = property.split_once('=') else {
            eprintln!("shmkafkad: -X {property}: expected KEY=VALUE");
            return ExitCode::from(2);
        };
        overrides.kafka.push((key.to_owned(), value.to_owned()));
    }
    config.apply_overrides(&overrides);
    shmkafkad::logging::init(&config.daemon.log_level);

    // The embedded cluster must outlive the daemon's producers.
    let mut _embedded = None;
    if let Some(brokers) = args.embedded_broker {
        match MockCluster::new(brokers.max(1)) {
            Ok(cluster) => {
                for spec in &args.embedded_topic {
                    let (name, partitions) = match spec.split_once(':') {
                        Some((name, n)) => (name, n.parse().unwrap_or(0)),
                        None => (spec.as_str(), 4),
                    };
                    if partitions < 1 {
                        eprintln!("shmkafkad: --embedded-topic {spec}: partitions must be a positive number");
                        return ExitCode::from(2);
                    }
                    if let Err(e) = cluster.create_topic(name, partitions, 1) {
                        error!(topic = name, error = %e, "cannot create embedded topic");
                        return ExitCode::FAILURE;
                    }
                }
                let bootstrap = cluster.bootstrap_servers();
                warn!(%bootstrap, brokers, "EMBEDDED TEST BROKER: records go to librdkafka's in-memory mock cluster and vanish when shmkafkad exits; not for production");
                // Printed on stdout so scripts and tests can read it back.
                println!("embedded-broker bootstrap={bootstrap}");
                let _ = std::io::stdout().flush();
                overrides
                    .kafka
                    .push(("bootstrap.servers".to_owned(), bootstrap));
                config.apply_overrides(&overrides);
                _embedded = Some(cluster);
            }
            Err(e) => {
                error!(error = %e, "cannot start the embedded broker");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = config.validate() {
        eprintln!("shmkafkad: {e}");
        return ExitCode::from(2);
    }
    if args.check_config {
        print!("{}", config.describe());
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    info!(config = %config.describe().replace('\n', "; "), "starting");
    match shmkafkad::daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "shmkafkad failed");
            ExitCode::FAILURE
        }
    }
}

/// `--version` also names the librdkafka build and its features (`ssl`,
/// `sasl_scram`, `zstd`, ...), so an operator sees what this binary can do.
fn parse_args() -> Args {
    use clap::{CommandFactory, FromArgMatches};
    let (librdkafka, features) = shmkafkad::kafka::librdkafka_build();
    let version = format!(
        "{}\nlibrdkafka {librdkafka}\nbuiltin.features {features}",
        env!("CARGO_PKG_VERSION")
    );
    // Built once per process; clap keeps version texts as `&'static str`.
    let version: &'static str = Box::leak(version.into_boxed_str());
    let matches = Args::command()
        .version(version)
        .long_version(version)
        .get_matches();
    Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn status(socket: Option<PathBuf>, json: bool) -> ExitCode {
    use shmkafka_protocol::{
        connect, recv_message, send_message, ClientMessage, DaemonMessage, StatusRequest,
    };
    let result = (|| -> anyhow::Result<String> {
        let stream = connect(socket.as_deref())?;
        send_message(
            &stream,
            &ClientMessage::StatusRequest(StatusRequest { json }),
            None,
        )?;
        match recv_message::<DaemonMessage>(&stream)?.0 {
            DaemonMessage::StatusReply(reply) => Ok(reply.body),
            other => anyhow::bail!("unexpected answer: {other:?}"),
        }
    })();
    match result {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shmkafkad status: {e}");
            ExitCode::FAILURE
        }
    }
}
