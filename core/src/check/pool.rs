//! The pool program: gets, returns, detaches, flushes, and handles made and dropped, on one
//! thread, against a model of the pool's bookkeeping (each handle's cache and claimed room as
//! a list of object ids, the shared list as a stack of id batches, the unclaimed idle room).
//!
//! After every operation the program checks every statistic, each handle's cache length, the
//! identity and reset count of every handed-out object, and which objects were dropped (count
//! and sum of ids); the model's idle figure comes from its lists, not from the counter identity
//! the pool uses, so the two derivations check each other.
//!
//! Encoding: three config bytes (`max_idle`, `local_capacity`, `max_handles`, each picked from
//! a small table), then one byte per operation: the low 3 bits choose it, the high 5 bits are
//! its argument.

use crate::pool::{
    HandleLimitError, Pool, PoolConfig, PoolHandle, PoolStats, Pooled, BATCH_CAPACITY, CREDIT_CHUNK,
};
use crate::sync::{Arc, AtomicUsize, Ordering};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::NonNull;

const MAX_IDLE: [usize; 9] = [0, 1, 2, 3, 5, 8, 16, 40, 100];
const LOCAL_CAPACITY: [usize; 9] = [1, 2, 3, 4, 5, 8, 33, 64, 70];
/// Programs are cut at this many operations so that every input runs quickly.
const MAX_OPS: usize = 4096;

/// Which objects have been dropped: how many, and the sum of `id + 1`.
#[derive(Debug, Default)]
struct DropLog {
    count: AtomicUsize,
    id_sum: AtomicUsize,
}

/// A pooled object that knows who it is, how often it was reset, and whether it was used.
#[derive(Debug)]
struct Obj {
    id: usize,
    resets: usize,
    dirty: bool,
    log: Arc<DropLog>,
}

impl Drop for Obj {
    fn drop(&mut self) {
        self.log.count.fetch_add(1, Ordering::Relaxed);
        self.log.id_sum.fetch_add(self.id + 1, Ordering::Relaxed);
    }
}

fn reset(obj: &mut Obj) {
    obj.resets += 1;
    obj.dirty = false;
}

/// The model of one handle.
#[derive(Debug, Default)]
struct ModelHandle {
    /// Ids of the cached objects, the most recently returned last.
    cache: Vec<usize>,
    /// Idle room claimed: `cache.len() <= credit <= capacity`.
    credit: usize,
}

/// The model of the whole pool.
#[derive(Debug)]
struct Model {
    capacity: usize,
    max_handles: usize,
    /// Batches of ids on the shared list, the top last.
    shared: Vec<Vec<usize>>,
    /// Unclaimed idle room.
    room: usize,
    stats: PoolStats,
    /// Resets each object has had (indexed by id; its length is the number created).
    resets: Vec<usize>,
    dropped: usize,
    dropped_id_sum: usize,
}

impl Model {
    /// A get on `h`: the id handed out and whether it was a hit.
    fn get(&mut self, h: &mut ModelHandle) -> (usize, bool) {
        if h.cache.is_empty() {
            if let Some(batch) = self.shared.pop() {
                let kept = h.credit.max(batch.len());
                self.room += h.credit + batch.len() - kept;
                h.credit = kept;
                h.cache = batch;
            }
        }
        match h.cache.pop() {
            Some(id) => {
                self.stats.hits += 1;
                self.resets[id] += 1;
                (id, true)
            }
            None => {
                self.stats.misses += 1;
                self.resets.push(0);
                (self.resets.len() - 1, false)
            }
        }
    }

    /// A guard of `id` dropped into `h`.
    fn put(&mut self, h: &mut ModelHandle, id: usize) {
        self.stats.returns += 1;
        if h.cache.len() < h.credit {
            h.cache.push(id);
            return;
        }
        if h.cache.len() == self.capacity {
            let len = h.cache.len();
            let moved = (len - len / 2).min(BATCH_CAPACITY);
            self.shared.push(h.cache.drain(..moved).collect());
            h.credit -= moved;
        }
        let want = (self.capacity - h.credit).min(CREDIT_CHUNK);
        let got = want.min(self.room);
        self.room -= got;
        if got == 0 {
            self.stats.overflow_drops += 1;
            self.drop_object(id);
        } else {
            h.credit += got;
            h.cache.push(id);
        }
    }

    fn flush(&mut self, h: &mut ModelHandle) {
        for batch in h.cache.chunks(BATCH_CAPACITY) {
            self.shared.push(batch.to_vec());
        }
        self.room += h.credit - h.cache.len();
        h.credit = 0;
        h.cache.clear();
    }

    fn drop_object(&mut self, id: usize) {
        self.dropped += 1;
        self.dropped_id_sum += id + 1;
    }
}

/// A live handle of the program: the real one (boxed, freed only by `drop_handle`) and its
/// model.
struct LiveHandle {
    serial: usize,
    real: NonNull<PoolHandle<Obj>>,
    model: ModelHandle,
}

/// A guard the program holds.
struct LiveGuard {
    /// The serial of the handle it came from.
    handle: usize,
    id: usize,
    /// Borrows the handle `handle` (see `Program::handle_ref`).
    guard: Pooled<'static, Obj>,
}

struct Program {
    pool: Pool<Obj>,
    log: Arc<DropLog>,
    max_idle: usize,
    model: Model,
    handles: Vec<LiveHandle>,
    guards: Vec<LiveGuard>,
    next_serial: usize,
}

impl Program {
    fn new(max_idle: usize, capacity: usize, max_handles: usize) -> Self {
        let log = Arc::new(DropLog::default());
        let next_id = Arc::new(AtomicUsize::new(0));
        let factory_log = Arc::clone(&log);
        let config = PoolConfig {
            max_idle,
            local_capacity: capacity,
            max_handles,
        };
        let pool = Pool::with_reset(
            config,
            move || Obj {
                id: next_id.fetch_add(1, Ordering::Relaxed),
                resets: 0,
                dirty: false,
                log: Arc::clone(&factory_log),
            },
            reset,
        )
        .expect("the config tables hold valid values");
        Self {
            pool,
            log,
            max_idle,
            model: Model {
                capacity,
                max_handles,
                shared: Vec::new(),
                room: max_idle,
                stats: PoolStats::default(),
                resets: Vec::new(),
                dropped: 0,
                dropped_id_sum: 0,
            },
            handles: Vec::new(),
            guards: Vec::new(),
            next_serial: 0,
        }
    }

    /// The handle at `index`, with the lifetime the guards need.
    fn handle_ref(&self, index: usize) -> &'static PoolHandle<Obj> {
        // SAFETY: the box is freed only by `drop_handle`, which first drops every guard that
        // borrows it; the reference is used only for `get` and by those guards. (If a check
        // panics, the handles are leaked, never freed under a guard.)
        unsafe { self.handles[index].real.as_ref() }
    }

    fn new_handle(&mut self) {
        let result = self.pool.handle();
        if self.handles.len() == self.model.max_handles {
            assert_eq!(
                result.err(),
                Some(HandleLimitError {
                    max_handles: self.model.max_handles
                })
            );
            return;
        }
        let real = result.expect("a free handle slot");
        self.handles.push(LiveHandle {
            serial: self.next_serial,
            real: NonNull::from(Box::leak(Box::new(real))),
            model: ModelHandle::default(),
        });
        self.next_serial += 1;
    }

    fn get(&mut self, index: usize) {
        let real = self.handle_ref(index);
        let mut guard = real.get();
        let (id, hit) = self.model.get(&mut self.handles[index].model);
        assert_eq!(guard.id, id, "handed-out object");
        assert_eq!(guard.resets, self.model.resets[id], "resets of object {id}");
        assert_eq!(guard.resets > 0, hit, "only reused objects are reset");
        assert!(!guard.dirty, "a handed-out object is clean");
        guard.dirty = true;
        self.guards.push(LiveGuard {
            handle: self.handles[index].serial,
            id,
            guard,
        });
    }

    fn position_of(&self, serial: usize) -> usize {
        self.handles
            .iter()
            .position(|h| h.serial == serial)
            .expect("a guard's handle is alive")
    }

    fn put(&mut self, guard_index: usize) {
        let live = self.guards.remove(guard_index);
        let index = self.position_of(live.handle);
        drop(live.guard);
        self.model.put(&mut self.handles[index].model, live.id);
    }

    fn detach(&mut self, guard_index: usize) {
        let live = self.guards.remove(guard_index);
        let boxed = live.guard.detach();
        assert_eq!(boxed.id, live.id);
        self.model.stats.detached += 1;
        drop(boxed);
        self.model.drop_object(live.id);
    }

    fn flush(&mut self, index: usize) {
        self.handle_ref(index).flush();
        self.model.flush(&mut self.handles[index].model);
    }

    fn drop_handle(&mut self, index: usize) {
        let serial = self.handles[index].serial;
        while let Some(g) = self.guards.iter().position(|g| g.handle == serial) {
            self.put(g);
        }
        let live = self.handles.remove(index);
        // SAFETY: the box came from `Box::leak` in `new_handle`, and every guard that borrowed
        // it was dropped just above.
        drop(unsafe { Box::from_raw(live.real.as_ptr()) });
        let mut model = live.model;
        self.model.flush(&mut model);
    }

    /// Compares everything observable with the model.
    fn check(&self) {
        let real = self.pool.stats();
        let mut expected = self.model.stats;
        expected.live = self.guards.len();
        expected.idle = self
            .handles
            .iter()
            .map(|h| h.model.cache.len())
            .sum::<usize>()
            + self.model.shared.iter().map(Vec::len).sum::<usize>();
        assert_eq!(real, expected, "statistics");
        assert!(real.idle <= self.max_idle, "idle above max_idle");
        assert_eq!(
            real.misses,
            real.live + real.idle + real.overflow_drops + real.detached,
            "conservation"
        );
        for (i, h) in self.handles.iter().enumerate() {
            assert_eq!(
                self.handle_ref(i).cached(),
                h.model.cache.len(),
                "cache length"
            );
            assert!(h.model.cache.len() <= h.model.credit);
            assert!(h.model.credit <= self.model.capacity);
        }
        assert_eq!(self.pool.handles(), self.handles.len());
        assert_eq!(self.log.count.load(Ordering::Relaxed), self.model.dropped);
        assert_eq!(
            self.log.id_sum.load(Ordering::Relaxed),
            self.model.dropped_id_sum,
            "dropped objects"
        );
    }

    fn step(&mut self, op: u8) {
        let arg = usize::from(op >> 3);
        let handles = self.handles.len();
        let guards = self.guards.len();
        match op & 7 {
            0 if handles > 0 => self.get(arg % handles),
            1 if guards > 0 => self.put(arg % guards),
            2 if guards > 0 => self.detach(arg % guards),
            3 if handles > 0 => self.flush(arg % handles),
            4 => self.new_handle(),
            5 if handles > 0 => self.drop_handle(arg % handles),
            6 if handles > 0 => {
                for _ in 0..=arg {
                    self.get(arg % handles);
                }
            }
            7 => {
                // Hand every guard back, oldest or newest first.
                while !self.guards.is_empty() {
                    let g = if arg & 1 == 0 {
                        0
                    } else {
                        self.guards.len() - 1
                    };
                    self.put(g);
                }
            }
            _ => {}
        }
    }

    /// Drops every guard, then every handle, then the pool, checking at each stage that
    /// every created object is dropped exactly once.
    fn finish(mut self) {
        while !self.guards.is_empty() {
            self.put(self.guards.len() - 1);
        }
        self.check();
        while !self.handles.is_empty() {
            self.drop_handle(self.handles.len() - 1);
            self.check();
        }
        let created = self.model.resets.len();
        let log = Arc::clone(&self.log);
        drop(self.pool);
        assert_eq!(
            log.count.load(Ordering::Relaxed),
            created,
            "objects dropped"
        );
        assert_eq!(
            log.id_sum.load(Ordering::Relaxed),
            created * (created + 1) / 2,
            "each object dropped once"
        );
    }
}

/// Runs `data` as an operation program against the pool and its model.
pub fn run(data: &[u8]) {
    let [a, b, c, ops @ ..] = data else {
        return;
    };
    let max_idle = MAX_IDLE[usize::from(*a) % MAX_IDLE.len()];
    let capacity = LOCAL_CAPACITY[usize::from(*b) % LOCAL_CAPACITY.len()];
    let max_handles = 1 + usize::from(*c) % 3;
    let mut program = Program::new(max_idle, capacity, max_handles);
    program.check();
    for &op in ops.iter().take(MAX_OPS) {
        program.step(op);
        program.check();
    }
    program.finish();
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::run;
    use alloc::vec::Vec;

    #[test]
    fn empty_and_short_inputs_do_nothing() {
        run(&[]);
        run(&[1, 2]);
        run(&[1, 2, 3]);
    }

    #[test]
    fn a_mixed_program_runs_clean() {
        // Small budget, one-slot caches, three handles: overflow, spills and refills.
        let mut program = Vec::from([3u8, 0, 2]);
        program.extend([4, 4, 4, 4, 0, 8, 16, 1, 1, 1, 3, 0, 8, 2, 5, 0, 7]);
        run(&program);
        // Big caches: bursts fill past a batch, flush splits into batches.
        let mut program = Vec::from([8u8, 8, 0]);
        program.extend([4, 0xfe, 0xfe, 0xfe, 7, 3, 4, 0xf6, 15, 5, 13]);
        run(&program);
    }

    #[test]
    fn every_byte_as_a_program_runs_clean() {
        for first in 0..=255u8 {
            run(&[
                first,
                first / 9,
                first / 81,
                4,
                first,
                first.rotate_left(3),
                7,
                4,
                first,
            ]);
        }
    }
}
