//! The run-time monitor: what the executor sees of itself while it runs (`docs/operations.md`).
//!
//! - [`detect`]: an online change-point detector for step latency and error rate, against a
//!   baseline the host can pin.
//! - [`resources`]: process CPU and resident memory, and the memory the engine holds.

pub(crate) mod bottleneck;
pub mod detect;
pub mod resources;
