//! What a typed graph's host declares besides its stages: a struct context through
//! `flujo_core::context!` (merged by field) and a cache input through
//! `flujo_core::canonical_encode!` and the std encodings.

use std::collections::VecDeque;
use std::num::{NonZeroU32, Wrapping};
use std::rc::Rc;
use std::sync::Arc;

use flujo_core::cache::{CacheKey, StepFingerprint};
use flujo_core::context::{Context, MergeStrategy};
use flujo_core::graph::{Graph, NoClock, ParallelOptions, TaskConfig};
use flujo_core::interp::{ErrorKind, Outcome, RunOptions, Runner, RunnerConfig};

#[derive(Clone, Debug, Default, PartialEq)]
struct Ctx {
    seen: u32,
    last_user: String,
    tags: Vec<&'static str>,
}
flujo_core::context!(Ctx {
    seen,
    last_user,
    tags
});

#[test]
fn the_context_macro_names_compares_and_copies_each_field() {
    assert_eq!(Ctx::PARTS, 3);
    let names: Vec<_> = (0..Ctx::PARTS).map(Ctx::part_name).collect();
    assert_eq!(names, ["seen", "last_user", "tags"]);
    let a = Ctx {
        seen: 1,
        last_user: "ann".into(),
        tags: vec!["x"],
    };
    let mut b = Ctx::default();
    for part in 0..Ctx::PARTS {
        assert!(!a.part_eq(&b, part), "part {part} differs before the copy");
        b.copy_part(&a, part);
        assert!(a.part_eq(&b, part), "part {part} equal after the copy");
        // Only that part was copied.
        for later in part + 1..Ctx::PARTS {
            assert!(!a.part_eq(&b, later));
        }
    }
    assert_eq!(a, b);
}

/// Two typed branches writing the context: `a` writes `seen`, `b` writes `field`.
fn fan(second_writes_seen: bool) -> Graph<u64, Ctx> {
    Graph::<u64, Ctx>::build_typed(|b| {
        let count = b.task_with(
            "count",
            |x: u64, cx| {
                cx.ctx_mut()?.seen += 1;
                Ok(x)
            },
            TaskConfig::new().writes_context(),
        );
        let name = b.task_with(
            "name",
            move |x: u64, cx| {
                let c = cx.ctx_mut()?;
                if second_writes_seen {
                    c.seen += 10;
                } else {
                    c.last_user = format!("user-{x}");
                }
                Ok(x + 1)
            },
            TaskConfig::new().writes_context(),
        );
        b.parallel(
            "fan",
            &[count, name],
            |a: u64, x: u64| Ok(a + x),
            ParallelOptions::new().merge(MergeStrategy::ErrorOnConflict),
        )
    })
    .unwrap()
}

#[test]
fn a_macro_declared_context_merges_parallel_branches_by_field() {
    let mut runner = Runner::new(RunnerConfig::default());
    let g = fan(false);
    let r = runner.run(&g, 4, Ctx::default(), &NoClock, &RunOptions::default());
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(r.output, Some(9));
    assert_eq!(r.context.seen, 1);
    assert_eq!(r.context.last_user, "user-4");

    let g = fan(true);
    let r = runner.run(&g, 4, Ctx::default(), &NoClock, &RunOptions::default());
    assert_eq!(r.outcome, Outcome::Failed);
    match r.error.map(|e| e.kind) {
        Some(ErrorKind::MergeConflict { part, branch }) => {
            assert_eq!((part, branch), ("seen", 1));
        }
        other => panic!("expected a conflict on `seen`, got {other:?}"),
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Quote {
    pair: String,
    size: u64,
    note: Option<u8>,
}
flujo_core::canonical_encode!(Quote { pair, size, note });

#[test]
fn the_encode_macro_encodes_the_fields_in_order() {
    let fp = StepFingerprint::builder("quote", 1).build();
    let q = |size| Quote {
        pair: "EURUSD".into(),
        size,
        note: Some(2),
    };
    assert_eq!(CacheKey::new(&fp, &q(5)), CacheKey::new(&fp, &q(5)));
    assert_ne!(CacheKey::new(&fp, &q(5)), CacheKey::new(&fp, &q(6)));
    assert_eq!(
        CacheKey::new(&fp, &q(5)),
        CacheKey::new(&fp, &("EURUSD", 5u64, Some(2u8)))
    );
}

#[test]
fn std_wrappers_encode_as_what_they_hold() {
    let fp = StepFingerprint::builder("wrappers", 1).build();
    let mut dq: VecDeque<u32> = VecDeque::with_capacity(4);
    // Wrapped around the ring's end: two slices, one encoding.
    dq.extend([9, 9, 1]);
    dq.pop_front();
    dq.pop_front();
    dq.extend([2, 3]);
    assert_eq!(
        CacheKey::new(&fp, &dq),
        CacheKey::new(&fp, &vec![1u32, 2, 3])
    );
    assert_eq!(
        CacheKey::new(&fp, &NonZeroU32::new(7).unwrap()),
        CacheKey::new(&fp, &7u32)
    );
    assert_eq!(
        CacheKey::new(&fp, &Wrapping(7u32)),
        CacheKey::new(&fp, &7u32)
    );
    assert_eq!(
        CacheKey::new(&fp, &Arc::new("a".to_string())),
        CacheKey::new(&fp, "a")
    );
    assert_eq!(CacheKey::new(&fp, &Rc::new(3u8)), CacheKey::new(&fp, &3u8));
    assert_eq!(
        CacheKey::new(&fp, &std::marker::PhantomData::<String>),
        CacheKey::new(&fp, &())
    );
}
