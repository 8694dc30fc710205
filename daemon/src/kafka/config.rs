//! librdkafka properties, passed through unchanged (as `kcat -X` does) and
//! masked when shown.

use std::fmt;

use super::error::KafkaError;
use super::handle::{cstring, NativeConf};

/// What a secret value is displayed as.
pub const MASK: &str = "[redacted]";

/// A credential read from a file: its type, not its property name, keeps it
/// out of every `Debug`, `Display` and log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The credential itself, for librdkafka only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// librdkafka global properties as `(key, value)` strings, in the order they
/// were set. Nothing is interpreted here: librdkafka validates each pair when
/// the native configuration is built, so every property librdkafka has is
/// available and its own error messages reach the user.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Later entries win, as with repeated `rd_kafka_conf_set` calls; `set`
    /// replaces in place so a key appears once.
    entries: Vec<(String, String)>,
    /// Keys whose values were set as a [`Secret`]: masked whatever their
    /// name.
    secret_keys: Vec<String>,
}

impl KafkaConfig {
    /// An empty configuration (librdkafka defaults).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a configuration from pairs, later duplicates winning.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut config = Self::new();
        for (key, value) in pairs {
            config.set(key, value);
        }
        config
    }

    /// Sets one property, replacing an earlier value of the same key.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let (key, value) = (key.into(), value.into());
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
        self
    }

    /// Sets one property from a credential; its value is masked wherever
    /// the configuration is shown.
    pub fn set_secret(&mut self, key: impl Into<String>, value: &Secret) -> &mut Self {
        let key = key.into();
        if !self.secret_keys.contains(&key) {
            self.secret_keys.push(key.clone());
        }
        self.set(key, value.expose())
    }

    /// Whether `key`'s value is masked when shown: set as a [`Secret`], or
    /// named like a credential.
    pub fn is_masked(&self, key: &str) -> bool {
        self.secret_keys.iter().any(|k| k == key) || is_secret_key(key)
    }

    /// The value set for `key`, if any (librdkafka defaults are not shown).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The properties in the order they were first set, secrets unmasked.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The properties with secret values replaced by [`MASK`], for logs.
    pub fn masked_entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries()
            .map(|(k, v)| (k, if self.is_masked(k) { MASK } else { v }))
    }

    /// The same configuration without `keys` (secrets stay masked).
    pub(crate) fn without(&self, keys: &[&str]) -> KafkaConfig {
        KafkaConfig {
            entries: self
                .entries
                .iter()
                .filter(|(k, _)| !keys.contains(&k.as_str()))
                .cloned()
                .collect(),
            secret_keys: self.secret_keys.clone(),
        }
    }

    /// Refuses what a producer built from this configuration would refuse,
    /// or could not honour in the daemon, with the same message, without
    /// connecting anywhere (for `--check-config` and start-up): see
    /// `preflight`.
    pub fn validate(&self) -> Result<(), KafkaError> {
        super::preflight::check(self)
    }

    /// Builds the native configuration; the first refused property is named
    /// in the error together with librdkafka's reason.
    pub(crate) fn to_native(&self) -> Result<NativeConf, KafkaError> {
        let mut conf = NativeConf::new();
        for (key, value) in &self.entries {
            let nul = || KafkaError::NulByte { key: key.clone() };
            let c_key = cstring(key).ok_or_else(nul)?;
            let c_value = cstring(value).ok_or_else(nul)?;
            conf.set(&c_key, &c_value)
                .map_err(|reason| KafkaError::Config {
                    key: key.clone(),
                    reason: if self.is_masked(key) && !value.is_empty() {
                        reason.replace(value.as_str(), MASK)
                    } else {
                        reason
                    },
                })?;
        }
        Ok(conf)
    }
}

/// Whether a property's value must not appear in logs: librdkafka's own
/// `_RK_SENSITIVE` properties plus anything named like a credential, so that
/// properties added by later librdkafka versions are masked too.
pub fn is_secret_key(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "sasl.username",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
        "ssl.key.location",
        "ssl.ca.pem",
        "ssl_key",
    ];
    const FRAGMENTS: &[&str] = &["password", "secret", "passphrase", "private.key", "token"];
    let key = key.to_ascii_lowercase();
    EXACT.contains(&key.as_str())
        // Keep the endpoint URL visible: it names no secret.
        || (FRAGMENTS.iter().any(|f| key.contains(f)) && !key.ends_with(".url"))
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.masked_entries()).finish()
    }
}

impl fmt::Display for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.masked_entries().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let config = KafkaConfig::from_pairs([
            ("bootstrap.servers", "127.0.0.1:9092"),
            ("sasl.password", "hunter2"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----"),
            ("sasl.oauthbearer.config", "principal=admin"),
            ("sasl.oauthbearer.client.secret", "s3"),
            (
                "sasl.oauthbearer.token.endpoint.url",
                "https://idp.example/token",
            ),
        ]);
        let shown = format!("{config} {config:?}");
        for secret in ["hunter2", "BEGIN PRIVATE", "principal=admin", "s3\""] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("127.0.0.1:9092"));
        assert!(shown.contains("https://idp.example/token"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
    }

    #[test]
    fn later_set_wins() {
        let config =
            KafkaConfig::from_pairs([("linger.ms", "5"), ("acks", "all"), ("linger.ms", "1")]);
        assert_eq!(config.get("linger.ms"), Some("1"));
        assert_eq!(config.entries().count(), 2);
    }

    #[test]
    fn invalid_key_and_value_are_named() {
        let err = KafkaConfig::from_pairs([("no.such.property", "1")])
            .validate()
            .expect_err("unknown property accepted");
        let KafkaError::Config { key, reason } = &err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(key, "no.such.property");
        assert!(
            reason.contains("No such configuration property"),
            "{reason}"
        );

        let err = KafkaConfig::from_pairs([("acks", "some")])
            .validate()
            .expect_err("invalid value accepted");
        assert!(err.to_string().contains("\"acks\""), "{err}");

        KafkaConfig::from_pairs([("acks", "all"), ("linger.ms", "5")])
            .validate()
            .expect("valid config refused");
    }

    #[test]
    fn nul_bytes_are_refused() {
        let err = KafkaConfig::from_pairs([("client.id", "a\0b")])
            .validate()
            .expect_err("NUL accepted");
        assert!(matches!(err, KafkaError::NulByte { .. }), "{err:?}");
    }
}
