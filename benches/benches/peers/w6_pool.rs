//! W6_pool: get + put of a 64-byte object on one thread, flujo's pool beside the system
//! allocator (`box`), mimalloc called directly (`mimalloc`, not installed as the global
//! allocator) and lockfree-object-pool's `LinearObjectPool` (its fastest pool type).
//! Every variant writes a byte of the object so none can be optimised away.
use criterion::Criterion;
use flujo_core::pool::{Pool, PoolConfig};
use lockfree_object_pool::LinearObjectPool;
use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

/// The 64-byte object every variant gets and puts.
type Object = [u8; 64];

/// One get + write + put on flujo's pool (local-cache path after the first miss).
#[inline]
fn flujo_once(handle: &flujo_core::pool::PoolHandle<Object>, byte: u8) -> u8 {
    let mut object = handle.get();
    object[7] = byte;
    black_box(&mut *object)[7]
}

/// One `Box::new` + write + drop (system allocator).
#[inline]
fn box_once(byte: u8) -> u8 {
    let mut object = Box::new([0u8; 64]);
    object[7] = byte;
    black_box(&mut *object)[7]
}

/// One mimalloc alloc + write + dealloc of a 64-byte block.
#[inline]
fn mimalloc_once(layout: Layout, byte: u8) -> u8 {
    // SAFETY: `layout` has a non-zero size; the block is written inside its bounds and freed
    // once with the same layout.
    unsafe {
        let p = MiMalloc.alloc(layout);
        assert!(!p.is_null());
        p.add(7).write(byte);
        let read = black_box(p).add(7).read();
        MiMalloc.dealloc(p, layout);
        read
    }
}

/// One pull + write + drop on `LinearObjectPool`.
#[inline]
fn lockfree_once(pool: &LinearObjectPool<Object>, byte: u8) -> u8 {
    let mut object = pool.pull();
    object[7] = byte;
    black_box(&mut *object)[7]
}

/// Criterion group `W6_pool`.
pub fn benches(c: &mut Criterion) {
    let pool = Pool::new(PoolConfig::default(), || [0u8; 64]).expect("valid config");
    let handle = pool.handle().expect("a handle slot");
    let layout = Layout::new::<Object>();
    let linear = LinearObjectPool::new(|| [0u8; 64], |_| {});

    // Check every variant before measuring.
    for byte in 1..=100u8 {
        assert_eq!(flujo_once(&handle, byte), byte);
        assert_eq!(box_once(byte), byte);
        assert_eq!(mimalloc_once(layout, byte), byte);
        assert_eq!(lockfree_once(&linear, byte), byte);
    }
    let s = pool.stats();
    assert_eq!((s.misses, s.hits, s.live, s.idle), (1, 99, 0, 1), "{s:?}");

    let mut g = c.benchmark_group("W6_pool");
    g.bench_function("flujo", |b| b.iter(|| flujo_once(&handle, black_box(1))));
    g.bench_function("box", |b| b.iter(|| box_once(black_box(1))));
    g.bench_function("mimalloc", |b| {
        b.iter(|| mimalloc_once(layout, black_box(1)))
    });
    g.bench_function("lockfree_object_pool", |b| {
        b.iter(|| lockfree_once(&linear, black_box(1)))
    });
    g.finish();
    assert_eq!(
        pool.stats().misses,
        1,
        "the bench never left the local cache"
    );
}
