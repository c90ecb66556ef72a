//! Stable cache keys and a fixed-capacity result cache.
//!
//! A cacheable step's output is stored under a [`CacheKey`]: 256 bits of BLAKE3 over the step's
//! [`StepFingerprint`] (its identity, its version and the policy settings that change its
//! output) and a canonical byte encoding of its input ([`CanonicalEncode`]).
//!
//! - **Stable.** The encoding is platform-independent (little-endian, fixed widths, `usize` as
//!   `u64`, lengths and tags spelled out), so equal inputs give equal keys on every target, in
//!   every process and every run. Golden keys in the tests pin the encoding.
//! - **Domain-separated.** The fingerprint is a BLAKE3 `derive_key` over the context string
//!   [`KEY_CONTEXT`]; the input is then hashed in BLAKE3's keyed mode under that fingerprint.
//!   A key of one step can never be a key of another step by construction of the input, only
//!   by a 256-bit collision.
//! - **Verified.** [`FixedCache`] compares all 32 bytes of the key on every lookup, so two keys
//!   that land in the same bucket can never return each other's values.
//!
//! # Two key modes
//!
//! - [`CacheKey`] (keyed BLAKE3, above): stable across processes and platforms. For caches
//!   shared across processes or persisted, and what the std runtime's concurrent cache uses.
//! - [`FastKey`]: for caches that live in one process. A 64-bit `ahash` digest (seeded by the
//!   step's fingerprint) picks the set, and the canonical bytes themselves (up to
//!   [`FastKey::INLINE_MAX`] bytes, kept in the key; a longer input keeps its [`CacheKey`]
//!   instead) are compared in full on a hit, so it is as exact as the BLAKE3 mode at a
//!   fraction of its cost. Its digests change between builds: never persist them.
//!
//! A [`FixedCache`] takes either ([`FixedKey`]); both are already uniform, so it indexes by
//! their bits directly.
//!
//! # Examples
//!
//! ```
//! use flujo_core::cache::{CacheKey, FixedCache, StepFingerprint};
//!
//! let fingerprint = StepFingerprint::builder("price-quote", 3)
//!     .setting("rounding", &2u8)
//!     .build();
//! let mut cache: FixedCache<u64> = FixedCache::new(1024).unwrap();
//!
//! let key = CacheKey::new(&fingerprint, &("EURUSD", 1_000_000u64));
//! assert_eq!(cache.get(&key, 0), None);
//! assert!(cache.insert(key, 1_084_250, 0).is_none());
//!
//! // Equal inputs give equal keys, so the next run hits.
//! let again = CacheKey::new(&fingerprint, &("EURUSD", 1_000_000u64));
//! assert_eq!(cache.get(&again, 1), Some(&1_084_250));
//! assert_eq!(cache.stats().hits, 1);
//! ```

mod encode;
mod fast;
mod fixed;
mod key;

pub use encode::{CanonicalEncode, KeyWriter};
pub use fast::FastKey;
pub use fixed::{CacheError, CacheStats, FixedCache, FixedKey};
pub use key::{CacheKey, FingerprintBuilder, StepFingerprint, KEY_CONTEXT};

#[cfg(feature = "check")]
pub(crate) use fixed::{set_count_for, set_len, set_of};

#[cfg(all(test, not(loom)))]
mod tests;
