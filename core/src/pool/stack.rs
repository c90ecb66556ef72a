//! The shared free list: a Treiber stack (R. K. Treiber, "Systems Programming: Coping with
//! Parallelism", IBM RJ 5118, 1986) of batch nodes, each carrying up to [`BATCH_CAPACITY`]
//! idle objects, with nodes reclaimed through crossbeam-epoch.
//!
//! A node is allocated when a handle spills or flushes a batch and freed (deferred on the pool's
//! own `Collector`) when a handle takes the batch, so the node allocation is shared by up to
//! `BATCH_CAPACITY` objects. Nodes are never pushed twice: a popped node is only ever destroyed,
//! which, with the epoch deferral, rules out ABA on the head pointer.
//!
//! Push and pop are lock-free: a CAS fails only when another push or pop succeeded.

use crate::sync::{Ordering, UnsafeCell};
use core::cell::Cell;
use core::ptr;
use crossbeam_epoch::{unprotected, Atomic, Guard, Owned, Shared};

/// The most objects one node carries. A handle moves at most this many objects per spill.
pub const BATCH_CAPACITY: usize = 32;

/// A stack node. Its batch is written only before the node is published and read only by
/// poppers after an `Acquire` of the head (the cell lets loom check that edge).
struct Node<T> {
    batch: UnsafeCell<Batch<T>>,
}

/// A batch of idle objects and the link to the node below.
struct Batch<T> {
    /// The node below this one, or null. Written before the node is published and never again,
    /// so poppers may read it while they are pinned.
    next: *const Node<T>,
    /// Objects in `objects[..len]`; `len` in `1 ..= BATCH_CAPACITY`.
    len: usize,
    /// Owned objects (from `Box::into_raw`); the node's own drop never touches them.
    objects: [*mut T; BATCH_CAPACITY],
}

/// A lock-free stack of batches of idle objects.
pub(super) struct BatchStack<T> {
    /// The top node, or null. Every change is a CAS: a push publishes its node with `Release`,
    /// a pop takes the top node with `Acquire` (the node's objects and `next` become visible).
    head: Atomic<Node<T>>,
}

impl<T> BatchStack<T> {
    /// An empty stack.
    pub(super) fn new() -> Self {
        Self {
            head: Atomic::null(),
        }
    }

    /// Pushes `objects` (in `1 ..= BATCH_CAPACITY`, each an owned `Box::into_raw` pointer) as
    /// one node; the stack now owns them. Lock-free.
    pub(super) fn push(&self, objects: &[Cell<*mut T>]) {
        assert!(
            (1..=BATCH_CAPACITY).contains(&objects.len()),
            "batch of {} objects",
            objects.len()
        );
        let mut batch = Batch {
            next: ptr::null(),
            len: objects.len(),
            objects: [ptr::null_mut(); BATCH_CAPACITY],
        };
        for (dst, src) in batch.objects.iter_mut().zip(objects) {
            debug_assert!(!src.get().is_null());
            *dst = src.get();
        }
        let mut owned = Owned::new(Node {
            batch: UnsafeCell::new(batch),
        });
        // SAFETY: a push never dereferences the head it loads (it only links to it and compares
        // it), so it needs no protection from reclamation; an ABA on the head is harmless here
        // because the new node links to whatever node is on top when the CAS succeeds.
        let guard = unsafe { unprotected() };
        loop {
            let head = self.head.load(Ordering::Relaxed, guard);
            let below = head.as_raw();
            // SAFETY: the node is not published yet (we own it), so nothing else reads it.
            owned
                .batch
                .with_mut(|batch| unsafe { (*batch).next = below });
            match self.head.compare_exchange(
                head,
                owned,
                Ordering::Release,
                Ordering::Relaxed,
                guard,
            ) {
                Ok(_) => return,
                Err(failure) => owned = failure.new,
            }
        }
    }

    /// Pops the top node into `out[..n]` and returns `n` (0 if the stack is empty): the caller
    /// now owns those objects. `out` must hold at least as many slots as the largest batch
    /// ever pushed. Lock-free.
    pub(super) fn pop(&self, out: &[Cell<*mut T>], guard: &Guard) -> usize {
        loop {
            let head = self.head.load(Ordering::Acquire, guard);
            // SAFETY: `head` was loaded while `guard` pins this thread, and nodes are destroyed
            // only through `defer_destroy` after being unlinked, so it stays valid until the
            // guard goes.
            let Some(node) = (unsafe { head.as_ref() }) else {
                return 0;
            };
            // SAFETY: `next` is written only before publication, which our `Acquire` load of the
            // head ordered before this read; no one writes it afterwards.
            let next = Shared::from(node.batch.with(|batch| unsafe { (*batch).next }));
            if self
                .head
                .compare_exchange(head, next, Ordering::AcqRel, Ordering::Relaxed, guard)
                .is_ok()
            {
                // SAFETY: we unlinked the node, so we alone take its objects; the batch was
                // written before publication (ordered before our `Acquire`) and never after.
                let len = node.batch.with(|batch| unsafe {
                    let batch = &*batch;
                    debug_assert!((1..=BATCH_CAPACITY).contains(&batch.len));
                    for (dst, src) in out[..batch.len].iter().zip(&batch.objects[..batch.len]) {
                        dst.set(*src);
                    }
                    batch.len
                });
                // SAFETY: our CAS unlinked the node, so no new reference to it can be made; the
                // threads that may still read it are pinned, and the deferred destruction waits
                // for them. Destroying the node frees only its memory (the object pointers it
                // holds were copied out above and have no drop glue).
                unsafe { guard.defer_destroy(head) };
                return len;
            }
        }
    }
}

impl<T> Drop for BatchStack<T> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no other thread can reach the stack any more.
        let guard = unsafe { unprotected() };
        let mut current = self.head.load(Ordering::Relaxed, guard);
        while !current.is_null() {
            // SAFETY: every linked node came from `Owned::new` and is owned by the stack alone.
            let node = unsafe { current.into_owned() }.into_box();
            let batch = node.batch.into_inner();
            for &object in &batch.objects[..batch.len] {
                // SAFETY: each object pointer in a linked node came from `Box::into_raw` and is
                // owned by the node; it is dropped exactly once, here.
                drop(unsafe { alloc::boxed::Box::from_raw(object) });
            }
            current = Shared::from(batch.next);
        }
    }
}

impl<T> core::fmt::Debug for BatchStack<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BatchStack").finish_non_exhaustive()
    }
}
