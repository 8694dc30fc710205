//! End to end: while the spool cannot be written, failed records are not
//! released: they stay in the client's ring, which fills up and pushes back
//! on the client (`Error::Full`, flush timeouts), the daemon says so loudly
//! but not once per attempt, and once the spool works again every record is
//! spooled and reported. Nothing is dropped.
//!
//! Two real filesystem errors, both of which stop root too:
//! - the spool path's parent is a regular file (`ENOTDIR` on mkdir);
//! - the spool is on a tiny tmpfs that is full (`ENOSPC`); needs
//!   `mount`, skipped with a notice where it is not permitted.

use shmkafkad_test_support::spool_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shmkafka_client::{Error, Message, WhenFull};
use shmkafka_testkit::wait_until;
use shmkafka_testkit::{report_skip, MockBrokerProcess};
use spool_support::{by_seq, client, list_json, mock_broker_bin, start_daemon};

const TOPIC: &str = "spool-blocked";
const MSG_SIZE_TOO_LARGE: i32 = 10;
const RING: usize = 64 * 1024;

/// Sends oversized (so permanently failing) records until the ring is
/// full, checks that they are held, runs `unblock`, and checks that all of
/// them reach the spool and the client.
fn fill_ring_with_failures(
    daemon: &shmkafka_testkit::DaemonProcess,
    spool: &Path,
    unblock: impl FnOnce(),
) {
    let producer = client(daemon, RING, WhenFull::Fail);
    let topic = producer.topic(TOPIC).expect("topic");
    let value = vec![0xab; 2000];
    let mut seqs = Vec::new();
    let full = loop {
        let key = format!("k{}", seqs.len());
        match producer.send(&topic, &Message::new().key(key.as_bytes()).value(&value)) {
            Ok(seq) => seqs.push(seq),
            Err(e @ Error::Full { .. }) => break e,
            Err(e) => panic!("unexpected send error: {e}"),
        }
        assert!(
            seqs.len() < 1000,
            "ring never filled: failures are being released"
        );
    };
    eprintln!("ring full after {} records: {full}", seqs.len());
    assert!(seqs.len() >= 10, "only {} records fit", seqs.len());
    // Nothing is released while the spool is unwritable.
    assert!(matches!(
        producer.flush(Duration::from_millis(1500)),
        Err(Error::FlushTimeout { .. })
    ));
    assert!(producer.failures().is_empty());
    assert!(matches!(
        producer.send(&topic, &Message::new().value(&value)),
        Err(Error::Full { .. })
    ));
    wait_until("the loud spool error", Duration::from_secs(10), || {
        daemon
            .log_text()
            .contains("CANNOT WRITE THE DEAD-LETTER SPOOL")
    });

    unblock();

    let report = producer
        .flush(Duration::from_secs(30))
        .expect("flush after the spool recovered");
    let failed: Vec<u64> = report.failures.iter().map(|f| f.seq).collect();
    assert_eq!(failed, seqs, "every held record reported, in order");
    assert!(report.failures.iter().all(|f| f.code == MSG_SIZE_TOO_LARGE));
    let listed = by_seq(&list_json(spool));
    assert_eq!(listed.keys().copied().collect::<Vec<_>>(), seqs);
    for (i, seq) in seqs.iter().enumerate() {
        let rec = &listed[seq].rec;
        assert_eq!(rec.key.as_deref(), Some(format!("k{i}").as_bytes()));
        assert_eq!(rec.value.as_deref(), Some(&value[..]));
    }
    let log = daemon.log_text();
    let alarms = log.matches("CANNOT WRITE THE DEAD-LETTER SPOOL").count();
    // One line per 10 s while retrying several times a second.
    assert!(alarms <= 2, "{alarms} alarm lines: not rate-limited");
    assert!(log.contains("dead-letter spool writable again"), "{log}");
    // The ring works again.
    producer
        .send(&topic, &Message::new().value(b"small"))
        .expect("ring has room again");
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn start(dir: &Path, broker: &MockBrokerProcess, spool: &Path) -> shmkafka_testkit::DaemonProcess {
    start_daemon(
        dir,
        broker.bootstrap_servers(),
        spool,
        &[("message.max.bytes", "1000")],
        "",
    )
}

#[test]
fn spool_directory_that_cannot_exist_holds_records_in_the_ring() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker =
        MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(TOPIC, 1)]).expect("broker");
    let blocker = dir.path().join("blocker");
    std::fs::write(
        &blocker,
        b"a file where the spool's parent directory should be",
    )
    .unwrap();
    let spool = blocker.join("spool");
    let daemon = start(dir.path(), &broker, &spool);
    fill_ring_with_failures(&daemon, &spool, || {
        std::fs::remove_file(&blocker).unwrap();
    });
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_holds_records_in_the_ring() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = dir.path().join("mnt");
    let _tmpfs = match Tmpfs::mount(&mount, "1m") {
        Ok(t) => t,
        Err(e) => {
            report_skip(
                "full_disk_holds_records_in_the_ring",
                format!("cannot mount a tmpfs: {e}"),
            );
            return;
        }
    };
    let spool = mount.join("spool");
    std::fs::create_dir(&spool).unwrap();
    // Fill the filesystem to the last byte.
    let filler = mount.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let broker =
        MockBrokerProcess::start_with_binary(mock_broker_bin(), 1, &[(TOPIC, 1)]).expect("broker");
    let daemon = start(dir.path(), &broker, &spool);
    fill_ring_with_failures(&daemon, &spool, || {
        std::fs::remove_file(&filler).unwrap();
    });
    assert!(
        daemon.log_text().contains("No space left on device"),
        "the failure was not ENOSPC:\n{}",
        daemon.log_text()
    );
}
