//! The spsc ring against a capacity-bounded `VecDeque`.
//!
//! Program format: the first byte picks the capacity (`2 << (byte % 5)`, so 2 to 32) and,
//! with its top bit, starts both indices a few steps short of `usize::MAX` so that they wrap.
//! Each following byte is an operation (`byte % 8`), some of which read one more byte as their
//! argument:
//!
//! | op | operation | checked against the model |
//! |----|-----------|---------------------------|
//! | 0, 1 | `push` | `Ok` iff there is room; `Err(Full)` hands back the same item |
//! | 2, 3 | `pop` | the front item, or `None` |
//! | 4 | `push_batch` of `arg % (2 * capacity + 1)` items | moved `min(n, free)`, the rest left in the iterator |
//! | 5 | `pop_batch` with `max = arg % (2 * capacity + 1)` (`usize::MAX` for arg 255) | the front items, in order |
//! | 6 | `len`, `free_slots`, `is_empty`, `is_full`, `capacity` on both handles | the model's length |
//! | 7 | drop the producer (`arg` even) or the consumer (odd) | the other handle is abandoned |
//!
//! Every item counts itself alive; after every operation the live count equals the model's
//! length, and it is 0 once both handles are gone (each item dropped exactly once).

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use core::cell::Cell;

use crate::ring::spsc::{channel_at, Consumer, Producer};
use crate::ring::Full;

/// An item that counts how many of its kind are alive.
#[derive(Debug)]
struct Item {
    id: u32,
    live: Rc<Cell<usize>>,
}

impl Item {
    fn new(id: u32, live: &Rc<Cell<usize>>) -> Self {
        live.set(live.get() + 1);
        Self {
            id,
            live: Rc::clone(live),
        }
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        let live = self.live.get();
        assert!(live > 0, "item {} dropped twice", self.id);
        self.live.set(live - 1);
    }
}

/// The ring under test, the model, and the item bookkeeping.
struct Program {
    producer: Option<Producer<Item>>,
    consumer: Option<Consumer<Item>>,
    model: VecDeque<u32>,
    capacity: usize,
    id_next: u32,
    live: Rc<Cell<usize>>,
}

/// Runs `data` as an operation program against the ring and its model.
pub fn run(data: &[u8]) {
    let Some((&setup, mut ops)) = data.split_first() else {
        return;
    };
    let capacity = 2usize << (setup % 5);
    let index_start = if setup & 0x80 != 0 {
        usize::MAX - usize::from((setup >> 3) & 0x0f)
    } else {
        0
    };
    let (producer, consumer) = channel_at::<Item>(capacity, index_start).expect("valid capacity");
    let mut program = Program {
        producer: Some(producer),
        consumer: Some(consumer),
        model: VecDeque::with_capacity(capacity),
        capacity,
        id_next: 0,
        live: Rc::new(Cell::new(0)),
    };
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        let mut arg = || {
            let (&byte, rest) = ops.split_first().unwrap_or((&0, &[]));
            ops = rest;
            byte
        };
        match op % 8 {
            0 | 1 => program.push(),
            2 | 3 => program.pop(),
            4 => {
                let n = usize::from(arg()) % (2 * capacity + 1);
                program.push_batch(n);
            }
            5 => {
                let byte = arg();
                let max = if byte == 255 {
                    usize::MAX
                } else {
                    usize::from(byte) % (2 * capacity + 1)
                };
                program.pop_batch(max);
            }
            6 => program.check_lengths(),
            _ => {
                if arg() % 2 == 0 {
                    program.producer = None;
                } else {
                    program.consumer = None;
                }
                program.check_abandoned();
            }
        }
        if program.producer.is_none() && program.consumer.is_none() {
            break;
        }
        assert_eq!(program.live.get(), program.model.len(), "live items");
    }
    program.producer = None;
    program.consumer = None;
    assert_eq!(program.live.get(), 0, "every item dropped exactly once");
}

impl Program {
    fn push(&mut self) {
        let Some(producer) = self.producer.as_mut() else {
            return;
        };
        let id = self.id_next;
        self.id_next += 1;
        match producer.push(Item::new(id, &self.live)) {
            Ok(()) => {
                assert!(self.model.len() < self.capacity, "push into a full ring");
                self.model.push_back(id);
            }
            Err(Full(item)) => {
                assert_eq!(self.model.len(), self.capacity, "Full with room left");
                assert_eq!(item.id, id, "Full handed back another item");
            }
        }
    }

    fn pop(&mut self) {
        let Some(consumer) = self.consumer.as_mut() else {
            return;
        };
        let popped = consumer.pop().map(|item| item.id);
        assert_eq!(popped, self.model.pop_front(), "pop");
    }

    fn push_batch(&mut self, n: usize) {
        let Some(producer) = self.producer.as_mut() else {
            return;
        };
        let id_start = self.id_next;
        let n_u32 = u32::try_from(n).expect("small batch");
        let live = &self.live;
        let mut items = (id_start..id_start + n_u32).map(|id| Item::new(id, live));
        let moved = producer.push_batch(&mut items);
        let free = self.capacity - self.model.len();
        assert_eq!(moved, n.min(free), "push_batch moved");
        assert_eq!(
            items.len(),
            n - moved,
            "push_batch took an item it could not store"
        );
        let moved_u32 = u32::try_from(moved).expect("small batch");
        self.model.extend(id_start..id_start + moved_u32);
        // The first item left behind is the next id: nothing was skipped.
        if moved < n {
            assert_eq!(items.next().map(|item| item.id), Some(id_start + moved_u32));
        }
        self.id_next = id_start + n_u32;
    }

    fn pop_batch(&mut self, max: usize) {
        let Some(consumer) = self.consumer.as_mut() else {
            return;
        };
        let model = &mut self.model;
        let expected = max.min(model.len());
        let count = consumer.pop_batch(max, |item| {
            assert_eq!(Some(item.id), model.pop_front(), "pop_batch order");
        });
        assert_eq!(count, expected, "pop_batch count");
    }

    fn check_lengths(&self) {
        let len = self.model.len();
        if let Some(producer) = &self.producer {
            assert_eq!(producer.capacity(), self.capacity);
            assert_eq!(producer.len(), len);
            assert_eq!(producer.free_slots(), self.capacity - len);
            assert_eq!(producer.is_empty(), len == 0);
            assert_eq!(producer.is_full(), len == self.capacity);
        }
        if let Some(consumer) = &self.consumer {
            assert_eq!(consumer.capacity(), self.capacity);
            assert_eq!(consumer.len(), len);
            assert_eq!(consumer.is_empty(), len == 0);
        }
    }

    fn check_abandoned(&self) {
        if let Some(producer) = &self.producer {
            assert_eq!(producer.is_abandoned(), self.consumer.is_none());
        }
        if let Some(consumer) = &self.consumer {
            assert_eq!(consumer.is_abandoned(), self.producer.is_none());
        }
    }
}
