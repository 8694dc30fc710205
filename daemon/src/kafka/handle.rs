//! Owning wrappers of librdkafka's native handles: each one's `Drop` calls the
//! matching `*_destroy`, so raw pointers never travel beyond this module's
//! callers inside `kafka/`.

use std::ffi::{c_char, CStr, CString};
use std::ptr::NonNull;

use rdkafka_sys::bindings as rd;

/// Size of the errstr buffers librdkafka writes into; its own examples use
/// 512 and no message it formats is longer.
pub(crate) const ERRSTR_LEN: usize = 512;

/// Reads a NUL-terminated errstr buffer filled by librdkafka.
pub(crate) fn errstr_to_string(buf: &[c_char; ERRSTR_LEN]) -> String {
    // librdkafka always NUL-terminates within errstr_size; guard anyway so a
    // missing terminator cannot make us read past the buffer.
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An `rd_kafka_conf_t` not yet handed to `rd_kafka_new`.
pub(crate) struct NativeConf(NonNull<rd::rd_kafka_conf_t>);

impl NativeConf {
    pub(crate) fn new() -> Self {
        // SAFETY: rd_kafka_conf_new has no preconditions; it aborts on
        // allocation failure rather than returning NULL.
        let ptr = unsafe { rd::rd_kafka_conf_new() };
        Self(NonNull::new(ptr).expect("rd_kafka_conf_new returned NULL"))
    }

    pub(crate) fn as_ptr(&self) -> *mut rd::rd_kafka_conf_t {
        self.0.as_ptr()
    }

    /// `rd_kafka_conf_set`; the error is librdkafka's errstr.
    pub(crate) fn set(&mut self, key: &CStr, value: &CStr) -> Result<(), String> {
        let mut errstr = [0 as c_char; ERRSTR_LEN];
        // SAFETY: the conf is live and exclusively ours; key and value are
        // NUL-terminated and only read during the call (librdkafka copies
        // them); errstr is a writable buffer of the length we pass.
        let res = unsafe {
            rd::rd_kafka_conf_set(
                self.as_ptr(),
                key.as_ptr(),
                value.as_ptr(),
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if res == rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
            Ok(())
        } else {
            Err(errstr_to_string(&errstr))
        }
    }
}

impl NativeConf {
    /// `rd_kafka_conf_get`: the value of `key` (set or default), if the
    /// property exists.
    pub(crate) fn get(&self, key: &CStr) -> Option<String> {
        let mut size: usize = 0;
        // SAFETY: the conf is live; with a NULL destination librdkafka only
        // writes the needed size (including the NUL) into `size`.
        let res = unsafe {
            rd::rd_kafka_conf_get(self.as_ptr(), key.as_ptr(), std::ptr::null_mut(), &mut size)
        };
        if res != rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK || size == 0 {
            return None;
        }
        let mut buf = vec![0 as c_char; size];
        // SAFETY: `buf` is writable for `size` bytes, the size librdkafka
        // asked for; it writes a NUL-terminated string no longer than that.
        let res = unsafe {
            rd::rd_kafka_conf_get(self.as_ptr(), key.as_ptr(), buf.as_mut_ptr(), &mut size)
        };
        if res != rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
            return None;
        }
        let bytes: Vec<u8> = buf
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// librdkafka's version (`rd_kafka_version_str`) and the features this
/// build has (`builtin.features`: ssl, sasl_scram, zstd, ...), for
/// `shmkafkad --version`.
pub fn librdkafka_build() -> (String, String) {
    // SAFETY: rd_kafka_version_str returns a pointer to a static
    // NUL-terminated string.
    let version = unsafe { CStr::from_ptr(rd::rd_kafka_version_str()) }
        .to_string_lossy()
        .into_owned();
    let features = NativeConf::new()
        .get(c"builtin.features")
        .unwrap_or_default();
    (version, features)
}

impl Drop for NativeConf {
    fn drop(&mut self) {
        // SAFETY: we still own the conf: `NativeClient::new` forgets it only
        // after rd_kafka_new took ownership.
        unsafe { rd::rd_kafka_conf_destroy(self.as_ptr()) }
    }
}

/// An `rd_kafka_t`. Destroying it waits for librdkafka's threads to stop.
pub(crate) struct NativeClient(NonNull<rd::rd_kafka_t>);

// SAFETY: librdkafka documents rd_kafka_t as thread-safe: every public
// function may be called on it from any thread.
unsafe impl Send for NativeClient {}
// SAFETY: as above.
unsafe impl Sync for NativeClient {}

impl NativeClient {
    /// `rd_kafka_new`, which takes ownership of `conf` only on success.
    pub(crate) fn new(kind: rd::rd_kafka_type_t, conf: NativeConf) -> Result<Self, String> {
        let mut errstr = [0 as c_char; ERRSTR_LEN];
        // SAFETY: conf is a live configuration we own; errstr is writable for
        // the length passed.
        let ptr =
            unsafe { rd::rd_kafka_new(kind, conf.as_ptr(), errstr.as_mut_ptr(), errstr.len()) };
        match NonNull::new(ptr) {
            Some(ptr) => {
                // rd_kafka_new now owns (and will destroy) the conf.
                std::mem::forget(conf);
                Ok(Self(ptr))
            }
            None => Err(errstr_to_string(&errstr)),
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut rd::rd_kafka_t {
        self.0.as_ptr()
    }

    /// `rd_kafka_name`, e.g. `rdkafka#producer-1`.
    pub(crate) fn name(&self) -> String {
        // SAFETY: the handle is live; the returned string lives as long as it
        // and we copy it before returning.
        unsafe { CStr::from_ptr(rd::rd_kafka_name(self.as_ptr())) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for NativeClient {
    fn drop(&mut self) {
        // SAFETY: we own the handle; every NativeTopic holds an Arc that keeps
        // its client alive, so no topic handle outlives this call.
        unsafe { rd::rd_kafka_destroy(self.as_ptr()) }
    }
}

/// An `rd_kafka_topic_t`.
pub(crate) struct NativeTopic(NonNull<rd::rd_kafka_topic_t>);

// SAFETY: topic handles are reference-counted, thread-safe librdkafka
// objects; produce may use one from any thread.
unsafe impl Send for NativeTopic {}
// SAFETY: as above.
unsafe impl Sync for NativeTopic {}

impl NativeTopic {
    /// `rd_kafka_topic_new` with default topic config. The caller must keep
    /// `client` alive until this handle is dropped.
    pub(crate) fn new(client: &NativeClient, name: &CStr) -> Option<Self> {
        // SAFETY: the client is live, the name NUL-terminated and copied by
        // librdkafka; a NULL topic conf means "use the defaults".
        let ptr =
            unsafe { rd::rd_kafka_topic_new(client.as_ptr(), name.as_ptr(), std::ptr::null_mut()) };
        NonNull::new(ptr).map(Self)
    }

    pub(crate) fn as_ptr(&self) -> *mut rd::rd_kafka_topic_t {
        self.0.as_ptr()
    }
}

impl Drop for NativeTopic {
    fn drop(&mut self) {
        // SAFETY: we own this reference; the owner keeps the client alive
        // until after this drop.
        unsafe { rd::rd_kafka_topic_destroy(self.as_ptr()) }
    }
}

/// An `rd_kafka_headers_t` we still own (not yet handed to a message).
pub(crate) struct NativeHeaders(NonNull<rd::rd_kafka_headers_t>);

impl NativeHeaders {
    pub(crate) fn with_capacity(count: usize) -> Self {
        // SAFETY: no preconditions; aborts on allocation failure.
        let ptr = unsafe { rd::rd_kafka_headers_new(count) };
        Self(NonNull::new(ptr).expect("rd_kafka_headers_new returned NULL"))
    }

    /// Appends one header. librdkafka copies name and value into the header
    /// list, so neither needs to outlive the call. `None` is a null value.
    pub(crate) fn add(&mut self, name: &[u8], value: Option<&[u8]>) {
        let (value_ptr, value_len) = match value {
            Some(v) => (non_dangling(v).cast(), v.len() as isize),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: the list is live and ours; name and value are valid for the
        // lengths given (explicit lengths, so no NUL terminator is needed)
        // and only read during the call. It can only fail for a read-only
        // list, which ours is not.
        unsafe {
            rd::rd_kafka_header_add(
                self.as_ptr(),
                non_dangling(name).cast(),
                name.len() as isize,
                value_ptr,
                value_len,
            );
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut rd::rd_kafka_headers_t {
        self.0.as_ptr()
    }

    /// Gives up ownership after a message took the list.
    pub(crate) fn disown(self) {
        std::mem::forget(self);
    }
}

impl Drop for NativeHeaders {
    fn drop(&mut self) {
        // SAFETY: still ours: `disown` forgets the wrapper once a message has
        // taken the list over.
        unsafe { rd::rd_kafka_headers_destroy(self.as_ptr()) }
    }
}

/// An `rd_kafka_error_t` returned to us (e.g. by `rd_kafka_produceva`).
pub(crate) struct NativeError(NonNull<rd::rd_kafka_error_t>);

extern "C" {
    // The bindings declare this as returning the bindgen enum; a fatal error
    // may carry a broker code unknown to the enum, so read it as the raw int.
    #[link_name = "rd_kafka_error_code"]
    fn rd_kafka_error_code_raw(error: *const rd::rd_kafka_error_t) -> i32;
}

impl NativeError {
    /// Takes ownership of a possibly-NULL error pointer.
    ///
    /// # Safety
    /// `ptr` must be NULL or an error object that nothing else will destroy.
    pub(crate) unsafe fn from_ptr(ptr: *mut rd::rd_kafka_error_t) -> Option<Self> {
        NonNull::new(ptr).map(Self)
    }

    pub(crate) fn code_raw(&self) -> i32 {
        // SAFETY: the error object is live.
        unsafe { rd_kafka_error_code_raw(self.0.as_ptr()) }
    }

    pub(crate) fn is_fatal(&self) -> bool {
        // SAFETY: the error object is live.
        unsafe { rd::rd_kafka_error_is_fatal(self.0.as_ptr()) != 0 }
    }

    pub(crate) fn is_retriable(&self) -> bool {
        // SAFETY: the error object is live.
        unsafe { rd::rd_kafka_error_is_retriable(self.0.as_ptr()) != 0 }
    }

    pub(crate) fn txn_requires_abort(&self) -> bool {
        // SAFETY: the error object is live.
        unsafe { rd::rd_kafka_error_txn_requires_abort(self.0.as_ptr()) != 0 }
    }

    pub(crate) fn message(&self) -> String {
        // SAFETY: the error object is live and its string lives as long as
        // it; we copy before returning.
        let ptr = unsafe { rd::rd_kafka_error_string(self.0.as_ptr()) };
        if ptr.is_null() {
            return String::new();
        }
        // SAFETY: non-NULL, NUL-terminated, owned by the live error object.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for NativeError {
    fn drop(&mut self) {
        // SAFETY: we own the error object (see `from_ptr`).
        unsafe { rd::rd_kafka_error_destroy(self.0.as_ptr()) }
    }
}

/// A C string for a name we pass to librdkafka.
pub(crate) fn cstring(s: &str) -> Option<CString> {
    CString::new(s).ok()
}

/// Empty Rust slices have a dangling (non-NULL, but not allocated) pointer.
/// librdkafka treats a non-NULL pointer as "present" and may `memcpy` zero
/// bytes from it; point empty slices at a real static byte instead so C never
/// sees a dangling pointer, while keeping "empty" distinct from "null".
pub(crate) fn non_dangling(bytes: &[u8]) -> *const u8 {
    static EMPTY: u8 = 0;
    if bytes.is_empty() {
        &EMPTY
    } else {
        bytes.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the README promises `shmkafkad --version` shows: TLS, SASL and
    /// every codec are built in.
    #[test]
    fn the_build_has_tls_sasl_and_every_codec() {
        let (version, features) = librdkafka_build();
        assert!(version.starts_with("2."), "{version}");
        let features: Vec<&str> = features.split(',').collect();
        for wanted in [
            "ssl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "sasl_gssapi",
            "gzip",
            "snappy",
            "lz4",
            "zstd",
        ] {
            assert!(
                features.contains(&wanted),
                "{wanted} missing from {features:?}"
            );
        }
    }
}
