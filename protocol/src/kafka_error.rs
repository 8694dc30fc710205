//! Names and descriptions of librdkafka's error codes, for clients that
//! learn of a failed record as a bare `rd_kafka_resp_err_t` (e.g. -192, or a
//! broker code such as 29) but do not link librdkafka.
//!
//! The table is generated from librdkafka's own `rd_kafka_get_err_descs` (see
//! `table.rs`), and the daemon's tests compare it with the librdkafka the
//! daemon links, code by code, so the two cannot drift apart.
//!
//! ```
//! use shmkafka_protocol::kafka_error::{error_description, error_name};
//!
//! assert_eq!(error_name(-192), Some("_MSG_TIMED_OUT"));
//! assert_eq!(error_description(-192), Some("Local: Message timed out"));
//! assert_eq!(error_name(29), Some("TOPIC_AUTHORIZATION_FAILED"));
//! assert_eq!(error_name(31_000), None);
//! ```

mod table;

/// One row of librdkafka's error table.
struct ErrorEntry {
    code: i32,
    name: &'static str,
    description: &'static str,
}

fn lookup(code: i32) -> Option<&'static ErrorEntry> {
    table::ERRORS
        .binary_search_by_key(&code, |entry| entry.code)
        .ok()
        .map(|index| &table::ERRORS[index])
}

/// librdkafka's name for an error code, as `rd_kafka_err2name` gives it
/// (e.g. "_MSG_TIMED_OUT"), or None for a code librdkafka does not define.
pub fn error_name(code: i32) -> Option<&'static str> {
    lookup(code).map(|entry| entry.name)
}

/// librdkafka's description, as `rd_kafka_err2str` gives it (e.g.
/// "Local: Message timed out"), or None for a code librdkafka does not
/// define.
pub fn error_description(code: i32) -> Option<&'static str> {
    lookup(code).map(|entry| entry.description)
}

/// Every code the table defines, ascending.
pub fn codes() -> impl Iterator<Item = i32> {
    table::ERRORS.iter().map(|entry| entry.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_ascending_so_binary_search_finds_every_row() {
        assert!(table::ERRORS.windows(2).all(|w| w[0].code < w[1].code));
        for entry in table::ERRORS {
            assert_eq!(error_name(entry.code), Some(entry.name));
        }
    }

    #[test]
    fn markers_without_a_description_are_not_codes() {
        // `__BEGIN` and `__END` delimit librdkafka's local codes.
        assert_eq!(error_name(-200), None);
        assert_eq!(error_name(-100), None);
        assert_eq!(error_description(-100), None);
        assert_eq!(error_name(0), Some("NO_ERROR"));
        assert_eq!(error_description(0), Some("Success"));
    }
}
