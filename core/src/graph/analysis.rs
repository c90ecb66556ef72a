//! Step analysis: what each task needs, computed once at build time so the interpreter takes
//! a fast path for plain tasks.

use core::fmt;

/// What a task needs at run time, as a bit set computed when the graph is frozen.
///
/// A task with none of the [`StepFlags::POLICIES`] bits is *plain*: the interpreter calls it
/// without looking at any policy (no input clone, no retry state, no breaker, cache or budget).
///
/// # Examples
///
/// ```
/// use flujo_core::graph::StepFlags;
/// let f = StepFlags::READS_CONTEXT | StepFlags::RETRY;
/// assert!(f.contains(StepFlags::RETRY));
/// assert!(!f.is_plain());
/// assert!(StepFlags::READS_CONTEXT.is_plain());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StepFlags(u16);

impl StepFlags {
    /// No needs.
    pub const EMPTY: StepFlags = StepFlags(0);
    /// The task may read the context.
    pub const READS_CONTEXT: StepFlags = StepFlags(1 << 0);
    /// The task may write the context (declared; undeclared writes are refused).
    pub const WRITES_CONTEXT: StepFlags = StepFlags(1 << 1);
    /// Pre-processors run before the step.
    pub const PRE_PROCESSORS: StepFlags = StepFlags(1 << 2);
    /// Post-processors run after the step.
    pub const POST_PROCESSORS: StepFlags = StepFlags(1 << 3);
    /// Validators check the output.
    pub const VALIDATORS: StepFlags = StepFlags(1 << 4);
    /// A fallback task exists.
    pub const FALLBACK: StepFlags = StepFlags(1 << 5);
    /// Outputs are cached.
    pub const CACHE: StepFlags = StepFlags(1 << 6);
    /// A circuit breaker guards the task.
    pub const BREAKER: StepFlags = StepFlags(1 << 7);
    /// More than one attempt is allowed.
    pub const RETRY: StepFlags = StepFlags(1 << 8);
    /// A usage estimate is reserved before running.
    pub const USAGE: StepFlags = StepFlags(1 << 9);
    /// The recovery table can skip with the default output.
    pub const SKIP: StepFlags = StepFlags(1 << 10);
    /// Each attempt has a timeout.
    pub const TIMEOUT: StepFlags = StepFlags(1 << 11);

    /// Every bit that takes a task off the fast path.
    pub const POLICIES: StepFlags = StepFlags(
        Self::PRE_PROCESSORS.0
            | Self::POST_PROCESSORS.0
            | Self::VALIDATORS.0
            | Self::FALLBACK.0
            | Self::CACHE.0
            | Self::BREAKER.0
            | Self::RETRY.0
            | Self::USAGE.0
            | Self::SKIP.0
            | Self::TIMEOUT.0,
    );

    /// Whether every bit of `other` is set.
    #[inline]
    pub const fn contains(self, other: StepFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    #[inline]
    pub const fn intersects(self, other: StepFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the task takes the fast path (no policy bit set).
    #[inline]
    pub const fn is_plain(self) -> bool {
        !self.intersects(Self::POLICIES)
    }

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }
}

impl core::ops::BitOr for StepFlags {
    type Output = StepFlags;
    fn bitor(self, rhs: StepFlags) -> StepFlags {
        StepFlags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for StepFlags {
    fn bitor_assign(&mut self, rhs: StepFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for StepFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 12] = [
            "READS_CONTEXT",
            "WRITES_CONTEXT",
            "PRE_PROCESSORS",
            "POST_PROCESSORS",
            "VALIDATORS",
            "FALLBACK",
            "CACHE",
            "BREAKER",
            "RETRY",
            "USAGE",
            "SKIP",
            "TIMEOUT",
        ];
        let mut list = f.debug_set();
        for (i, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                list.entry(&format_args!("{name}"));
            }
        }
        list.finish()
    }
}
