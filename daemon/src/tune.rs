//! `shmkafkad tune check|apply`: the kernel settings the daemon needs,
//! computed from the same parsed configuration the daemon runs with.
//!
//! The recommendations are `sysctl/60-shmkafka.conf` (built in), with the
//! socket-buffer maxima raised to what `[kafka] socket.send.buffer.bytes` and
//! `socket.receive.buffer.bytes` ask for: the kernel silently caps buffers at
//! `net.core.wmem_max` / `rmem_max`. `apply` writes a drop-in into
//! `/etc/sysctl.d` that never lowers a value the host already raised, then
//! runs `sysctl --system`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use comfy_table::{presets, CellAlignment, Table};

use crate::config::Config;

/// The drop-in's recommendations, with the reasons, as shipped.
pub const DROP_IN: &str = include_str!("../../sysctl/60-shmkafka.conf");
/// The drop-in's file name under the sysctl directory.
pub const DROP_IN_NAME: &str = "60-shmkafka.conf";
/// The daemon's configuration when `--config` is not given (if it exists).
pub const DEFAULT_CONFIG: &str = "/etc/shmkafka/shmkafkad.toml";
/// Where `apply` writes (default `/etc/sysctl.d`).
pub const SYSCTL_DIR_ENV: &str = "SHMKAFKA_SYSCTL_DIR";
/// Where current values are read (default `/proc/sys`).
pub const PROC_SYS_ENV: &str = "SHMKAFKA_PROC_SYS";

/// `[kafka]` properties whose values the kernel caps, and the cap.
const BUFFER_CAPS: [(&str, &str); 2] = [
    ("socket.send.buffer.bytes", "net.core.wmem_max"),
    ("socket.receive.buffer.bytes", "net.core.rmem_max"),
];

/// One setting: its name and the value wanted (one or more numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// `net.core.wmem_max`, ...
    pub name: String,
    /// Space-separated numbers, as `/proc/sys` shows them.
    pub value: Vec<u64>,
}

/// The drop-in's settings, raised where `config` asks for larger buffers.
pub fn recommended(config: &Config) -> Result<Vec<Setting>, String> {
    let mut settings = parse_drop_in(DROP_IN)?;
    for (property, cap) in BUFFER_CAPS {
        let Some(value) = config.kafka.get(property) else {
            continue;
        };
        let text = value.to_string();
        let wanted: u64 = text
            .trim()
            .parse()
            .map_err(|_| format!("[kafka] {property} = {text} is not a number of bytes"))?;
        if let Some(setting) = settings.iter_mut().find(|s| s.name == cap) {
            if let [max] = setting.value.as_mut_slice() {
                *max = (*max).max(wanted);
            }
        }
    }
    Ok(settings)
}

/// `name = value` lines; `#` comments and blank lines skipped.
fn parse_drop_in(text: &str) -> Result<Vec<Setting>, String> {
    let mut settings = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| format!("{DROP_IN_NAME}: not `name = value`: {line}"))?;
        let value =
            parse_numbers(value).ok_or_else(|| format!("{DROP_IN_NAME}: not numbers: {line}"))?;
        settings.push(Setting {
            name: name.trim().to_owned(),
            value,
        });
    }
    Ok(settings)
}

fn parse_numbers(text: &str) -> Option<Vec<u64>> {
    let numbers: Option<Vec<u64>> = text.split_whitespace().map(|n| n.parse().ok()).collect();
    numbers.filter(|n| !n.is_empty())
}

/// A setting's current value under `proc_sys`; `None` if unreadable.
fn current(proc_sys: &Path, name: &str) -> Option<Vec<u64>> {
    let path = proc_sys.join(name.replace('.', "/"));
    parse_numbers(&std::fs::read_to_string(path).ok()?)
}

/// True if every field of `have` is at least the one of `want`.
fn at_least(have: &[u64], want: &[u64]) -> bool {
    have.len() == want.len() && have.iter().zip(want).all(|(h, w)| h >= w)
}

/// Field-wise maximum: applying never lowers what the host raised.
fn raised(have: Option<&[u64]>, want: &[u64]) -> Vec<u64> {
    match have {
        Some(have) if have.len() == want.len() => {
            have.iter().zip(want).map(|(h, w)| *h.max(w)).collect()
        }
        _ => want.to_vec(),
    }
}

fn join(values: &[u64]) -> String {
    values
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where and with what `tune` works.
#[derive(Debug, Clone)]
pub struct Tune {
    /// Recommendations.
    pub settings: Vec<Setting>,
    /// Read current values here (`/proc/sys`).
    pub proc_sys: PathBuf,
    /// Write the drop-in here (`/etc/sysctl.d`).
    pub sysctl_dir: PathBuf,
}

impl Tune {
    /// From the configuration at `config` (or [`DEFAULT_CONFIG`] if it
    /// exists, else the defaults) and the environment's directories.
    pub fn from_config_file(config: Option<&Path>) -> Result<Tune, String> {
        let config = match config {
            Some(path) => Config::load(path).map_err(|e| e.to_string())?,
            None if Path::new(DEFAULT_CONFIG).exists() => {
                Config::load(Path::new(DEFAULT_CONFIG)).map_err(|e| e.to_string())?
            }
            None => Config::default(),
        };
        let dir = |env: &str, default: &str| {
            std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from)
        };
        Ok(Tune {
            settings: recommended(&config)?,
            proc_sys: dir(PROC_SYS_ENV, "/proc/sys"),
            sysctl_dir: dir(SYSCTL_DIR_ENV, "/etc/sysctl.d"),
        })
    }

    /// The comparison table, and whether every setting is high enough.
    pub fn check(&self) -> (String, bool) {
        let mut table = Table::new();
        table.load_preset(presets::NOTHING).set_header(vec![
            "setting",
            "current",
            "recommended",
            "status",
        ]);
        let mut all_ok = true;
        for setting in &self.settings {
            let now = current(&self.proc_sys, &setting.name);
            let ok = now.as_deref().is_some_and(|n| at_least(n, &setting.value));
            all_ok &= ok;
            table.add_row(vec![
                setting.name.clone(),
                now.as_deref().map_or("unavailable".to_owned(), join),
                join(&setting.value),
                if ok { "ok" } else { "LOW" }.to_owned(),
            ]);
        }
        if let Some(column) = table.column_mut(0) {
            column.set_cell_alignment(CellAlignment::Left);
        }
        (table.trim_fmt(), all_ok)
    }

    /// The drop-in `apply` writes: each setting at least its recommendation
    /// and never below its current value.
    pub fn rendered(&self) -> String {
        let mut out = String::from(
            "# Written by `shmkafkad tune apply` from the daemon's configuration;\n\
             # why each is needed: 60-shmkafka.conf, shipped with shmkafkad.\n",
        );
        for setting in &self.settings {
            let now = current(&self.proc_sys, &setting.name);
            let _ = writeln!(
                out,
                "{} = {}",
                setting.name,
                join(&raised(now.as_deref(), &setting.value))
            );
        }
        out
    }

    /// Path of the drop-in `apply` writes.
    pub fn drop_in_path(&self) -> PathBuf {
        self.sysctl_dir.join(DROP_IN_NAME)
    }
}

/// `shmkafkad tune check`: prints the table; fails if a setting is low.
pub fn run_check(tune: &Tune) -> ExitCode {
    let (table, ok) = tune.check();
    println!("{table}");
    if ok {
        ExitCode::SUCCESS
    } else {
        println!("\nraise the LOW settings with: shmkafkad tune apply");
        ExitCode::FAILURE
    }
}

/// `shmkafkad tune apply [--dry-run]`.
pub fn run_apply(tune: &Tune, dry_run: bool) -> ExitCode {
    let path = tune.drop_in_path();
    let text = tune.rendered();
    if dry_run {
        println!(
            "would write {}:\n{text}would run: sysctl --system\n",
            path.display()
        );
        let (table, _) = tune.check();
        println!("{table}");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::create_dir_all(&tune.sysctl_dir) {
        eprintln!(
            "shmkafkad tune: {}: cannot create: {e}",
            tune.sysctl_dir.display()
        );
        return ExitCode::FAILURE;
    }
    if let Err(e) = std::fs::write(&path, &text) {
        eprintln!("shmkafkad tune: {}: cannot write: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {}", path.display());
    match std::process::Command::new("sysctl")
        .arg("--system")
        .stdout(std::process::Stdio::null())
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!("shmkafkad tune: sysctl --system: {status}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("shmkafkad tune: cannot run sysctl --system: {e}");
            return ExitCode::FAILURE;
        }
    }
    run_check(tune)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(settings: &[Setting], name: &str) -> Vec<u64> {
        settings
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .value
            .clone()
    }

    #[test]
    fn the_drop_in_parses() {
        let settings = recommended(&Config::default()).unwrap();
        assert_eq!(value(&settings, "net.core.wmem_max"), [16777216]);
        assert_eq!(
            value(&settings, "net.ipv4.tcp_wmem"),
            [4096, 65536, 16777216]
        );
        assert_eq!(value(&settings, "net.core.somaxconn"), [4096]);
    }

    #[test]
    fn configured_buffers_raise_the_maxima_however_the_toml_is_spelt() {
        for text in [
            "[kafka]\n\"socket.send.buffer.bytes\"=33554432\n\"socket.receive.buffer.bytes\" = \"50000000\"\n",
            "[kafka]\n  \"socket.send.buffer.bytes\" =33554432 # big\n\"socket.receive.buffer.bytes\"=50000000\n",
        ] {
            let config = Config::parse(text).unwrap();
            let settings = recommended(&config).unwrap();
            assert_eq!(value(&settings, "net.core.wmem_max"), [33554432], "{text}");
            assert_eq!(value(&settings, "net.core.rmem_max"), [50000000], "{text}");
        }
        // Smaller than the drop-in: the drop-in's value stays.
        let config = Config::parse("[kafka]\n\"socket.send.buffer.bytes\"=1024\n").unwrap();
        let settings = recommended(&config).unwrap();
        assert_eq!(value(&settings, "net.core.wmem_max"), [16777216]);
    }

    #[test]
    fn a_buffer_that_is_not_a_number_is_named() {
        let config = Config::parse("[kafka]\n\"socket.send.buffer.bytes\"=\"lots\"\n").unwrap();
        let err = recommended(&config).unwrap_err();
        assert!(err.contains("socket.send.buffer.bytes"), "{err}");
    }

    #[test]
    fn applying_never_lowers_a_value() {
        assert_eq!(raised(Some(&[1, 2, 3]), &[2, 1, 3]), [2, 2, 3]);
        assert_eq!(raised(None, &[5]), [5]);
        assert_eq!(raised(Some(&[1, 2]), &[5]), [5]);
        assert!(at_least(&[4096, 65536, 16777216], &[4096, 65536, 16777216]));
        assert!(!at_least(&[4096, 65536, 6291456], &[4096, 65536, 16777216]));
    }
}
