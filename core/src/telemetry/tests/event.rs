use std::collections::VecDeque;
use std::vec::Vec;

use crate::telemetry::{
    Event, EventKind, EventSink, NullSink, RingSink, StepOutcome, TryPush, VecSink,
};

/// A bounded FIFO standing in for the ring buffer's producer.
struct Bounded {
    items: VecDeque<Event>,
    capacity: usize,
}

impl TryPush<Event> for Bounded {
    fn try_push(&mut self, value: Event) -> Result<(), Event> {
        if self.items.len() == self.capacity {
            Err(value)
        } else {
            self.items.push_back(value);
            Ok(())
        }
    }
}

fn event(i: u32) -> Event {
    let kind = match i % 4 {
        0 => EventKind::StepStart,
        1 => EventKind::Retry { attempt: i },
        2 => EventKind::CacheHit,
        _ => EventKind::StepEnd {
            outcome: StepOutcome::Succeeded,
        },
    };
    Event::new(i, u64::from(i) * 10, kind)
}

#[test]
fn event_is_small_and_copy() {
    assert!(core::mem::size_of::<Event>() <= 24);
    let e = event(3);
    let f = e;
    assert_eq!(e, f);
}

#[test]
fn vec_sink_keeps_the_first_events_and_counts_drops() {
    for capacity in [0usize, 1, 5, 64] {
        let emitted = 40u32;
        let mut sink = VecSink::with_capacity(capacity);
        let mut taken = 0u64;
        for i in 0..emitted {
            if sink.emit(event(i)) {
                taken += 1;
            }
        }
        let kept = capacity.min(emitted as usize);
        assert_eq!(taken, kept as u64);
        assert_eq!(sink.dropped(), u64::from(emitted) - kept as u64);
        let expected: Vec<Event> = (0..kept as u32).map(event).collect();
        assert_eq!(sink.events(), &expected[..]);
        // Clearing frees room but keeps the drop count.
        sink.clear();
        assert!(sink.events().is_empty());
        assert_eq!(sink.emit(event(0)), capacity > 0);
        assert_eq!(
            sink.dropped(),
            u64::from(emitted) - kept as u64 + u64::from(capacity == 0)
        );
    }
}

#[test]
fn ring_sink_counts_exactly_what_the_producer_refused() {
    let mut sink = RingSink::new(Bounded {
        items: VecDeque::new(),
        capacity: 3,
    });
    let mut consumed = Vec::new();
    let mut refused = 0u64;
    for i in 0..if cfg!(miri) { 50 } else { 10_000 } {
        if !sink.emit(event(i)) {
            refused += 1;
        }
        // The consumer drains two of every five rounds.
        if i % 5 < 2 {
            if let Some(e) = sink.producer_mut().items.pop_front() {
                consumed.push(e);
            }
        }
    }
    assert_eq!(sink.dropped(), refused);
    assert!(refused > 0);
    let inside = sink.into_inner().items;
    // Conservation: every event was either consumed, still inside, or dropped.
    let total = consumed.len() as u64 + inside.len() as u64 + refused;
    assert_eq!(total, if cfg!(miri) { 50 } else { 10_000 });
    // FIFO order survives: steps strictly increase.
    let all: Vec<u32> = consumed
        .iter()
        .chain(inside.iter())
        .map(|e| e.step)
        .collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn null_sink_takes_everything_and_drops_nothing() {
    let mut sink = NullSink;
    assert!((0..100).all(|i| sink.emit(event(i))));
    assert_eq!(sink.dropped(), 0);
}

#[test]
fn a_mutable_reference_is_a_sink() {
    fn emit_all(mut sink: impl EventSink, n: u32) {
        for i in 0..n {
            sink.emit(event(i));
        }
    }
    let mut sink = VecSink::with_capacity(2);
    emit_all(&mut sink, 5);
    assert_eq!(sink.events().len(), 2);
    assert_eq!(sink.dropped(), 3);
}
