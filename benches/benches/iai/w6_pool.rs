//! W6_pool under callgrind: a loop of `OPS` get + write + put of a 64-byte object, per
//! implementation (see `peers/w6_pool.rs`). Setup (pool, handle, first miss) is not counted.
//! flujo's limit is 1.15x the 320,034 Ir measured (32 Ir per get + put). `box` is a keyword,
//! so that bench's id reads `r#box`.
#![allow(non_snake_case)] // the group module is named after the workload id, `W6_pool`
use flujo_core::pool::{Pool, PoolConfig, PoolHandle};
use iai_callgrind::{
    library_benchmark, library_benchmark_group, Callgrind, EventKind, LibraryBenchmarkConfig,
};
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

/// Operations per bench run: the per-op figure is Ir / OPS.
const OPS: u32 = 10_000;

type Object = [u8; 64];
/// lockfree-object-pool's fastest pool type (paths are absolute: the bench functions are
/// named like the crates).
type Linear = ::lockfree_object_pool::LinearObjectPool<Object>;

/// A warmed handle: the first get (a miss) is done, so the loop runs on the local cache.
fn flujo_handle() -> PoolHandle<Object> {
    let pool = Pool::new(PoolConfig::default(), || [0u8; 64]).expect("valid config");
    let handle = pool.handle().expect("a handle slot");
    handle.get()[0] = 1;
    handle
}

fn linear_pool() -> Linear {
    let pool = Linear::new(|| [0u8; 64], |_| {});
    pool.pull()[0] = 1;
    pool
}

#[library_benchmark(
    config = LibraryBenchmarkConfig::default()
        .tool(Callgrind::default().hard_limits([(EventKind::Ir, 368_000)]))
)]
#[bench::ops(setup = flujo_handle)]
fn flujo(handle: PoolHandle<Object>) -> (u32, PoolHandle<Object>) {
    let mut sum = 0u32;
    for i in 0..OPS {
        let mut object = handle.get();
        object[7] = i as u8;
        sum += u32::from(black_box(&mut *object)[7]);
    }
    (sum, handle)
}

#[library_benchmark]
fn r#box() -> u32 {
    let mut sum = 0u32;
    for i in 0..OPS {
        let mut object = Box::new([0u8; 64]);
        object[7] = i as u8;
        sum += u32::from(black_box(&mut *object)[7]);
    }
    sum
}

#[library_benchmark]
fn mimalloc() -> u32 {
    let layout = Layout::new::<Object>();
    let mut sum = 0u32;
    for i in 0..OPS {
        // SAFETY: non-zero-size layout; the block is written in bounds and freed once.
        unsafe {
            let p = ::mimalloc::MiMalloc.alloc(layout);
            assert!(!p.is_null());
            p.add(7).write(i as u8);
            sum += u32::from(black_box(p).add(7).read());
            ::mimalloc::MiMalloc.dealloc(p, layout);
        }
    }
    sum
}

#[library_benchmark]
#[bench::ops(setup = linear_pool)]
fn lockfree_object_pool(pool: Linear) -> (u32, Linear) {
    let mut sum = 0u32;
    for i in 0..OPS {
        let mut object = pool.pull();
        object[7] = i as u8;
        sum += u32::from(black_box(&mut *object)[7]);
    }
    (sum, pool)
}

library_benchmark_group!(
    name = W6_pool;
    benchmarks = flujo, r#box, mimalloc, lockfree_object_pool
);
