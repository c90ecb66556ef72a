//! The canonical byte encoding of step inputs, streamed into BLAKE3.
//!
//! The encoding rules (every implementation in this file follows them, and host
//! implementations must too):
//!
//! - integers: little-endian, fixed width; `usize` as `u64` and `isize` as `i64`, so 32-bit and
//!   64-bit targets agree; `char` as its `u32` scalar value;
//! - `bool`: one byte, `0` or `1`;
//! - floats: their IEEE-754 bits, little-endian, after two canonicalisations: `-0.0` is
//!   encoded as `+0.0` (they compare equal), and every NaN as the one quiet NaN
//!   `0x7ff8_0000_0000_0000` (`f64`) or `0x7fc0_0000` (`f32`);
//! - `str`, `[T]`, `Vec<T>`, `String`, `BTreeMap`, `BTreeSet`: the element count as a `u64`,
//!   then the elements;
//! - `[T; N]`, tuples (up to 8) and `()`: the elements in order, nothing else (their length is
//!   part of the type);
//! - `Option<T>`: tag byte `0` for `None`, `1` then the value for `Some`; `Result<T, E>`: tag
//!   `0` then the `Ok` value, `1` then the `Err` value;
//! - `Duration`: whole seconds (`u64`), then nanoseconds (`u32`);
//! - references, `Box<T>` and `Cow<T>`: the value they point to.
//!
//! Every encoding is *prefix-free* for its type: knowing only the type, a reader could tell
//! where the encoding ends. That is what makes tuples, sequences and structs injective:
//! `("ab", "c")` and `("a", "bc")` encode differently because each string carries its length.
//!
//! `HashMap` and `HashSet` have no implementation on purpose: their iteration order depends on
//! their seed, so their encoding would not be canonical. Use a `BTreeMap` or sort first.

use alloc::borrow::{Cow, ToOwned};
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The bits every `f64` NaN is encoded as (the canonical quiet NaN).
const CANONICAL_NAN_F64_BITS: u64 = 0x7ff8_0000_0000_0000;
/// The bits every `f32` NaN is encoded as (the canonical quiet NaN).
const CANONICAL_NAN_F32_BITS: u32 = 0x7fc0_0000;

/// Encodings up to this many bytes are gathered inline and hashed by BLAKE3's one-shot
/// functions; longer ones are streamed through a `blake3::Hasher` (in a second, cold pass).
const INLINE_LEN_MAX: usize = 128;

/// The BLAKE3 mode an encoding is hashed in.
#[derive(Clone, Copy)]
pub(crate) enum HashMode {
    /// `keyed_hash` under a step fingerprint: cache keys.
    Keyed([u8; 32]),
    /// `derive_key` under a context string: step fingerprints.
    DeriveKey(&'static str),
}

impl HashMode {
    /// A streaming hasher in this mode.
    pub(crate) fn hasher(self) -> blake3::Hasher {
        match self {
            Self::Keyed(key) => blake3::Hasher::new_keyed(&key),
            Self::DeriveKey(context) => blake3::Hasher::new_derive_key(context),
        }
    }

    /// The hash of `bytes` in this mode, in one go.
    fn hash(self, bytes: &[u8]) -> [u8; 32] {
        match self {
            Self::Keyed(key) => *blake3::keyed_hash(&key, bytes).as_bytes(),
            Self::DeriveKey(context) => blake3::derive_key(context, bytes),
        }
    }
}

/// BLAKE3 in `mode` over the canonical encoding of `value`.
///
/// Short encodings (the common case) need only a 128-byte buffer on the stack and BLAKE3's
/// one-shot function; a `blake3::Hasher` (about 2 KiB) is only set up, in a cold function,
/// when the encoding outgrows the buffer. Both give the same hash.
#[inline]
pub(crate) fn hash_canonical<T: CanonicalEncode + ?Sized>(mode: HashMode, value: &T) -> [u8; 32] {
    let mut writer = KeyWriter::inline();
    value.encode(&mut writer);
    match writer.inline_bytes() {
        Some(bytes) => mode.hash(bytes),
        None => hash_streamed(mode, value),
    }
}

/// [`hash_canonical`] for encodings longer than the inline buffer.
#[cold]
#[inline(never)]
fn hash_streamed<T: CanonicalEncode + ?Sized>(mode: HashMode, value: &T) -> [u8; 32] {
    let mut hasher = mode.hasher();
    value.encode(&mut KeyWriter::streaming(&mut hasher));
    *hasher.finalize().as_bytes()
}

/// The sink of a [`CanonicalEncode`] implementation: BLAKE3 over the bytes written.
///
/// Writing never allocates. [`CacheKey::new`](super::CacheKey::new) gathers the first 128
/// bytes in a buffer on the stack and hashes them in one go; if the encoding is longer, it
/// encodes the value again into a streaming BLAKE3 hasher. Either way the hash is the same.
pub struct KeyWriter<'h> {
    /// The bytes written so far, while `stream` is `None`.
    inline: [u8; INLINE_LEN_MAX],
    /// Bytes used in `inline`, in `0 ..= INLINE_LEN_MAX`.
    inline_len: usize,
    /// Set when a write did not fit in `inline`; later writes are ignored (the value is
    /// then encoded again into a stream).
    overflowed: bool,
    /// The streaming hasher of the second pass, when there is one.
    stream: Option<&'h mut blake3::Hasher>,
}

impl<'h> KeyWriter<'h> {
    /// A writer that gathers up to `INLINE_LEN_MAX` bytes inline.
    #[inline(always)]
    pub(super) fn inline() -> Self {
        Self {
            inline: [0; INLINE_LEN_MAX],
            inline_len: 0,
            overflowed: false,
            stream: None,
        }
    }

    /// A writer that streams every byte into `hasher`.
    pub(crate) fn streaming(hasher: &'h mut blake3::Hasher) -> Self {
        Self {
            inline: [0; INLINE_LEN_MAX],
            inline_len: 0,
            overflowed: false,
            stream: Some(hasher),
        }
    }

    /// The bytes written, if they all fitted inline.
    #[inline(always)]
    pub(super) fn inline_bytes(&self) -> Option<&[u8]> {
        debug_assert!(self.stream.is_none());
        (!self.overflowed).then(|| &self.inline[..self.inline_len])
    }

    /// The first `N` bytes of the inline buffer: the bytes written, then zeros (a buffer
    /// starts zeroed and is only ever written from its start), so when
    /// [`inline_bytes`](Self::inline_bytes) is at most `N` bytes long, this is them, zero
    /// padded, without a copy of variable length.
    #[inline(always)]
    pub(super) fn inline_head<const N: usize>(&self) -> &[u8; N] {
        const { assert!(N <= INLINE_LEN_MAX) };
        match self.inline.first_chunk() {
            Some(head) => head,
            None => unreachable!(), // N <= INLINE_LEN_MAX
        }
    }

    /// Writes `bytes` as they are, with no length in front.
    ///
    /// Use it for fixed-width data only; variable-length data must be preceded by
    /// [`write_len`](Self::write_len), or the encoding stops being prefix-free.
    #[inline]
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        if let Some(hasher) = &mut self.stream {
            hasher.update(bytes);
            return;
        }
        let end = self.inline_len + bytes.len();
        if end <= INLINE_LEN_MAX {
            self.inline[self.inline_len..end].copy_from_slice(bytes);
            self.inline_len = end;
        } else {
            self.overflowed = true;
        }
    }

    /// Writes a length or element count (as a little-endian `u64`).
    #[inline]
    pub fn write_len(&mut self, len: usize) {
        // `usize` is at most 64 bits on every target Rust supports.
        self.write_bytes(&(len as u64).to_le_bytes());
    }
}

impl fmt::Debug for KeyWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyWriter").finish_non_exhaustive()
    }
}

/// A canonical, platform-independent byte encoding of a value, for cache keys.
///
/// Equal values must produce equal bytes on every platform, in every process and run; values
/// a step treats differently must produce different bytes. The module documentation lists the
/// rules that the provided implementations follow. A host implements this trait for its own
/// input types, usually by encoding each field in a fixed order.
///
/// Implementations must be **prefix-free**: anything of variable length is preceded by its
/// length ([`KeyWriter::write_len`]) and each enum variant by a tag, so that field boundaries
/// can never shift.
///
/// `encode` may run twice for one key (an encoding longer than 128 bytes is streamed in a
/// second pass), so it must write the same bytes every time, as a canonical encoding does.
///
/// Floats are canonicalised (`-0.0` as `0.0`, all NaNs as one NaN). A step whose output
/// depends on the sign of zero or on a NaN payload must encode `to_bits()` itself.
///
/// # Examples
///
/// ```
/// use flujo_core::cache::{CacheKey, CanonicalEncode, KeyWriter, StepFingerprint};
///
/// struct Order {
///     symbol: String,
///     quantity: u32,
///     limit_price: Option<f64>,
/// }
///
/// impl CanonicalEncode for Order {
///     fn encode(&self, out: &mut KeyWriter<'_>) {
///         self.symbol.encode(out);
///         self.quantity.encode(out);
///         self.limit_price.encode(out);
///     }
/// }
///
/// let fingerprint = StepFingerprint::builder("risk-check", 1).build();
/// let order = Order { symbol: "ACME".into(), quantity: 10, limit_price: Some(12.5) };
/// let same = Order { symbol: "ACME".into(), quantity: 10, limit_price: Some(12.5) };
/// let other = Order { symbol: "ACME".into(), quantity: 11, limit_price: Some(12.5) };
/// assert_eq!(CacheKey::new(&fingerprint, &order), CacheKey::new(&fingerprint, &same));
/// assert_ne!(CacheKey::new(&fingerprint, &order), CacheKey::new(&fingerprint, &other));
/// ```
pub trait CanonicalEncode {
    /// Writes the canonical bytes of `self` into `out`.
    fn encode(&self, out: &mut KeyWriter<'_>);

    /// Writes the elements of `items` in order, with no length in front.
    ///
    /// The default encodes each element; `u8` overrides it to write the slice in one go
    /// (the bytes are the same).
    #[inline]
    fn encode_slice(items: &[Self], out: &mut KeyWriter<'_>)
    where
        Self: Sized,
    {
        for item in items {
            item.encode(out);
        }
    }
}

/// Integers: little-endian, fixed width.
macro_rules! encode_int {
    ($($t:ty),*) => {$(
        impl CanonicalEncode for $t {
            #[inline]
            fn encode(&self, out: &mut KeyWriter<'_>) {
                out.write_bytes(&self.to_le_bytes());
            }
        }
    )*};
}

encode_int!(u16, u32, u64, u128, i8, i16, i32, i64, i128);

impl CanonicalEncode for u8 {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        out.write_bytes(&[*self]);
    }

    #[inline]
    fn encode_slice(items: &[Self], out: &mut KeyWriter<'_>) {
        out.write_bytes(items);
    }
}

impl CanonicalEncode for usize {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        // Widened to 64 bits so that 32-bit and 64-bit targets agree.
        (*self as u64).encode(out);
    }
}

impl CanonicalEncode for isize {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        (*self as i64).encode(out);
    }
}

impl CanonicalEncode for bool {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        out.write_bytes(&[u8::from(*self)]);
    }
}

impl CanonicalEncode for char {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        u32::from(*self).encode(out);
    }
}

impl CanonicalEncode for f64 {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        canonical_f64_bits(*self).encode(out);
    }
}

impl CanonicalEncode for f32 {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        canonical_f32_bits(*self).encode(out);
    }
}

/// The bits `value` is encoded as: `-0.0` as `+0.0`, every NaN as the canonical quiet NaN.
fn canonical_f64_bits(value: f64) -> u64 {
    if value.is_nan() {
        CANONICAL_NAN_F64_BITS
    } else if value == 0.0 {
        0
    } else {
        value.to_bits()
    }
}

/// The bits `value` is encoded as: `-0.0` as `+0.0`, every NaN as the canonical quiet NaN.
fn canonical_f32_bits(value: f32) -> u32 {
    if value.is_nan() {
        CANONICAL_NAN_F32_BITS
    } else if value == 0.0 {
        0
    } else {
        value.to_bits()
    }
}

impl CanonicalEncode for () {
    #[inline]
    fn encode(&self, _out: &mut KeyWriter<'_>) {}
}

impl CanonicalEncode for str {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        out.write_len(self.len());
        out.write_bytes(self.as_bytes());
    }
}

impl CanonicalEncode for String {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        self.as_str().encode(out);
    }
}

impl<T: CanonicalEncode> CanonicalEncode for [T] {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        out.write_len(self.len());
        T::encode_slice(self, out);
    }
}

impl<T: CanonicalEncode, const N: usize> CanonicalEncode for [T; N] {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        // The length is part of the type: no prefix, so `[u8; 64]` is exactly 64 bytes.
        T::encode_slice(self, out);
    }
}

impl<T: CanonicalEncode> CanonicalEncode for Vec<T> {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        self.as_slice().encode(out);
    }
}

impl<T: CanonicalEncode + ?Sized> CanonicalEncode for &T {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        (**self).encode(out);
    }
}

impl<T: CanonicalEncode + ?Sized> CanonicalEncode for &mut T {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        (**self).encode(out);
    }
}

impl<T: CanonicalEncode + ?Sized> CanonicalEncode for Box<T> {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        (**self).encode(out);
    }
}

impl<T: CanonicalEncode + ToOwned + ?Sized> CanonicalEncode for Cow<'_, T> {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        (**self).encode(out);
    }
}

impl<T: CanonicalEncode> CanonicalEncode for Option<T> {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        match self {
            None => out.write_bytes(&[0]),
            Some(value) => {
                out.write_bytes(&[1]);
                value.encode(out);
            }
        }
    }
}

impl<T: CanonicalEncode, E: CanonicalEncode> CanonicalEncode for Result<T, E> {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        match self {
            Ok(value) => {
                out.write_bytes(&[0]);
                value.encode(out);
            }
            Err(error) => {
                out.write_bytes(&[1]);
                error.encode(out);
            }
        }
    }
}

impl<K: CanonicalEncode, V: CanonicalEncode> CanonicalEncode for BTreeMap<K, V> {
    fn encode(&self, out: &mut KeyWriter<'_>) {
        // Iteration is in key order, so equal maps give equal bytes.
        out.write_len(self.len());
        for (key, value) in self {
            key.encode(out);
            value.encode(out);
        }
    }
}

impl<T: CanonicalEncode> CanonicalEncode for BTreeSet<T> {
    fn encode(&self, out: &mut KeyWriter<'_>) {
        out.write_len(self.len());
        for item in self {
            item.encode(out);
        }
    }
}

impl CanonicalEncode for core::time::Duration {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        self.as_secs().encode(out);
        self.subsec_nanos().encode(out);
    }
}

/// Tuples: the elements in order.
macro_rules! encode_tuple {
    ($(($($name:ident)+))*) => {$(
        impl<$($name: CanonicalEncode),+> CanonicalEncode for ($($name,)+) {
            #[inline]
            fn encode(&self, out: &mut KeyWriter<'_>) {
                #[allow(non_snake_case)]
                let ($($name,)+) = self;
                $($name.encode(out);)+
            }
        }
    )*};
}

encode_tuple! {
    (A)
    (A B)
    (A B C)
    (A B C D)
    (A B C D E)
    (A B C D E F)
    (A B C D E F G)
    (A B C D E F G H)
}

impl<T: CanonicalEncode + ?Sized> CanonicalEncode for alloc::rc::Rc<T> {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        (**self).encode(out);
    }
}

impl<T: CanonicalEncode + ?Sized> CanonicalEncode for alloc::sync::Arc<T> {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        (**self).encode(out);
    }
}

impl<T: CanonicalEncode> CanonicalEncode for alloc::collections::VecDeque<T> {
    fn encode(&self, out: &mut KeyWriter<'_>) {
        out.write_len(self.len());
        let (front, back) = self.as_slices();
        T::encode_slice(front, out);
        T::encode_slice(back, out);
    }
}

impl<T: ?Sized> CanonicalEncode for core::marker::PhantomData<T> {
    #[inline]
    fn encode(&self, _out: &mut KeyWriter<'_>) {}
}

impl<T: CanonicalEncode> CanonicalEncode for core::num::Wrapping<T> {
    #[inline]
    fn encode(&self, out: &mut KeyWriter<'_>) {
        self.0.encode(out);
    }
}

/// `NonZero` integers: as the integer they hold.
macro_rules! encode_nonzero {
    ($($t:ty),*) => {$(
        impl CanonicalEncode for core::num::NonZero<$t> {
            #[inline]
            fn encode(&self, out: &mut KeyWriter<'_>) {
                self.get().encode(out);
            }
        }
    )*};
}
encode_nonzero!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

/// Implements [`CanonicalEncode`] for a struct by encoding the fields listed, in that order
/// (each field's type must implement it). List every field that can change the step's
/// output; a field left out does not change the key.
///
/// A derive would write the same thing; this declarative macro needs no proc-macro crate
/// (and its build time) and works in `no_std`.
///
/// # Examples
///
/// ```
/// use flujo_core::cache::{CacheKey, StepFingerprint};
///
/// struct Order {
///     symbol: String,
///     quantity: u32,
///     limit_price: Option<f64>,
/// }
/// flujo_core::canonical_encode!(Order { symbol, quantity, limit_price });
///
/// let fingerprint = StepFingerprint::builder("risk-check", 1).build();
/// let order = |quantity| Order { symbol: "ACME".into(), quantity, limit_price: None };
/// assert_eq!(CacheKey::new(&fingerprint, &order(10)), CacheKey::new(&fingerprint, &order(10)));
/// assert_ne!(CacheKey::new(&fingerprint, &order(10)), CacheKey::new(&fingerprint, &order(11)));
/// // The same bytes as the fields in order:
/// assert_eq!(
///     CacheKey::new(&fingerprint, &order(10)),
///     CacheKey::new(&fingerprint, &("ACME", 10u32, None::<f64>)),
/// );
/// ```
#[macro_export]
macro_rules! canonical_encode {
    ($name:ident { $($field:ident),+ $(,)? }) => {
        impl $crate::cache::CanonicalEncode for $name {
            #[inline]
            fn encode(&self, out: &mut $crate::cache::KeyWriter<'_>) {
                $( $crate::cache::CanonicalEncode::encode(&self.$field, out); )+
            }
        }
    };
}
