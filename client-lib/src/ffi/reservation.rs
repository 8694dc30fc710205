//! Zero-copy writes: reserve, fill key and value in place, commit or abort.
//!
//! The Rust [`Reservation`] borrows the [`Producer`]; a C caller holds the
//! reservation in a handle with no lifetime, so the handle owns an `Arc` of
//! the producer next to the reservation. The producer cannot be dropped (so
//! the ring cannot be unmapped) while a reservation handle exists, even if
//! the caller closes the producer handle first.

use std::sync::Arc;

use super::producer::{partition_from_c, shmkafka_producer, shmkafka_topic};
use super::{deref, guard, out, shmkafka_result, Failed};
use crate::{Producer, Reservation};

/// A record reserved in the ring, being written in place. Opaque; freed by
/// exactly one of `shmkafka_reservation_commit` or
/// `shmkafka_reservation_abort`. Use from one thread at a time.
pub struct shmkafka_reservation {
    // Field order is drop order: the reservation, which borrows the
    // producer, goes first.
    reservation: Reservation<'static>,
    /// Keeps the borrowed producer alive and in place.
    producer: Arc<Producer>,
}

/// Reserves room for a record with a key of `key_len` bytes (or a null key
/// when `key_is_null` is nonzero) and likewise a value, for `partition`
/// (`SHMKAFKA_PARTITION_UNASSIGNED` or a number), stamped with the current
/// time. Fill the areas from `shmkafka_reservation_key` / `_value`, then
/// commit; abort to give the space back. A reserved record holds back
/// delivery of records reserved after it until it is committed or aborted:
/// keep reservations short. Full ring: as `shmkafka_producer_send`.
///
/// # Safety
/// `producer` and `topic` are NULL or live handles, `topic` from this
/// producer; `out_reservation` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_producer_reserve(
    producer: *const shmkafka_producer,
    topic: *const shmkafka_topic,
    key_len: usize,
    key_is_null: u8,
    value_len: usize,
    value_is_null: u8,
    partition: i32,
    out_reservation: *mut *mut shmkafka_reservation,
) -> shmkafka_result {
    guard(|| {
        // SAFETY: the caller promises NULL or live handles.
        let handle = unsafe { deref(producer, "producer") }?;
        // SAFETY: as above.
        let topic = unsafe { deref(topic, "topic") }?.check_owner(handle)?;
        let out_reservation = out(out_reservation, "out_reservation")?;
        let producer = Arc::clone(&handle.producer);
        let reservation = producer.reserve(
            topic,
            (key_is_null == 0).then_some(key_len),
            (value_is_null == 0).then_some(value_len),
            partition_from_c(partition)?,
        )?;
        // SAFETY: `reservation` borrows the `Producer` inside the Arc
        // allocation that `producer` points to. The handle built below owns
        // that Arc and drops it only after the reservation (field order, and
        // commit/abort destructure the handle and finish the reservation
        // first), so the Producer outlives the borrow; an Arc's contents
        // never move, and `Producer` is only used through `&self` until its
        // last Arc is dropped. The 'static lifetime never escapes this
        // module: callers only see raw pointers into the reserved record.
        let reservation =
            unsafe { std::mem::transmute::<Reservation<'_>, Reservation<'static>>(reservation) };
        let boxed = Box::new(shmkafka_reservation {
            reservation,
            producer,
        });
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out_reservation.write(Box::into_raw(boxed)) };
        Ok(())
    })
}

/// # Safety
/// `reservation` is NULL or a live handle not used elsewhere during `'a`.
unsafe fn reservation_mut<'a>(
    reservation: *mut shmkafka_reservation,
) -> Result<&'a mut shmkafka_reservation, Failed> {
    // SAFETY: the caller promises NULL or a live, unshared handle.
    unsafe { reservation.as_mut() }.ok_or_else(|| Failed::null("reservation"))
}

/// The key area of a reservation: `*out_ptr` is where to write
/// `*out_len` bytes (the reserved length; 0 for a null key). Valid until the
/// reservation is committed or aborted.
///
/// # Safety
/// `reservation` is NULL or a live handle used by no other thread now;
/// `out_ptr` and `out_len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_reservation_key(
    reservation: *mut shmkafka_reservation,
    out_ptr: *mut *mut u8,
    out_len: *mut usize,
) -> shmkafka_result {
    // SAFETY: forwarded from this function's own contract.
    unsafe { area(reservation, out_ptr, out_len, Reservation::key_mut) }
}

/// The value area of a reservation; as `shmkafka_reservation_key`.
///
/// # Safety
/// As `shmkafka_reservation_key`.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_reservation_value(
    reservation: *mut shmkafka_reservation,
    out_ptr: *mut *mut u8,
    out_len: *mut usize,
) -> shmkafka_result {
    // SAFETY: forwarded from this function's own contract.
    unsafe { area(reservation, out_ptr, out_len, Reservation::value_mut) }
}

/// Writes the pointer and length of the area `pick` selects.
///
/// # Safety
/// As `shmkafka_reservation_key`.
unsafe fn area(
    reservation: *mut shmkafka_reservation,
    out_ptr: *mut *mut u8,
    out_len: *mut usize,
    pick: for<'r> fn(&'r mut Reservation<'static>) -> &'r mut [u8],
) -> shmkafka_result {
    guard(|| {
        // SAFETY: the caller promises NULL or a live handle, not shared now.
        let handle = unsafe { reservation_mut(reservation) }?;
        let (out_ptr, out_len) = (out(out_ptr, "out_ptr")?, out(out_len, "out_len")?);
        let area = pick(&mut handle.reservation);
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            out_ptr.write(area.as_mut_ptr());
            out_len.write(area.len());
        }
        Ok(())
    })
}

/// Publishes the record and frees the handle; `*out_seq` (if `out_seq` is
/// not NULL) is its sequence number. Area pointers are invalid afterwards.
///
/// # Safety
/// `reservation` is NULL or a live handle, given back exactly once and not
/// used afterwards; `out_seq` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_reservation_commit(
    reservation: *mut shmkafka_reservation,
    out_seq: *mut u64,
) -> shmkafka_result {
    guard(|| {
        if reservation.is_null() {
            return Err(Failed::null("reservation"));
        }
        // SAFETY: made by Box::into_raw in reserve; the caller gives it back
        // exactly once.
        let handle = unsafe { Box::from_raw(reservation) };
        let shmkafka_reservation {
            reservation,
            producer,
        } = *handle;
        let seq = reservation.commit();
        drop(producer); // only now; see the field comment
        if !out_seq.is_null() {
            // SAFETY: non-NULL and, as the caller promises, writable.
            unsafe { out_seq.write(seq) };
        }
        Ok(())
    })
}

/// Gives the space back without publishing (the daemon steps over the
/// record) and frees the handle.
///
/// # Safety
/// `reservation` is NULL or a live handle, given back exactly once and not
/// used afterwards.
#[no_mangle]
pub unsafe extern "C" fn shmkafka_reservation_abort(
    reservation: *mut shmkafka_reservation,
) -> shmkafka_result {
    guard(|| {
        if reservation.is_null() {
            return Err(Failed::null("reservation"));
        }
        // SAFETY: as in commit.
        let handle = unsafe { Box::from_raw(reservation) };
        // Dropping aborts: the reservation field drops before the producer.
        drop(handle);
        Ok(())
    })
}
