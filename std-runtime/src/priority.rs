//! The three priority levels of a submission (the executor's queues, one per level).

/// A priority level ([`Normal`](Priority::Normal) by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Served first.
    High,
    /// Served when High is empty (or Normal is starved).
    #[default]
    Normal,
    /// Served when High and Normal are empty (or Low is starved).
    Low,
}

impl Priority {
    /// The levels from highest to lowest; `ALL[p.index()] == p`.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The level's index: 0 for High, 1 for Normal, 2 for Low.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}
