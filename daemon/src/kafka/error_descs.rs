//! librdkafka's own list of the error codes it defines
//! (`rd_kafka_get_err_descs`): the source of the client-side table in
//! `shmkafka_protocol::kafka_error`, which must answer as librdkafka does
//! without linking it.

use std::ffi::CStr;

use rdkafka_sys::bindings as rd;

/// One error code librdkafka defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorDescription {
    /// The `rd_kafka_resp_err_t` value.
    pub code: i32,
    /// The enum name without `RD_KAFKA_RESP_ERR_`, as `rd_kafka_err2name`
    /// gives it: `_MSG_TIMED_OUT`, `TOPIC_AUTHORIZATION_FAILED`.
    pub name: &'static str,
    /// The description, as `rd_kafka_err2str` gives it.
    pub description: &'static str,
}

/// Every code librdkafka defines, in ascending order of code.
///
/// librdkafka's table is indexed by `code - RD_KAFKA_RESP_ERR__BEGIN` and has
/// gaps (zeroed entries) and two markers (`__BEGIN`, `__END`) without a
/// description; for those `rd_kafka_err2name`/`rd_kafka_err2str` answer a
/// formatted "unknown" string, so they are left out here as well.
pub fn librdkafka_error_descriptions() -> Vec<ErrorDescription> {
    let mut table: *const rd::rd_kafka_err_desc = std::ptr::null();
    let mut count: usize = 0;
    // SAFETY: both out-pointers are valid for writes; librdkafka stores a
    // pointer to its static array and the array's length.
    unsafe { rd::rd_kafka_get_err_descs(&mut table, &mut count) };
    if table.is_null() {
        return Vec::new();
    }
    // SAFETY: librdkafka's array is static, never freed, and holds `count`
    // initialised entries.
    let entries = unsafe { std::slice::from_raw_parts(table, count) };
    entries
        .iter()
        .filter(|entry| !entry.name.is_null() && !entry.desc.is_null())
        .map(|entry| ErrorDescription {
            // Read as the raw integer, not as the bindgen enum, so that a
            // librdkafka newer than these bindings cannot produce an invalid
            // enum value.
            // SAFETY: `code` is the first field of `rd_kafka_err_desc`, a C
            // enum with the size and alignment of an i32.
            code: unsafe { std::ptr::addr_of!(entry.code).cast::<i32>().read() },
            name: static_c_str(entry.name),
            description: static_c_str(entry.desc),
        })
        .collect()
}

fn static_c_str(ptr: *const std::ffi::c_char) -> &'static str {
    // SAFETY: the caller passes a non-null pointer from librdkafka's static
    // error table: NUL-terminated string literals, never freed.
    let s: &'static CStr = unsafe { CStr::from_ptr(ptr) };
    // librdkafka's names and descriptions are ASCII literals.
    s.to_str().unwrap_or("(not UTF-8)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_local_and_broker_codes_as_err2name_and_err2str_name_them() {
        let descriptions = librdkafka_error_descriptions();
        let timed_out = descriptions.iter().find(|d| d.code == -192).unwrap();
        assert_eq!(timed_out.name, "_MSG_TIMED_OUT");
        assert_eq!(timed_out.description, "Local: Message timed out");
        let authz = descriptions.iter().find(|d| d.code == 29).unwrap();
        assert_eq!(authz.name, "TOPIC_AUTHORIZATION_FAILED");
        assert!(descriptions.windows(2).all(|w| w[0].code < w[1].code));
        assert!(!descriptions
            .iter()
            .any(|d| d.code == -200 || d.code == -100));
    }
}
