//! Differential operation programs: each runs a byte string as a program of operations
//! against a structure and a simple model, and panics on the first answer that differs.
//!
//! The fuzz targets (`fuzz/`) call these, and the corpus replay test (`tests/`) runs every
//! committed corpus file through them on stable. Behind the `check` feature; not covered by
//! semver.

pub mod arena;
pub mod breaker;
pub mod context;
pub mod fixed_cache;
pub mod graph;
pub mod histogram;
pub mod mpmc;
pub mod pool;
pub mod spsc;
