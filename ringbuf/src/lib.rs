//! # shmkafka-ringbuf
//!
//! The shared-memory record ring between shmkafka clients and `shmkafkad`.
//!
//! A client process creates a [`Segment`] (a sealed memfd holding a header
//! page and a power-of-two data area) and passes its fd to the daemon. Any
//! number of client threads write records through [`RingProducer`]s: claim
//! space with one atomic, write in place, publish with a release store. The
//! daemon reads them in place through the single [`RingConsumer`], hands the
//! bytes to Kafka, and releases the space only once each record is
//! acknowledged or has failed.
//!
//! ```
//! use shmkafka_ringbuf::{Outcome, Record, Segment, SegmentOptions, WhenFull};
//!
//! let segment = Segment::create(&SegmentOptions::with_capacity(1 << 16))?;
//! let producer = segment.producer();
//! let seq = producer.send(
//!     &Record { topic_id: 0, value: Some(b"hello"), ..Record::default() },
//!     WhenFull::Fail,
//! )?;
//! assert_eq!(seq, 0); // records are numbered 0, 1, 2, ...
//!
//! let mut consumer = segment.consumer()?;
//! let record = consumer.peek()?.expect("committed");
//! assert_eq!((record.seq(), record.value()), (seq, Some(&b"hello"[..])));
//! let pos = record.pos(); // how the consumer names it
//! consumer.advance();
//! consumer.mark(pos, &Outcome::delivered(0, 0, 0));
//! consumer.release();
//! assert_eq!(producer.released(), producer.tail());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The same algorithm runs on heap memory ([`heap_ring`]) for tests, and on
//! loom atomics under `cfg(loom)` for model checking.

#![deny(missing_docs)]

mod batch;
mod consumer;
mod error;
mod failure;
pub mod layout;
mod memory;
mod producer;
mod record;
mod report;
mod ring;
#[cfg(not(loom))]
mod segment;
mod sync;
#[cfg(not(loom))]
mod wait;

pub use batch::BatchSlot;
pub use consumer::{RecordView, RingConsumer, MAX_IN_FLIGHT};
pub use error::{RecordError, ReserveError};
pub use failure::Failure;
pub use layout::PARTITION_UNASSIGNED;
pub use producer::{RingProducer, Slot, WhenFull};
pub use record::{Delivery, Header, HeaderIter, Outcome, RawHeader, Record, RecordSpec};
pub use report::{DeliveryReport, ReportReader};
pub use ring::{heap_ring, heap_ring_with};
#[cfg(not(loom))]
pub use segment::{CreateError, OpenError, Segment, SegmentOptions};
#[cfg(loom)]
#[doc(hidden)]
pub use sync::futex_wakes;
#[cfg(not(loom))]
pub use wait::park_any;
