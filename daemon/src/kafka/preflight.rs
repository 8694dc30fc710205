//! Refusing, before the daemon starts, a configuration its producers could
//! not honour: properties that contradict how the daemon works, and
//! everything librdkafka itself checks only when a client is created.
//!
//! `rd_kafka_conf_set` checks each property alone. Whether they fit together
//! (`rd_kafka_conf_finalize`: `max.in.flight` above 5 with idempotence, OIDC
//! without its client id, ...), whether the SASL mechanism has a provider in
//! this build and the provider's own requirements (username and password for
//! PLAIN and SCRAM, the `sasl.kerberos.kinit.cmd` template), and whether the
//! TLS files load, librdkafka decides only inside `rd_kafka_new`. So the
//! check creates a producer instance and destroys it at once; see
//! [`check_instance_config`] for how it keeps that instance off the network.

use std::ffi::{c_char, c_int, CStr};

use rdkafka_sys::bindings as rd;

use super::config::KafkaConfig;
use super::error::KafkaError;
use super::handle::{cstring, NativeClient, NativeConf};
use super::log;

/// Properties the daemon cannot honour whatever their value.
const UNSUPPORTED: &[(&str, &str)] = &[(
    "transactional.id",
    "transactions are not set by hand: shmkafkad makes its own transactional ids in its \
     exactly-once mode ([exactly_once] enabled = true with a daemon_id), where each record \
     committed to a ring is produced exactly once; remove the property",
)];

/// Boolean properties the daemon cannot honour when true.
const UNSUPPORTED_WHEN_TRUE: &[(&str, &str)] = &[(
    "delivery.report.only.error",
    "shmkafkad releases a record's ring space only when its delivery report \
     arrives; with reports for failures only, delivered records would hold \
     their rings until every client blocks; remove the property",
)];

/// Refuses properties that contradict how the daemon works. Values are read
/// back from librdkafka, so its own parsing (`1`/`true`, an empty string for
/// "unset") decides.
pub(crate) fn refuse_unsupported(conf: &NativeConf) -> Result<(), KafkaError> {
    let value_of = |key: &str| cstring(key).and_then(|key| conf.get(&key));
    for (key, reason) in UNSUPPORTED {
        if value_of(key).is_some_and(|value| !value.is_empty()) {
            return Err(unsupported(key, reason));
        }
    }
    for (key, reason) in UNSUPPORTED_WHEN_TRUE {
        if value_of(key).as_deref() == Some("true") {
            return Err(unsupported(key, reason));
        }
    }
    Ok(())
}

fn unsupported(key: &str, reason: &str) -> KafkaError {
    KafkaError::Unsupported {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

/// What `--check-config` and start-up run: every property through
/// `rd_kafka_conf_set`, the daemon's own refusals, then a producer instance
/// created and destroyed, so that whatever start-up would refuse is refused
/// here, with the same message.
pub(crate) fn check(config: &KafkaConfig) -> Result<(), KafkaError> {
    refuse_unsupported(&config.to_native()?)?;
    let mut conf = check_instance_config(config).to_native()?;
    // SAFETY: conf is live and ours; the callback matches librdkafka's
    // signature and touches no opaque.
    unsafe { rd::rd_kafka_conf_set_log_cb(conf.as_ptr(), Some(check_log_cb)) };
    let kinit_key = cstring(KINIT_CMD).expect("no NUL in a property name");
    // Present only in builds with Cyrus SASL (GSSAPI).
    if let Some(kinit) = conf.get(&kinit_key) {
        let inert = cstring(&inert_kinit_cmd(&kinit)).ok_or_else(|| KafkaError::NulByte {
            key: KINIT_CMD.to_owned(),
        })?;
        conf.set(&kinit_key, &inert)
            .map_err(|reason| KafkaError::Config {
                key: KINIT_CMD.to_owned(),
                reason,
            })?;
    }
    match NativeClient::new(rd::rd_kafka_type_t::RD_KAFKA_PRODUCER, conf) {
        // Dropping it destroys it: without brokers there is nothing to wait
        // for.
        Ok(_instance) => Ok(()),
        Err(reason) => Err(attribute(config, reason)),
    }
}

/// The check instance's `log_cb`: librdkafka's messages during creation
/// (deprecated properties, for one) reach the daemon's log as they would at
/// start-up, except its notice that the instance has no brokers, which is
/// the check's own doing.
///
/// # Safety
/// As [`log::log_cb`]: called by librdkafka only.
unsafe extern "C" fn check_log_cb(
    rk: *const rd::rd_kafka_t,
    level: c_int,
    fac: *const c_char,
    buf: *const c_char,
) {
    let starts_with = |ptr: *const c_char, text: &str| {
        if ptr.is_null() {
            return false;
        }
        // SAFETY: librdkafka passes NULL (checked) or a NUL-terminated
        // string valid for the call, which bounds this borrow.
        let s = unsafe { CStr::from_ptr(ptr) };
        s.to_bytes().starts_with(text.as_bytes())
    };
    if starts_with(fac, "CONFWARN") && starts_with(buf, "No `bootstrap.servers` configured") {
        return;
    }
    // SAFETY: our caller's guarantees, passed on unchanged.
    unsafe { log::log_cb(rk, level, fac, buf) }
}

const KINIT_CMD: &str = "sasl.kerberos.kinit.cmd";

/// The configuration of the check instance: the daemon's, without brokers.
///
/// `rd_kafka_new` starts a broker thread per bootstrap address, and each
/// connects at once. Nothing librdkafka validates depends on the addresses
/// (an unparsable one is logged and skipped, never refused), so leaving them
/// out changes no verdict and keeps the check off the network.
///
/// Two other things reach out from `rd_kafka_new`:
/// - GSSAPI runs `sasl.kerberos.kinit.cmd` (against the KDC, writing the
///   ticket cache) from librdkafka's main thread as soon as it starts. The
///   check renders the same template (an unknown `%{property}` is still
///   refused) but as the body of a here-document the shell discards: see
///   [`inert_kinit_cmd`].
/// - OIDC (`sasl.oauthbearer.method=oidc`) would fetch a token from the
///   identity provider in the background. This build has no OIDC support
///   (librdkafka is built without libcurl): `rd_kafka_conf_set` refuses
///   that property, naming it, before any instance is made.
fn check_instance_config(config: &KafkaConfig) -> KafkaConfig {
    config.without(&["bootstrap.servers", "metadata.broker.list"])
}

/// `cmd` as the body of a here-document given to `:`: librdkafka renders its
/// `%{property}` placeholders exactly as it would the real command (and
/// refuses an unknown one), and `system(3)`'s shell then does nothing.
fn inert_kinit_cmd(cmd: &str) -> String {
    const END: &str = "SHMKAFKAD_CHECK_CONFIG_RUNS_NO_KINIT";
    format!(": <<'{END}'\n{cmd}\n{END}")
}

/// Names the property behind an `rd_kafka_new` refusal where librdkafka's
/// message does not (its other messages name theirs).
fn attribute(config: &KafkaConfig, reason: String) -> KafkaError {
    // rd_kafka_sasl_select_provider ("Unsupported SASL mechanism: X", "No
    // provider for SASL mechanism X") and the SCRAM provider's check
    // ("Unsupported hash function: X").
    let about_mechanism = reason.contains("SASL mechanism") || reason.contains("hash function");
    if !about_mechanism {
        return KafkaError::Refused(reason);
    }
    // The property as the configuration spells it (one is an alias of the
    // other; the last one set wins, as in librdkafka).
    let key = config
        .entries()
        .map(|(key, _)| key)
        .filter(|key| *key == "sasl.mechanism" || *key == "sasl.mechanisms")
        .last()
        .unwrap_or("sasl.mechanisms");
    let (_, features) = super::librdkafka_build();
    let built: Vec<&str> = features.split(',').collect();
    let mechanisms: Vec<&str> = [
        ("sasl_gssapi", "GSSAPI"),
        ("sasl_plain", "PLAIN"),
        ("sasl_scram", "SCRAM-SHA-256"),
        ("sasl_scram", "SCRAM-SHA-512"),
        ("sasl_oauthbearer", "OAUTHBEARER"),
    ]
    .into_iter()
    .filter(|(feature, _)| built.contains(feature))
    .map(|(_, mechanism)| mechanism)
    .collect();
    KafkaError::Unsupported {
        key: key.to_owned(),
        reason: format!(
            "{reason}; this build supports {} (names are case-sensitive)",
            mechanisms.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(pairs: &[(&str, &str)]) -> Option<String> {
        check(&KafkaConfig::from_pairs(pairs.iter().copied()))
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn transactional_id_is_refused_and_named() {
        let err = refusal(&[("transactional.id", "orders")]).expect("accepted");
        assert!(
            err.starts_with("transactional.id: transactions are not set by hand"),
            "{err}"
        );
        assert_eq!(refusal(&[("transactional.id", "")]), None);

        // A producer made without the check refuses it too.
        let Err(err) = super::super::Producer::new(
            &KafkaConfig::from_pairs([("transactional.id", "orders")]),
            Default::default(),
        ) else {
            panic!("transactional producer created");
        };
        assert!(
            matches!(&err, KafkaError::Unsupported { key, .. } if key == "transactional.id"),
            "{err}"
        );
    }

    #[test]
    fn delivery_reports_for_errors_only_are_refused() {
        for value in ["true", "1"] {
            let err = refusal(&[("delivery.report.only.error", value)]).expect(value);
            assert!(err.starts_with("delivery.report.only.error: "), "{err}");
        }
        assert_eq!(refusal(&[("delivery.report.only.error", "false")]), None);
    }

    #[test]
    fn what_only_rd_kafka_new_checks_is_refused() {
        // Idempotence (as the daemon sets it) allows at most 5 in flight.
        let err =
            refusal(&[("enable.idempotence", "true"), ("max.in.flight", "6")]).expect("accepted");
        assert!(err.contains("`max.in.flight`"), "{err}");

        let err = refusal(&[
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "PLAN"),
        ])
        .expect("accepted");
        assert!(
            err.starts_with("sasl.mechanism: Unsupported SASL mechanism: PLAN"),
            "{err}"
        );
        assert!(err.contains("PLAIN, SCRAM-SHA-256"), "{err}");

        let err = refusal(&[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanisms", "SCRAM-SHA-384"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ])
        .expect("accepted");
        assert!(
            err.starts_with("sasl.mechanisms: Unsupported hash function"),
            "{err}"
        );

        let err = refusal(&[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanisms", "PLAIN"),
        ])
        .expect("accepted");
        assert!(
            err.contains("sasl.username and sasl.password must be set"),
            "{err}"
        );

        let err = refusal(&[
            ("security.protocol", "ssl"),
            ("ssl.ca.location", "/nonexistent/ca.pem"),
        ])
        .expect("accepted");
        assert!(err.contains("ssl.ca.location"), "{err}");
    }

    /// `check_instance_config` relies on it: with OIDC built in,
    /// `rd_kafka_new` would fetch a token from the identity provider.
    #[test]
    fn oidc_is_refused_by_name_before_any_instance_is_made() {
        let err = refusal(&[
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanisms", "OAUTHBEARER"),
            ("sasl.oauthbearer.method", "oidc"),
        ])
        .expect("accepted");
        assert!(
            err.contains("\"sasl.oauthbearer.method\"")
                && err.contains("not supported in this build"),
            "{err}"
        );
    }

    #[test]
    fn a_complete_sasl_configuration_passes() {
        let ok = [
            ("bootstrap.servers", "127.0.0.1:1"),
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ];
        assert_eq!(refusal(&ok), None);
    }

    #[test]
    fn the_kinit_template_is_checked_but_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("kinit-ran");
        let gssapi = |cmd: String| {
            [
                ("security.protocol", "sasl_plaintext".to_owned()),
                ("sasl.mechanisms", "GSSAPI".to_owned()),
                ("sasl.kerberos.kinit.cmd", cmd),
            ]
        };
        let touch = format!("touch {}-%{{sasl.kerberos.principal}}", marker.display());
        let pairs = gssapi(touch);
        assert_eq!(
            refusal(
                &pairs
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect::<Vec<_>>()
            ),
            None
        );
        // librdkafka's main thread would have run it within this time.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "kinit ran: {left:?}");

        let pairs = gssapi("kinit %{no.such.property}".to_owned());
        let err = refusal(
            &pairs
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
        .expect("accepted");
        assert!(err.contains("sasl.kerberos.kinit.cmd"), "{err}");
    }
}
