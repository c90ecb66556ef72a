//! The semantics contract on the core's single-thread interpreter, one test per rule:
//! sequences: each output is the next input, and the first failure stops the sequence.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::semantics::{add, check, fail, G};
use flujo_core::interp::Outcome;
use flujo_core::policy::ErrorClass;

#[test]
fn sequence_feeds_each_output_to_the_next_input() {
    let g = G::build(|b| {
        let a = add(b, "a", 1);
        let m = b.task("m", |x, _| Ok(x * 10));
        let c = add(b, "c", 3);
        b.sequence("s", &[a, m, c])
    })
    .unwrap();
    let (outcome, out, _, _, recs) = check(&g, 1);
    assert_eq!((outcome, out), (Outcome::Succeeded, Some(23)));
    assert_eq!(recs.len(), 3);
}

#[test]
fn sequence_stops_at_the_first_failure() {
    let ran = Arc::new(AtomicU32::new(0));
    let r2 = ran.clone();
    let g = G::build(|b| {
        let a = add(b, "a", 1);
        let f = fail(b, "f", ErrorClass::Permanent);
        let c = b.task("c", move |x, _| {
            r2.fetch_add(1, Ordering::Relaxed);
            Ok(x)
        });
        b.sequence("s", &[a, f, c])
    })
    .unwrap();
    let (outcome, out, _, err, recs) = check(&g, 1);
    assert_eq!((outcome, out), (Outcome::Failed, None));
    assert_eq!(
        ran.load(Ordering::Relaxed),
        0,
        "the step after the failure never ran"
    );
    assert_eq!(err.unwrap(), "step `f` (node 1): Permanent: boom");
    assert_eq!(recs.len(), 2);
}
