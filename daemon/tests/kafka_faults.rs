//! Back-pressure, failure classification and fault injection against the
//! in-process mock cluster.

use shmkafkad_test_support::kafka_common;

use std::time::{Duration, Instant};

use kafka_common::{poll_reports, producer};
use rdkafka_sys::rd_kafka_resp_err_t as RespErr;
use shmkafka_testkit::{consume_all, unique_name};
use shmkafkad::kafka::{
    api_key, ErrorClass, KafkaConfig, KafkaError, KafkaErrorCode, MockCluster, OutgoingMessage,
    Persistence, ProduceError, Producer, ProducerOptions, PurgeScope,
};

fn code(err: RespErr) -> KafkaErrorCode {
    KafkaErrorCode::from_raw(err as i32)
}

fn value(v: &'static [u8]) -> OutgoingMessage<'static> {
    OutgoingMessage {
        value: Some(v),
        ..Default::default()
    }
}

#[test]
fn queue_full_then_succeeds_after_poll() {
    let cluster = MockCluster::new(1).expect("cluster");
    let topic_name = unique_name("queue-full");
    cluster.create_topic(&topic_name, 1, 1).expect("topic");
    let producer = producer(
        &cluster.bootstrap_servers(),
        &[("queue.buffering.max.messages", "10"), ("linger.ms", "50")],
    );
    let topic = producer.topic(&topic_name).expect("topic");
    let payloads: Vec<Vec<u8>> = (0..11).map(|i| format!("m{i}").into_bytes()).collect();
    let msg = |i: usize| OutgoingMessage {
        value: Some(&payloads[i]),
        opaque: i,
        ..Default::default()
    };
    for i in 0..10 {
        // SAFETY: `payloads` outlives every report (polled below).
        unsafe { producer.produce_borrowed(&topic, &msg(i)) }.expect("within queue limit");
    }
    // SAFETY: as above.
    let err =
        unsafe { producer.produce_borrowed(&topic, &msg(10)) }.expect_err("11th message accepted");
    assert!(matches!(err, ProduceError::QueueFull { .. }), "{err:?}");
    assert_eq!(err.code().name(), "_QUEUE_FULL");
    assert!(err.code().is_retriable());

    // Serving the reports frees queue space; then the same record goes in.
    let mut reports = poll_reports(&producer, 10, Duration::from_secs(10));
    assert_eq!(reports.len(), 10);
    // SAFETY: as above.
    unsafe { producer.produce_borrowed(&topic, &msg(10)) }.expect("accepted after poll");
    reports.extend(poll_reports(&producer, 1, Duration::from_secs(10)));
    assert!(reports.iter().all(|r| r.result.is_ok()), "{reports:?}");

    let records = consume_all(
        &cluster.bootstrap_servers(),
        &topic_name,
        11,
        Duration::from_secs(10),
    )
    .expect("consume");
    let values: Vec<_> = records
        .iter()
        .map(|r| r.value.clone().unwrap_or_default())
        .collect();
    assert_eq!(values, payloads, "every record arrived once, in order");
}

#[test]
fn broker_rejection_is_reported_and_permanent() {
    let cluster = MockCluster::new(1).expect("cluster");
    let topic_name = unique_name("rejected");
    cluster.create_topic(&topic_name, 1, 1).expect("topic");
    let producer = producer(&cluster.bootstrap_servers(), &[]);
    let topic = producer.topic(&topic_name).expect("topic");
    // Warm up so the first Produce request carries only our probe message.
    producer
        .produce_copied(&topic, &value(b"ok"))
        .expect("produce");
    assert_eq!(
        poll_reports(&producer, 1, Duration::from_secs(10))[0].result,
        Ok(())
    );

    // Record-level rejections: only the message fails.
    // Topic-level last: librdkafka then refuses the topic at produce time.
    for (i, err) in [
        RespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
        RespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD,
        RespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
    ]
    .into_iter()
    .enumerate()
    {
        cluster.push_request_errors(api_key::PRODUCE, &[code(err)]);
        producer
            .produce_copied(
                &topic,
                &OutgoingMessage {
                    value: Some(b"rejected"),
                    opaque: 100 + i,
                    ..Default::default()
                },
            )
            .expect("enqueue");
        let reports = poll_reports(&producer, 1, Duration::from_secs(10));
        assert_eq!(reports.len(), 1, "no report for {err:?}");
        let report = &reports[0];
        assert_eq!(report.opaque, 100 + i);
        assert_eq!(report.result, Err(code(err)), "{report:?}");
        assert_eq!(report.status, Persistence::NotPersisted, "{report:?}");
        assert_eq!(
            report.result.unwrap_err().class(),
            ErrorClass::Permanent,
            "{report:?}"
        );
    }
    // After a topic authorization failure librdkafka refuses the topic
    // synchronously (until metadata says otherwise); still permanent.
    let refused = producer
        .produce_copied(&topic, &value(b"again"))
        .expect_err("accepted after authz failure");
    assert_eq!(
        refused.code(),
        code(RespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED),
        "{refused:?}"
    );
    assert_eq!(refused.class(), ErrorClass::Permanent);

    // Only the warm-up record is stored.
    let records = consume_all(
        &cluster.bootstrap_servers(),
        &topic_name,
        2,
        Duration::from_secs(3),
    )
    .expect("consume");
    assert_eq!(records.len(), 1, "{records:?}");
}

#[test]
fn unknown_topic_without_auto_create_is_permanent() {
    let cluster = MockCluster::new(1).expect("cluster");
    let producer = producer(
        &cluster.bootstrap_servers(),
        &[
            ("allow.auto.create.topics", "false"),
            ("topic.metadata.propagation.max.ms", "500"),
        ],
    );
    let topic = producer
        .topic(&unique_name("missing"))
        .expect("topic handle");
    let started = Instant::now();
    producer
        .produce_copied(&topic, &value(b"nowhere"))
        .expect("enqueued while metadata is unknown");
    let reports = poll_reports(&producer, 1, Duration::from_secs(20));
    eprintln!(
        "unknown-topic report after {:?}: {reports:?}",
        started.elapsed()
    );
    assert_eq!(reports.len(), 1);
    let err = reports[0].result.expect_err("delivered to a missing topic");
    assert!(
        matches!(
            err.name().as_ref(),
            "_UNKNOWN_TOPIC" | "UNKNOWN_TOPIC_OR_PART"
        ),
        "{err:?}"
    );
    assert!(err.is_permanent());
    // Once librdkafka knows the topic is missing it refuses at produce time.
    let refused = producer
        .produce_copied(&topic, &value(b"nowhere"))
        .expect_err("accepted for a topic known to be missing");
    assert!(
        matches!(refused, ProduceError::UnknownTopic { .. }),
        "{refused:?}"
    );
    assert_eq!(refused.class(), ErrorClass::Permanent);
}

#[test]
fn oversized_message_is_refused_at_produce() {
    let cluster = MockCluster::new(1).expect("cluster");
    let producer = producer(
        &cluster.bootstrap_servers(),
        &[("message.max.bytes", "1000")],
    );
    let topic = producer.topic("big").expect("topic");
    let big = vec![7u8; 2000];
    let err = producer
        .produce_copied(
            &topic,
            &OutgoingMessage {
                value: Some(&big),
                ..Default::default()
            },
        )
        .expect_err("oversized accepted");
    assert!(
        matches!(err, ProduceError::MessageTooLarge { .. }),
        "{err:?}"
    );
    assert!(err.code().is_permanent());
    assert_eq!(producer.in_flight(), 0);
}

#[test]
fn unreachable_broker_times_out_as_retriable() {
    let cluster = MockCluster::new(1).expect("cluster");
    let topic_name = unique_name("down");
    cluster.create_topic(&topic_name, 1, 1).expect("topic");
    let producer = producer(
        &cluster.bootstrap_servers(),
        &[("message.timeout.ms", "1500")],
    );
    let topic = producer.topic(&topic_name).expect("topic");
    producer
        .produce_copied(&topic, &value(b"before"))
        .expect("produce");
    assert_eq!(
        poll_reports(&producer, 1, Duration::from_secs(10))[0].result,
        Ok(())
    );

    cluster.set_broker_down(1).expect("down");
    producer
        .produce_copied(&topic, &value(b"during"))
        .expect("produce");
    let reports = poll_reports(&producer, 1, Duration::from_secs(15));
    assert_eq!(reports.len(), 1);
    let err = reports[0].result.expect_err("delivered to a down broker");
    assert_eq!(err.name(), "_MSG_TIMED_OUT", "{:?}", reports[0]);
    assert_eq!(err.class(), ErrorClass::Retriable);
    assert_ne!(reports[0].status, Persistence::Persisted);

    eprintln!(
        "timed out after {} ms (message.timeout.ms=1500)",
        reports[0].latency_us / 1000
    );

    // Back up: re-producing the same record succeeds once librdkafka has
    // reconnected, as the daemon's retry of a retriable failure would.
    cluster.set_broker_up(1).expect("up");
    let up_at = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        producer
            .produce_copied(&topic, &value(b"during"))
            .expect("produce");
        let reports = poll_reports(&producer, 1, Duration::from_secs(15));
        assert_eq!(reports.len(), 1);
        match reports[0].result {
            Ok(()) => break,
            Err(err) => assert!(
                err.is_retriable() && up_at.elapsed() < Duration::from_secs(30),
                "{:?}",
                reports[0]
            ),
        }
    }
    eprintln!(
        "delivered again after {attempts} attempt(s), {:?} after broker came back",
        up_at.elapsed()
    );
    let records = consume_all(
        &cluster.bootstrap_servers(),
        &topic_name,
        2,
        Duration::from_secs(10),
    )
    .expect("consume");
    let values: Vec<_> = records
        .iter()
        .map(|r| r.value.clone().unwrap_or_default())
        .collect();
    assert_eq!(values, [b"before".to_vec(), b"during".to_vec()]);
}

#[test]
fn purge_fails_queued_messages_with_retriable_reports() {
    let cluster = MockCluster::new(1).expect("cluster");
    let topic_name = unique_name("purge");
    cluster.create_topic(&topic_name, 1, 1).expect("topic");
    cluster.set_broker_down(1).expect("down");
    let producer = producer(&cluster.bootstrap_servers(), &[]);
    let topic = producer.topic(&topic_name).expect("topic");
    for i in 0..5 {
        producer
            .produce_copied(
                &topic,
                &OutgoingMessage {
                    value: Some(b"x"),
                    opaque: i,
                    ..Default::default()
                },
            )
            .expect("produce");
    }
    assert!(matches!(
        producer.flush(Duration::from_millis(200)),
        Err(KafkaError::FlushTimeout { in_flight: 5 })
    ));
    producer
        .purge(PurgeScope::QueuedAndInFlight)
        .expect("purge");
    let reports = poll_reports(&producer, 5, Duration::from_secs(5));
    assert_eq!(reports.len(), 5);
    for report in &reports {
        let err = report.result.expect_err("purged message delivered");
        assert!(err.name().starts_with("_PURGE_"), "{report:?}");
        assert!(err.is_retriable());
        assert_eq!(report.status, Persistence::NotPersisted, "{report:?}");
    }
    assert_eq!(producer.in_flight(), 0);
}

#[test]
fn fatal_error_makes_produce_fail_as_fatal() {
    let cluster = MockCluster::new(1).expect("cluster");
    let producer = producer(
        &cluster.bootstrap_servers(),
        &[("enable.idempotence", "true")],
    );
    let topic = producer.topic(&unique_name("fatal")).expect("topic");
    producer
        .produce_copied(&topic, &value(b"ok"))
        .expect("produce");
    assert_eq!(
        poll_reports(&producer, 1, Duration::from_secs(10))[0].result,
        Ok(())
    );
    assert!(producer.fatal_error().is_none());

    let injected = code(RespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    producer
        .inject_fatal_error_for_tests(injected, "test")
        .expect("inject");
    let (fatal, reason) = producer.fatal_error().expect("fatal error not raised");
    assert_eq!(fatal, injected, "{reason}");
    let err = producer
        .produce_copied(&topic, &value(b"after"))
        .expect_err("produced after fatal");
    assert!(matches!(err, ProduceError::Fatal { .. }), "{err:?}");
    assert!(err.code().is_fatal(), "{err:?}");
    // The error callback ran from poll.
    producer.poll(Duration::from_millis(100), &mut Vec::new());
    assert!(producer.error_events() >= 1);
}

#[test]
fn topic_of_another_producer_is_refused() {
    let cluster = MockCluster::new(1).expect("cluster");
    let a = producer(&cluster.bootstrap_servers(), &[]);
    let b = producer(&cluster.bootstrap_servers(), &[]);
    let topic_of_b = b.topic("t").expect("topic");
    let err = a
        .produce_copied(&topic_of_b, &value(b"x"))
        .expect_err("foreign topic accepted");
    assert!(matches!(err, ProduceError::ForeignTopic), "{err:?}");
    // A topic keeps its producer's client alive after the producer is gone.
    drop(b);
    drop(topic_of_b);
}

#[test]
fn explicit_partition_beyond_the_topic_fails() {
    let cluster = MockCluster::new(1).expect("cluster");
    let topic_name = unique_name("partitions");
    cluster.create_topic(&topic_name, 2, 1).expect("topic");
    let producer = producer(&cluster.bootstrap_servers(), &[]);
    let topic = producer.topic(&topic_name).expect("topic");
    // Learn the metadata first, so the partition count is known.
    producer
        .produce_copied(&topic, &value(b"x"))
        .expect("produce");
    assert_eq!(poll_reports(&producer, 1, Duration::from_secs(10)).len(), 1);
    let err = producer
        .produce_copied(
            &topic,
            &OutgoingMessage {
                partition: 5,
                value: Some(b"x"),
                ..Default::default()
            },
        )
        .expect_err("partition 5 of 2 accepted");
    assert!(
        matches!(err, ProduceError::UnknownPartition { .. }),
        "{err:?}"
    );
    assert!(err.code().is_permanent());
}

#[test]
fn statistics_are_collected() {
    let cluster = MockCluster::new(1).expect("cluster");
    let producer = producer(
        &cluster.bootstrap_servers(),
        &[("statistics.interval.ms", "100")],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while producer.statistics().is_none() && Instant::now() < deadline {
        producer.poll(Duration::from_millis(50), &mut Vec::new());
    }
    let json: serde_json::Value =
        serde_json::from_str(&producer.statistics().expect("no statistics")).expect("JSON");
    assert_eq!(json["name"].as_str(), Some(producer.name().as_str()));
    assert_eq!(json["type"].as_str(), Some("producer"));
}

#[test]
fn invalid_property_names_key_and_reason() {
    let config = KafkaConfig::from_pairs([
        ("bootstrap.servers", "127.0.0.1:1"),
        ("linger.ms", "forever"),
    ]);
    let err =
        Producer::new(&config, ProducerOptions::default()).expect_err("invalid config accepted");
    let KafkaError::Config { key, reason } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(key, "linger.ms");
    // librdkafka names the canonical property (queue.buffering.max.ms) in
    // its reason; the key is the one the user wrote.
    assert!(reason.contains("Invalid value"), "{reason}");
    assert!(err.to_string().contains("\"linger.ms\""), "{err}");
}
