//! Unit tests of the monitor's store: buckets, windows and rules on hand-made parts.

use super::window::Cell;
use super::*;
use crate::config::{AlertRule, Metric, MonitorConfig};

fn part(epoch: u64, bucket: u64, graph: u32, ended: u64, failed: u64) -> Part {
    Part {
        epoch,
        bucket,
        graphs: vec![(
            graph,
            Cell {
                ended,
                failed,
                ..Cell::default()
            },
        )],
        steps: vec![(
            "s".to_string(),
            Cell {
                ended,
                ..Cell::default()
            },
        )],
    }
}

fn monitor(rules: Vec<AlertRule>) -> Monitor {
    let cfg = MonitorConfig {
        rules,
        ..MonitorConfig::default()
    };
    Monitor::new(&cfg, None)
}

#[test]
fn a_part_of_a_bucket_already_evaluated_counts_in_the_next_and_nothing_is_lost() {
    let m = monitor(Vec::new());
    m.absorb(part(0, 0, 1, 5, 0));
    m.close(1, 0, 0);
    // Late: bucket 0 was evaluated; it counts in bucket 1.
    m.absorb(part(0, 0, 1, 3, 0));
    // Another epoch's part is dropped.
    m.absorb(part(7, 1, 1, 100, 0));
    m.close(2, 0, 0);
    let w = m.windows();
    assert_eq!(w.windows[0].total.ended, 3, "1 s: bucket 1");
    assert_eq!(w.windows[1].total.ended, 8, "10 s: both");
    assert_eq!(w.windows[1].steps[0].1.ended, 8);
}

#[test]
fn parts_of_one_bucket_merge_and_graphs_stay_apart() {
    let mut parts = Vec::new();
    merge_part(&mut parts, part(0, 4, 1, 2, 1));
    merge_part(&mut parts, part(0, 4, 2, 3, 0));
    merge_part(&mut parts, part(0, 4, 1, 1, 1));
    merge_part(&mut parts, part(0, 5, 1, 1, 0));
    assert_eq!(parts.len(), 2);
    let m = monitor(Vec::new());
    for p in parts {
        m.absorb(p);
    }
    m.close(6, 0, 0);
    let w = &m.windows().windows[1];
    assert_eq!((w.total.ended, w.total.failed), (7, 2));
    let g1 = &w.graphs.iter().find(|(g, _)| *g == 1).unwrap().1;
    assert_eq!((g1.ended, g1.failed), (4, 2));
    assert_eq!(g1.error_rate, 0.5);
}

#[test]
fn alert_events_are_bounded_and_the_dropped_ones_counted() {
    let rule = AlertRule {
        window: std::time::Duration::from_secs(1),
        above: 0.5,
        clear_below: 0.5,
        ..AlertRule::new("flap", Metric::ErrorRate)
    };
    let m = monitor(vec![rule]);
    // Every bucket flips the rule: all failed, then none failed.
    let n = MAX_ALERT_EVENTS as u64 + 10;
    for b in 0..n {
        m.absorb(part(0, b, 1, 2, if b % 2 == 0 { 2 } else { 0 }));
        assert_eq!(m.close(b + 1, 0, 0).len(), 1, "bucket {b}");
    }
    let a = m.alert_stats();
    assert_eq!(a.fired + a.resolved, n);
    assert_eq!(a.events.len(), MAX_ALERT_EVENTS);
    assert_eq!(a.events_dropped, 10);
    assert_eq!(a.rules, vec![("flap".to_string(), a.fired, a.resolved)]);
}
