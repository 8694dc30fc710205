//! Batches: many records with one claim on the ring, copied in
//! (`shmkafka_producer_send_batch`) or written in place
//! (`shmkafka_producer_reserve_batch`, then `_batch_key` / `_batch_value`,
//! `_batch_commit_one` / `_batch_commit`, or `_batch_abort`).
//!
//! The batch handle owns an `Arc` of the producer next to the Rust batch,
//! as a single reservation handle does (see `reservation.rs`).

use std::sync::Arc;

use super::producer::{shmkafka_producer, shmkafka_record, shmkafka_topic};
use super::{deref, guard, out, shmkafka_result, Failed};
use crate::{BatchReservation, Producer, RecordLayout};

/// Records reserved together and written in place. Opaque; freed by
/// exactly one of `shmkafka_batch_commit` or `shmkafka_batch_abort`. Use
/// from one thread at a time.
pub struct shmkafka_batch {
    // Field order is drop order: the batch, which borrows the producer,
    // goes first.
    batch: BatchReservation<'static>,
    /// Keeps the borrowed producer alive and in place.
    producer: Arc<Producer>,
}

/// Copies `count` records into the ring with a single claim and commits
/// them; `*out_first_seq` (if not NULL) is the first one's sequence number,
/// the others follow it. All or none; the batch may take at most half the
/// ring (`SHMKAFKA_RESULT_TOO_LARGE` otherwise). Full ring: as
/// `shmkafka_producer_send`.
///
/// # Safety
/// `producer` and `topic` are NULL or live handles, `topic` from this
/// producer; `records` is readable for `count` entries whose buffers are
/// readable for their lengths; `out_first_seq` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_producer_send_batch(
    producer: *const shmkafka_producer,
    topic: *const shmkafka_topic,
    records: *const shmkafka_record,
    count: usize,
    out_first_seq: *mut u64,
) -> shmkafka_result {
    guard(|| {
        // SAFETY: the caller promises NULL or live handles.
        let handle = unsafe { deref(producer, "producer") }?;
        // SAFETY: as above.
        let topic = unsafe { deref(topic, "topic") }?.check_owner(handle)?;
        // SAFETY: the caller promises `count` readable entries.
        let records = unsafe { slice(records, count, "records") }?;
        let messages = records
            .iter()
            // SAFETY: the caller promises readable buffers and headers.
            .map(|record| unsafe { record.message() })
            .collect::<Result<Vec<_>, _>>()?;
        let first = handle.producer.send_batch(topic, &messages)?;
        if !out_first_seq.is_null() {
            // SAFETY: non-NULL and, as the caller promises, writable.
            unsafe { out_first_seq.write(first) };
        }
        Ok(())
    })
}

/// Reserves room for `count` records with a single claim: record `i` has a
/// key of `key_lens[i]` bytes and a value of `value_lens[i]` bytes (a
/// length of `SIZE_MAX` means null), no headers, the partitioner's choice
/// of partition and the current time. Fill each with `shmkafka_batch_key` /
/// `_value`, then commit. The batch may take at most half the ring.
///
/// # Safety
/// `producer` and `topic` are NULL or live handles, `topic` from this
/// producer; `key_lens` and `value_lens` are readable for `count` entries;
/// `out_batch` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_producer_reserve_batch(
    producer: *const shmkafka_producer,
    topic: *const shmkafka_topic,
    key_lens: *const usize,
    value_lens: *const usize,
    count: usize,
    out_batch: *mut *mut shmkafka_batch,
) -> shmkafka_result {
    guard(|| {
        // SAFETY: the caller promises NULL or live handles.
        let handle = unsafe { deref(producer, "producer") }?;
        // SAFETY: as above.
        let topic = unsafe { deref(topic, "topic") }?.check_owner(handle)?;
        // SAFETY: the caller promises `count` readable entries in each.
        let key_lens = unsafe { slice(key_lens, count, "key_lens") }?;
        // SAFETY: as above.
        let value_lens = unsafe { slice(value_lens, count, "value_lens") }?;
        let out_batch = out(out_batch, "out_batch")?;
        let nullable = |len: usize| (len != usize::MAX).then_some(len);
        let layouts: Vec<RecordLayout<'_>> = key_lens
            .iter()
            .zip(value_lens)
            .map(|(&key, &value)| RecordLayout {
                key_len: nullable(key),
                value_len: nullable(value),
                ..RecordLayout::default()
            })
            .collect();
        let producer = Arc::clone(&handle.producer);
        let batch = producer.reserve_batch(topic, &layouts)?;
        // SAFETY: as in `shmkafka_producer_reserve`: the batch borrows the
        // Producer inside the Arc allocation the handle owns, and the handle
        // drops the batch first (field order; commit and abort finish the
        // batch before the Arc). The 'static lifetime never escapes this
        // module.
        let batch = unsafe {
            std::mem::transmute::<BatchReservation<'_>, BatchReservation<'static>>(batch)
        };
        let boxed = Box::new(shmkafka_batch { batch, producer });
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out_batch.write(Box::into_raw(boxed)) };
        Ok(())
    })
}

/// # Safety
/// `ptr` is NULL or readable for `len` entries.
unsafe fn slice<'a, T>(ptr: *const T, len: usize, argument: &str) -> Result<&'a [T], Failed> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failed::null(argument));
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(Failed::invalid(format!(
            "{argument}: {len} entries is impossibly many"
        )));
    }
    // SAFETY: non-NULL, size within isize::MAX, and the caller promises
    // `len` readable entries.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// # Safety
/// `batch` is NULL or a live handle not used elsewhere during `'a`.
unsafe fn batch_mut<'a>(batch: *mut shmkafka_batch) -> Result<&'a mut shmkafka_batch, Failed> {
    // SAFETY: the caller promises NULL or a live, unshared handle.
    unsafe { batch.as_mut() }.ok_or_else(|| Failed::null("batch"))
}

/// Writes the pointer and length of record `index`'s area that `pick`
/// selects.
///
/// # Safety
/// As `shmkafka_batch_key`.
unsafe fn area(
    batch: *mut shmkafka_batch,
    index: usize,
    out_ptr: *mut *mut u8,
    out_len: *mut usize,
    pick: for<'r> fn(&'r mut BatchReservation<'static>, usize) -> &'r mut [u8],
) -> shmkafka_result {
    guard(|| {
        // SAFETY: the caller promises NULL or a live handle, not shared now.
        let handle = unsafe { batch_mut(batch) }?;
        let (out_ptr, out_len) = (out(out_ptr, "out_ptr")?, out(out_len, "out_len")?);
        if index >= handle.batch.len() {
            return Err(Failed::invalid(format!(
                "index {index} of a batch of {}",
                handle.batch.len()
            )));
        }
        let area = pick(&mut handle.batch, index);
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            out_ptr.write(area.as_mut_ptr());
            out_len.write(area.len());
        }
        Ok(())
    })
}

/// The key area of record `index`: `*out_ptr` is where to write `*out_len`
/// bytes. Valid until the batch is committed or aborted.
///
/// # Safety
/// `batch` is NULL or a live handle used by no other thread now; `out_ptr`
/// and `out_len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_batch_key(
    batch: *mut shmkafka_batch,
    index: usize,
    out_ptr: *mut *mut u8,
    out_len: *mut usize,
) -> shmkafka_result {
    // SAFETY: forwarded from this function's own contract.
    unsafe { area(batch, index, out_ptr, out_len, BatchReservation::key_mut) }
}

/// The value area of record `index`; as `shmkafka_batch_key`.
///
/// # Safety
/// As `shmkafka_batch_key`.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_batch_value(
    batch: *mut shmkafka_batch,
    index: usize,
    out_ptr: *mut *mut u8,
    out_len: *mut usize,
) -> shmkafka_result {
    // SAFETY: forwarded from this function's own contract.
    unsafe { area(batch, index, out_ptr, out_len, BatchReservation::value_mut) }
}

/// Publishes every record of the batch and frees the handle;
/// `*out_first_seq` (if not NULL) is the first one's sequence number, the
/// others follow it. Area pointers are invalid afterwards.
///
/// # Safety
/// `batch` is NULL or a live handle, given back exactly once and not used
/// afterwards; `out_first_seq` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_batch_commit(
    batch: *mut shmkafka_batch,
    out_first_seq: *mut u64,
) -> shmkafka_result {
    guard(|| {
        if batch.is_null() {
            return Err(Failed::null("batch"));
        }
        // SAFETY: made by Box::into_raw in reserve_batch; the caller gives it
        // back exactly once.
        let handle = unsafe { Box::from_raw(batch) };
        let shmkafka_batch { batch, producer } = *handle;
        let first = batch.commit();
        drop(producer); // only now; see the field comment
        if !out_first_seq.is_null() {
            // SAFETY: non-NULL and, as the caller promises, writable.
            unsafe { out_first_seq.write(first) };
        }
        Ok(())
    })
}

/// Gives the space of every record back without publishing them and frees
/// the handle.
///
/// # Safety
/// As `shmkafka_batch_commit`.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_batch_abort(batch: *mut shmkafka_batch) -> shmkafka_result {
    guard(|| {
        if batch.is_null() {
            return Err(Failed::null("batch"));
        }
        // SAFETY: as in commit.
        let handle = unsafe { Box::from_raw(batch) };
        // Dropping aborts: the batch field drops before the producer.
        drop(handle);
        Ok(())
    })
}
