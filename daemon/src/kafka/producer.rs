//! The librdkafka producer: by-reference produce, delivery reports collected
//! by poll, flush and purge.

use std::ffi::{c_int, c_void};
use std::sync::Arc;
use std::time::Duration;

use rdkafka_sys::bindings as rd;
use rdkafka_sys::rd_kafka_resp_err_t as RespErr;
use rdkafka_sys::rd_kafka_vtype_t as VType;

use super::callbacks::{self, CallbackState, StatisticsFeed};
use super::config::KafkaConfig;
use super::delivery::{opaque_to_ptr, DeliveryReport};
use super::error::{KafkaError, KafkaErrorCode, ProduceError};
use super::handle::{cstring, non_dangling, NativeClient, NativeError, NativeHeaders, NativeTopic};
use super::pinning::{PinningState, ThreadPinning};
use super::preflight;

/// `RD_KAFKA_PARTITION_UA`: let the configured partitioner choose.
pub const PARTITION_UNASSIGNED: i32 = -1;

/// Settings that are not librdkafka properties.
#[derive(Debug, Clone, Default)]
pub struct ProducerOptions {
    /// Pin librdkafka's own threads to these CPUs.
    pub thread_pinning: Option<ThreadPinning>,
    /// Publish statistics into this feed rather than a new one: a producer
    /// that replaces another keeps its readers (metrics) up to date.
    pub statistics: Option<StatisticsFeed>,
    /// Make a transactional producer with this `transactional.id` (the
    /// exactly-once mode derives it; users cannot set the property).
    pub transactional_id: Option<String>,
}

/// A header as `(name, value)`; a `None` value is a Kafka null header value.
pub type Header<'a> = (&'a [u8], Option<&'a [u8]>);

/// One record to produce. `None` key or value is a Kafka null; `Some(&[])`
/// is an empty one.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingMessage<'a> {
    /// A partition, or [`PARTITION_UNASSIGNED`].
    pub partition: i32,
    /// Copied by librdkafka during the produce call.
    pub key: Option<&'a [u8]>,
    /// Referenced, not copied, by [`Producer::produce_borrowed`].
    pub value: Option<&'a [u8]>,
    /// Milliseconds since the epoch; 0 means "now".
    pub timestamp_ms: i64,
    /// Copied by librdkafka during the produce call.
    pub headers: &'a [Header<'a>],
    /// Returned unchanged in the message's [`DeliveryReport`].
    pub opaque: usize,
}

impl Default for OutgoingMessage<'_> {
    fn default() -> Self {
        Self {
            partition: PARTITION_UNASSIGNED,
            key: None,
            value: None,
            timestamp_ms: 0,
            headers: &[],
            opaque: 0,
        }
    }
}

/// Which messages [`Producer::purge`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeScope {
    /// Messages not yet sent (`_PURGE_QUEUE` reports).
    Queued,
    /// Also messages sent but not acknowledged (`_PURGE_INFLIGHT` reports:
    /// they may still be written by the broker).
    QueuedAndInFlight,
}

/// Everything a client's callbacks may touch, in one allocation that topics
/// share so no topic handle can outlive its client.
struct ProducerInner {
    // Field order is drop order: the client, whose destroy joins librdkafka's
    // threads, must go before the states its callbacks and interceptor point
    // into.
    client: NativeClient,
    callbacks: Box<CallbackState>,
    pinning: Option<Box<PinningState>>,
}

/// A librdkafka producer instance.
///
/// `Send + Sync`: librdkafka is thread-safe, and delivery reports are
/// collected under a lock. Reports go to whichever thread calls
/// [`Producer::poll`], so the daemon polls each producer from one thread.
pub struct Producer {
    inner: Arc<ProducerInner>,
}

/// A topic handle of one producer (`rd_kafka_topic_t`). It keeps its producer's
/// native client alive, so it may be stored next to the producer freely.
pub struct Topic {
    // Dropped before `owner` (field order), as librdkafka requires.
    native: NativeTopic,
    owner: Arc<ProducerInner>,
    name: String,
}

impl Topic {
    /// The topic name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn timeout_ms(timeout: Duration) -> c_int {
    c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX)
}

impl Producer {
    /// Creates a producer from `config`, with our delivery-report, log, error
    /// and statistics callbacks installed (statistics arrive only if the
    /// config sets `statistics.interval.ms`).
    pub fn new(config: &KafkaConfig, options: ProducerOptions) -> Result<Self, KafkaError> {
        let mut conf = config.to_native()?;
        preflight::refuse_unsupported(&conf)?;
        if let Some(id) = &options.transactional_id {
            let value = cstring(id).ok_or_else(|| KafkaError::NulByte {
                key: "transactional.id".into(),
            })?;
            conf.set(c"transactional.id", &value)
                .map_err(|reason| KafkaError::Config {
                    key: "transactional.id".into(),
                    reason,
                })?;
        }
        let callbacks = Box::new(CallbackState::publishing_to(options.statistics.as_ref()));
        let pinning = options
            .thread_pinning
            .as_ref()
            .map(PinningState::new)
            .transpose()?;
        // SAFETY: conf is live and ours. The callbacks are plain extern "C"
        // functions matching librdkafka's signatures; the opaque is the boxed
        // state, which `ProducerInner` drops only after the client.
        unsafe {
            rd::rd_kafka_conf_set_dr_msg_cb(conf.as_ptr(), Some(callbacks::dr_msg_cb));
            rd::rd_kafka_conf_set_error_cb(conf.as_ptr(), Some(callbacks::error_cb));
            rd::rd_kafka_conf_set_stats_cb(conf.as_ptr(), Some(callbacks::stats_cb));
            rd::rd_kafka_conf_set_log_cb(conf.as_ptr(), Some(callbacks::producer_log_cb));
            rd::rd_kafka_conf_set_opaque(conf.as_ptr(), callbacks.as_opaque());
        }
        if let Some(pinning) = &pinning {
            // SAFETY: the boxed state is stored in `ProducerInner`, which drops
            // it after the client.
            unsafe { pinning.install(&mut conf)? };
        }
        let client = NativeClient::new(rd::rd_kafka_type_t::RD_KAFKA_PRODUCER, conf)
            .map_err(KafkaError::ClientCreation)?;
        tracing::debug!(client = %client.name(), config = %config, "librdkafka producer created");
        Ok(Self {
            inner: Arc::new(ProducerInner {
                client,
                callbacks,
                pinning,
            }),
        })
    }

    /// The native handle, for this module's other files.
    pub(super) fn native_ptr(&self) -> *mut rd::rd_kafka_t {
        self.inner.client.as_ptr()
    }

    /// librdkafka's instance name, e.g. `rdkafka#producer-1`.
    pub fn name(&self) -> String {
        self.inner.client.name()
    }

    /// A handle for `name`. Creating the same topic twice is cheap (librdkafka
    /// shares the object); keep one per topic anyway.
    pub fn topic(&self, name: &str) -> Result<Topic, KafkaError> {
        let c_name = cstring(name).ok_or_else(|| KafkaError::TopicName(name.to_owned()))?;
        let native = NativeTopic::new(&self.inner.client, &c_name).ok_or_else(|| {
            KafkaError::TopicCreation {
                topic: name.to_owned(),
                // SAFETY: no preconditions; reads this thread's last librdkafka
                // error, set by the failed rd_kafka_topic_new just above.
                code: KafkaErrorCode::from_enum(unsafe { rd::rd_kafka_last_error() }),
            }
        })?;
        Ok(Topic {
            native,
            owner: Arc::clone(&self.inner),
            name: name.to_owned(),
        })
    }

    /// Enqueues `msg` with its value passed by reference (neither
    /// `RD_KAFKA_MSG_F_COPY` nor `F_FREE`). Key and headers are copied into
    /// librdkafka's message during the call (`rd_kafka_msg_new00` copies the
    /// key next to the message struct; `rd_kafka_header_add` copies names and
    /// values), so only the value must outlive it.
    ///
    /// On `Err` nothing was enqueued, no delivery report will come, and the
    /// value is no longer referenced.
    ///
    /// # Safety
    /// On `Ok`, the bytes of `msg.value` must stay valid and unmodified until
    /// the delivery report carrying `msg.opaque` has been returned by
    /// [`Producer::poll`] (librdkafka reads them when it builds the request,
    /// possibly several times on retries), or until the native client is
    /// destroyed (this `Producer` and all its `Topic`s dropped): destruction
    /// discards outstanding messages without reports and joins librdkafka's
    /// threads, after which nothing references the bytes.
    pub unsafe fn produce_borrowed(
        &self,
        topic: &Topic,
        msg: &OutgoingMessage<'_>,
    ) -> Result<(), ProduceError> {
        self.produce_with_flags(topic, msg, 0)
    }

    /// Enqueues a copy of `msg` (`RD_KAFKA_MSG_F_COPY`): the safe variant, for
    /// tests, replays and values that do not live in a ring.
    pub fn produce_copied(
        &self,
        topic: &Topic,
        msg: &OutgoingMessage<'_>,
    ) -> Result<(), ProduceError> {
        self.produce_with_flags(topic, msg, rd::RD_KAFKA_MSG_F_COPY)
    }

    /// Shared body of both produce calls. Without `F_COPY` in `flags` the
    /// value is borrowed past the call, so only `produce_borrowed`, whose
    /// caller took on that contract, passes 0.
    fn produce_with_flags(
        &self,
        topic: &Topic,
        msg: &OutgoingMessage<'_>,
        flags: c_int,
    ) -> Result<(), ProduceError> {
        if !Arc::ptr_eq(&topic.owner, &self.inner) {
            return Err(ProduceError::ForeignTopic);
        }
        let headers = (!msg.headers.is_empty()).then(|| {
            let mut list = NativeHeaders::with_capacity(msg.headers.len());
            for &(name, value) in msg.headers {
                list.add(name, value);
            }
            list
        });
        let bytes = |b: Option<&[u8]>| match b {
            Some(b) => rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                ptr: non_dangling(b).cast_mut().cast::<c_void>(),
                size: b.len(),
            },
            None => rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                ptr: std::ptr::null_mut(),
                size: 0,
            },
        };
        let vu = |vtype, u| rd::rd_kafka_vu_t { vtype, u };
        type U = rd::rd_kafka_vu_s__bindgen_ty_1;
        let vus = [
            vu(
                VType::RD_KAFKA_VTYPE_RKT,
                U {
                    rkt: topic.native.as_ptr(),
                },
            ),
            vu(
                VType::RD_KAFKA_VTYPE_PARTITION,
                U {
                    i32_: msg.partition,
                },
            ),
            vu(
                VType::RD_KAFKA_VTYPE_VALUE,
                U {
                    mem: bytes(msg.value),
                },
            ),
            vu(
                VType::RD_KAFKA_VTYPE_KEY,
                U {
                    mem: bytes(msg.key),
                },
            ),
            vu(
                VType::RD_KAFKA_VTYPE_TIMESTAMP,
                U {
                    i64_: msg.timestamp_ms,
                },
            ),
            vu(
                VType::RD_KAFKA_VTYPE_OPAQUE,
                U {
                    ptr: opaque_to_ptr(msg.opaque),
                },
            ),
            vu(VType::RD_KAFKA_VTYPE_MSGFLAGS, U { i: flags }),
            vu(
                VType::RD_KAFKA_VTYPE_HEADERS,
                U {
                    headers: headers
                        .as_ref()
                        .map_or(std::ptr::null_mut(), NativeHeaders::as_ptr),
                },
            ),
        ];
        // A NULL HEADERS entry would be taken as "no headers" too, but leaving
        // it out skips librdkafka's header bookkeeping entirely.
        let count = if headers.is_some() {
            vus.len()
        } else {
            vus.len() - 1
        };
        // SAFETY: the client and topic are live (the topic belongs to this
        // client, checked above); every pointer in `vus` is valid for the
        // call: key and header bytes are copied by librdkafka, and the value's
        // lifetime beyond the call is the caller's contract (or copied with
        // F_COPY). The returned error, if any, becomes ours.
        let error = unsafe {
            NativeError::from_ptr(rd::rd_kafka_produceva(
                self.inner.client.as_ptr(),
                vus.as_ptr(),
                count,
            ))
        };
        match error {
            None => {
                // The message owns the header list now.
                if let Some(headers) = headers {
                    headers.disown();
                }
                Ok(())
            }
            // On failure the header list stays ours and is destroyed by drop.
            Some(error) => Err(ProduceError::classify(
                KafkaErrorCode::from_raw(error.code_raw()),
                error.is_fatal(),
                error.message(),
            )),
        }
    }

    /// Serves librdkafka's queued events (waiting up to `timeout` for the
    /// first), then moves all collected delivery reports, including those
    /// collected by [`Producer::flush`], to the end of `out`. Returns how many
    /// it moved.
    pub fn poll(&self, timeout: Duration, out: &mut Vec<DeliveryReport>) -> usize {
        // SAFETY: the client is live; callbacks only touch `CallbackState`.
        unsafe { rd::rd_kafka_poll(self.inner.client.as_ptr(), timeout_ms(timeout)) };
        self.inner.callbacks.take_reports(out)
    }

    /// Waits until every enqueued message has its delivery report (which the
    /// next [`Producer::poll`] returns), or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        // SAFETY: the client is live; flush serves callbacks like poll.
        let err = unsafe { rd::rd_kafka_flush(self.inner.client.as_ptr(), timeout_ms(timeout)) };
        match err {
            RespErr::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
            RespErr::RD_KAFKA_RESP_ERR__TIMED_OUT => Err(KafkaError::FlushTimeout {
                in_flight: self.in_flight(),
            }),
            other => KafkaError::call("rd_kafka_flush", other),
        }
    }

    /// Messages (and requests) waiting for a delivery report or to be sent
    /// (`rd_kafka_outq_len`).
    pub fn in_flight(&self) -> i32 {
        // SAFETY: the client is live.
        unsafe { rd::rd_kafka_outq_len(self.inner.client.as_ptr()) }
    }

    /// Fails outstanding messages without waiting; their reports (with
    /// `_PURGE_QUEUE` / `_PURGE_INFLIGHT`) arrive through [`Producer::poll`].
    /// For shutdown after a flush timed out.
    pub fn purge(&self, scope: PurgeScope) -> Result<(), KafkaError> {
        let flags = match scope {
            PurgeScope::Queued => rd::RD_KAFKA_PURGE_F_QUEUE,
            PurgeScope::QueuedAndInFlight => {
                rd::RD_KAFKA_PURGE_F_QUEUE | rd::RD_KAFKA_PURGE_F_INFLIGHT
            }
        };
        // SAFETY: the client is live.
        let err = unsafe { rd::rd_kafka_purge(self.inner.client.as_ptr(), flags) };
        KafkaError::call("rd_kafka_purge", err)
    }

    /// The fatal error raised on this instance, if any. After one, every
    /// produce fails with [`ProduceError::Fatal`]: replace the producer.
    pub fn fatal_error(&self) -> Option<(KafkaErrorCode, String)> {
        // SAFETY: the client is live.
        unsafe { callbacks::fatal_error(self.inner.client.as_ptr()) }
    }

    /// Raises a fatal error as librdkafka would (`rd_kafka_test_fatal_error`),
    /// for testing the daemon's recovery. Refuses codes librdkafka does not
    /// know.
    pub fn inject_fatal_error_for_tests(
        &self,
        code: KafkaErrorCode,
        reason: &str,
    ) -> Result<(), KafkaError> {
        let known = code.known().ok_or(KafkaError::Call {
            operation: "rd_kafka_test_fatal_error",
            code,
        })?;
        let reason = cstring(reason).ok_or_else(|| KafkaError::NulByte {
            key: "reason".into(),
        })?;
        // SAFETY: the client is live; reason is NUL-terminated and copied.
        let err = unsafe {
            rd::rd_kafka_test_fatal_error(self.inner.client.as_ptr(), known, reason.as_ptr())
        };
        KafkaError::call("rd_kafka_test_fatal_error", err)
    }

    /// The latest statistics JSON (needs `statistics.interval.ms` > 0; it is
    /// delivered by poll).
    pub fn statistics(&self) -> Option<String> {
        self.inner.callbacks.statistics()
    }

    /// A handle on [`Producer::statistics`] for another thread (metrics).
    pub fn statistics_feed(&self) -> StatisticsFeed {
        self.inner.callbacks.statistics_feed()
    }

    /// Why the latest transaction failed, if librdkafka said (see
    /// `CallbackState::take_txn_error`); taken, so each failure is seen once.
    pub fn take_txn_error(&self) -> Option<KafkaErrorCode> {
        let name = self.inner.callbacks.take_txn_error()?;
        super::error_descs::librdkafka_error_descriptions()
            .into_iter()
            .find(|d| d.name == name)
            .map(|d| KafkaErrorCode::from_raw(d.code))
    }

    /// How many times librdkafka's error callback fired.
    pub fn error_events(&self) -> u64 {
        self.inner.callbacks.errors_seen()
    }

    /// How many librdkafka threads the pinning interceptor has pinned.
    pub fn pinned_threads(&self) -> usize {
        self.inner
            .pinning
            .as_ref()
            .map_or(0, |p| p.pinned_threads())
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}
