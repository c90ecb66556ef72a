use super::*;

#[test]
fn debug_ratio() {
    let mut d = LatencyDetector::new(DetectorConfig::default()).unwrap();
    let w = |ns: f64| {
        let mut w = LatencyWindow::new();
        for i in 0..99 {
            w.record((ns * [0.7, 1.0, 1.4][i % 3]) as u64);
        }
        w
    };
    for _ in 0..50 {
        assert_eq!(d.observe(&w(10_000.0)), None);
    }
    eprintln!("{:?}", d.baseline());
    let s = d.observe(&w(20_000.0));
    eprintln!("{s:?}");
}

#[test]
fn debug_ratio2() {
    let mut d = LatencyDetector::new(DetectorConfig::default()).unwrap();
    let mut s = 1u64;
    let mut w = |ns: f64| {
        let mut w = LatencyWindow::new();
        for _ in 0..100 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            w.record((ns * (1.0 + u)) as u64);
        }
        w
    };
    for _ in 0..50 {
        assert_eq!(d.observe(&w(10_000.0)), None);
    }
    eprintln!("{:?} {:?}", d.baseline(), d.state());
    let s = d.observe(&w(20_000.0));
    eprintln!("{s:?}");
}
