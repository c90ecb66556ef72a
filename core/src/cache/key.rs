//! Step fingerprints and 256-bit cache keys (BLAKE3 `derive_key` + keyed hash).
//!
//! A key is computed in two stages, so that the per-call cost is one keyed hash of the input:
//!
//! 1. once per step: `fingerprint = BLAKE3-derive_key(KEY_CONTEXT, identity ‖ settings)`;
//! 2. per call: `key = BLAKE3-keyed_hash(fingerprint, canonical(input))`.
//!
//! The context string separates these keys from every other use of BLAKE3, and keying by the
//! fingerprint separates the steps from each other.

use core::fmt;

use super::encode::{hash_canonical, CanonicalEncode, HashMode, KeyWriter};

/// The BLAKE3 `derive_key` context of step fingerprints.
///
/// Changing it (or the encoding of any type) changes every key; the golden-key tests catch
/// that. Bump its version when a change is intended.
pub const KEY_CONTEXT: &str = "flujo-rs 2026 cache key v1";

/// A 256-bit cache key: BLAKE3 over a step's fingerprint and its canonical input.
///
/// Keys are stable across runs, processes and platforms. `Debug` and `Display` print 64
/// lowercase hex digits.
///
/// # Examples
///
/// ```
/// use flujo_core::cache::{CacheKey, StepFingerprint};
///
/// let fingerprint = StepFingerprint::builder("tokenize", 1).build();
/// let key = CacheKey::new(&fingerprint, "hello world");
/// assert_eq!(key, CacheKey::new(&fingerprint, &String::from("hello world")));
/// assert_eq!(format!("{key}").len(), 64);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// Computes the key of `input` for the step with `fingerprint`.
    #[inline]
    pub fn new<T: CanonicalEncode + ?Sized>(fingerprint: &StepFingerprint, input: &T) -> Self {
        Self(hash_canonical(HashMode::Keyed(fingerprint.digest), input))
    }

    /// Wraps 32 bytes, for example a key stored elsewhere or received from another process.
    #[inline]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Returns the 32 bytes of the key.
    #[inline]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first eight bytes as a little-endian `u64`: the bits a cache indexes by.
    #[inline]
    pub(crate) fn index_bits(&self) -> u64 {
        let mut low = [0u8; 8];
        low.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(low)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CacheKey(")?;
        write_hex(f, &self.0)?;
        f.write_str(")")
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// Writes `bytes` as lowercase hex digits, without allocating.
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for byte in bytes {
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

/// What makes a step's output for a given input what it is: the step's identity (name and
/// version) and the policy settings that change its output.
///
/// Built once per step with [`StepFingerprint::builder`]; two fingerprints are equal exactly
/// when their identity and settings (in order) are. Bump the version when the step's code
/// changes what it returns, so old cache entries stop matching.
///
/// # Examples
///
/// ```
/// use flujo_core::cache::{CacheKey, StepFingerprint};
///
/// let v1 = StepFingerprint::builder("summarize", 1).setting("max_words", &50u32).build();
/// let v2 = StepFingerprint::builder("summarize", 2).setting("max_words", &50u32).build();
/// let shorter = StepFingerprint::builder("summarize", 1).setting("max_words", &20u32).build();
/// assert_ne!(CacheKey::new(&v1, "text"), CacheKey::new(&v2, "text"));
/// assert_ne!(CacheKey::new(&v1, "text"), CacheKey::new(&shorter, "text"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepFingerprint {
    /// `derive_key(KEY_CONTEXT, material)`: the key of the keyed hash of inputs.
    digest: [u8; 32],
}

impl StepFingerprint {
    /// Starts a fingerprint for the step `name` at `version`.
    pub fn builder(name: &str, version: u32) -> FingerprintBuilder {
        let mut hasher = HashMode::DeriveKey(KEY_CONTEXT).hasher();
        let mut writer = KeyWriter::streaming(&mut hasher);
        // The tag keeps identity and settings in separate spaces of the material.
        writer.write_bytes(b"step");
        name.encode(&mut writer);
        version.encode(&mut writer);
        FingerprintBuilder { hasher }
    }

    /// Returns the 32-byte digest of the fingerprint.
    #[inline]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.digest
    }
}

impl fmt::Debug for StepFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StepFingerprint(")?;
        write_hex(f, &self.digest)?;
        f.write_str(")")
    }
}

/// Adds policy settings to a [`StepFingerprint`]; see [`StepFingerprint::builder`].
///
/// Settings are taken in call order: the same settings in another order make another
/// fingerprint. A step always adds its settings in the same order, so that is stable.
pub struct FingerprintBuilder {
    /// BLAKE3 in `derive_key` mode over the material so far.
    hasher: blake3::Hasher,
}

impl FingerprintBuilder {
    /// Adds a setting that changes the step's output (a model name, a rounding mode, a
    /// validator's threshold, ...), under `name`.
    #[must_use]
    pub fn setting<T: CanonicalEncode + ?Sized>(mut self, name: &str, value: &T) -> Self {
        let mut writer = KeyWriter::streaming(&mut self.hasher);
        writer.write_bytes(b"set");
        name.encode(&mut writer);
        value.encode(&mut writer);
        self
    }

    /// Finishes the fingerprint.
    pub fn build(self) -> StepFingerprint {
        StepFingerprint {
            digest: *self.hasher.finalize().as_bytes(),
        }
    }
}

impl fmt::Debug for FingerprintBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FingerprintBuilder").finish_non_exhaustive()
    }
}
