//! `shmkafkad spool ...`: the subcommands and their exit codes.
//!
//! Exit codes: 0 done; 1 records remain that could not be replayed, or a
//! file could not be processed; 2 usage or configuration error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::purge::PurgeScope;
use super::replay::{ReplayOptions, DEFAULT_REPLAY_TIMEOUT};
use super::{list, purge, replay, time};
use crate::config::Config;

/// The `spool` subcommands.
#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// List spooled records: file, offset, failure time, topic, partition,
    /// key preview, value size, error.
    List {
        /// Spool directory (default: `[spool] dir` of --config, else
        /// /var/lib/shmkafka/spool).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Daemon configuration file, for the spool directory.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// One JSON object per line, with full key, value and headers (hex).
        #[arg(long)]
        json: bool,
    },
    /// Produce spooled records again with the daemon's librdkafka settings;
    /// acknowledged ones are removed, failed ones stay.
    Replay {
        /// Spool directory (default as for `list`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Daemon configuration file: its [kafka] settings are used.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Kafka bootstrap servers (overrides the config file).
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// librdkafka property, as `kcat -X key=value`; repeatable.
        #[arg(short = 'X', value_name = "KEY=VALUE")]
        kafka_property: Vec<String>,
        /// Only records of this topic.
        #[arg(long)]
        topic: Option<String>,
        /// How long to wait for the delivery reports of one file, in ms.
        #[arg(long, default_value_t = DEFAULT_REPLAY_TIMEOUT.as_millis() as u64)]
        timeout_ms: u64,
    },
    /// Delete spooled records for good.
    Purge {
        /// Spool directory (default as for `list`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Daemon configuration file, for the spool directory.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Only records that failed before this time: RFC 3339
        /// (2024-05-01T12:00:00Z), a date (2024-05-01) or @UNIX_SECONDS.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        before: Option<String>,
        /// Every record.
        #[arg(long)]
        all: bool,
        /// Confirm: without it nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
}

/// Top-level flags given before `spool` (`shmkafkad -c FILE spool ...`);
/// the subcommand's own flags win.
#[derive(Debug, Clone, Default)]
pub struct Inherited {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--bootstrap-servers`.
    pub bootstrap_servers: Option<String>,
    /// `-X`.
    pub kafka_property: Vec<String>,
}

/// Runs a `spool` subcommand.
pub fn run(command: &SpoolCommand, inherited: &Inherited) -> ExitCode {
    match run_inner(command, inherited) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("shmkafkad spool: {message}");
            ExitCode::from(2)
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, String> {
    match path {
        Some(path) => Config::load(path).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

fn spool_dir(dir: &Option<PathBuf>, config: &Config) -> PathBuf {
    dir.clone().unwrap_or_else(|| config.spool.dir.clone())
}

fn failure_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run_inner(command: &SpoolCommand, inherited: &Inherited) -> Result<ExitCode, String> {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    match command {
        SpoolCommand::List { dir, config, json } => {
            let config = load_config(config.as_ref().or(inherited.config.as_ref()))?;
            let dir = spool_dir(dir, &config);
            let listed = list::list(&dir, *json, &mut out, &mut err)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            if !*json {
                eprintln!("{} records in {} files", listed.records, listed.files);
            }
            Ok(failure_code(listed.problems > 0))
        }
        SpoolCommand::Replay {
            dir,
            config,
            bootstrap_servers,
            kafka_property,
            topic,
            timeout_ms,
        } => {
            let mut config = load_config(config.as_ref().or(inherited.config.as_ref()))?;
            if let Some(servers) = bootstrap_servers
                .as_ref()
                .or(inherited.bootstrap_servers.as_ref())
            {
                config.set_kafka("bootstrap.servers", servers);
            }
            for property in inherited.kafka_property.iter().chain(kafka_property) {
                let (key, value) = property
                    .split_once('=')
                    .ok_or_else(|| format!("-X {property}: expected KEY=VALUE"))?;
                config.set_kafka(key, value);
            }
            config.validate().map_err(|e| e.to_string())?;
            let options = ReplayOptions {
                dir: spool_dir(dir, &config),
                topic: topic.clone(),
                kafka: config.kafka_config(),
                timeout: Duration::from_millis(*timeout_ms),
            };
            let done = replay::replay(&options, &mut err).map_err(|e| e.to_string())?;
            eprintln!(
                "replayed: {} delivered and removed, {} failed, {} unreplayable (kept), {} files with problems",
                done.delivered, done.failed, done.unreplayable, done.problems
            );
            Ok(failure_code(
                done.failed + done.unreplayable + done.problems > 0,
            ))
        }
        SpoolCommand::Purge {
            dir,
            config,
            before,
            all,
            yes,
        } => {
            let config = load_config(config.as_ref().or(inherited.config.as_ref()))?;
            let dir = spool_dir(dir, &config);
            let scope = match (before, all) {
                (_, true) => PurgeScope::All,
                (Some(before), false) => PurgeScope::FailedBefore(time::parse_time(before)?),
                (None, false) => return Err("give --before TIME or --all".into()),
            };
            if !yes {
                return Err(format!(
                    "purging deletes records from {} for good; add --yes to confirm",
                    dir.display()
                ));
            }
            let purged = purge::purge(&dir, scope, &mut err)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            eprintln!("purged {} records, {} kept", purged.records, purged.kept);
            Ok(failure_code(purged.problems > 0))
        }
    }
}
