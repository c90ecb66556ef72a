//! How a runner is sized ([`RunnerConfig`]) and what one run is given ([`RunOptions`]).

use crate::graph::CancelFlag;
use crate::policy::Usage;

/// Sizes of a runner's reusable scratch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunnerConfig {
    /// Step records kept per run (their room in the runner's arena is allocated when the
    /// runner is built; more are counted in `records_dropped`).
    pub max_records: usize,
    /// Spare context copies kept for reuse.
    pub max_spare_contexts: usize,
    /// Entries of the step-output cache (0: caching off; results are unchanged).
    pub cache_capacity: usize,
    /// Seed of the generator used for backoff jitter.
    pub seed: u64,
    /// Sequences of tasks run in stretches (one loop for consecutive plain and lean policy
    /// tasks), and pure fan-outs (parallel subtrees of plain tasks that do not write the
    /// context) as flat programs when the run has no budget and no telemetry. Off, every
    /// task runs alone, a policy task through the full pipeline, and every fan-out through
    /// context frames and merges: slower, same results.
    pub fast_paths: bool,
    /// Branches of fan-outs read their parent's context until they write it. Off, each gets
    /// an eager copy: slower, same results.
    pub copy_on_write: bool,
    /// Circuit breakers configured on tasks are consulted and learn outcomes. Off, they are
    /// ignored: a step whose breaker is open runs anyway. This one is a policy, not an
    /// optimization: switching it off can change results.
    pub breakers: bool,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            max_records: 1024,
            max_spare_contexts: 16,
            cache_capacity: 64,
            seed: 0x5EED,
            fast_paths: true,
            copy_on_write: true,
            breakers: true,
        }
    }
}

/// Per-run options.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions<'o> {
    /// Tick at which the run stops (checked before each task; steps can poll it).
    pub deadline: Option<u64>,
    /// Cooperative cancellation.
    pub cancel: Option<&'o CancelFlag>,
    /// The run's usage budget (`None`: unlimited).
    pub budget: Option<Usage>,
}
