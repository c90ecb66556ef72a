//! In-process cache keys: an ahash digest to index by, the canonical bytes to verify a hit.
//! The design is in the docs of [`FastKey`].

use alloc::vec::Vec;
use core::fmt;
use core::hash::{BuildHasher, Hash, Hasher};

use super::encode::{CanonicalEncode, KeyWriter};
use super::key::{CacheKey, StepFingerprint};
#[cfg(doc)]
use super::FixedCache;

/// The longest canonical encoding a [`FastKey`] keeps whole.
const INLINE_MAX: usize = 64;

/// The `len` of a key that keeps a [`CacheKey`] instead of the canonical bytes.
const LEN_DIGEST: u8 = u8::MAX;

/// The bytes of the fingerprint's digest, at the start of [`FastKey`]'s `id`.
const FINGERPRINT_LEN: usize = 32;

/// The length of [`FastKey`]'s `id`: the fingerprint's digest, then the kept bytes.
const ID_LEN: usize = FINGERPRINT_LEN + INLINE_MAX;

const _: () = assert!(INLINE_MAX < LEN_DIGEST as usize && INLINE_MAX >= 32);
const _: () = assert!(ID_LEN.is_multiple_of(16));

/// An in-process cache key: a 64-bit ahash digest of a step's canonical input, and the input's
/// canonical bytes (up to [`INLINE_MAX`](Self::INLINE_MAX)) with the step's fingerprint, so
/// that a hit is verified in full.
///
/// Use it for caches inside one process; use [`CacheKey`] for caches shared across processes or
/// persisted. A [`FixedCache`] takes either: `FixedCache<V, FastKey>`.
///
/// Equality is exact: two keys are equal when their fingerprints are and their canonical
/// encodings are byte for byte (encodings longer than `INLINE_MAX` bytes: when their
/// [`CacheKey`]s are). [`Hash`] writes only the digest, as one `u64`.
///
/// # Design
///
/// It is for caches that live and die with the process (a runner's [`FixedCache`],
/// a map in the host): computing it costs one pass of ahash over the canonical bytes instead of
/// a keyed BLAKE3, and it stays exact because a hit compares the bytes themselves:
///
/// - **Digest**: ahash (its portable fallback or AES variant, whichever the build selects) over
///   the canonical bytes, seeded with the four little-endian words of the step's
///   [`StepFingerprint`] digest. It picks the set or bucket; it is never trusted alone.
/// - **Kept bytes**: encodings of up to [`FastKey::INLINE_MAX`] bytes are kept whole, zero
///   padded, next to the fingerprint's 32-byte digest. Two such keys are equal exactly when
///   their fingerprints and their canonical bytes are (the digest and the length are compared
///   first, as an early out).
/// - **Fallback**: a longer encoding keeps the 32 bytes of its [`CacheKey`] (keyed BLAKE3)
///   instead, marked as such, so it is as exact as the BLAKE3 mode (a 256-bit collision) and
///   costs what that mode costs. Nothing is allocated in either case.
/// - **In a [`FixedCache`]**: a slot keeps the digest, the length and the kept bytes; the
///   fingerprint is kept once per step in a table of the cache, and a hit compares the slot's
///   row of it last.
/// - **Seeding**: the seeds are public (a fingerprint is a hash of the step's name, version
///   and settings), and `ahash` is built without its runtime RNG. That is fine for the caches
///   it is meant for: a [`FixedCache`] scans at most [`FixedCache::WAYS`] slots per lookup
///   whatever the digests, and compares the bytes, so inputs crafted to collide can at worst
///   evict each other from one set, never slow a lookup down or return a wrong value. A host
///   that puts fast keys in an open-addressing map fed by untrusted inputs should salt the
///   fingerprint per process (a random `.setting("salt", &seed)`), which changes every digest.
///
/// Fast keys are not stable: the digest depends on the `ahash` version and the target's
/// features. Never persist them or send them to another process; that is what [`CacheKey`] is
/// for.
///
/// # Examples
///
/// ```
/// use flujo_core::cache::{FastKey, FixedCache, StepFingerprint};
///
/// let step = StepFingerprint::builder("price-quote", 3).build();
/// let mut cache: FixedCache<u64, FastKey> = FixedCache::new(1024).unwrap();
///
/// let key = FastKey::new(&step, &("EURUSD", 1_000_000u64));
/// assert_eq!(key.canonical_bytes().map(<[u8]>::len), Some(8 + 6 + 8));
/// assert!(cache.insert(key, 1_084_250, 0).is_none());
/// assert_eq!(cache.get(&FastKey::new(&step, &("EURUSD", 1_000_000u64)), 1), Some(&1_084_250));
/// assert_eq!(cache.get(&FastKey::new(&step, &("EURUSD", 999_999u64)), 1), None);
/// ```
#[derive(Clone, Copy, Eq)]
pub struct FastKey {
    /// ahash of `bytes[..len]` seeded by `fingerprint`, or the index bits of the `CacheKey`
    /// kept in `bytes[..32]` when `len == LEN_DIGEST`.
    digest: u64,
    /// The canonical length, in `0..=INLINE_MAX`, or `LEN_DIGEST`.
    len: u8,
    /// The step's fingerprint digest (`id[..FINGERPRINT_LEN]`), then the canonical bytes or
    /// the `CacheKey` (`id[FINGERPRINT_LEN..]`), zero after them, so equal keys are equal
    /// arrays. One array, so that a hit compares it in one pass.
    id: [u8; ID_LEN],
}

impl FastKey {
    /// The longest canonical encoding kept whole (64 bytes); a longer one keeps its
    /// [`CacheKey`] instead.
    pub const INLINE_MAX: usize = INLINE_MAX;

    /// Computes the fast key of `input` for the step with `fingerprint`.
    ///
    /// Encodings up to [`INLINE_MAX`](Self::INLINE_MAX) bytes cost one ahash pass; longer ones
    /// cost a [`CacheKey::new`] (and encoding the input twice).
    #[inline]
    pub fn new<T: CanonicalEncode + ?Sized>(fingerprint: &StepFingerprint, input: &T) -> Self {
        let mut writer = KeyWriter::inline();
        input.encode(&mut writer);
        match writer.inline_bytes() {
            Some(canonical) if canonical.len() <= INLINE_MAX => {
                Self::kept_whole(fingerprint, canonical, writer.inline_head())
            }
            _ => Self::kept_as_digest(fingerprint, input),
        }
    }

    /// The key of an encoding short enough to keep: `canonical`, and `padded`, the same bytes
    /// zero padded to `INLINE_MAX`.
    #[inline(always)]
    fn kept_whole(
        fingerprint: &StepFingerprint,
        canonical: &[u8],
        padded: &[u8; INLINE_MAX],
    ) -> Self {
        debug_assert!(canonical.len() <= INLINE_MAX);
        debug_assert!(padded.starts_with(canonical));
        debug_assert!(padded[canonical.len()..].iter().all(|&b| b == 0));
        let fingerprint = fingerprint.as_bytes();
        let mut hasher = seeded(fingerprint).build_hasher();
        hasher.write(canonical);
        let mut id = [0; ID_LEN];
        id[..FINGERPRINT_LEN].copy_from_slice(fingerprint);
        id[FINGERPRINT_LEN..].copy_from_slice(padded);
        Self {
            digest: hasher.finish(),
            // Below INLINE_MAX < 255: the cast is exact.
            len: canonical.len() as u8,
            id,
        }
    }

    /// The key of an encoding too long to keep: its [`CacheKey`] stands for it.
    #[cold]
    #[inline(never)]
    fn kept_as_digest<T: CanonicalEncode + ?Sized>(
        fingerprint: &StepFingerprint,
        input: &T,
    ) -> Self {
        let key = CacheKey::new(fingerprint, input);
        let mut id = [0; ID_LEN];
        id[..FINGERPRINT_LEN].copy_from_slice(fingerprint.as_bytes());
        id[FINGERPRINT_LEN..FINGERPRINT_LEN + 32].copy_from_slice(key.as_bytes());
        Self {
            digest: key.index_bits(),
            len: LEN_DIGEST,
            id,
        }
    }

    /// The 64-bit digest a cache indexes by (not stable across processes or builds).
    #[inline]
    pub const fn digest(&self) -> u64 {
        self.digest
    }

    /// The canonical bytes of the input, when they were short enough to keep
    /// (at most [`INLINE_MAX`](Self::INLINE_MAX)); `None` when the key keeps a [`CacheKey`].
    #[inline]
    pub fn canonical_bytes(&self) -> Option<&[u8]> {
        (self.len != LEN_DIGEST)
            .then(|| &self.id[FINGERPRINT_LEN..FINGERPRINT_LEN + usize::from(self.len)])
    }

    /// The [`CacheKey`] that stands for a long input; `None` when the canonical bytes were
    /// kept.
    #[inline]
    pub fn cache_key(&self) -> Option<CacheKey> {
        (self.len == LEN_DIGEST).then(|| {
            let mut key = [0; 32];
            key.copy_from_slice(&self.id[FINGERPRINT_LEN..FINGERPRINT_LEN + 32]);
            CacheKey::from_bytes(key)
        })
    }

    /// The fingerprint digest of the key's step ([`StepFingerprint::as_bytes`]).
    #[inline]
    pub const fn fingerprint(&self) -> &[u8; 32] {
        match self.id.first_chunk() {
            Some(fingerprint) => fingerprint,
            None => unreachable!(), // ID_LEN > FINGERPRINT_LEN = 32
        }
    }

    /// The key's bytes after the fingerprint: the canonical bytes or the `CacheKey`, zero
    /// padded.
    #[inline(always)]
    fn kept_bytes(&self) -> &[u8; INLINE_MAX] {
        match self.id.last_chunk() {
            Some(bytes) => bytes,
            None => unreachable!(), // ID_LEN = FINGERPRINT_LEN + INLINE_MAX
        }
    }

    /// This key with its digest replaced: digest collisions on demand, for the tests and the
    /// `FixedCache` check program.
    #[cfg(any(test, feature = "check"))]
    pub(crate) fn with_digest(mut self, digest: u64) -> Self {
        self.digest = digest;
        self
    }
}

/// What a [`FixedCache`] slot keeps of a [`FastKey`]: everything but the fingerprint, which
/// the cache keeps once per step, in its [`Steps`] table. 80 bytes instead of 112, so that a
/// slot with a value of up to 32 bytes fills two cache lines, not three or four.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct KeptFast {
    /// [`FastKey::digest`].
    digest: u64,
    /// [`FastKey`]'s `len`.
    len: u8,
    /// The row of the key's fingerprint in the cache's [`Steps`].
    step: u32,
    /// [`FastKey::kept_bytes`].
    bytes: [u8; INLINE_MAX],
}

impl KeptFast {
    /// What an empty slot keeps; never compared, as the slot holds no value.
    pub(super) const VACANT: Self = Self {
        digest: 0,
        len: 0,
        step: 0,
        bytes: [0; INLINE_MAX],
    };

    /// Whether this is what a slot keeps of `key`. The digest and the length settle most
    /// differences; the kept bytes are then compared in full, and the fingerprint last, with
    /// the slot's row of `steps` (a small table, which stays in the CPU's cache).
    #[inline(always)]
    pub(super) fn is(&self, key: &FastKey, steps: &Steps) -> bool {
        self.digest == key.digest
            && self.len == key.len
            && same_bytes(&self.bytes, key.kept_bytes())
            && steps.is(self.step, key.fingerprint())
    }
}

/// The fingerprints of the steps whose keys a `FixedCache<V, FastKey>` holds, one row per
/// step, each with the number of slots that keep it. A row whose count falls to zero is
/// reused by the next new step, so there are never more rows than the cache's capacity plus
/// one (an insert that evicts takes its key's row before the evicted key's row is freed).
#[derive(Debug, Default)]
pub struct Steps {
    /// `(fingerprint, slots keeping it)`; a row with no slots is free for another step.
    rows: Vec<([u8; 32], u32)>,
    /// The row last used for each value of a fingerprint's first byte, modulo `HINTS`: where
    /// an insert looks first.
    hints: [u32; HINTS],
}

/// The number of [`Steps`] hints.
const HINTS: usize = 16;

impl Steps {
    /// Whether row `step` holds `fingerprint`.
    #[inline(always)]
    fn is(&self, step: u32, fingerprint: &[u8; 32]) -> bool {
        self.rows
            .get(step as usize)
            .is_some_and(|(kept, _)| same_bytes(kept, fingerprint))
    }

    /// The row of `fingerprint` if a slot keeps it: the hinted row first, then all of them.
    #[inline]
    pub(super) fn find(&self, fingerprint: &[u8; 32]) -> Option<u32> {
        let hint = self.hints[usize::from(fingerprint[0]) % HINTS];
        match self.rows.get(hint as usize) {
            Some((kept, slots)) if *slots > 0 && same_bytes(kept, fingerprint) => Some(hint),
            _ => self.find_all(fingerprint),
        }
    }

    /// [`find`](Self::find) past the hint: a scan of the rows.
    #[cold]
    fn find_all(&self, fingerprint: &[u8; 32]) -> Option<u32> {
        let row = self
            .rows
            .iter()
            .position(|(kept, slots)| *slots > 0 && kept == fingerprint)?;
        // Rows are at most the capacity (2^30) plus one: the cast is exact.
        Some(row as u32)
    }

    /// Keeps `key` in a slot: its fingerprint's row is found, or a free one taken, or one
    /// added. `Err(key)` when the table cannot grow (the allocator refused).
    pub(super) fn keep(&mut self, key: FastKey) -> Result<KeptFast, FastKey> {
        let fingerprint = key.fingerprint();
        let row = match self.find(fingerprint) {
            Some(row) => row as usize,
            None => match self.rows.iter().position(|&(_, slots)| slots == 0) {
                Some(free) => {
                    self.rows[free].0 = *fingerprint;
                    free
                }
                None if self.rows.try_reserve(1).is_ok() => {
                    self.rows.push((*fingerprint, 0));
                    self.rows.len() - 1
                }
                None => return Err(key),
            },
        };
        self.rows[row].1 += 1;
        // Rows are at most the capacity (2^30) plus one: the cast is exact.
        let row = row as u32;
        self.hints[usize::from(fingerprint[0]) % HINTS] = row;
        Ok(KeptFast {
            digest: key.digest,
            len: key.len,
            step: row,
            bytes: *key.kept_bytes(),
        })
    }

    /// The key `kept` stands for, as its slot gives it up (its row's count drops).
    pub(super) fn release(&mut self, kept: &KeptFast) -> FastKey {
        let (fingerprint, slots) = &mut self.rows[kept.step as usize];
        debug_assert!(*slots > 0);
        *slots -= 1;
        let mut id = [0; ID_LEN];
        id[..FINGERPRINT_LEN].copy_from_slice(fingerprint);
        id[FINGERPRINT_LEN..].copy_from_slice(&kept.bytes);
        FastKey {
            digest: kept.digest,
            len: kept.len,
            id,
        }
    }

    /// Every slot gave its key up ([`FixedCache::clear`]).
    pub(super) fn clear(&mut self) {
        self.rows.clear();
    }

    /// The number of rows, free ones included.
    #[cfg(test)]
    pub(super) fn rows(&self) -> usize {
        self.rows.len()
    }
}

/// The ahash state of a step: seeded by the four words of its fingerprint digest.
#[inline(always)]
fn seeded(fingerprint: &[u8; 32]) -> ahash::RandomState {
    let word = |i: usize| {
        let mut bits = [0; 8];
        bits.copy_from_slice(&fingerprint[8 * i..8 * i + 8]);
        u64::from_le_bytes(bits)
    };
    ahash::RandomState::with_seeds(word(0), word(1), word(2), word(3))
}

impl PartialEq for FastKey {
    /// Equal fingerprints and equal bytes (the canonical bytes, or the `CacheKey` of a long
    /// input). The digest and the length settle most differences before the bytes are read;
    /// the fingerprint and the bytes are compared as one array, 16 bytes at a time, without a
    /// call to `memcmp`.
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest && self.len == other.len && same_bytes(&self.id, &other.id)
    }
}

/// Whether `a == b`, as a fold of 16-byte XORs (`N` is a multiple of 16).
#[inline(always)]
fn same_bytes<const N: usize>(a: &[u8; N], b: &[u8; N]) -> bool {
    const { assert!(N.is_multiple_of(16)) };
    let mut diff = 0u128;
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        let word = |chunk: &[u8]| {
            let mut bits = [0; 16];
            bits.copy_from_slice(chunk);
            u128::from_ne_bytes(bits)
        };
        diff |= word(x) ^ word(y);
    }
    diff == 0
}

impl Hash for FastKey {
    /// Writes the digest only: equal keys have equal digests.
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.digest);
    }
}

impl fmt::Debug for FastKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FastKey({:016x}, ", self.digest)?;
        match self.canonical_bytes() {
            Some(bytes) => write!(f, "{} canonical bytes)", bytes.len()),
            None => f.write_str("long input, keyed by its CacheKey)"),
        }
    }
}
