//! `shmkafka-tune` (a short name for `shmkafkad tune`) recommends kernel
//! settings from the daemon's own parsed configuration, whatever the TOML's
//! spacing, compares them with the kernel's, and never lowers a value.

use shmkafkad_test_support::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{shmkafkad_bin, test_dir};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sysctl/shmkafka-tune")
}

/// A `/proc/sys` with the kernel defaults of a small host, somaxconn raised.
fn fake_proc_sys(dir: &Path) -> PathBuf {
    let root = dir.join("proc-sys");
    for (name, value) in [
        ("net/core/wmem_max", "212992"),
        ("net/core/rmem_max", "212992"),
        ("net/ipv4/tcp_wmem", "4096\t16384\t4194304"),
        ("net/ipv4/tcp_rmem", "4096\t131072\t33554432"),
        ("net/core/somaxconn", "8192"),
    ] {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{value}\n")).unwrap();
    }
    root
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("shmkafkad.toml");
    // No spaces around `=`: valid TOML that a line-based reader misses.
    std::fs::write(
        &path,
        "[kafka]\n\"bootstrap.servers\"=\"k1:9092\"\n\"socket.send.buffer.bytes\"=33554432\n\
         \"socket.receive.buffer.bytes\" = 25165824\n",
    )
    .unwrap();
    path
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .arg("--config")
        .arg(config(dir))
        .env("SHMKAFKAD", shmkafkad_bin())
        .env("SHMKAFKA_PROC_SYS", fake_proc_sys(dir))
        .env("SHMKAFKA_SYSCTL_DIR", dir.join("sysctl.d"))
        .output()
        .expect("running shmkafka-tune")
}

fn row<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .split_whitespace()
        .collect()
}

#[test]
fn check_compares_the_kernel_with_what_the_config_needs() {
    let dir = test_dir();
    let output = run(dir.path(), &["check"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a LOW setting fails:\n{text}"
    );
    assert_eq!(
        row(&text, "net.core.wmem_max"),
        ["net.core.wmem_max", "212992", "33554432", "LOW"]
    );
    assert_eq!(
        row(&text, "net.core.rmem_max"),
        ["net.core.rmem_max", "212992", "25165824", "LOW"]
    );
    assert_eq!(
        row(&text, "net.ipv4.tcp_wmem"),
        [
            "net.ipv4.tcp_wmem",
            "4096",
            "16384",
            "4194304",
            "4096",
            "65536",
            "16777216",
            "LOW"
        ]
    );
    assert_eq!(
        row(&text, "net.core.somaxconn"),
        ["net.core.somaxconn", "8192", "4096", "ok"]
    );
}

#[test]
fn apply_dry_run_shows_raised_values_and_writes_nothing() {
    let dir = test_dir();
    let output = run(dir.path(), &["apply", "--dry-run"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let target = dir.path().join("sysctl.d").join("60-shmkafka.conf");
    assert!(
        text.contains(&format!("would write {}:", target.display())),
        "{text}"
    );
    for line in [
        "net.core.wmem_max = 33554432",
        "net.core.rmem_max = 25165824",
        "net.ipv4.tcp_wmem = 4096 65536 16777216",
        // Field by field, never below what the host has.
        "net.ipv4.tcp_rmem = 4096 131072 33554432",
        "net.core.somaxconn = 8192",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
    }
    assert!(text.contains("would run: sysctl --system"), "{text}");
    assert!(!target.exists(), "a dry run writes nothing");
}

#[test]
fn the_daemon_names_a_config_it_cannot_read() {
    let dir = test_dir();
    let missing = dir.path().join("missing.toml");
    let output = Command::new(shmkafkad_bin())
        .arg("tune")
        .arg("check")
        .arg("-c")
        .arg(&missing)
        .output()
        .expect("running shmkafkad tune");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&*missing.to_string_lossy()), "{stderr}");
}
