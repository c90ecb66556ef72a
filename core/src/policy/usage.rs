//! Usage budgets: a run's cost and token limits, spent through reservations.
//!
//! A step reserves its estimated usage before it runs ([`UsageBudget::reserve`]) and
//! reconciles the reservation with what it actually used afterwards
//! ([`UsageBudget::reconcile`]): the unspent part of the estimate goes back, an overrun is
//! charged. A denial names the limit; the interpreter aborts the run with partial results
//! (never retried, never a fallback). A charge that goes past a limit (an overrun: the step
//! reported more than was left) marks the budget exceeded and names the limit and the usage
//! reached ([`UsageBudget::overrun`]); the interpreter aborts the run after that step.
//!
//! Parallel branches each get a sub-budget: [`UsageBudget::split`] lends the parent's whole
//! available amount out in `n` shares that sum to it exactly, and
//! [`UsageBudget::merge`] takes a branch's budget back, charging what it used and returning the
//! rest.
//!
//! Accounting invariant, per dimension: `used + reserved + lent + available == max` while the
//! budget is not over-committed; an overrun reconciled while other reservations are out can
//! commit more than `max` (the usage happened), and then `available` is zero until those
//! reservations settle. A charge that takes `used` itself past `max` (or past `u64::MAX`)
//! marks the budget exceeded. Estimates and charges never overflow: sums that would pass
//! `u64::MAX` are denials.

use core::fmt;

/// An amount of usage: cost (in the host's smallest unit, e.g. micro-dollars) and tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Usage {
    /// Cost in the host's smallest unit.
    pub cost: u64,
    /// Tokens.
    pub tokens: u64,
}

impl Usage {
    /// No usage.
    pub const ZERO: Usage = Usage { cost: 0, tokens: 0 };

    /// `cost` and `tokens`.
    pub const fn new(cost: u64, tokens: u64) -> Self {
        Self { cost, tokens }
    }

    /// The sum, saturating per dimension.
    #[must_use]
    pub const fn saturating_add(self, other: Usage) -> Usage {
        Usage {
            cost: self.cost.saturating_add(other.cost),
            tokens: self.tokens.saturating_add(other.tokens),
        }
    }

    /// The difference, saturating at zero per dimension.
    #[must_use]
    pub const fn saturating_sub(self, other: Usage) -> Usage {
        Usage {
            cost: self.cost.saturating_sub(other.cost),
            tokens: self.tokens.saturating_sub(other.tokens),
        }
    }
}

/// One of a budget's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UsageLimit {
    /// `cost_max`.
    Cost,
    /// `tokens_max`.
    Tokens,
}

impl UsageLimit {
    /// The limit's field name: `"cost_max"` or `"tokens_max"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            UsageLimit::Cost => "cost_max",
            UsageLimit::Tokens => "tokens_max",
        }
    }
}

/// A reservation (or a charge) that would take a budget past one of its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageDenied {
    /// The limit in the way.
    pub limit: UsageLimit,
    /// The limit's value.
    pub max: u64,
    /// The total that the budget would have reached (or has reached, for a charge).
    pub wanted: u64,
}

impl fmt::Display for UsageDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "usage budget {} is {}, the run would reach {}",
            self.limit.as_str(),
            self.max,
            self.wanted
        )
    }
}

impl core::error::Error for UsageDenied {}

/// Usage set aside by [`UsageBudget::reserve`]; give it back to the same budget's
/// [`reconcile`](UsageBudget::reconcile). Not `Clone`, so it is reconciled at most once.
#[must_use = "a reservation holds budget until it is reconciled"]
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation {
    estimate: Usage,
}

impl Reservation {
    /// The usage set aside.
    pub const fn estimate(&self) -> Usage {
        self.estimate
    }
}

/// A run's usage budget (`cost_max`, `tokens_max`) and what has been used, reserved and lent
/// to sub-budgets.
///
/// # Examples
///
/// ```
/// use flujo_core::policy::{Usage, UsageBudget, UsageLimit};
///
/// let mut budget = UsageBudget::new(100, 1_000);
/// let reservation = budget.reserve(Usage::new(30, 200)).unwrap();
/// // The step used less than it estimated: the difference goes back.
/// budget.reconcile(reservation, Usage::new(25, 150)).unwrap();
/// assert_eq!(budget.used(), Usage::new(25, 150));
///
/// let denied = budget.reserve(Usage::new(80, 0)).unwrap_err();
/// assert_eq!(denied.limit, UsageLimit::Cost);
/// assert_eq!((denied.max, denied.wanted), (100, 105));
///
/// // Two parallel branches share what is left, then merge back.
/// let mut branches = budget.split(2);
/// let mut a = branches.next().unwrap();
/// let b = branches.next().unwrap();
/// drop(branches);
/// assert_eq!(a.max().saturating_add(b.max()), Usage::new(75, 850));
/// let r = a.reserve(Usage::new(10, 10)).unwrap();
/// a.reconcile(r, Usage::new(10, 10)).unwrap();
/// budget.merge(a).unwrap();
/// budget.merge(b).unwrap();
/// assert_eq!(budget.used(), Usage::new(35, 160));
/// assert_eq!(budget.available(), Usage::new(65, 840));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageBudget {
    max: Usage,
    /// Charged by reconciled reservations and merged sub-budgets; above `max` only once the
    /// budget is exceeded.
    used: Usage,
    /// The estimates of reservations not yet reconciled.
    reserved: Usage,
    /// The shares of sub-budgets not yet merged back.
    lent: Usage,
    /// The first limit that charges took the budget past; every reservation is denied after.
    exceeded: Option<UsageLimit>,
}

impl UsageBudget {
    /// A budget of `cost_max` and `tokens_max`.
    pub const fn new(cost_max: u64, tokens_max: u64) -> Self {
        Self::with_max(Usage::new(cost_max, tokens_max))
    }

    /// A budget whose limits are `max`.
    pub const fn with_max(max: Usage) -> Self {
        Self {
            max,
            used: Usage::ZERO,
            reserved: Usage::ZERO,
            lent: Usage::ZERO,
            exceeded: None,
        }
    }

    /// A budget with no practical limit (`u64::MAX` of each).
    pub const fn unlimited() -> Self {
        Self::new(u64::MAX, u64::MAX)
    }

    /// The limits.
    pub const fn max(&self) -> Usage {
        self.max
    }

    /// The usage charged so far.
    pub const fn used(&self) -> Usage {
        self.used
    }

    /// The estimates of outstanding reservations.
    pub const fn reserved(&self) -> Usage {
        self.reserved
    }

    /// The shares of sub-budgets not yet merged back.
    pub const fn lent(&self) -> Usage {
        self.lent
    }

    /// What may still be reserved: `max - used - reserved - lent`, zero once exceeded.
    pub const fn available(&self) -> Usage {
        if self.exceeded.is_some() {
            return Usage::ZERO;
        }
        self.max
            .saturating_sub(self.used)
            .saturating_sub(self.reserved)
            .saturating_sub(self.lent)
    }

    /// The limit that charges took this budget past, if any.
    pub const fn exceeded(&self) -> Option<UsageLimit> {
        self.exceeded
    }

    /// When charges took this budget past a limit: the limit, its value and the usage
    /// charged so far in that dimension (the exact figure reached).
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::policy::{Usage, UsageBudget, UsageLimit};
    ///
    /// let mut budget = UsageBudget::new(10, 100);
    /// let r = budget.reserve(Usage::ZERO).unwrap();
    /// budget.reconcile(r, Usage::new(50, 0)).unwrap_err();
    /// let over = budget.overrun().unwrap();
    /// assert_eq!((over.limit, over.max, over.wanted), (UsageLimit::Cost, 10, 50));
    /// ```
    pub const fn overrun(&self) -> Option<UsageDenied> {
        match self.exceeded {
            Some(limit) => Some(self.denial(limit, self.used)),
            None => None,
        }
    }

    /// Sets `estimate` aside, or says which limit it would break. An exceeded budget denies
    /// every reservation (naming the limit it went past).
    pub fn reserve(&mut self, estimate: Usage) -> Result<Reservation, UsageDenied> {
        let committed = self
            .used
            .saturating_add(self.reserved)
            .saturating_add(self.lent);
        if let Some(limit) = self.exceeded {
            // Already past the limit: the denial names the total this estimate would make.
            return Err(self.denial(limit, committed.saturating_add(estimate)));
        }
        // A sum past u64::MAX is past any limit: it reads as u64::MAX in the denial.
        let cost = committed.cost.checked_add(estimate.cost);
        let tokens = committed.tokens.checked_add(estimate.tokens);
        let wanted = Usage::new(cost.unwrap_or(u64::MAX), tokens.unwrap_or(u64::MAX));
        if cost.is_none() || wanted.cost > self.max.cost {
            return Err(self.denial(UsageLimit::Cost, wanted));
        }
        if tokens.is_none() || wanted.tokens > self.max.tokens {
            return Err(self.denial(UsageLimit::Tokens, wanted));
        }
        self.reserved = self.reserved.saturating_add(estimate);
        Ok(Reservation { estimate })
    }

    /// Settles `reservation` at `actual`: the estimate is released and `actual` charged, so
    /// an underrun is refunded and an overrun charged. A charge that takes the budget past a
    /// limit marks it exceeded and returns the denial (the charge is kept: it happened).
    pub fn reconcile(
        &mut self,
        reservation: Reservation,
        actual: Usage,
    ) -> Result<(), UsageDenied> {
        debug_assert!(
            self.reserved.cost >= reservation.estimate.cost
                && self.reserved.tokens >= reservation.estimate.tokens,
            "a reservation reconciled against a budget that did not make it"
        );
        self.reserved = self.reserved.saturating_sub(reservation.estimate);
        self.charge(actual)
    }

    /// Lends all that is available to `parts` sub-budgets for parallel branches; their limits
    /// sum to exactly what was available (the first `available % parts` get one more unit).
    /// Shares the iterator never yields return to this budget when it is dropped; give each
    /// yielded sub-budget back with [`merge`](Self::merge). A sub-budget that is never merged
    /// keeps its share lent (its usage is lost, never its limit).
    pub fn split(&mut self, parts: usize) -> Split<'_> {
        let total = self.available();
        let parts_u64 = parts as u64;
        if parts_u64 > 0 {
            self.lent = self.lent.saturating_add(total);
        }
        Split {
            parent: self,
            total,
            parts: parts_u64,
            yielded: 0,
            given: Usage::ZERO,
        }
    }

    /// Takes back a sub-budget made by [`split`](Self::split): its share stops being lent and
    /// what it used (outstanding reservations and its own loans counted as used, since they
    /// may have been spent) is charged here. Returns the denial if that charge takes this
    /// budget past a limit (an exceeded child alone does not: it already reported its own).
    pub fn merge(&mut self, child: UsageBudget) -> Result<(), UsageDenied> {
        debug_assert!(
            self.lent.cost >= child.max.cost && self.lent.tokens >= child.max.tokens,
            "a sub-budget merged into a budget that did not lend it"
        );
        self.lent = self.lent.saturating_sub(child.max);
        let spent = child
            .used
            .saturating_add(child.reserved)
            .saturating_add(child.lent);
        // A child that went past its own share reported its denial when it did; here the
        // overrun only counts against this budget's limits.
        self.charge(spent)
    }

    fn charge(&mut self, amount: Usage) -> Result<(), UsageDenied> {
        let cost = self.used.cost.checked_add(amount.cost);
        let tokens = self.used.tokens.checked_add(amount.tokens);
        self.used = self.used.saturating_add(amount);
        let over = if cost.is_none() || self.used.cost > self.max.cost {
            Some(UsageLimit::Cost)
        } else if tokens.is_none() || self.used.tokens > self.max.tokens {
            Some(UsageLimit::Tokens)
        } else {
            None
        };
        match over {
            Some(limit) => {
                if self.exceeded.is_none() {
                    self.exceeded = Some(limit);
                }
                Err(self.denial(limit, self.used))
            }
            None => Ok(()),
        }
    }

    const fn denial(&self, limit: UsageLimit, wanted: Usage) -> UsageDenied {
        UsageDenied {
            limit,
            max: Self::field(self.max, limit),
            wanted: Self::field(wanted, limit),
        }
    }

    const fn field(usage: Usage, limit: UsageLimit) -> u64 {
        match limit {
            UsageLimit::Cost => usage.cost,
            UsageLimit::Tokens => usage.tokens,
        }
    }
}

/// The sub-budgets of a [`UsageBudget::split`], yielded one by one; dropping it returns the
/// shares not yet yielded to the parent.
#[derive(Debug)]
pub struct Split<'a> {
    parent: &'a mut UsageBudget,
    total: Usage,
    parts: u64,
    yielded: u64,
    given: Usage,
}

impl Split<'_> {
    /// Share `index` of `total` split `parts` ways.
    fn share(total: u64, parts: u64, index: u64) -> u64 {
        total / parts + u64::from(index < total % parts)
    }
}

impl Iterator for Split<'_> {
    type Item = UsageBudget;

    fn next(&mut self) -> Option<UsageBudget> {
        if self.yielded == self.parts {
            return None;
        }
        let share = Usage::new(
            Self::share(self.total.cost, self.parts, self.yielded),
            Self::share(self.total.tokens, self.parts, self.yielded),
        );
        self.yielded += 1;
        self.given = self.given.saturating_add(share);
        debug_assert!(self.given.cost <= self.total.cost && self.given.tokens <= self.total.tokens);
        Some(UsageBudget::with_max(share))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.parts - self.yielded) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Split<'_> {}

impl Drop for Split<'_> {
    fn drop(&mut self) {
        if self.parts == 0 {
            return;
        }
        let unyielded = self.total.saturating_sub(self.given);
        self.parent.lent = self.parent.lent.saturating_sub(unyielded);
    }
}
