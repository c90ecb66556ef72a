use super::Rng;
use crate::telemetry::Sampler;

#[test]
fn counter_sampling_keeps_exactly_one_in_period() {
    for period in [1u32, 2, 3, 10, 64] {
        let mut s = Sampler::one_in(period);
        let rounds = 7u32;
        let kept = (0..period * rounds).filter(|_| s.sample()).count();
        assert_eq!(kept, rounds as usize, "period {period}");
    }
    let mut never = Sampler::never();
    assert!((0..100).all(|_| !never.sample()));
    let mut always = Sampler::default();
    assert!((0..100).all(|_| always.sample()));
}

#[test]
fn key_sampling_is_deterministic_and_near_one_in_period() {
    let keys: u64 = if cfg!(miri) { 200 } else { 200_000 };
    for period in [2u32, 10, 100] {
        let s = Sampler::one_in(period).with_seed(0xABCD);
        let kept = (0..keys).filter(|&k| s.sample_key(k)).count() as f64;
        let expected = keys as f64 / f64::from(period);
        if !cfg!(miri) {
            // Five standard deviations of a binomial count.
            let sd = (expected * (1.0 - 1.0 / f64::from(period))).sqrt();
            assert!(
                (kept - expected).abs() <= 5.0 * sd,
                "period {period}: {kept}"
            );
        }
        assert!((0..keys).all(|k| s.sample_key(k) == s.sample_key(k)));
    }
    // Seeds change the choice; period 1 and 0 are total.
    let a = Sampler::one_in(2).with_seed(1);
    let b = Sampler::one_in(2).with_seed(2);
    assert!((0..64).any(|k| a.sample_key(k) != b.sample_key(k)));
    let mut rng = Rng::new(9);
    for _ in 0..100 {
        let k = rng.next_u64();
        assert!(Sampler::always().sample_key(k));
        assert!(!Sampler::never().sample_key(k));
    }
}
