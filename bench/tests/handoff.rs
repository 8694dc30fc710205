//! Every `handoff` variant end to end on a few records: the producer child
//! hands its transport over, the consumer's checksum matches, and the JSON
//! and charts are written.

use std::process::Command;

#[test]
fn every_variant_hands_off_and_checks_out() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("handoff.json");
    let plots = dir.path().join("plots");
    // 100 B frames straddle the stream consumer's reads; 65536 B is larger
    // than the stream producer's batch.
    let out = Command::new(env!("CARGO_BIN_EXE_shmkafka-bench"))
        .args([
            "handoff",
            "--sizes",
            "100,65536",
            "--threads",
            "1,3",
            "--records",
            "1200",
            "--repeat",
            "1",
            "--capacity",
            "262144",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&plots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    let mut expected = vec![
        ("baseline", 1),
        ("ring", 1),
        ("ring", 3),
        ("datagram", 1),
        ("stream", 1),
    ];
    if cfg!(feature = "iceoryx2") {
        expected.push(("iceoryx2", 1));
    }
    for size in [100, 65536] {
        for &(variant, producers) in &expected {
            let m = results
                .iter()
                .find(|m| {
                    m["variant"] == variant && m["producers"] == producers && m["size"] == size
                })
                .unwrap_or_else(|| panic!("no {variant} x{producers} at {size} B"));
            assert_eq!(m["records"], 1200, "{m}");
            assert!(m["records_per_sec"].as_f64().unwrap() > 0.0, "{m}");
        }
    }
    assert_eq!(results.len(), 2 * expected.len());
    for chart in ["handoff-rate-by-size.svg", "handoff-rate-by-threads.svg"] {
        assert!(plots.join(chart).is_file(), "{chart} missing");
    }
    assert!(stdout.contains("x1/stream"), "{stdout}");
}
