//! Why a submission was refused: one reason type for the executor's answer, the priority
//! queues' answer and the report's `rejected_*` counts.

use std::fmt;

/// Why a submission was not run (the run never started; its input was given back).
///
/// The executor refuses for any of the three reasons, in the order of the report's
/// `rejected_*` fields. A bare [`PriorityQueues`](crate::queue::PriorityQueues) refuses a push
/// only with [`QueueFull`](Self::QueueFull) or, once closed,
/// [`ShuttingDown`](Self::ShuttingDown) (the executor closes its queues when it shuts down).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Refusal {
    /// Its priority's queue held its configured capacity.
    QueueFull,
    /// The admission limit on runs in flight was reached.
    OverLimit,
    /// The executor is shutting down (its queues are closed).
    ShuttingDown,
    /// The executor is degraded and sheds submissions of this priority (a degradation action:
    /// `shed_low` or `shed_normal`; see [`crate::config::Action`]).
    Shed,
}

impl Refusal {
    /// Every reason, in the order of the report's `rejected_*` fields; `ALL[r.index()] == r`.
    pub const ALL: [Refusal; 4] = [
        Refusal::QueueFull,
        Refusal::OverLimit,
        Refusal::ShuttingDown,
        Refusal::Shed,
    ];

    /// The reason's index in [`ALL`](Self::ALL): 0 queue full, 1 over limit, 2 shutting down,
    /// 3 shed.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::QueueFull => "the queue of its priority is full",
            Refusal::OverLimit => "the concurrency limit is reached",
            Refusal::ShuttingDown => "the executor is shutting down",
            Refusal::Shed => "the executor is degraded and sheds this priority",
        })
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::Refusal;

    #[test]
    fn index_is_the_position_in_all() {
        for (i, r) in Refusal::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
