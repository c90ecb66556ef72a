//! Loom model of the cache bypass table: two threads meet a step for the first time at once
//! (both claim its slot) and each records a missing lookup that completes the window of two.
//! Exactly one slot is claimed, exactly one caller judges the window, the bypass is taken
//! once, and no lookup is lost or counted twice.

use loom::sync::Arc;
use loom::thread;

use flujo_core::graph::{ManualClock, NodeId};

use super::Selection;
use crate::clock::RuntimeClock;
use crate::config::CacheBypass;

fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(2));
    builder
}

fn settings() -> CacheBypass {
    CacheBypass {
        enabled: true,
        window: 2,
        min_hit_rate: 0.5,
        probe_every: 2,
        probes: 1,
        max_steps: 1,
    }
}

#[test]
fn loom_two_first_lookups_claim_one_slot_and_judge_one_window() {
    builder().check(|| {
        let table = Arc::new(Selection::new(&settings(), None));
        let clock = RuntimeClock::from(ManualClock::new(0));
        let name = |_: NodeId| "step".to_string();
        let other = {
            let (table, clock) = (Arc::clone(&table), clock.clone());
            thread::spawn(move || {
                let name = |_: NodeId| "step".to_string();
                let cfg = settings();
                assert!(table.wants(&cfg, 1, NodeId(3), &name));
                table.looked_up(&cfg, 1, NodeId(3), false, &name, &clock);
            })
        };
        let cfg = settings();
        assert!(table.wants(&cfg, 1, NodeId(3), &name));
        table.looked_up(&cfg, 1, NodeId(3), false, &name, &clock);
        other.join().unwrap();
        let stats = table.stats();
        assert_eq!(stats.steps.len(), 1, "one slot claimed");
        assert_eq!(stats.untracked, 0);
        let row = &stats.steps[0];
        assert_eq!(
            (row.bypassed, row.lookups, row.hits, row.taken, row.undone),
            (true, 2, 0, 1, 0)
        );
        assert_eq!(stats.events.len(), 1);
        assert_eq!(stats.events[0].lookups, 2);
    });
}
