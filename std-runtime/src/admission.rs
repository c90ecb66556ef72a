//! Adaptive concurrency limit (placeholder while the module is written).
