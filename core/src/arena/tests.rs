use super::*;

use core::cell::Cell;
use std::vec::Vec;

fn arena(capacity_bytes: usize, limit_bytes: usize) -> RunArena {
    RunArena::with_capacity_and_limit(capacity_bytes, limit_bytes).expect("valid arena")
}

fn limit_exceeded(
    requested_bytes: usize,
    limit_bytes: usize,
    allocated_bytes: usize,
) -> ArenaError {
    ArenaError::LimitExceeded {
        requested_bytes,
        limit_bytes,
        allocated_bytes,
    }
}

/// A deterministic generator for the property-style tests (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// Construction

#[test]
fn capacity_above_limit_is_an_error_and_equal_is_allowed() {
    assert_eq!(
        RunArena::with_capacity_and_limit(101, 100).err(),
        Some(ArenaError::CapacityAboveLimit {
            capacity_bytes: 101,
            limit_bytes: 100
        })
    );
    let equal = arena(100, 100);
    assert!(equal.stats().chunk_capacity_bytes >= 100);
    let config = ArenaConfig {
        capacity_bytes: 64,
        limit_bytes: 32,
    };
    assert!(matches!(
        RunArena::new(config),
        Err(ArenaError::CapacityAboveLimit { .. })
    ));
}

#[test]
fn zero_capacity_allocates_no_chunk_until_first_request() {
    let mut arena = arena(0, 1024);
    assert_eq!(arena.chunk_count(), 0);
    assert_eq!(arena.stats().chunk_capacity_bytes, 0);
    arena.try_alloc(1_u8).unwrap();
    assert_eq!(arena.chunk_count(), 1);
    assert!(arena.stats().chunk_capacity_bytes >= 1);
}

#[test]
fn first_chunk_holds_the_capacity_and_fits_the_memory_bound() {
    for capacity_bytes in [1, 100, 447, 448, 449, 1000, 4096, 5000, 65_536] {
        let mut arena = arena(capacity_bytes, capacity_bytes);
        let stats = arena.stats();
        assert!(stats.chunk_capacity_bytes >= capacity_bytes);
        assert!(stats.chunk_capacity_bytes <= arena.memory_bound_bytes());
        // The whole capacity is usable in one request without a new chunk.
        arena
            .try_alloc_slice_fill_with(capacity_bytes, |i| i as u8)
            .unwrap();
        assert_eq!(arena.chunk_count(), 1, "capacity {capacity_bytes}");
    }
}

#[test]
fn memory_bound_saturates() {
    assert_eq!(arena(0, 0).memory_bound_bytes(), 16 * 1024);
    assert_eq!(arena(0, 1000).memory_bound_bytes(), 4000 + 16 * 1024);
    assert_eq!(arena(0, usize::MAX).memory_bound_bytes(), usize::MAX);
}

// ---------------------------------------------------------------------------------------------
// The byte limit

#[test]
fn limit_admits_exactly_up_to_the_limit_then_rejects() {
    // Limits around bumpalo's chunk sizes (448 and 960 usable bytes for 512 and 1024 byte
    // allocations on 64-bit targets), where a chunk-capacity limit would answer differently.
    for limit_bytes in [0, 1, 447, 448, 449, 959, 960, 961, 1000, 4000, 4096, 10_000] {
        for capacity_bytes in [0, limit_bytes / 2, limit_bytes] {
            let mut arena = arena(capacity_bytes, limit_bytes);
            for _run in 0..2 {
                if limit_bytes > 0 {
                    let under = arena.try_alloc_slice_fill_with(limit_bytes - 1, |_| 0xa5_u8);
                    assert_eq!(under.map(|s| s.len()), Ok(limit_bytes - 1));
                    assert_eq!(arena.remaining_bytes(), 1);
                    assert_eq!(
                        arena.try_alloc(1_u16).err(),
                        Some(limit_exceeded(2, limit_bytes, limit_bytes - 1))
                    );
                    assert_eq!(*arena.try_alloc(7_u8).unwrap(), 7);
                }
                assert_eq!(arena.allocated_bytes(), limit_bytes);
                assert_eq!(arena.remaining_bytes(), 0);
                assert_eq!(
                    arena.try_alloc(1_u8).err(),
                    Some(limit_exceeded(1, limit_bytes, limit_bytes))
                );
                // Zero-sized values cost nothing, even at the limit.
                assert!(arena.try_alloc(()).is_ok());
                assert!(arena.try_alloc_str("").is_ok());
                arena.reset();

                // One request of exactly the limit, then of one byte more.
                assert_eq!(
                    arena.try_alloc_slice_copy(&[1_u8; 1][..0]).map(|s| s.len()),
                    Ok(0)
                );
                let exact = arena.try_alloc_slice_fill_with(limit_bytes, |i| i as u8);
                assert_eq!(exact.map(|s| s.len()), Ok(limit_bytes));
                arena.reset();
                let over = arena.try_alloc_slice_fill_with(limit_bytes + 1, |i| i as u8);
                assert_eq!(
                    over.err(),
                    Some(limit_exceeded(limit_bytes + 1, limit_bytes, 0))
                );
                arena.reset();
            }
            let stats = arena.stats();
            assert_eq!(stats.out_of_memory_failures, 0);
            let per_run = if limit_bytes > 0 { 3 } else { 2 };
            assert_eq!(stats.limit_rejections, per_run * 2);
            assert_eq!(stats.resets, 6);
        }
    }
}

// The chunk sizes below are those of 64-bit targets (bumpalo's chunk footer is 48 bytes).
#[cfg(target_pointer_width = "64")]
#[test]
fn bumpalo_limit_counts_chunk_capacity_not_requests() {
    // Why the arena keeps its own count: bumpalo rounds a new chunk for a 970-byte request up
    // to a 2048-byte allocation, so under a 1000-byte allocation limit it refuses the request
    // (960 bytes would still fit a 1024-byte chunk) ...
    let bump = Bump::new();
    bump.set_allocation_limit(Some(1000));
    assert!(bump.try_alloc_slice_fill_with(970, |_| 0_u8).is_err());
    assert!(bump.try_alloc_slice_fill_with(960, |_| 0_u8).is_ok());
    // ... while the arena, counting requests, admits it.
    let arena = arena(0, 1000);
    assert!(arena.try_alloc_slice_fill_with(970, |_| 0_u8).is_ok());
    // And bumpalo hands out chunk memory already held past its limit.
    let bump = Bump::with_capacity(400);
    bump.set_allocation_limit(Some(10));
    assert!(bump.try_alloc_slice_fill_with(300, |_| 0_u8).is_ok());
}

#[test]
fn rejected_request_changes_nothing_but_the_counter() {
    let arena = arena(100, 100);
    arena.try_alloc_slice_copy(&[3_u8; 60]).unwrap();
    let before = arena.stats();
    let rejected = arena.try_alloc_slice_fill_with(41, |_| -> u8 { panic!("fill must not run") });
    assert_eq!(rejected.err(), Some(limit_exceeded(41, 100, 60)));
    let after = arena.stats();
    assert_eq!(
        after,
        ArenaStats {
            limit_rejections: before.limit_rejections + 1,
            ..before
        }
    );
}

#[test]
fn overflowing_sizes_are_over_the_limit() {
    let arena = arena(0, usize::MAX);
    let huge = arena.try_alloc_slice_fill_with(usize::MAX / 2, |_| 0_u64);
    assert_eq!(huge.err(), Some(limit_exceeded(usize::MAX, usize::MAX, 0)));
    let uninit = arena.try_alloc_uninit_slice::<u32>(usize::MAX);
    assert!(matches!(uninit, Err(ArenaError::LimitExceeded { .. })));
    // Within an unbounded limit but not a valid layout: reported, not aborted.
    let too_big = arena.try_alloc_slice_fill_with(usize::MAX / 8, |_| 0_u64);
    assert_eq!(
        too_big.err(),
        Some(ArenaError::OutOfMemory {
            requested_bytes: (usize::MAX / 8) * 8
        })
    );
    let stats = arena.stats();
    assert_eq!(stats.allocated_bytes, 0);
    assert_eq!(stats.limit_rejections, 2);
    assert_eq!(stats.out_of_memory_failures, 1);
}

#[test]
fn requests_within_the_limit_never_fail_under_mixed_alignments() {
    // The memory backstop (4 * limit + 16 KiB of chunk capacity) must never refuse what the
    // byte limit admits, whatever the mix of sizes and alignments and however the arena was
    // grown before a reset.
    // Only the size and alignment of these matter; their bytes are never read.
    #[allow(dead_code)]
    #[derive(Clone, Copy)]
    #[repr(align(64))]
    struct Align64([u8; 64]);
    #[allow(dead_code)]
    #[derive(Clone, Copy)]
    #[repr(align(4096))]
    struct Align4096([u8; 4096]);

    let programs = if cfg!(miri) { 3 } else { 300 };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..programs {
        let limit_bytes = [64, 500, 2000, 9000, 70_000][rng.below(5)];
        let capacity_bytes = rng.below(limit_bytes + 1);
        let mut arena = arena(capacity_bytes, limit_bytes);
        for _run in 0..3 {
            let steps = if cfg!(miri) { 20 } else { 200 };
            for _ in 0..steps {
                let result = match rng.below(6) {
                    0 => arena.try_alloc(rng.next() as u8).map(|_| ()),
                    1 => arena.try_alloc(rng.next() as u128).map(|_| ()),
                    2 => arena.try_alloc(Align64([1; 64])).map(|_| ()),
                    3 if !cfg!(miri) => arena.try_alloc(Align4096([2; 4096])).map(|_| ()),
                    4 => {
                        let len = rng.below(limit_bytes / 2 + 1);
                        arena
                            .try_alloc_slice_fill_with(len, |i| i as u8)
                            .map(|_| ())
                    }
                    _ => {
                        let len = rng.below(limit_bytes / 16 + 1);
                        arena
                            .try_alloc_slice_fill_with(len, |i| i as u64)
                            .map(|_| ())
                    }
                };
                if let Err(error) = result {
                    assert!(
                        matches!(error, ArenaError::LimitExceeded { .. }),
                        "{error} (limit {limit_bytes}, capacity {capacity_bytes})"
                    );
                }
                let stats = arena.stats();
                assert!(stats.chunk_capacity_bytes <= arena.memory_bound_bytes());
                assert!(stats.chunk_used_bytes >= stats.allocated_bytes);
            }
            arena.reset();
        }
        assert_eq!(arena.stats().out_of_memory_failures, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Reset and steady state

#[test]
fn reset_reuses_the_chunk_and_clears_the_count() {
    let mut arena = arena(1024, 1024);
    let chunk_capacity_bytes = arena.stats().chunk_capacity_bytes;
    let mut first_addresses = Vec::new();
    for run in 0..5_u64 {
        let mut addresses = Vec::new();
        for i in 0..16_u64 {
            let value = arena.try_alloc(run * 100 + i).unwrap();
            addresses.push(value as *mut u64 as usize);
        }
        let stats = arena.stats();
        assert_eq!(stats.allocated_bytes, 128);
        assert_eq!(stats.chunk_used_bytes, 128);
        assert_eq!(stats.chunk_capacity_bytes, chunk_capacity_bytes);
        if run == 0 {
            first_addresses = addresses;
        } else {
            // Every run gets the same memory: nothing new was allocated.
            assert_eq!(addresses, first_addresses);
        }
        arena.reset();
        let stats = arena.stats();
        assert_eq!((stats.allocated_bytes, stats.chunk_used_bytes), (0, 0));
        assert_eq!(stats.chunk_capacity_bytes, chunk_capacity_bytes);
        assert_eq!(stats.resets, run + 1);
        assert_eq!(arena.chunk_count(), 1);
    }
}

#[test]
fn growth_stops_after_two_runs_of_the_same_shape() {
    // Started with a chunk far too small, the arena grows during the first run(s) and keeps
    // its newest (largest) chunk; from the third run on it never allocates.
    let mut arena = arena(64, 1 << 20);
    let runs = if cfg!(miri) { 5 } else { 20 };
    let mut capacity_after = Vec::new();
    for _ in 0..runs {
        for i in 0..300_u32 {
            arena.try_alloc(u64::from(i)).unwrap();
            arena.try_alloc_str("step").unwrap();
        }
        arena.try_alloc_slice_fill_with(1000, |i| i as u16).unwrap();
        capacity_after.push(arena.stats().chunk_capacity_bytes);
        arena.reset();
        assert_eq!(arena.chunk_count(), 1);
    }
    assert!(capacity_after[0] > 64 * 4, "the first run must have grown");
    assert!(
        capacity_after[2..].iter().all(|&c| c == capacity_after[2]),
        "grew after warm-up: {capacity_after:?}"
    );
}

#[test]
fn reset_of_an_empty_arena_counts() {
    let mut arena = arena(0, 10);
    arena.reset();
    arena.reset();
    assert_eq!(arena.stats().resets, 2);
    assert_eq!(arena.chunk_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Values: contents, zero-sized types, alignment

#[test]
fn zero_sized_values_cost_nothing_and_are_aligned() {
    #[repr(align(64))]
    struct Zst64;
    let mut arena = arena(0, 0);
    let count = if cfg!(miri) { 50 } else { 100_000 };
    for _ in 0..count {
        let unit = arena.try_alloc(()).unwrap();
        assert_eq!(*unit, ());
        let aligned = arena.try_alloc(Zst64).unwrap();
        assert_eq!(aligned as *mut Zst64 as usize % 64, 0);
    }
    let empty = arena.try_alloc_slice_fill_with(count, |_| ()).unwrap();
    assert_eq!(empty.len(), count);
    let units = arena.try_alloc_uninit_slice::<()>(3).unwrap();
    assert_eq!(units.len(), 3);
    assert_eq!(arena.allocated_bytes(), 0);
    assert_eq!(arena.chunk_count(), 0);
}

#[test]
fn returned_references_are_aligned_and_hold_their_values() {
    #[derive(Clone, Copy, Debug, PartialEq)]
    #[repr(align(32))]
    struct Align32(u8);
    #[derive(Clone, Copy, Debug, PartialEq)]
    #[repr(align(256))]
    struct Align256(u16);

    let arena = arena(0, 1 << 16);
    let rounds = if cfg!(miri) { 4 } else { 40 };
    let mut live = Vec::new();
    for round in 0..rounds as u8 {
        let byte = arena.try_alloc(round).unwrap();
        let word = arena.try_alloc(u32::from(round) << 8).unwrap();
        let wide = arena.try_alloc(u128::from(round) << 64).unwrap();
        let a32 = arena.try_alloc(Align32(round)).unwrap();
        let a256 = arena.try_alloc(Align256(u16::from(round))).unwrap();
        let text = arena.try_alloc_str("odd").unwrap();
        assert_eq!(word as *mut u32 as usize % 4, 0);
        assert_eq!(
            wide as *mut u128 as usize % core::mem::align_of::<u128>(),
            0
        );
        assert_eq!(a32 as *mut Align32 as usize % 32, 0);
        assert_eq!(a256 as *mut Align256 as usize % 256, 0);
        live.push((byte, word, wide, a32, a256, text, round));
    }
    for (byte, word, wide, a32, a256, text, round) in &live {
        assert_eq!(**byte, *round);
        assert_eq!(**word, u32::from(*round) << 8);
        assert_eq!(**wide, u128::from(*round) << 64);
        assert_eq!(**a32, Align32(*round));
        assert_eq!(**a256, Align256(u16::from(*round)));
        assert_eq!(&**text, "odd");
    }
    // The limit counts sizes only: 1 + 4 + 16 + 32 + 256 + 3 per round.
    assert_eq!(arena.allocated_bytes(), rounds * 312);
    assert!(arena.stats().chunk_used_bytes > arena.allocated_bytes());
}

#[test]
fn types_without_drop_glue_that_are_not_copy_are_accepted() {
    struct Node<'a> {
        visits: Cell<u32>,
        scratch: &'a mut [u8],
    }
    let arena = arena(256, 256);
    let scratch = arena.try_alloc_slice_copy(&[0_u8; 4]).unwrap();
    let node = arena
        .try_alloc(Node {
            visits: Cell::new(0),
            scratch,
        })
        .unwrap();
    node.visits.set(node.visits.get() + 1);
    node.scratch[3] = 9;
    assert_eq!((node.visits.get(), node.scratch[3]), (1, 9));
}

#[test]
fn fill_closure_may_allocate_in_the_same_arena() {
    let arena = arena(0, 100);
    let mut inner_results = Vec::new();
    // The outer 40 bytes are counted before `fill` runs: the inner requests see 60 left.
    let outer = arena
        .try_alloc_slice_fill_with(10, |i| {
            inner_results.push(arena.try_alloc_slice_copy(&[0_u8; 20]).map(|s| s.len()));
            i as u32
        })
        .unwrap();
    assert_eq!(outer, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(&inner_results[..3], &[Ok(20), Ok(20), Ok(20)]);
    assert!(inner_results[3..]
        .iter()
        .all(|r| *r == Err(limit_exceeded(20, 100, 100))));
    assert_eq!(arena.allocated_bytes(), 100);
}

#[test]
fn panicking_fill_keeps_its_bytes_counted_and_the_arena_usable() {
    let mut arena = arena(256, 256);
    let result = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
        let _ = arena.try_alloc_slice_fill_with(8, |i| {
            assert!(i < 4, "fill fails half way");
            i as u32
        });
    }));
    assert!(result.is_err());
    assert_eq!(arena.allocated_bytes(), 32);
    assert_eq!(*arena.try_alloc(5_u64).unwrap(), 5);
    arena.reset();
    assert_eq!(arena.allocated_bytes(), 0);
}

#[test]
fn arena_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<RunArena>();
    let arena = arena(64, 64);
    let moved = std::thread::spawn(move || {
        let value = arena.try_alloc(41_u32).map(|v| *v + 1);
        (value, arena.allocated_bytes())
    })
    .join()
    .unwrap();
    assert_eq!(moved, (Ok(42), 4));
}
