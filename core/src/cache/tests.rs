use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;

use super::fixed::{set_count_for, set_len, set_of};
use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Writes its bytes as they are: the reference for the expected byte form of an encoding.
struct Raw<'a>(&'a [u8]);

impl CanonicalEncode for Raw<'_> {
    fn encode(&self, out: &mut KeyWriter<'_>) {
        out.write_bytes(self.0);
    }
}

fn fingerprint() -> StepFingerprint {
    StepFingerprint::builder("test-step", 1).build()
}

fn key<T: CanonicalEncode + ?Sized>(value: &T) -> CacheKey {
    CacheKey::new(&fingerprint(), value)
}

/// Asserts that `value` encodes to exactly `bytes`.
#[track_caller]
fn assert_encodes<T: CanonicalEncode + ?Sized>(value: &T, bytes: &[u8]) {
    assert_eq!(
        key(value),
        key(&Raw(bytes)),
        "encoding differs from {bytes:02x?}"
    );
}

/// Little-endian `u64` length prefix followed by `tail`.
fn prefixed(len: u64, tail: &[u8]) -> Vec<u8> {
    let mut bytes = len.to_le_bytes().to_vec();
    bytes.extend_from_slice(tail);
    bytes
}

/// A key with the given index bits (first eight bytes) and `tail` in every other byte.
fn key_with_index(index_bits: u64, tail: u8) -> CacheKey {
    let mut bytes = [tail; 32];
    bytes[..8].copy_from_slice(&index_bits.to_le_bytes());
    CacheKey::from_bytes(bytes)
}

/// A deterministic xorshift generator for the property tests.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding: exact byte forms

#[test]
fn integers_are_little_endian_fixed_width() {
    assert_encodes(&0x12u8, &[0x12]);
    assert_encodes(&-2i8, &[0xfe]);
    assert_encodes(&0x1234u16, &[0x34, 0x12]);
    assert_encodes(&0x1234_5678u32, &[0x78, 0x56, 0x34, 0x12]);
    assert_encodes(&-1i32, &[0xff; 4]);
    assert_encodes(&1u64, &[1, 0, 0, 0, 0, 0, 0, 0]);
    assert_encodes(&-1i64, &[0xff; 8]);
    let mut wide = [0u8; 16];
    wide[0] = 7;
    assert_encodes(&7u128, &wide);
    assert_encodes(&-1i128, &[0xff; 16]);
}

#[test]
fn usize_and_isize_are_encoded_as_64_bits() {
    assert_encodes(&5usize, &5u64.to_le_bytes());
    assert_eq!(key(&5usize), key(&5u64));
    assert_ne!(key(&5usize), key(&5u32));
    assert_encodes(&-3isize, &(-3i64).to_le_bytes());
}

#[test]
fn bool_char_and_unit() {
    assert_encodes(&false, &[0]);
    assert_encodes(&true, &[1]);
    assert_encodes(&'é', &0xe9u32.to_le_bytes());
    assert_encodes(&(), &[]);
}

#[test]
fn floats_are_bits_with_zero_and_nan_canonicalised() {
    assert_encodes(&1.5f64, &1.5f64.to_bits().to_le_bytes());
    assert_encodes(&1.5f32, &1.5f32.to_bits().to_le_bytes());
    // -0.0 == 0.0, so they share a key; the policy is documented on `CanonicalEncode`.
    assert_encodes(&-0.0f64, &[0; 8]);
    assert_encodes(&-0.0f32, &[0; 4]);
    assert_eq!(key(&-0.0f64), key(&0.0f64));
    // Every NaN, whatever its sign or payload, is the canonical quiet NaN.
    let nan_bits = 0x7ff8_0000_0000_0000u64.to_le_bytes();
    assert_encodes(&f64::NAN, &nan_bits);
    assert_encodes(&-f64::NAN, &nan_bits);
    assert_encodes(&f64::from_bits(0x7ff0_0000_0000_0001), &nan_bits);
    assert_encodes(&f64::from_bits(0xfff8_dead_beef_0000), &nan_bits);
    assert_encodes(&f32::from_bits(0xffc0_0001), &0x7fc0_0000u32.to_le_bytes());
    // What is not equal stays apart.
    assert_ne!(key(&0.0f64), key(&f64::MIN_POSITIVE));
    assert_ne!(key(&0.0f64), key(&-f64::MIN_POSITIVE));
    assert_ne!(key(&f64::INFINITY), key(&f64::NEG_INFINITY));
    assert_ne!(key(&f64::INFINITY), key(&f64::NAN));
}

#[test]
fn strings_and_slices_are_length_prefixed() {
    assert_encodes("ab", &prefixed(2, b"ab"));
    assert_encodes(&String::from("ab"), &prefixed(2, b"ab"));
    assert_encodes("", &prefixed(0, b""));
    assert_encodes(&b"xyz"[..], &prefixed(3, b"xyz"));
    assert_encodes(&vec![1u8, 2, 3], &prefixed(3, &[1, 2, 3]));
    assert_encodes(&vec![1u16, 2], &prefixed(2, &[1, 0, 2, 0]));
    assert_encodes(&Vec::<u64>::new(), &prefixed(0, &[]));
}

#[test]
fn byte_slice_fast_path_matches_element_encoding() {
    let bytes: Vec<u8> = (0..=255).collect();
    let mut expected = (bytes.len() as u64).to_le_bytes().to_vec();
    for byte in &bytes {
        expected.push(*byte);
    }
    assert_encodes(&bytes, &expected);
    // The same bytes written one `u8` at a time through the per-element default.
    struct OneByOne<'a>(&'a [u8]);
    impl CanonicalEncode for OneByOne<'_> {
        fn encode(&self, out: &mut KeyWriter<'_>) {
            out.write_len(self.0.len());
            for byte in self.0 {
                byte.encode(out);
            }
        }
    }
    assert_eq!(key(&bytes), key(&OneByOne(&bytes)));
}

#[test]
fn arrays_and_tuples_have_no_prefix() {
    assert_encodes(&[1u8, 2, 3], &[1, 2, 3]);
    assert_encodes(&[0x0102u16; 2], &[2, 1, 2, 1]);
    assert_encodes(&[0u32; 0], &[]);
    assert_encodes(&(1u8,), &[1]);
    assert_encodes(&(1u8, 2u16), &[1, 2, 0]);
    assert_encodes(
        &(1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8, true),
        &[1, 2, 3, 4, 5, 6, 7, 1],
    );
    let input = [0xabu8; 64];
    assert_encodes(&input, &[0xab; 64]);
}

#[test]
fn option_and_result_are_tagged() {
    assert_encodes(&None::<u8>, &[0]);
    assert_encodes(&Some(0u8), &[1, 0]);
    assert_encodes(&Some(Some(3u8)), &[1, 1, 3]);
    assert_encodes(&Some(None::<u8>), &[1, 0]);
    assert_encodes(&Ok::<u8, u16>(9), &[0, 9]);
    assert_encodes(&Err::<u8, u16>(9), &[1, 9, 0]);
}

#[test]
fn pointers_encode_their_target() {
    let text = String::from("pointed");
    let expected = key("pointed");
    assert_eq!(key(&text), expected);
    assert_eq!(key(&&text), expected);
    assert_eq!(key(&Box::new(String::from("pointed"))), expected);
    assert_eq!(key(&Cow::<str>::Borrowed("pointed")), expected);
    assert_eq!(key(&Cow::<str>::Owned(text.clone())), expected);
    let mut number = 4u32;
    let by_mut = &mut number;
    assert_eq!(key(&by_mut), key(&4u32));
    let boxed: Box<[u8]> = Box::from(&b"ab"[..]);
    assert_eq!(key(&boxed), key(&b"ab"[..]));
}

#[test]
fn ordered_collections_and_durations() {
    let mut map = BTreeMap::new();
    map.insert(2u8, 'b');
    map.insert(1u8, 'a');
    let mut expected = 2u64.to_le_bytes().to_vec();
    expected.extend_from_slice(&[1, b'a', 0, 0, 0, 2, b'b', 0, 0, 0]);
    assert_encodes(&map, &expected);
    let set: BTreeSet<u8> = [3, 1, 2].into_iter().collect();
    assert_encodes(&set, &prefixed(3, &[1, 2, 3]));
    let mut duration = 5u64.to_le_bytes().to_vec();
    duration.extend_from_slice(&7u32.to_le_bytes());
    assert_encodes(&Duration::new(5, 7), &duration);
}

/// Writes its bytes in pieces of `piece` bytes.
struct Pieces<'a>(&'a [u8], usize);

impl CanonicalEncode for Pieces<'_> {
    fn encode(&self, out: &mut KeyWriter<'_>) {
        for piece in self.0.chunks(self.1) {
            out.write_bytes(piece);
        }
    }
}

#[test]
fn inline_and_streamed_encodings_hash_alike() {
    // Lengths around the inline limit (128), one BLAKE3 block (64) and one chunk (1024).
    let data: Vec<u8> = (0..2100u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let fingerprint = fingerprint();
    let lengths: &[usize] = if cfg!(miri) {
        &[0, 1, 64, 127, 128, 129, 1025]
    } else {
        &[0, 1, 63, 64, 65, 127, 128, 129, 200, 1023, 1024, 1025, 2100]
    };
    for &len in lengths {
        let expected = blake3::keyed_hash(fingerprint.as_bytes(), &data[..len]);
        for piece in [1, 3, 64, 127, 128, 129, 4096] {
            let key = CacheKey::new(&fingerprint, &Pieces(&data[..len], piece));
            assert_eq!(
                key.as_bytes(),
                expected.as_bytes(),
                "len {len}, piece {piece}"
            );
        }
    }
    // A fingerprint whose material spills.
    let long_name = "n".repeat(300);
    let mut material = b"step".to_vec();
    material.extend_from_slice(&prefixed(300, long_name.as_bytes()));
    material.extend_from_slice(&9u32.to_le_bytes());
    assert_eq!(
        StepFingerprint::builder(&long_name, 9).build().as_bytes(),
        &blake3::derive_key(KEY_CONTEXT, &material)
    );
}

// ---------------------------------------------------------------------------------------------
// Encoding: injectivity on the tricky cases

#[test]
fn field_boundaries_cannot_shift() {
    assert_ne!(key(&("ab", "c")), key(&("a", "bc")));
    assert_ne!(key(&("", "abc")), key(&("abc", "")));
    assert_ne!(
        key(&(vec![1u8], vec![2u8])),
        key(&(vec![1u8, 2], Vec::<u8>::new()))
    );
    assert_ne!(
        key(&vec![vec![1u8], vec![]]),
        key(&vec![Vec::<u8>::new(), vec![1]])
    );
    assert_ne!(
        key(&[String::from("a"), String::from("")]),
        key(&[String::new(), String::from("a")])
    );
}

#[test]
fn tags_keep_variants_apart() {
    assert_ne!(key(&Some(0u8)), key(&None::<u8>));
    assert_ne!(key(&Some(None::<u8>)), key(&None::<Option<u8>>));
    assert_ne!(key(&Ok::<u8, u8>(1)), key(&Err::<u8, u8>(1)));
    assert_ne!(key(&(None::<u8>, Some(1u8))), key(&(Some(1u8), None::<u8>)));
}

#[test]
fn equal_inputs_give_equal_keys() {
    let a = (String::from("symbol"), 42u64, vec![1.0f64, 2.5], Some(true));
    let b = (String::from("symbol"), 42u64, vec![1.0f64, 2.5], Some(true));
    assert_eq!(key(&a), key(&b));
    assert_eq!(key(&a), key(&a.clone()));
    let c = (String::from("symbol"), 43u64, vec![1.0f64, 2.5], Some(true));
    assert_ne!(key(&a), key(&c));
}

// ---------------------------------------------------------------------------------------------
// Keys and fingerprints

/// Keys pinned when the encoding was written: any change to the encoding, the context string
/// or the fingerprint layout changes them. If a change is intended, bump `KEY_CONTEXT`'s
/// version and pin the new values.
#[test]
fn golden_keys() {
    let plain = StepFingerprint::builder("golden", 1).build();
    let tuned = StepFingerprint::builder("golden", 1)
        .setting("temperature", &0.25f64)
        .setting("model", "small")
        .build();
    let cases: [(CacheKey, &str); 7] = [
        (
            CacheKey::new(&plain, &()),
            "b9689046bd37caf460229c47d77ab6f7ff6a03e745d6546822b69c9f93fd7c82",
        ),
        (
            CacheKey::new(&plain, &0u64),
            "dfc378b728851410194fce935e0d53f7f14f9907590e2d28c5f7abf81ac8ed36",
        ),
        (
            CacheKey::new(&plain, "hello"),
            "539f5aeb4fe0cd38df3dcdddc352562445ff57deed88d2e9d5521c4a5807723a",
        ),
        (
            CacheKey::new(&plain, &[7u8; 64]),
            "f5c02faed58ef59fc6eff2794dd4daec33309431446c8f1ea16baa6ed9c1f630",
        ),
        (
            CacheKey::new(&tuned, &(-0.0f64, Some(3u32), vec![String::from("x")])),
            "860f12c46fe3ea165599ebadb9b15e3d7c425efca14d8ec2630838723b37c740",
        ),
        (
            CacheKey::new(&tuned, &[7u8; 64]),
            "2dab5862e3a36b65fb40ce672d77a3067ad1e141efbfb28ab06cd751a262c9b2",
        ),
        (
            CacheKey::new(&plain, &vec![0x5au8; 3000]),
            "b0efaef1d9d18fd232929f8e43b74e011083a6ae026ee32d840ca58430e041dc",
        ),
    ];
    for (index, (key, expected)) in cases.iter().enumerate() {
        assert_eq!(&format!("{key}"), expected, "golden key {index}");
    }
    assert_eq!(
        format!("{plain:?}"),
        "StepFingerprint(c9115320e6d2aab8a0baf8b85d4ce9d14a86866919a501c964e21562ad087378)"
    );
}

/// The fingerprint and key layouts, rebuilt by hand with BLAKE3's one-shot functions: an
/// independent check of what the golden keys pin.
#[test]
fn layout_matches_a_hand_built_derivation() {
    let mut material = b"step".to_vec();
    material.extend_from_slice(&prefixed(6, b"golden"));
    material.extend_from_slice(&1u32.to_le_bytes());
    let plain = blake3::derive_key(KEY_CONTEXT, &material);
    assert_eq!(
        StepFingerprint::builder("golden", 1).build().as_bytes(),
        &plain
    );
    material.extend_from_slice(b"set");
    material.extend_from_slice(&prefixed(4, b"mode"));
    material.extend_from_slice(&prefixed(5, b"small"));
    let tuned = blake3::derive_key(KEY_CONTEXT, &material);
    let fingerprint = StepFingerprint::builder("golden", 1)
        .setting("mode", "small")
        .build();
    assert_eq!(fingerprint.as_bytes(), &tuned);
    let input = (7u16, "x");
    let mut bytes = 7u16.to_le_bytes().to_vec();
    bytes.extend_from_slice(&prefixed(1, b"x"));
    assert_eq!(
        CacheKey::new(&fingerprint, &input).as_bytes(),
        blake3::keyed_hash(&tuned, &bytes).as_bytes()
    );
}

#[test]
fn fingerprint_changes_change_keys() {
    let input = [1u8; 64];
    let base = StepFingerprint::builder("step", 1)
        .setting("mode", &1u8)
        .build();
    let variants = [
        StepFingerprint::builder("step", 1).build(),
        StepFingerprint::builder("step", 2)
            .setting("mode", &1u8)
            .build(),
        StepFingerprint::builder("stepx", 1)
            .setting("mode", &1u8)
            .build(),
        StepFingerprint::builder("step", 1)
            .setting("mode", &2u8)
            .build(),
        StepFingerprint::builder("step", 1)
            .setting("mood", &1u8)
            .build(),
        StepFingerprint::builder("step", 1)
            .setting("mode", &1u8)
            .setting("extra", &())
            .build(),
    ];
    let base_key = CacheKey::new(&base, &input);
    assert_eq!(
        base_key,
        CacheKey::new(
            &StepFingerprint::builder("step", 1)
                .setting("mode", &1u8)
                .build(),
            &input
        )
    );
    for (index, variant) in variants.iter().enumerate() {
        assert_ne!(*variant, base, "fingerprint variant {index}");
        assert_ne!(
            CacheKey::new(variant, &input),
            base_key,
            "key variant {index}"
        );
    }
    // Settings are ordered.
    let ab = StepFingerprint::builder("s", 1)
        .setting("a", &1u8)
        .setting("b", &2u8)
        .build();
    let ba = StepFingerprint::builder("s", 1)
        .setting("b", &2u8)
        .setting("a", &1u8)
        .build();
    assert_ne!(ab, ba);
}

#[test]
fn keys_are_domain_separated_from_plain_blake3() {
    let input = [9u8; 64];
    let key = key(&input);
    assert_ne!(key.as_bytes(), blake3::hash(&input).as_bytes());
    assert_ne!(
        key.as_bytes(),
        blake3::keyed_hash(&[0; 32], &input).as_bytes()
    );
    assert_eq!(
        key.as_bytes(),
        blake3::keyed_hash(fingerprint().as_bytes(), &input).as_bytes()
    );
}

#[test]
fn key_formats_as_hex() {
    let mut bytes = [0u8; 32];
    bytes[0] = 0xab;
    bytes[31] = 0x01;
    let key = CacheKey::from_bytes(bytes);
    let hex = format!("ab{}01", "00".repeat(30));
    assert_eq!(format!("{key}"), hex);
    assert_eq!(format!("{key:?}"), format!("CacheKey({hex})"));
    assert_eq!(key.as_bytes(), &bytes);
}

// ---------------------------------------------------------------------------------------------
// FixedCache: construction

#[test]
fn bad_capacities_and_ttls_are_errors() {
    assert_eq!(
        FixedCache::<u8>::new(0).unwrap_err(),
        CacheError::ZeroCapacity
    );
    let max = FixedCache::<u8>::MAX_CAPACITY;
    assert_eq!(
        FixedCache::<u8>::new(usize::MAX).unwrap_err(),
        CacheError::CapacityTooLarge {
            requested: usize::MAX,
            max
        }
    );
    assert_eq!(
        FixedCache::<u8>::new(max + 1).unwrap_err(),
        CacheError::CapacityTooLarge {
            requested: max + 1,
            max
        }
    );
    assert_eq!(
        FixedCache::<u8>::with_ttl(8, 0).unwrap_err(),
        CacheError::ZeroTtl
    );
    assert_eq!(
        FixedCache::<u8>::with_ttl(0, 5).unwrap_err(),
        CacheError::ZeroCapacity
    );
    assert_eq!(
        format!("{}", CacheError::ZeroCapacity),
        "cache capacity must be at least 1"
    );
}

#[test]
fn capacity_is_exact_and_sets_cover_it() {
    for capacity in [1, 2, 7, 8, 9, 15, 16, 17, 100, 1000] {
        let cache = FixedCache::<u8>::new(capacity).unwrap();
        assert_eq!(cache.capacity(), capacity);
        assert!(cache.is_empty());
        let set_count = set_count_for(capacity);
        let covered: usize = (0..set_count).map(|set| set_len(set, capacity)).sum();
        assert_eq!(covered, capacity);
        assert!((0..set_count).all(|set| (1..=8).contains(&set_len(set, capacity))));
        // The extreme index bits land in the first and last set.
        assert_eq!(set_of(&key_with_index(0, 0), set_count), 0);
        assert_eq!(
            set_of(&key_with_index(u64::MAX, 0), set_count),
            set_count - 1
        );
    }
}

// ---------------------------------------------------------------------------------------------
// FixedCache: behaviour

#[test]
fn hits_and_misses_are_counted_exactly() {
    let mut cache = FixedCache::new(16).unwrap();
    let a = key(&1u32);
    let b = key(&2u32);
    assert_eq!(cache.get(&a, 0), None);
    assert_eq!(cache.insert(a, 10u32, 0), None);
    assert_eq!(cache.get(&a, 1), Some(&10));
    assert_eq!(cache.get(&a, 2), Some(&10));
    assert_eq!(cache.get(&b, 3), None);
    assert_eq!(cache.len(), 1);
    let stats = cache.stats();
    assert_eq!(
        stats,
        CacheStats {
            hits: 2,
            misses: 2,
            inserts: 1,
            ..CacheStats::default()
        }
    );
}

#[test]
fn insert_of_a_present_key_hands_back_the_old_value() {
    let mut cache = FixedCache::new(4).unwrap();
    let a = key("a");
    assert_eq!(cache.insert(a, 1u8, 0), None);
    assert_eq!(cache.insert(a, 2u8, 0), Some((a, 1)));
    assert_eq!(cache.get(&a, 0), Some(&2));
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.stats().replacements, 1);
    assert_eq!(cache.stats().evictions, 0);
}

#[test]
fn lru_within_a_set_evicts_the_least_recently_used() {
    // Capacity 4: one set of four ways, fully associative.
    let mut cache = FixedCache::new(4).unwrap();
    let keys: Vec<CacheKey> = (0u32..6).map(|i| key(&i)).collect();
    for (value, key) in keys[..4].iter().enumerate() {
        assert_eq!(cache.insert(*key, value, 0), None);
    }
    // Touch 0 and 1: 2 is now the least recently used, then 3.
    assert_eq!(cache.get(&keys[0], 0), Some(&0));
    assert_eq!(cache.get(&keys[1], 0), Some(&1));
    assert_eq!(cache.insert(keys[4], 4, 0), Some((keys[2], 2)));
    assert_eq!(cache.insert(keys[5], 5, 0), Some((keys[3], 3)));
    assert_eq!(cache.get(&keys[2], 0), None);
    assert_eq!(cache.get(&keys[3], 0), None);
    for i in [0, 1, 4, 5] {
        assert_eq!(cache.get(&keys[i], 0), Some(&i));
    }
    assert_eq!(cache.len(), 4);
    assert_eq!(cache.stats().evictions, 2);
}

#[test]
fn eviction_prefers_expired_entries() {
    let mut cache = FixedCache::with_ttl(3, 10).unwrap();
    let keys: Vec<CacheKey> = (0u32..4).map(|i| key(&i)).collect();
    assert_eq!(cache.insert(keys[0], 0u32, 0), None); // least recently used, live at 9
    assert_eq!(cache.insert(keys[1], 1, 5), None); // live until 14
    assert_eq!(cache.insert(keys[2], 2, 0), None);
    assert_eq!(cache.get(&keys[0], 9), Some(&0)); // keys[0] most recently used
                                                  // At tick 12, keys[0] and keys[2] are expired; keys[2] is the least recently used.
    assert_eq!(cache.insert(keys[3], 3, 12), Some((keys[2], 2)));
    assert_eq!(cache.get(&keys[1], 12), Some(&1));
    assert_eq!(cache.get(&keys[0], 12), None);
}

#[test]
fn ttl_boundaries_are_exact() {
    let mut cache = FixedCache::with_ttl(8, 5).unwrap();
    assert_eq!(cache.ttl_ticks(), Some(5));
    let a = key(&1u8);
    cache.insert(a, 'a', 100);
    assert_eq!(cache.get(&a, 100), Some(&'a'));
    assert_eq!(cache.get(&a, 104), Some(&'a'));
    assert_eq!(cache.get(&a, 105), None);
    assert_eq!(cache.get(&a, u64::MAX), None);
    // A clock that goes backwards sees a fresh entry.
    assert_eq!(cache.get(&a, 3), Some(&'a'));
    // Expired entries keep their slot until reclaimed, and `remove` hands them back.
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.remove(&a), Some('a'));
    assert!(cache.is_empty());
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.removals), (3, 2, 1));
}

#[test]
fn ttl_near_the_end_of_time() {
    let mut cache = FixedCache::with_ttl(2, u64::MAX).unwrap();
    let a = key(&1u8);
    cache.insert(a, 1u8, 0);
    assert_eq!(cache.get(&a, u64::MAX - 1), Some(&1));
    assert_eq!(cache.get(&a, u64::MAX), None);
    let mut short = FixedCache::with_ttl(2, 1).unwrap();
    short.insert(a, 2u8, u64::MAX);
    assert_eq!(short.get(&a, u64::MAX), Some(&2));
    // No TTL: never expires.
    let mut forever = FixedCache::new(2).unwrap();
    forever.insert(a, 3u8, 0);
    assert_eq!(forever.ttl_ticks(), None);
    assert_eq!(forever.get(&a, u64::MAX), Some(&3));
}

#[test]
fn replacing_an_expired_entry_refreshes_it() {
    let mut cache = FixedCache::with_ttl(2, 5).unwrap();
    let a = key(&1u8);
    cache.insert(a, 1u8, 0);
    assert_eq!(cache.get(&a, 10), None);
    assert_eq!(cache.insert(a, 2u8, 10), Some((a, 1)));
    assert_eq!(cache.get(&a, 14), Some(&2));
}

#[test]
fn colliding_index_bits_never_return_another_keys_value() {
    // Every key shares the same index bits, so all land in one set; only the other 24 bytes
    // tell them apart.
    let mut cache = FixedCache::new(64).unwrap();
    let colliding: Vec<CacheKey> = (1u8..=12)
        .map(|tail| key_with_index(0x5555, tail))
        .collect();
    for key in &colliding {
        assert_eq!(key.as_bytes()[..8], colliding[0].as_bytes()[..8]);
    }
    for (value, key) in colliding[..8].iter().enumerate() {
        assert_eq!(cache.insert(*key, value, 0), None);
    }
    for (value, key) in colliding[..8].iter().enumerate() {
        assert_eq!(cache.get(key, 0), Some(&value));
    }
    // Absent keys with the same index bits miss, even in a full set.
    for key in &colliding[8..] {
        assert_eq!(cache.get(key, 0), None);
    }
    // A key that differs only in its last byte.
    let mut near = *colliding[0].as_bytes();
    near[31] ^= 1;
    assert_eq!(cache.get(&CacheKey::from_bytes(near), 0), None);
    // The ninth colliding key evicts within the set: the other sets stay empty.
    assert_eq!(cache.insert(colliding[8], 8, 0), Some((colliding[0], 0)));
    assert_eq!(cache.len(), 8);
    assert_eq!(cache.get(&colliding[0], 0), None);
    assert_eq!(cache.get(&colliding[8], 0), Some(&8));
}

#[test]
fn a_partial_last_set_holds_only_its_share() {
    // Capacity 10: one set of 8 and a last set of 2, padded to 8 slots that stay empty.
    let mut cache = FixedCache::new(10).unwrap();
    let set_count = set_count_for(10);
    assert_eq!((set_count, set_len(1, 10)), (2, 2));
    let last: Vec<CacheKey> = (0u32..)
        .map(|i| key(&i))
        .filter(|key| set_of(key, set_count) == 1)
        .take(5)
        .collect();
    for (value, key) in last.iter().enumerate() {
        let displaced = cache.insert(*key, value, 0);
        // The third key of the last set evicts (its two slots are full): the padding is
        // never used.
        assert_eq!(
            displaced.is_some(),
            value >= 2,
            "insert {value}: {displaced:?}"
        );
        assert_eq!(cache.len(), value.min(1) + 1);
    }
    let live = last
        .iter()
        .filter(|key| cache.get(key, 0).is_some())
        .count();
    assert_eq!((live, cache.len(), cache.capacity()), (2, 2, 10));
    assert_eq!(cache.stats().evictions, 3);
}

#[test]
fn remove_and_clear() {
    let mut cache = FixedCache::new(10).unwrap();
    let keys: Vec<CacheKey> = (0u32..10).map(|i| key(&i)).collect();
    let mut evicted = BTreeSet::new();
    for (value, key) in keys.iter().enumerate() {
        if let Some((old_key, _)) = cache.insert(*key, value, 0) {
            evicted.insert(old_key);
        }
    }
    for (value, key) in keys.iter().enumerate().take(3) {
        let expected = (!evicted.contains(key)).then_some(value);
        assert_eq!(cache.remove(key), expected);
        assert_eq!(cache.remove(key), None);
    }
    let before_clear = cache.len() as u64;
    let removals_before = cache.stats().removals;
    cache.clear();
    assert!(cache.is_empty());
    assert_eq!(cache.stats().removals, removals_before + before_clear);
    assert!(keys.iter().all(|key| cache.get(key, 0).is_none()));
    let stats = cache.stats();
    assert_eq!(
        stats.inserts - stats.replacements - stats.evictions - stats.removals,
        0
    );
    assert_eq!(stats.evictions as usize, evicted.len());
}

#[test]
fn random_programs_conserve_entries_and_agree_with_a_model() {
    let ops = if cfg!(miri) { 200 } else { 100_000 };
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    // Hashing is slow under Miri: the keys are computed once.
    let keys: Vec<CacheKey> = (0u64..48).map(|i| key(&i)).collect();
    for capacity in [1usize, 5, 8, 20] {
        let mut cache = FixedCache::with_ttl(capacity, 40).unwrap();
        // The model: every value ever inserted for a key, newest last.
        let mut latest: BTreeMap<[u8; 32], (u64, u64)> = BTreeMap::new();
        let mut now = 0u64;
        for op in 0..ops {
            now += rng.next() % 3;
            let k = keys[(rng.next() % 48) as usize];
            match rng.next() % 3 {
                0 => {
                    let displaced = cache.insert(k, op, now);
                    if let Some((old_key, old_value)) = displaced {
                        // Whatever comes back is the latest value of that key.
                        assert_eq!(
                            latest.remove(old_key.as_bytes()).map(|v| v.0),
                            Some(old_value)
                        );
                    }
                    latest.insert(*k.as_bytes(), (op, now));
                }
                1 => {
                    // A hit returns the latest value, and only while it is live.
                    if let Some(value) = cache.get(&k, now).copied() {
                        let (expected, inserted_at) = latest[k.as_bytes()];
                        assert_eq!(value, expected);
                        assert!(now - inserted_at < 40);
                    } else if let Some(&(_, inserted_at)) = latest.get(k.as_bytes()) {
                        // Absent from the cache only if evicted (then it came back from an
                        // insert and left the model) or expired.
                        assert!(now - inserted_at >= 40);
                    }
                }
                _ => {
                    let removed = cache.remove(&k);
                    assert_eq!(removed, latest.remove(k.as_bytes()).map(|v| v.0));
                }
            }
            let stats = cache.stats();
            assert_eq!(cache.len(), latest.len());
            assert_eq!(
                stats.inserts - stats.replacements - stats.evictions - stats.removals,
                cache.len() as u64
            );
            assert!(cache.len() <= capacity);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// FixedCache: drops

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Counts live instances in `LIVE`.
#[derive(Debug, PartialEq)]
struct Counted(u32);

impl Counted {
    fn new(value: u32) -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Self(value)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn every_value_is_dropped_exactly_once() {
    let rounds = if cfg!(miri) { 50 } else { 10_000 };
    let keys: Vec<CacheKey> = (0u32..40).map(|i| key(&i)).collect();
    {
        let mut cache = FixedCache::new(12).unwrap();
        let mut handed_back = 0usize;
        for i in 0..rounds {
            let k = keys[(i % 40) as usize];
            if let Some((_, value)) = cache.insert(k, Counted::new(i), 0) {
                handed_back += 1;
                drop(value);
            }
            if i % 7 == 0 {
                drop(cache.remove(&keys[((i * 3) % 40) as usize]));
            }
            assert_eq!(LIVE.load(Ordering::SeqCst), cache.len());
        }
        assert!(handed_back > 0);
        cache.clear();
        assert_eq!(LIVE.load(Ordering::SeqCst), 0);
        for i in 0..12 {
            cache.insert(keys[i as usize], Counted::new(i), 0);
        }
        assert_eq!(LIVE.load(Ordering::SeqCst), cache.len());
        assert!(!cache.is_empty());
    }
    // Dropping the cache drops what it held.
    assert_eq!(LIVE.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------------
// FastKey

fn fast<T: CanonicalEncode + ?Sized>(value: &T) -> FastKey {
    FastKey::new(&fingerprint(), value)
}

/// The canonical bytes of `value` as `FastKey` keeps them.
fn kept<T: CanonicalEncode + ?Sized>(value: &T) -> Vec<u8> {
    fast(value).canonical_bytes().expect("kept whole").to_vec()
}

#[test]
fn fast_keys_keep_the_canonical_bytes() {
    assert_eq!(kept(&0x0102_0304u32), [4, 3, 2, 1]);
    assert_eq!(kept("ab"), prefixed(2, b"ab"));
    assert_eq!(kept(&(1u8, Some(2u16))), [1, 1, 2, 0]);
    assert_eq!(kept(&()), Vec::<u8>::new());
    assert_eq!(fast(&7u64).fingerprint(), fingerprint().as_bytes());
    assert_eq!(fast(&7u64).cache_key(), None);
    // The bytes are those the BLAKE3 key hashes.
    let value = (-1i32, "x", [0.5f64, -0.0]);
    assert_eq!(key(&value), key(&Raw(&kept(&value))));
}

#[test]
fn fast_keys_are_equal_exactly_when_fingerprint_and_bytes_are() {
    assert_eq!(fast("hello"), fast(&String::from("hello")));
    assert_eq!(fast(&(1u32, 2u32)), fast(&[1u32, 2]));
    assert_eq!(fast(&-0.0f64), fast(&0.0f64));
    assert_ne!(fast("hello"), fast("hellp"));
    // Zero padding never hides a length: no bytes, one zero byte, eight zero bytes.
    let empties = [fast(&()), fast(&0u8), fast(&0u64), fast(&[0u8; 64])];
    for (i, a) in empties.iter().enumerate() {
        for (j, b) in empties.iter().enumerate() {
            assert_eq!(a == b, i == j, "{i} vs {j}");
        }
    }
    // Another step, or another version of the step: never equal.
    let other = StepFingerprint::builder("test-step", 2).build();
    assert_ne!(fast(&5u8), FastKey::new(&other, &5u8));
    // Equal keys hash alike (the digest, as one word).
    let digest_of = |key: &FastKey| {
        use core::hash::{Hash, Hasher};
        struct Last(u64);
        impl Hasher for Last {
            fn finish(&self) -> u64 {
                self.0
            }
            fn write(&mut self, _: &[u8]) {
                unreachable!("FastKey hashes one u64")
            }
            fn write_u64(&mut self, word: u64) {
                self.0 = word;
            }
        }
        let mut hasher = Last(0);
        key.hash(&mut hasher);
        hasher.finish()
    };
    assert_eq!(digest_of(&fast("hello")), fast("hello").digest());
    assert_eq!(
        digest_of(&fast("hello")),
        digest_of(&fast(&String::from("hello")))
    );
}

#[test]
fn fast_keys_of_long_inputs_keep_their_blake3_key() {
    // 64 bytes: the longest kept whole; 65: its CacheKey stands for it.
    let longest = [7u8; 64];
    let long = [7u8; 65];
    assert_eq!(kept(&longest), longest);
    assert_eq!(fast(&long).canonical_bytes(), None);
    assert_eq!(fast(&long).cache_key(), Some(key(&long)));
    // Past the writer's inline buffer too (streamed BLAKE3).
    let huge = vec![3u16; 500];
    assert_eq!(fast(&huge).cache_key(), Some(key(&huge)));
    assert_eq!(fast(&huge), fast(&huge.clone()));
    let mut other = huge.clone();
    other[499] = 4;
    assert_ne!(fast(&huge), fast(&other));
    // A long key is never equal to a short key holding the same 32 bytes.
    let digest_bytes = *key(&long).as_bytes();
    assert_ne!(fast(&long), fast(&digest_bytes));
}

#[test]
fn fixed_cache_by_fast_key_hits_misses_and_hands_back() {
    let mut cache: FixedCache<u32, FastKey> = FixedCache::new(16).unwrap();
    let a = fast(&1u32);
    let b = fast(&2u32);
    let long = fast(&[9u8; 100]);
    assert_eq!(cache.get(&a, 0), None);
    assert_eq!(cache.insert(a, 10, 0), None);
    assert_eq!(cache.insert(long, 30, 0), None);
    assert_eq!(cache.get(&fast(&1u32), 1), Some(&10));
    assert_eq!(cache.get(&fast(&[9u8; 100]), 1), Some(&30));
    assert_eq!(cache.get(&b, 2), None);
    assert_eq!(cache.insert(a, 11, 3), Some((a, 10)));
    assert_eq!(cache.remove(&long), Some(30));
    let stats = cache.stats();
    assert_eq!(
        (
            stats.hits,
            stats.misses,
            stats.inserts,
            stats.replacements,
            stats.removals
        ),
        (2, 2, 3, 1, 1)
    );
    assert_eq!(cache.len(), 1);
}

#[test]
fn fast_keys_with_colliding_digests_never_return_another_keys_value() {
    // Every key gets the same digest, so all land in one set and share the early-out word;
    // only the kept bytes (or the CacheKey of a long input) tell them apart.
    let inputs: Vec<Vec<u8>> = (0u8..12)
        .map(|i| match i % 3 {
            0 => vec![i],
            1 => vec![i; 40],
            _ => vec![i; 90],
        })
        .collect();
    let colliding: Vec<FastKey> = inputs
        .iter()
        .map(|input| fast(input).with_digest(0x5555))
        .collect();
    let mut cache = FixedCache::new(64).unwrap();
    for (value, key) in colliding[..8].iter().enumerate() {
        assert_eq!(cache.insert(*key, value, 0), None);
    }
    for (value, key) in colliding[..8].iter().enumerate() {
        assert_eq!(cache.get(key, 0), Some(&value));
    }
    for key in &colliding[8..] {
        assert_eq!(cache.get(key, 0), None);
    }
    // An input that differs in its last byte only, with the same digest.
    let mut near = inputs[1].clone();
    *near.last_mut().unwrap() ^= 1;
    assert_eq!(cache.get(&fast(&near).with_digest(0x5555), 0), None);
    // The same input under another step, with the same digest.
    let other = StepFingerprint::builder("other-step", 1).build();
    let foreign = FastKey::new(&other, &inputs[0]).with_digest(0x5555);
    assert_eq!(cache.get(&foreign, 0), None);
    assert_eq!(cache.insert(colliding[8], 8, 0), Some((colliding[0], 0)));
    assert_eq!(cache.len(), 8);
}

#[test]
fn random_programs_by_fast_key_agree_with_a_model() {
    let ops = if cfg!(miri) { 200 } else { 50_000 };
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    // Short inputs (kept whole) and long ones (keyed by their CacheKey) of three steps, so the
    // cache's table of fingerprints gains, shares, frees and reuses rows; half of the digests
    // forged into four values, so sets and digests collide often, across steps too.
    let steps: Vec<StepFingerprint> = (0..3)
        .map(|version| StepFingerprint::builder("model-step", version).build())
        .collect();
    let keys: Vec<FastKey> = (0u8..48)
        .map(|i| {
            let input = vec![i % 16; 1 + usize::from(i % 16) * 6];
            let key = FastKey::new(&steps[usize::from(i / 16)], &input);
            if i % 2 == 0 {
                key.with_digest(u64::from(i) % 4)
            } else {
                key
            }
        })
        .collect();
    assert!(keys.iter().any(|k| k.canonical_bytes().is_none()));
    for (capacity, ttl) in [
        (1usize, None),
        (5, Some(40)),
        (8, None),
        (20, Some(40)),
        (20, None),
    ] {
        let mut cache = match ttl {
            None => FixedCache::new(capacity),
            Some(ttl) => FixedCache::with_ttl(capacity, ttl),
        }
        .unwrap();
        // The model: the latest value of each key index, and when it was stored.
        let mut latest: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
        let index_of = |key: &FastKey| keys.iter().position(|k| k == key).expect("known key");
        let live = |now: u64, inserted_at: u64| ttl.is_none_or(|ttl| now - inserted_at < ttl);
        let mut now = 0u64;
        for op in 0..ops {
            now += rng.next() % 3;
            let i = (rng.next() % 48) as usize;
            let k = keys[i];
            match rng.next() % 7 {
                0..=2 => {
                    if let Some((old_key, old_value)) = cache.insert(k, op, now) {
                        // Handed back whole: its fingerprint too, or it would not be found.
                        assert_eq!(
                            latest.remove(&index_of(&old_key)).map(|v| v.0),
                            Some(old_value)
                        );
                    }
                    latest.insert(i, (op, now));
                }
                3 | 4 => {
                    if let Some(value) = cache.get(&k, now).copied() {
                        let (expected, inserted_at) = latest[&i];
                        assert_eq!(value, expected);
                        assert!(live(now, inserted_at));
                    } else if let Some(&(_, inserted_at)) = latest.get(&i) {
                        assert!(!live(now, inserted_at));
                    }
                }
                5 => {
                    assert_eq!(cache.remove(&k), latest.remove(&i).map(|v| v.0));
                }
                _ if op % 97 == 0 => {
                    cache.clear();
                    latest.clear();
                }
                _ => {}
            }
            assert_eq!(cache.len(), latest.len());
            assert!(cache.len() <= capacity);
            assert!(cache.step_rows() <= capacity.min(steps.len()) + 1);
        }
    }
}

#[test]
fn a_fast_key_cache_keeps_each_steps_fingerprint_once_and_reuses_freed_rows() {
    let steps: Vec<StepFingerprint> = (0..40)
        .map(|version| StepFingerprint::builder("many-steps", version).build())
        .collect();
    let mut cache = FixedCache::new(1024).unwrap();
    // The same input under 40 steps (more than the table's hints): 40 entries, 40 rows, each
    // found again by its own step only.
    for (value, step) in steps.iter().enumerate() {
        assert_eq!(cache.insert(FastKey::new(step, &7u64), value, 0), None);
    }
    assert_eq!(cache.step_rows(), 40);
    for (value, step) in steps.iter().enumerate() {
        assert_eq!(cache.get(&FastKey::new(step, &7u64), 0), Some(&value));
    }
    // Many inputs of one step share its row.
    for input in 0u64..100 {
        assert!(
            cache
                .insert(FastKey::new(&steps[0], &input), 0, 0)
                .is_none()
                || input == 7
        );
    }
    assert_eq!(cache.step_rows(), 40);
    // Once a step's last entry leaves, its row serves a new step.
    assert_eq!(cache.remove(&FastKey::new(&steps[39], &7u64)), Some(39));
    let newcomer = StepFingerprint::builder("newcomer", 1).build();
    assert_eq!(cache.insert(FastKey::new(&newcomer, &7u64), 100, 0), None);
    assert_eq!(cache.step_rows(), 40);
    assert_eq!(cache.get(&FastKey::new(&newcomer, &7u64), 0), Some(&100));
    assert_eq!(cache.get(&FastKey::new(&steps[39], &7u64), 0), None);
    // A clear frees them all.
    cache.clear();
    assert_eq!(cache.step_rows(), 0);
    assert_eq!(cache.insert(FastKey::new(&steps[5], &7u64), 5, 0), None);
    assert_eq!(cache.get(&FastKey::new(&steps[5], &7u64), 0), Some(&5));
    assert_eq!(cache.step_rows(), 1);
}
