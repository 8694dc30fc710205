//! `libshmkafka`: the C ABI of the shmkafka client library.
//!
//! This crate only links [`shmkafka_client::ffi`] into a `cdylib` and a
//! `staticlib` named `shmkafka`; the functions, their conventions and their
//! safety contracts are documented there and in `client-lib/include/shmkafka.h`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// The exported functions (re-exported so the rlib is linked and its
/// `#[no_mangle]` symbols are exported from the cdylib).
pub use shmkafka_client::ffi::*;
