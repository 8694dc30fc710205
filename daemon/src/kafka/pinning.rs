//! Pins librdkafka's own threads (main, broker, background) to a CPU list
//! through the `on_thread_start` interceptor, so they stay off the cores the
//! drain threads are pinned to.

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use rdkafka_sys::bindings as rd;
use rdkafka_sys::rd_kafka_resp_err_t as RespErr;

use super::error::KafkaError;
use super::handle::NativeConf;

/// Interceptor names must be unique per configuration; one is all we add.
const INTERCEPTOR_NAME: &CStr = c"shmkafka-thread-pinning";

/// The CPUs librdkafka's threads may run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadPinning {
    cpus: Vec<usize>,
}

impl ThreadPinning {
    /// Pins to these CPUs (any of them; the scheduler picks). Refuses an
    /// empty list and CPUs beyond what `cpu_set_t` can hold.
    pub fn new(cpus: impl IntoIterator<Item = usize>) -> Result<Self, KafkaError> {
        let mut cpus: Vec<usize> = cpus.into_iter().collect();
        cpus.sort_unstable();
        cpus.dedup();
        if cpus.is_empty() {
            return Err(KafkaError::Pinning("empty CPU list".into()));
        }
        if let Some(&cpu) = cpus.iter().find(|&&cpu| cpu >= CpuSet::count()) {
            return Err(KafkaError::Pinning(format!(
                "CPU {cpu} exceeds the cpu_set_t size {}",
                CpuSet::count()
            )));
        }
        Ok(Self { cpus })
    }

    /// The CPUs, sorted.
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    fn cpu_set(&self) -> Result<CpuSet, KafkaError> {
        let mut set = CpuSet::new();
        for &cpu in &self.cpus {
            set.set(cpu)
                .map_err(|e| KafkaError::Pinning(format!("CPU {cpu}: {e}")))?;
        }
        Ok(set)
    }
}

/// The interceptor's `ic_opaque`: boxed, and dropped only after
/// `rd_kafka_destroy` returned (no thread can start after that).
pub(crate) struct PinningState {
    cpu_set: CpuSet,
    cpus: Vec<usize>,
    /// Threads whose affinity we set, for tests and diagnostics.
    pinned: AtomicUsize,
}

impl PinningState {
    pub(crate) fn new(pinning: &ThreadPinning) -> Result<Box<Self>, KafkaError> {
        Ok(Box::new(Self {
            cpu_set: pinning.cpu_set()?,
            cpus: pinning.cpus.clone(),
            pinned: AtomicUsize::new(0),
        }))
    }

    pub(crate) fn pinned_threads(&self) -> usize {
        self.pinned.load(Ordering::Relaxed)
    }

    /// Registers the `on_new` interceptor on `conf`, which in turn registers
    /// `on_thread_start` on the client it creates (thread interceptors can
    /// only be added to a client, not to a configuration).
    ///
    /// # Safety
    /// `self` must stay alive (and not move) until the client created from
    /// `conf` has been destroyed.
    pub(crate) unsafe fn install(&self, conf: &mut NativeConf) -> Result<(), KafkaError> {
        // SAFETY: conf is live and ours; the name is NUL-terminated and
        // copied; the opaque outlives the client (caller contract).
        let err = unsafe {
            rd::rd_kafka_conf_interceptor_add_on_new(
                conf.as_ptr(),
                INTERCEPTOR_NAME.as_ptr(),
                Some(on_new),
                (self as *const Self).cast_mut().cast(),
            )
        };
        KafkaError::call("rd_kafka_conf_interceptor_add_on_new", err)
    }
}

/// # Safety
/// Called by librdkafka only, inside `rd_kafka_new`, with the opaque from
/// [`PinningState::install`].
unsafe extern "C" fn on_new(
    rk: *mut rd::rd_kafka_t,
    _conf: *const rd::rd_kafka_conf_t,
    ic_opaque: *mut c_void,
    _errstr: *mut c_char,
    _errstr_size: usize,
) -> RespErr {
    // SAFETY: rk is the client being created; the name is NUL-terminated;
    // ic_opaque is the live PinningState passed on unchanged.
    unsafe {
        rd::rd_kafka_interceptor_add_on_thread_start(
            rk,
            INTERCEPTOR_NAME.as_ptr(),
            Some(on_thread_start),
            ic_opaque,
        )
    }
}

/// Runs on each new librdkafka thread, before it does any work.
///
/// # Safety
/// Called by librdkafka only, with the opaque from [`PinningState::install`]
/// and `thread_name` NULL or NUL-terminated.
unsafe extern "C" fn on_thread_start(
    _rk: *mut rd::rd_kafka_t,
    thread_type: rd::rd_kafka_thread_type_t,
    thread_name: *const c_char,
    ic_opaque: *mut c_void,
) -> RespErr {
    // SAFETY: the opaque is the PinningState, alive until after the client
    // is destroyed; only shared access.
    let state = unsafe { &*ic_opaque.cast::<PinningState>() };
    let name = if thread_name.is_null() {
        Default::default()
    } else {
        // SAFETY: non-NULL and NUL-terminated for the call.
        unsafe { CStr::from_ptr(thread_name) }.to_string_lossy()
    };
    // Pid 0 is the calling thread: this very librdkafka thread.
    match sched_setaffinity(Pid::from_raw(0), &state.cpu_set) {
        Ok(()) => {
            state.pinned.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: super::log::LOG_TARGET, thread = %name, ?thread_type, cpus = ?state.cpus, "pinned librdkafka thread");
        }
        // Not fatal: the thread still works, only unpinned.
        Err(errno) => {
            tracing::warn!(target: super::log::LOG_TARGET, thread = %name, cpus = ?state.cpus, %errno, "could not pin librdkafka thread")
        }
    }
    // The interceptor's return value is only logged by librdkafka.
    RespErr::RD_KAFKA_RESP_ERR_NO_ERROR
}
