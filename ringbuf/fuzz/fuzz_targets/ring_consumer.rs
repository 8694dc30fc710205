//! Drives the daemon's `RingConsumer` over a segment whose bytes the fuzzer
//! controls, as a hostile client controls its own ring.
//!
//! Each input builds a ring the way a client would (cursors placed anywhere
//! in the stream, then a few valid records sent through the real producer),
//! overlays arbitrary bytes on the data area and the cursors, and then runs
//! a script of consumer operations (peek, advance, mark, release, unblock,
//! in_flight_view, push_failure) interleaved with more scribbling, as a
//! client changing its ring under the daemon would.
//!
//! Checks, beyond "no panic, no out-of-bounds access": every record view the
//! consumer hands out lies inside the data area and matches the bytes there,
//! the consumer's window never exceeds one lap, and a release never frees
//! more than it holds.
//!
//! No test hook is needed: the segment is a real memfd, created once, and
//! the fuzzer writes through a second shared mapping of the same fd (what a
//! client process can do to its own ring).

#![no_main]

use std::os::fd::AsRawFd;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shmkafka_ringbuf::layout::*;
use shmkafka_ringbuf::{
    Delivery, Failure, Header, Record, RecordView, RingConsumer, Segment, SegmentOptions, WhenFull,
};

/// Smallest ring the segment accepts: small rings wrap often.
const CAPACITY: usize = MIN_CAPACITY;
const MAX_RECORD: usize = CAPACITY / 4;

struct Fixture {
    segment: Segment,
    /// A second shared, writable mapping of the segment's memfd.
    raw: memmap2::MmapRaw,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let segment = Segment::create(&SegmentOptions {
            capacity: CAPACITY,
            max_record_len: MAX_RECORD,
            name: "shmkafka-fuzz".into(),
        })
        .expect("segment");
        let raw = memmap2::MmapOptions::new()
            .len(HEADER_SIZE + CAPACITY)
            .map_raw(segment.fd().as_raw_fd())
            .expect("second mapping");
        Fixture { segment, raw }
    })
}

impl Fixture {
    fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= self.raw.len());
        // SAFETY: in bounds of the mapping (checked); fuzzing is single
        // threaded and no reference into the segment is alive across this
        // call (views are dropped before the next operation).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.raw.as_mut_ptr().add(off),
                bytes.len(),
            )
        }
    }
    fn read(&self, off: usize, len: usize) -> Vec<u8> {
        assert!(off + len <= self.raw.len());
        let mut out = vec![0u8; len];
        // SAFETY: in bounds (checked); see `write`.
        unsafe { std::ptr::copy_nonoverlapping(self.raw.as_ptr().add(off), out.as_mut_ptr(), len) }
        out
    }
    fn write_u64(&self, off: usize, v: u64) {
        self.write(off, &v.to_le_bytes());
    }
    fn reset(&self) {
        // SAFETY: as in `write`; zeroes the cursors, failure queue and data.
        unsafe {
            std::ptr::write_bytes(
                self.raw.as_mut_ptr().add(OFF_TAIL),
                0,
                HEADER_SIZE - OFF_TAIL,
            );
            std::ptr::write_bytes(self.raw.as_mut_ptr().add(HEADER_SIZE), 0, CAPACITY);
        }
    }
}

/// Reads the fuzz input front to back; zeroes once exhausted.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        b.iter_mut().for_each(|x| *x = self.byte());
        u64::from_le_bytes(b)
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Checks a view against the raw bytes of the data area.
fn check_view(fx: &Fixture, view: &RecordView<'_>) {
    let index = (view.seq() as usize) & (CAPACITY - 1);
    let key = view.key_len().unwrap_or(0);
    let value = view.value_len().unwrap_or(0);
    let headers = view.headers_len();
    let end = index + RECORD_HEADER_SIZE + key + value + headers;
    assert!(
        end <= CAPACITY,
        "view of {end} bytes runs past the data area"
    );
    assert!(
        end - index <= MAX_RECORD,
        "view larger than the record limit"
    );
    let base = HEADER_SIZE + index + RECORD_HEADER_SIZE;
    // In-place slices must be where the record is (the scribbling ops run
    // between operations, never while a view is alive, so bytes agree).
    if let Some(k) = view.key() {
        assert_eq!(k, &fx.read(base, key)[..]);
    }
    if let Some(v) = view.value() {
        assert_eq!(v, &fx.read(base + key, value)[..]);
    }
    for h in view.headers() {
        if h.is_err() {
            break;
        }
    }
    assert_eq!(view.headers_to_vec(), fx.read(base + key + value, headers));
}

fn check_window(consumer: &RingConsumer) {
    assert!(consumer.released_pos() <= consumer.drain_pos());
    assert!(consumer.drain_pos() - consumer.released_pos() <= CAPACITY as u64);
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    fx.reset();
    let mut input = Input(data);

    // 1. Where the stream starts: anywhere a real stream can be (positions
    //    count bytes ever written, so 2^56 is centuries away; the producer
    //    does not guard against a u64 overflow), 8-aligned, and empty. The
    //    consumer still sees arbitrary cursors through the overlays below.
    let shift = input.byte() % 64;
    let start = (input.u64() >> shift) & ((1 << 56) - 1) & !7;
    fx.write_u64(OFF_TAIL, start);
    fx.write_u64(OFF_RELEASED, start);

    // 2. A few honest records through the real producer.
    let producer = fx.segment.producer();
    let count = input.byte() % 16;
    for i in 0..count {
        let shape = input.byte();
        let key_len = (shape & 0x0f) as usize * 3;
        let value_len = input.u16() as usize % (MAX_RECORD / 2);
        let key = vec![b'k'; key_len];
        let value = vec![i; value_len];
        let headers = [Header {
            name: "h",
            value: (shape & 0x10 != 0).then_some(&b"hv"[..]),
        }];
        let record = Record {
            topic_id: u32::from(shape >> 5),
            partition: i32::from(shape & 3) - 1,
            timestamp_ms: i64::from(i),
            key: (shape & 0x20 == 0).then_some(&key[..]),
            value: (shape & 0x40 == 0).then_some(&value[..]),
            headers: if shape & 0x80 != 0 { &headers } else { &[] },
        };
        if producer.send(&record, WhenFull::Fail).is_err() {
            break;
        }
    }
    // A claim that is never committed (a dead producer's hole), sometimes.
    if input.byte() & 1 == 1 {
        if let Ok(slot) = producer.reserve(
            &shmkafka_ringbuf::RecordSpec {
                value_len: Some(input.byte() as usize),
                ..Default::default()
            },
            WhenFull::Fail,
        ) {
            std::mem::forget(slot);
        }
    }

    // 3. Garbage over the data area, and sometimes over the cursors.
    let overlay_at = input.u16() as usize % CAPACITY;
    let overlay_len = input.byte() as usize;
    let overlay = input.bytes(overlay_len).to_vec();
    let overlay = &overlay[..overlay.len().min(CAPACITY - overlay_at)];
    fx.write(HEADER_SIZE + overlay_at, overlay);
    match input.byte() % 8 {
        0 => fx.write_u64(OFF_TAIL, input.u64()),
        1 => fx.write_u64(OFF_RELEASED, input.u64()),
        2 => {
            let tail = u64::from_le_bytes(fx.read(OFF_TAIL, 8).try_into().unwrap());
            fx.write_u64(
                OFF_TAIL,
                tail.wrapping_add(u64::from(input.u16())).wrapping_sub(1024),
            );
        }
        _ => {}
    }

    // 4. The daemon's side.
    let Ok(mut consumer) = fx.segment.consumer() else {
        return; // refused at open: cursors inconsistent
    };
    let mut handed_out: Vec<u64> = Vec::new();
    let mut steps = 0;
    while !input.is_empty() && steps < 256 {
        steps += 1;
        match input.byte() % 10 {
            0 | 1 => {
                let advance = input.byte() & 1 == 0;
                let seq = match consumer.peek() {
                    Ok(Some(view)) => {
                        check_view(fx, &view);
                        let _ = (view.topic_id(), view.partition(), view.timestamp_ms());
                        let _ = (view.key_to_vec(), view.value_to_vec());
                        Some(view.seq())
                    }
                    Ok(None) | Err(_) => None,
                };
                if let (Some(seq), true) = (seq, advance) {
                    consumer.advance();
                    handed_out.push(seq);
                }
            }
            2 => {
                let pick = input.byte() as usize;
                let seq = if handed_out.is_empty() || pick == 255 {
                    input.u64()
                } else {
                    handed_out[pick % handed_out.len()]
                };
                let outcome = match input.byte() % 3 {
                    0 => Delivery::Delivered,
                    1 => Delivery::Failed,
                    _ => Delivery::Pending,
                };
                consumer.mark(seq, outcome);
            }
            3 => {
                let before = consumer.released_pos();
                let freed = consumer.release();
                assert_eq!(consumer.released_pos() - before, freed);
                assert!(freed <= CAPACITY as u64);
            }
            4 => {
                let _ = consumer.unblock();
            }
            5 => {
                let pick = input.byte() as usize;
                if !handed_out.is_empty() {
                    if let Some(view) = consumer.in_flight_view(handed_out[pick % handed_out.len()])
                    {
                        check_view(fx, &view);
                    }
                }
            }
            6 => {
                let _ = consumer.push_failure(Failure {
                    seq: input.u64(),
                    code: -1,
                    persistence: 1,
                });
                let _ = producer.pop_failure();
            }
            7 => {
                // The client scribbles while the daemon works.
                let at = input.u16() as usize % CAPACITY;
                let bytes = input.bytes(8).to_vec();
                let bytes = &bytes[..bytes.len().min(CAPACITY - at)];
                fx.write(HEADER_SIZE + at, bytes);
            }
            8 => {
                let which = [OFF_TAIL, OFF_RELEASED, OFF_FAILQ_HEAD, OFF_FAILQ_TAIL]
                    [input.byte() as usize % 4];
                fx.write_u64(which, input.u64());
            }
            _ => {
                let _ = (consumer.fill(), consumer.pending(), consumer.is_idle());
                if consumer.prepare_park() {
                    consumer.finish_park();
                }
            }
        }
        check_window(&consumer);
    }
});
