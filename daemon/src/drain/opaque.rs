//! The per-message opaque a drain thread hands librdkafka and reads back from
//! the delivery report: encoded and decoded here only.

/// Which record a delivery report is about: the drain thread's ring slot and
/// the record's offset in that ring's data area.
///
/// Packed into librdkafka's pointer-sized `msg_opaque` as the slot in the
/// high 16 bits and the offset below. The offset (not the full 64-bit stream
/// position) is enough because every in-flight record lies within one lap
/// of the release cursor: [`Opaque::seq`] rebuilds the position from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Opaque {
    /// Index of the ring in the drain thread's slot table.
    pub slot: usize,
    /// `seq & (capacity - 1)`.
    offset: u64,
}

/// Bits below the slot number.
const SLOT_SHIFT: u32 = 48;
const OFFSET_MASK: u64 = (1 << SLOT_SHIFT) - 1;
/// Slots a drain thread can address.
pub(super) const MAX_SLOTS: usize = 1 << (u64::BITS - SLOT_SHIFT);
/// The slot of exactly-once progress records, which belong to no ring.
pub(super) const PROGRESS_SLOT: usize = MAX_SLOTS - 1;
/// Rings a drain thread can hold (every slot but [`PROGRESS_SLOT`]).
pub(super) const MAX_RING_SLOTS: usize = PROGRESS_SLOT;

// The packing needs the whole 64 bits of a pointer.
const _: () = assert!(usize::BITS == 64);

impl Opaque {
    /// The opaque of record `seq` in the ring in `slot`, whose data area is
    /// `capacity` bytes (a power of two, at most 2^48).
    pub fn new(slot: usize, seq: u64, capacity: usize) -> Self {
        debug_assert!(slot < MAX_SLOTS, "slot {slot}");
        debug_assert!(capacity.is_power_of_two() && capacity as u64 <= OFFSET_MASK + 1);
        Self {
            slot,
            offset: seq & (capacity as u64 - 1),
        }
    }

    /// The value handed to librdkafka.
    pub fn encode(self) -> usize {
        (((self.slot as u64) << SLOT_SHIFT) | self.offset) as usize
    }

    /// The inverse of [`Opaque::encode`].
    pub fn decode(raw: usize) -> Self {
        let raw = raw as u64;
        Self {
            slot: (raw >> SLOT_SHIFT) as usize,
            offset: raw & OFFSET_MASK,
        }
    }

    /// The record's stream position, given the ring's release cursor
    /// `released` (no record in flight lies before it or a lap after it) and
    /// its `capacity`.
    pub fn seq(self, released: u64, capacity: usize) -> u64 {
        let mask = capacity as u64 - 1;
        released + (self.offset.wrapping_sub(released) & mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_slot_and_position_within_a_lap() {
        let capacity = 1 << 16;
        for (slot, released, seq) in [
            (0, 0, 0),
            (7, 4096, 4096 + 8),
            (
                (MAX_SLOTS - 1),
                10 * capacity as u64 + 24,
                11 * capacity as u64 + 16,
            ),
            (3, u64::MAX - 4095 - 7, u64::MAX - 7),
        ] {
            let opaque = Opaque::decode(Opaque::new(slot, seq, capacity).encode());
            assert_eq!(opaque.slot, slot);
            assert_eq!(opaque.seq(released, capacity), seq, "released {released}");
        }
    }
}
