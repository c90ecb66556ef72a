use alloc::vec::Vec;
use std::string::ToString;

use crate::policy::{Rng, Usage, UsageBudget, UsageDenied, UsageLimit};

/// `used + reserved + lent + available == max` per dimension while not over-committed;
/// nothing available when over-committed or exceeded.
fn assert_conserved(budget: &UsageBudget) {
    let committed = budget
        .used()
        .saturating_add(budget.reserved())
        .saturating_add(budget.lent());
    let max = budget.max();
    if budget.exceeded().is_some() {
        assert_eq!(budget.available(), Usage::ZERO);
        return;
    }
    for (committed, available, max) in [
        (committed.cost, budget.available().cost, max.cost),
        (committed.tokens, budget.available().tokens, max.tokens),
    ] {
        if committed <= max {
            assert_eq!(committed + available, max, "{budget:?}");
        } else {
            assert_eq!(available, 0, "{budget:?}");
        }
    }
}

#[test]
fn reserve_and_reconcile_refund_or_charge() {
    let mut budget = UsageBudget::new(100, 50);
    let r = budget.reserve(Usage::new(40, 20)).unwrap();
    assert_eq!(r.estimate(), Usage::new(40, 20));
    assert_eq!(budget.reserved(), Usage::new(40, 20));
    assert_eq!(budget.available(), Usage::new(60, 30));
    assert_conserved(&budget);

    // Under the estimate: the difference is refunded.
    budget.reconcile(r, Usage::new(30, 5)).unwrap();
    assert_eq!(budget.used(), Usage::new(30, 5));
    assert_eq!(budget.reserved(), Usage::ZERO);
    assert_eq!(budget.available(), Usage::new(70, 45));

    // Over the estimate but within the limit: the difference is charged.
    let r = budget.reserve(Usage::new(10, 10)).unwrap();
    budget.reconcile(r, Usage::new(50, 10)).unwrap();
    assert_eq!(budget.used(), Usage::new(80, 15));
    assert_eq!(budget.exceeded(), None);
    assert_conserved(&budget);
}

#[test]
fn denials_name_the_limit() {
    let mut budget = UsageBudget::new(10, 10);
    let held = budget.reserve(Usage::new(6, 2)).unwrap();
    assert_eq!(
        budget.reserve(Usage::new(5, 0)),
        Err(UsageDenied {
            limit: UsageLimit::Cost,
            max: 10,
            wanted: 11
        })
    );
    assert_eq!(
        budget.reserve(Usage::new(0, 9)),
        Err(UsageDenied {
            limit: UsageLimit::Tokens,
            max: 10,
            wanted: 11
        })
    );
    // Exactly the rest is fine; a denial changes nothing.
    assert_eq!(budget.reserved(), Usage::new(6, 2));
    let rest = budget.reserve(Usage::new(4, 8)).unwrap();
    assert_eq!(budget.available(), Usage::ZERO);
    budget.reconcile(held, Usage::ZERO).unwrap();
    budget.reconcile(rest, Usage::ZERO).unwrap();
    assert_eq!(budget.available(), Usage::new(10, 10));

    let message = alloc::format!(
        "{}",
        UsageDenied {
            limit: UsageLimit::Tokens,
            max: 10,
            wanted: 11
        }
    );
    assert!(message.contains("tokens_max") && message.contains("10") && message.contains("11"));
}

#[test]
fn charging_beyond_the_limit_marks_the_budget_exceeded() {
    let mut budget = UsageBudget::new(10, 100);
    let r = budget.reserve(Usage::new(5, 5)).unwrap();
    let denied = budget.reconcile(r, Usage::new(12, 5)).unwrap_err();
    assert_eq!(denied.limit, UsageLimit::Cost);
    assert_eq!((denied.max, denied.wanted), (10, 12));
    assert_eq!(budget.exceeded(), Some(UsageLimit::Cost));
    assert_eq!(budget.used(), Usage::new(12, 5));
    assert_eq!(budget.available(), Usage::ZERO);
    // Every later reservation is denied, naming the limit, even an empty one.
    let denied = budget.reserve(Usage::ZERO).unwrap_err();
    assert_eq!(denied.limit, UsageLimit::Cost);
    assert_eq!(denied.wanted, 12);
    // The denial names the total the estimate would make: 12 spent + 1 asked.
    let denied = budget.reserve(Usage::new(1, 0)).unwrap_err();
    assert_eq!((denied.max, denied.wanted), (10, 13));
    assert_eq!(
        denied.to_string(),
        "usage budget cost_max is 10, the run would reach 13"
    );
}

#[test]
fn sums_past_u64_max_are_denied_not_wrapped() {
    let mut budget = UsageBudget::unlimited();
    let r = budget.reserve(Usage::new(u64::MAX, 1)).unwrap();
    assert_eq!(
        budget.reserve(Usage::new(1, 0)),
        Err(UsageDenied {
            limit: UsageLimit::Cost,
            max: u64::MAX,
            wanted: u64::MAX
        })
    );
    budget.reconcile(r, Usage::new(u64::MAX, u64::MAX)).unwrap();
    assert_eq!(budget.used(), Usage::new(u64::MAX, u64::MAX));
    assert_eq!(budget.exceeded(), None);
    let r = budget.reserve(Usage::ZERO).unwrap();
    // One more unit of cost is past u64::MAX: exceeded, not wrapped.
    let denied = budget.reconcile(r, Usage::new(1, 0)).unwrap_err();
    assert_eq!(denied.limit, UsageLimit::Cost);
    assert_eq!(budget.exceeded(), Some(UsageLimit::Cost));
    assert_eq!(budget.used(), Usage::new(u64::MAX, u64::MAX));
}

#[test]
fn an_overrun_over_commits_until_reservations_settle() {
    let mut budget = UsageBudget::new(10, 10);
    let a = budget.reserve(Usage::new(5, 0)).unwrap();
    let b = budget.reserve(Usage::new(5, 0)).unwrap();
    budget.reconcile(a, Usage::new(8, 0)).unwrap();
    // 8 used + 5 reserved: over-committed, nothing available, not exceeded.
    assert_eq!(budget.available(), Usage::new(0, 10));
    assert_eq!(budget.exceeded(), None);
    assert_conserved(&budget);
    budget.reconcile(b, Usage::new(1, 0)).unwrap();
    assert_eq!(budget.available(), Usage::new(1, 10));
    assert_conserved(&budget);
}

#[test]
fn split_shares_sum_to_the_available_amount() {
    for parts in 1..=7usize {
        for (cost, tokens) in [(0, 0), (1, 6), (10, 3), (100, 99), (u64::MAX, 7)] {
            let mut parent = UsageBudget::new(cost, tokens);
            let shares: Vec<UsageBudget> = parent.split(parts).collect();
            assert_eq!(shares.len(), parts);
            assert_eq!(parent.available(), Usage::ZERO);
            assert_eq!(parent.lent(), Usage::new(cost, tokens));
            let sum = shares
                .iter()
                .fold(Usage::ZERO, |acc, s| acc.saturating_add(s.max()));
            assert_eq!(sum, Usage::new(cost, tokens));
            let (lo, hi) = shares.iter().fold((u64::MAX, 0), |(lo, hi), s| {
                (lo.min(s.max().cost), hi.max(s.max().cost))
            });
            assert!(hi - lo <= 1, "even shares: {lo}..{hi}");
            for share in shares {
                parent.merge(share).unwrap();
            }
            assert_eq!(parent.available(), Usage::new(cost, tokens));
            assert_conserved(&parent);
        }
    }
}

#[test]
fn split_returns_unyielded_shares_and_zero_parts_lends_nothing() {
    let mut parent = UsageBudget::new(10, 10);
    let reserved = parent.reserve(Usage::new(1, 1)).unwrap();
    {
        let mut split = parent.split(3);
        assert_eq!(split.len(), 3);
        let first = split.next().unwrap();
        assert_eq!(first.max(), Usage::new(3, 3));
        drop(split);
        assert_eq!(parent.lent(), Usage::new(3, 3));
        parent.merge(first).unwrap();
    }
    assert_eq!(parent.lent(), Usage::ZERO);
    assert_eq!(parent.split(0).count(), 0);
    assert_eq!(parent.lent(), Usage::ZERO);
    assert_eq!(parent.available(), Usage::new(9, 9));
    parent.reconcile(reserved, Usage::new(1, 1)).unwrap();
    assert_conserved(&parent);
}

#[test]
fn merge_charges_branch_usage_and_flags_an_overrun() {
    for (a_used, parent_ok) in [(3u64, true), (7, false)] {
        let mut parent = UsageBudget::new(20, 20);
        let mut branches = parent.split(2);
        let mut a = branches.next().unwrap();
        let mut b = branches.next().unwrap();
        drop(branches);
        let r = a.reserve(Usage::new(10, 10)).unwrap();
        a.reconcile(r, Usage::new(a_used, 10)).unwrap();
        // b goes past its share (10) by 5 and reports its own denial.
        let r = b.reserve(Usage::new(10, 0)).unwrap();
        assert_eq!(
            b.reconcile(r, Usage::new(15, 0)).unwrap_err().limit,
            UsageLimit::Cost
        );
        parent.merge(a).unwrap();
        let merged = parent.merge(b);
        assert_eq!(parent.used(), Usage::new(a_used + 15, 10));
        assert_eq!(parent.lent(), Usage::ZERO);
        if parent_ok {
            assert_eq!(merged, Ok(()));
            assert_eq!(parent.exceeded(), None);
            assert_conserved(&parent);
        } else {
            assert_eq!(
                merged,
                Err(UsageDenied {
                    limit: UsageLimit::Cost,
                    max: 20,
                    wanted: 22
                })
            );
            assert_eq!(parent.exceeded(), Some(UsageLimit::Cost));
        }
    }
}

#[test]
fn merged_children_with_outstanding_reservations_count_them_as_used() {
    let mut parent = UsageBudget::new(10, 10);
    let mut child = parent.split(1).next().unwrap();
    let held = child.reserve(Usage::new(4, 4)).unwrap();
    assert_eq!(held.estimate(), Usage::new(4, 4));
    parent.merge(child).unwrap();
    assert_eq!(parent.used(), Usage::new(4, 4));
    assert_conserved(&parent);
}

#[test]
fn random_programs_conserve_the_budget() {
    let programs = if cfg!(miri) { 5 } else { 2_000 };
    let mut rng = Rng::new(0xB0D6E7);
    for _ in 0..programs {
        let mut budget = UsageBudget::new(rng.below(50), rng.below(50));
        let mut held = Vec::new();
        let mut children = Vec::new();
        let mut charged = Usage::ZERO;
        for _ in 0..20 {
            match rng.below(4) {
                0 => {
                    let estimate = Usage::new(rng.below(15), rng.below(15));
                    let before = budget.available();
                    match budget.reserve(estimate) {
                        Ok(r) => held.push(r),
                        Err(denied) => {
                            assert!(denied.wanted > denied.max);
                            assert_eq!(budget.available(), before);
                        }
                    }
                }
                1 if !held.is_empty() => {
                    let r = held.swap_remove(rng.below(held.len() as u64) as usize);
                    let actual = Usage::new(rng.below(15), rng.below(15));
                    charged = charged.saturating_add(actual);
                    let _ = budget.reconcile(r, actual);
                }
                2 if children.is_empty() => {
                    let parts = rng.below(4) as usize;
                    let available = budget.available();
                    children.extend(budget.split(parts));
                    let lent = children.iter().fold(Usage::ZERO, |acc, c: &UsageBudget| {
                        acc.saturating_add(c.max())
                    });
                    assert_eq!(lent, if parts == 0 { Usage::ZERO } else { available });
                }
                _ => {
                    if let Some(mut child) = children.pop() {
                        let ask = Usage::new(rng.below(10), rng.below(10));
                        if let Ok(r) = child.reserve(ask) {
                            let _ = child.reconcile(r, ask);
                            charged = charged.saturating_add(ask);
                        }
                        let _ = budget.merge(child);
                    }
                }
            }
            assert_conserved(&budget);
            assert_eq!(budget.used(), charged);
        }
    }
}
