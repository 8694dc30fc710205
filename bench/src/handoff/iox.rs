//! The iceoryx2 variant of `handoff` (cargo feature `iceoryx2`): its
//! zero-copy publish-subscribe between two processes.
//!
//! The producer child creates a publish-subscribe service of `[u8]` slices
//! (name from the parent) and its publisher, then says "ready" on the
//! control socket; the parent opens the service and creates the subscriber
//! before it says "go", so no sample is published before a subscriber is
//! connected. Per record the publisher loans a slice of exactly the message
//! size (`initial_max_slice_len` = size, static allocation), copies the
//! payload into it and sends it.
//!
//! Nothing may be lost: the service has `enable_safe_overflow(false)` and
//! the publisher `BackpressureStrategy::RetryUntilDelivered`, so `send`
//! waits while the subscriber's buffer is full; a failed loan (every chunk
//! still held by the subscriber) is retried with back-off; every `send`
//! must reach exactly one subscriber; and the consumer checksums every
//! payload byte. The publisher lives until the consumer has every sample.
//! The subscriber's buffer holds `capacity / size` samples
//! (clamped to [`MIN_BUFFER`]..=[`MAX_BUFFER`]), the same bytes in flight
//! as the other variants' rings.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use iceoryx2::port::LoanError;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSub;

use super::common::{checksum, expected_sum, pin_producer, produce_each, wait_go, Backoff, Peer};
use super::ChildArgs;

/// Fewest samples in the subscriber's buffer.
pub const MIN_BUFFER: usize = 4;
/// Most samples in the subscriber's buffer.
pub const MAX_BUFFER: usize = 1 << 16;

/// Samples the subscriber's buffer holds for `size`-byte messages.
pub fn buffer_samples(capacity: usize, size: usize) -> usize {
    (capacity / size.max(1)).clamp(MIN_BUFFER, MAX_BUFFER)
}

/// iceoryx2's errors are not all `std::error::Error + Send + Sync`.
fn iox<E: std::fmt::Debug>(what: &'static str) -> impl FnOnce(E) -> anyhow::Error {
    move |e| anyhow!("iceoryx2: {what}: {e:?}")
}

fn node() -> anyhow::Result<Node<ipc::Service>> {
    // Failures come back as errors; warnings (such as "no config file")
    // would only clutter the progress output.
    set_log_level(LogLevel::Error);
    NodeBuilder::new()
        // Ctrl-C ends the benchmark at once, as with the other variants.
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()
        .map_err(iox("create node"))
}

/// The service both sides must agree on, created by the producer and
/// opened by the consumer.
fn service(
    node: &Node<ipc::Service>,
    args: &ChildArgs,
    create: bool,
) -> anyhow::Result<PubSub<ipc::Service, [u8], ()>> {
    let name = args
        .service
        .as_deref()
        .context("the iceoryx2 variant needs --service")?;
    let name: ServiceName = name.try_into().map_err(iox("service name"))?;
    let builder = node
        .service_builder(&name)
        .publish_subscribe::<[u8]>()
        .enable_safe_overflow(false)
        .history_size(0)
        .max_publishers(1)
        .max_subscribers(1)
        .subscriber_max_borrowed_samples(1)
        .subscriber_max_buffer_size(buffer_samples(args.capacity, args.size));
    if create {
        builder.create().map_err(iox("create service"))
    } else {
        builder.open().map_err(iox("open service"))
    }
}

/// Consumer: the subscriber, polling `receive` and spinning when empty.
pub fn consume(peer: &mut Peer, args: &ChildArgs) -> anyhow::Result<(u64, Duration)> {
    let mut ready = [0u8; 1];
    (&peer.socket)
        .read_exact(&mut ready)
        .context("wait for the producer's service")?;
    ensure!(ready == *b"R", "unexpected control byte {ready:?}");
    let node = node()?;
    let service = service(&node, args, false)?;
    let subscriber = service
        .subscriber_builder()
        .buffer_size(buffer_samples(args.capacity, args.size))
        .create()
        .map_err(iox("create subscriber"))?;
    let start = peer.go()?;
    let mut sum = 0u64;
    let mut got = 0;
    while got < args.records {
        match subscriber.receive().map_err(iox("receive"))? {
            Some(sample) => {
                let payload = sample.payload();
                ensure!(
                    payload.len() == args.size,
                    "sample of {} bytes",
                    payload.len()
                );
                sum = sum.wrapping_add(checksum(payload));
                got += 1;
            }
            None => peer.idle()?,
        }
    }
    let elapsed = start.elapsed();
    // The publisher may go now.
    (&peer.socket).write_all(b"D").context("done")?;
    Ok((sum, elapsed))
}

/// Producer: one publisher thread, a loaned slice per record.
pub fn produce(socket: &UnixStream, args: &ChildArgs) -> anyhow::Result<u64> {
    ensure!(args.threads == 1, "the iceoryx2 variant has one producer");
    let node = node()?;
    let service = service(&node, args, true)?;
    let publisher = service
        .publisher_builder()
        .initial_max_slice_len(args.size)
        .allocation_strategy(AllocationStrategy::Static)
        .max_loaned_samples(1)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .map_err(iox("create publisher"))?;
    let mut control = socket;
    control.write_all(b"R").context("ready")?;
    wait_go(socket)?;
    pin_producer(&args.cpus, 0)?;
    let index_sum = produce_each(args.size, 0, args.records, |payload| {
        let mut backoff = Backoff::default();
        let sample = loop {
            match publisher.loan_slice_uninit(payload.len()) {
                Ok(sample) => break sample,
                Err(LoanError::OutOfMemory | LoanError::ExceedsMaxLoans) => backoff.snooze(),
                Err(e) => bail!("iceoryx2: loan: {e:?}"),
            }
        };
        let delivered = sample
            .write_from_slice(payload)
            .send()
            .map_err(iox("send"))?;
        ensure!(delivered == 1, "sample reached {delivered} subscribers");
        Ok(())
    })?;
    // Keep the publisher (and its data segment) until the subscriber has
    // every sample: iceoryx2 lets a subscriber drain a departed publisher,
    // but the measurement should not depend on it.
    let mut done = [0u8; 1];
    control.read_exact(&mut done).context("wait for done")?;
    Ok(expected_sum(index_sum, args.size, args.records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_holds_the_capacity_within_bounds() {
        assert_eq!(buffer_samples(1 << 20, 64), 16384);
        assert_eq!(buffer_samples(1 << 20, 65536), 16);
        assert_eq!(buffer_samples(1 << 20, 1 << 20), MIN_BUFFER);
        assert_eq!(buffer_samples(1 << 20, 8), MAX_BUFFER);
    }
}
