//! Differential program for [`RunArena`]: a byte string decodes into an arena configuration
//! and a program of allocations, rewrites, stats checks and resets, run
//! against the arena and a model that only sums requested bytes against the limit.
//!
//! After every operation the contents and alignment of every live allocation are checked
//! again, so a reused, overlapping or clobbered allocation is caught. Each allocation's result
//! must match the model exactly: `Ok` if and only if the bytes allocated since the last reset
//! plus the request stay within the limit, otherwise the exact
//! [`ArenaError::LimitExceeded`]; [`ArenaError::OutOfMemory`] must never happen (the memory
//! backstop must not refuse a request within the limit). A reset op ends the epoch: the
//! borrow checker requires every live reference to be gone before `reset` is called.

use alloc::vec::Vec;

use super::Bytes;
use core::mem::MaybeUninit;

use crate::arena::{ArenaError, ArenaStats, RunArena};

/// Most operations decoded from one input, to keep an input's run time bounded.
const OPS_MAX: usize = 256;

/// Strings the text op copies in (including empty and multi-byte UTF-8).
const TEXTS: [&str; 5] = ["", "a", "step", "fetch-user-profile", "ünïcödé ✓"];

/// A 64-byte-aligned value, to exercise padding.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Wide([u8; 64]);

/// A zero-sized value with a large alignment.
#[repr(align(128))]
struct AlignedZst;

/// What the arena should answer: the sum of requested bytes since the last reset against the
/// limit, and the counters.
struct Model {
    limit_bytes: usize,
    allocated_bytes: usize,
    resets: u64,
    limit_rejections: u64,
}

impl Model {
    fn admit(&mut self, requested_bytes: usize) -> Result<(), ArenaError> {
        if self.allocated_bytes + requested_bytes <= self.limit_bytes {
            self.allocated_bytes += requested_bytes;
            Ok(())
        } else {
            self.limit_rejections += 1;
            Err(ArenaError::LimitExceeded {
                requested_bytes,
                limit_bytes: self.limit_bytes,
                allocated_bytes: self.allocated_bytes,
            })
        }
    }

    /// Asserts that `actual` agrees with the model's answer for a request, returning the
    /// allocation on success.
    fn expect<T>(&mut self, requested_bytes: usize, actual: Result<T, ArenaError>) -> Option<T> {
        let expected = self.admit(requested_bytes);
        match (expected, actual) {
            (Ok(()), Ok(value)) => Some(value),
            (Err(expected), Err(actual)) => {
                assert_eq!(actual, expected);
                None
            }
            (Ok(()), Err(actual)) => panic!("request of {requested_bytes} bytes failed: {actual}"),
            (Err(expected), Ok(_)) => {
                panic!("request of {requested_bytes} bytes succeeded, expected {expected}")
            }
        }
    }
}

fn pattern(seed: u8, index: usize) -> u8 {
    seed.wrapping_mul(31)
        .wrapping_add(index as u8)
        .wrapping_add((index >> 8) as u8)
}

/// One live allocation and what it must hold.
enum Live<'a> {
    Bytes {
        slot: &'a mut [u8],
        seed: u8,
    },
    Words {
        slot: &'a mut [u64],
        seed: u8,
    },
    Wide {
        slot: &'a mut Wide,
        seed: u8,
    },
    Text {
        slot: &'a mut str,
        index: usize,
    },
    /// Room from `try_alloc_uninit_slice` (how a runner takes its record buffer): `seed`
    /// `Some` when every slot was written with the pattern, `None` when left uninitialized.
    Uninit {
        slot: &'a mut [MaybeUninit<u32>],
        seed: Option<u8>,
    },
}

impl Live<'_> {
    fn check(&self) {
        match self {
            Live::Bytes { slot, seed } => {
                for (i, &byte) in slot.iter().enumerate() {
                    assert_eq!(byte, pattern(*seed, i));
                }
            }
            Live::Words { slot, seed } => {
                assert_eq!(slot.as_ptr() as usize % core::mem::align_of::<u64>(), 0);
                for (i, &word) in slot.iter().enumerate() {
                    assert_eq!(word, u64::from(pattern(*seed, i)) << 40 | i as u64);
                }
            }
            Live::Wide { slot, seed } => {
                assert_eq!(*slot as *const Wide as usize % 64, 0);
                for (i, &byte) in slot.0.iter().enumerate() {
                    assert_eq!(byte, pattern(*seed, i));
                }
            }
            Live::Text { slot, index } => assert_eq!(&**slot, TEXTS[*index]),
            Live::Uninit { slot, seed } => {
                assert_eq!(slot.as_ptr() as usize % core::mem::align_of::<u32>(), 0);
                if let Some(seed) = *seed {
                    for (i, word) in slot.iter().enumerate() {
                        // SAFETY: `seed` is `Some` only once every slot has been written
                        // (`fill_uninit`), and nothing de-initializes a slot.
                        let word = unsafe { word.assume_init_read() };
                        assert_eq!(word, uninit_pattern(seed, i));
                    }
                }
            }
        }
    }

    fn rewrite(&mut self, new_seed: u8) {
        match self {
            Live::Bytes { slot, seed } => {
                *seed = new_seed;
                for (i, byte) in slot.iter_mut().enumerate() {
                    *byte = pattern(new_seed, i);
                }
            }
            Live::Words { slot, seed } => {
                *seed = new_seed;
                for (i, word) in slot.iter_mut().enumerate() {
                    *word = u64::from(pattern(new_seed, i)) << 40 | i as u64;
                }
            }
            Live::Wide { slot, seed } => {
                *seed = new_seed;
                for (i, byte) in slot.0.iter_mut().enumerate() {
                    *byte = pattern(new_seed, i);
                }
            }
            Live::Text { slot, index } => {
                // Round-trip through an in-place case change, which keeps the length.
                slot.make_ascii_uppercase();
                slot.make_ascii_lowercase();
                assert_eq!(&**slot, TEXTS[*index]);
            }
            Live::Uninit { slot, seed } => {
                fill_uninit(slot, new_seed);
                *seed = Some(new_seed);
            }
        }
    }

    /// The address range the allocation occupies, if it occupies any bytes.
    fn range(&self) -> Option<(usize, usize)> {
        let (start, len) = match self {
            Live::Bytes { slot, .. } => (slot.as_ptr() as usize, slot.len()),
            Live::Words { slot, .. } => (slot.as_ptr() as usize, core::mem::size_of_val(*slot)),
            Live::Wide { slot, .. } => (*slot as *const Wide as usize, 64),
            Live::Text { slot, .. } => (slot.as_ptr() as usize, slot.len()),
            Live::Uninit { slot, .. } => (slot.as_ptr() as usize, slot.len() * 4),
        };
        (len > 0).then_some((start, start + len))
    }
}

/// Runs `data` as an operation program against the structure and its model.
pub fn run(data: &[u8]) {
    let mut input = Bytes::new(data);
    let (Some(shape), Some(scale), Some(capacity_byte)) =
        (input.try_next(), input.try_next(), input.try_next())
    else {
        return;
    };
    // Limits from 0 to about 8 KiB, fine-grained when small so the boundary is hit often.
    let limit_bytes = (usize::from(scale) << (shape % 6)) + usize::from(shape >> 3);
    let capacity_bytes = usize::from(capacity_byte) * 32;
    let mut arena = match RunArena::with_capacity_and_limit(capacity_bytes, limit_bytes) {
        Ok(arena) => arena,
        Err(error) => {
            assert!(capacity_bytes > limit_bytes);
            assert_eq!(
                error,
                ArenaError::CapacityAboveLimit {
                    capacity_bytes,
                    limit_bytes
                }
            );
            RunArena::with_capacity_and_limit(limit_bytes, limit_bytes).expect("capacity == limit")
        }
    };
    let mut model = Model {
        limit_bytes,
        allocated_bytes: 0,
        resets: 0,
        limit_rejections: 0,
    };
    let mut ops_left = OPS_MAX;
    while ops_left > 0 && !input.data.is_empty() {
        run_epoch(&arena, &mut model, &mut input, &mut ops_left);

        let before = arena.stats();
        arena.reset();
        model.resets += 1;
        model.allocated_bytes = 0;
        let after = arena.stats();
        check_stats(&arena, &model, &after);
        assert_eq!((after.allocated_bytes, after.chunk_used_bytes), (0, 0));
        // bumpalo keeps one chunk (the newest), so the capacity can only shrink or stay.
        assert!(after.chunk_capacity_bytes <= before.chunk_capacity_bytes);
        assert!(arena.chunk_count() <= 1);
    }
    assert_eq!(arena.stats().out_of_memory_failures, 0);
}

/// Runs operations until a reset op or the end of the input; every reference into the arena
/// is dropped when it returns.
fn run_epoch(arena: &RunArena, model: &mut Model, input: &mut Bytes<'_>, ops_left: &mut usize) {
    let mut live: Vec<Live<'_>> = Vec::new();
    let mut next_seed: u8 = 0;
    while *ops_left > 0 {
        let Some(op) = input.try_next() else { return };
        *ops_left -= 1;
        let argument = input.try_next().unwrap_or(0);
        next_seed = next_seed.wrapping_add(1);
        let seed = next_seed;
        match op % 10 {
            0 => {
                let len = usize::from(argument) << ((op >> 4) & 3);
                let result = arena.try_alloc_slice_fill_with(len, |i| pattern(seed, i));
                if let Some(slot) = model.expect(len, result) {
                    live.push(Live::Bytes { slot, seed });
                }
            }
            1 => {
                let len = usize::from(argument % 64);
                let words: Vec<u64> = (0..len)
                    .map(|i| u64::from(pattern(seed, i)) << 40 | i as u64)
                    .collect();
                let result = arena.try_alloc_slice_copy(&words);
                if let Some(slot) = model.expect(len * 8, result) {
                    live.push(Live::Words { slot, seed });
                }
            }
            2 => {
                let mut value = Wide([0; 64]);
                for (i, byte) in value.0.iter_mut().enumerate() {
                    *byte = pattern(seed, i);
                }
                if let Some(slot) = model.expect(64, arena.try_alloc(value)) {
                    live.push(Live::Wide { slot, seed });
                }
            }
            3 => {
                let index = usize::from(argument) % TEXTS.len();
                let result = arena.try_alloc_str(TEXTS[index]);
                if let Some(slot) = model.expect(TEXTS[index].len(), result) {
                    live.push(Live::Text { slot, index });
                }
            }
            4 => {
                // Zero-sized values cost nothing and always succeed, even at the limit.
                let unit = model.expect(0, arena.try_alloc(()));
                assert!(unit.is_some());
                let aligned = model.expect(0, arena.try_alloc(AlignedZst)).expect("zst");
                assert_eq!(aligned as *mut AlignedZst as usize % 128, 0);
            }
            5 | 7 => {
                // Uninitialized room: filled with the pattern (op 5) or left as it is (op 7,
                // whose contents nothing may read).
                let len = usize::from(argument % 32);
                let result = arena.try_alloc_uninit_slice::<u32>(len);
                if let Some(slot) = model.expect(len * 4, result) {
                    let seed = (op % 10 == 5).then(|| {
                        fill_uninit(slot, seed);
                        seed
                    });
                    live.push(Live::Uninit { slot, seed });
                }
            }
            6 => {
                if !live.is_empty() {
                    let index = usize::from(argument) % live.len();
                    live[index].rewrite(seed);
                }
            }
            8 => {
                check_stats(arena, model, &arena.stats());
                check_disjoint(&live);
            }
            _ => return,
        }
        for allocation in &live {
            allocation.check();
        }
    }
}

/// The word an uninitialized slot `i` is filled with for `seed`.
fn uninit_pattern(seed: u8, i: usize) -> u32 {
    u32::from(seed) << 16 | i as u32
}

/// Writes every slot of `slot` with [`uninit_pattern`].
fn fill_uninit(slot: &mut [MaybeUninit<u32>], seed: u8) {
    for (i, word) in slot.iter_mut().enumerate() {
        word.write(uninit_pattern(seed, i));
    }
}

fn check_stats(arena: &RunArena, model: &Model, stats: &ArenaStats) {
    assert_eq!(stats.allocated_bytes, model.allocated_bytes);
    assert_eq!(arena.allocated_bytes(), model.allocated_bytes);
    assert_eq!(
        arena.remaining_bytes(),
        model.limit_bytes - model.allocated_bytes
    );
    assert_eq!(stats.limit_bytes, model.limit_bytes);
    assert_eq!(stats.resets, model.resets);
    assert_eq!(stats.limit_rejections, model.limit_rejections);
    assert_eq!(stats.out_of_memory_failures, 0);
    assert!(stats.allocated_bytes <= stats.chunk_used_bytes);
    assert!(stats.chunk_used_bytes <= stats.chunk_capacity_bytes);
    assert!(stats.chunk_capacity_bytes <= arena.memory_bound_bytes());
}

fn check_disjoint(live: &[Live<'_>]) {
    let mut ranges: Vec<(usize, usize)> = live.iter().filter_map(Live::range).collect();
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping allocations {pair:?}");
    }
}
