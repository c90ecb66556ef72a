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
pub mod spsc;

/// Reads a program's bytes one at a time. Past the end, [`Bytes::next`] reads 0 (so every
/// input is a whole program) and [`Bytes::try_next`] reads `None`. Shared by every program.
#[derive(Debug)]
pub(crate) struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// Reads `data` from its first byte.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// The next byte, or `None` at the end.
    pub(crate) fn try_next(&mut self) -> Option<u8> {
        let (&first, rest) = self.data.split_first()?;
        self.data = rest;
        Some(first)
    }

    /// The next byte, or 0 at the end.
    pub(crate) fn next(&mut self) -> u8 {
        self.try_next().unwrap_or(0)
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
