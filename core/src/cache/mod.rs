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
//! `ahash` is for in-process maps only (its output is seeded and changes between processes);
//! nothing here uses it. A [`CacheKey`] is already uniform, so [`FixedCache`] indexes by its
//! bits directly. The std runtime brings a concurrent cache over the same keys.
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
mod fixed;
mod key;

pub use encode::{CanonicalEncode, KeyWriter};
pub use fixed::{CacheError, CacheStats, FixedCache};
pub use key::{CacheKey, FingerprintBuilder, StepFingerprint, KEY_CONTEXT};

#[cfg(feature = "check")]
pub(crate) use fixed::{set_count_for, set_len, set_of};

#[cfg(all(test, not(loom)))]
mod tests;
