//! The mpmc program: single-thread operations on [`Ring`] against a `VecDeque` bounded by the
//! same capacity.
//!
//! Byte layout: `[capacity, start, op, arg?, op, arg?, …]`. The capacity is `2 << (byte % 6)`
//! (2..=64); the start position is `usize::MAX - byte` for odd bytes (so the indices wrap
//! past `usize::MAX` within the run) and 0 otherwise. Each op is `byte % 5`:
//!
//! | op | arg | ring | model |
//! |---|---|---|---|
//! | 0 push | – | `push(next)` | `push_back` if not full |
//! | 1 pop | – | `pop()` | `pop_front` |
//! | 2 push_batch | n | `push_batch(next..next + n)` | moves `min(n, free)` |
//! | 3 pop_batch | max | `pop_batch(max, ..)` | `min(max, len)` from the front |
//! | 4 len | – | `len`, `is_empty` | `len` |
//!
//! Items carry a shared `Rc` so that the end of the run checks the ring dropped each item left
//! inside exactly once.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec::Vec;

use crate::ring::mpmc::Ring;
use crate::ring::Full;

/// An item whose clones of `live` count the items in existence.
#[derive(Debug)]
struct Item {
    value: u64,
    _live: Rc<()>,
}

/// Runs `data` as an operation program against the ring and its model.
pub fn run(data: &[u8]) {
    let mut bytes = data.iter().copied();
    let capacity = 2usize << (bytes.next().unwrap_or(0) % 6);
    let start = match bytes.next().unwrap_or(0) {
        b if b % 2 == 1 => usize::MAX - usize::from(b),
        _ => 0,
    };
    let ring: Ring<Item> = Ring::starting_at(capacity, start).expect("power of two");
    assert_eq!(ring.capacity(), capacity);
    let live = Rc::new(());
    let item = |value: u64| Item {
        value,
        _live: Rc::clone(&live),
    };
    let mut model: VecDeque<u64> = VecDeque::with_capacity(capacity);
    let mut next = 0u64;
    while let Some(op) = bytes.next() {
        match op % 5 {
            0 => {
                let result = ring.push(item(next));
                if model.len() < capacity {
                    assert!(result.is_ok(), "push refused with {} inside", model.len());
                    model.push_back(next);
                } else {
                    let Err(Full(back)) = result else {
                        panic!("push accepted into a full ring")
                    };
                    assert_eq!(back.value, next, "a refused push hands back its value");
                }
                next += 1;
            }
            1 => {
                let got = ring.pop().map(|i| i.value);
                assert_eq!(got, model.pop_front());
            }
            2 => {
                let n = u64::from(bytes.next().unwrap_or(0) % 80);
                let mut values = next..next + n;
                let moved = ring.push_batch(&mut (&mut values).map(item));
                let free = capacity - model.len();
                assert_eq!(moved, (n as usize).min(free));
                assert_eq!(
                    values.start,
                    next + moved as u64,
                    "pulled only what it stored"
                );
                model.extend(next..next + moved as u64);
                next += n;
            }
            3 => {
                let max = usize::from(bytes.next().unwrap_or(0) % 80);
                let mut got = Vec::new();
                let popped = ring.pop_batch(max, |i| got.push(i.value));
                let expected: Vec<u64> = model.drain(..max.min(model.len())).collect();
                assert_eq!(popped, expected.len());
                assert_eq!(got, expected);
            }
            _ => {
                assert_eq!(ring.len(), model.len());
                assert_eq!(ring.is_empty(), model.is_empty());
            }
        }
        // Every item in existence is inside the ring (the others were dropped on the way).
        assert_eq!(Rc::strong_count(&live), 1 + model.len());
    }
    assert_eq!(ring.len(), model.len());
    drop(ring);
    assert_eq!(
        Rc::strong_count(&live),
        1,
        "items left inside dropped with the ring"
    );
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::run;

    #[test]
    fn programs_run_against_the_model() {
        run(&[]);
        run(&[0, 0]);
        // Capacity 2 near usize::MAX: push past full, pop, batches across the wrap.
        run(&[0, 3, 0, 0, 0, 4, 1, 2, 5, 3, 1, 4, 2, 9, 3, 60, 4, 1]);
        // Capacity 64: a batch larger than the free run, then drain by batches.
        run(&[5, 0, 2, 79, 4, 3, 10, 3, 79, 4, 1]);
        let mut long = std::vec![2u8, 201];
        for i in 0..400u32 {
            long.push((i * 7 % 5) as u8);
            long.push((i * 13 % 23) as u8);
        }
        run(&long);
    }
}
