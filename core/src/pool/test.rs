//! Unit tests of the pool.
