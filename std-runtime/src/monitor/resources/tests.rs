//! The `/proc` and cgroup parsers on fixed text (odd and missing fields included), the cgroup
//! walk on a directory tree of its own, and live readings of this process (Linux).

use std::fs;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flujo_core::telemetry::Histogram;

use super::*;

/// A `/proc/self/stat` line whose command name holds spaces and parentheses; utime 250,
/// stime 130 (fields 14 and 15), rss 380 pages (field 24).
const STAT: &str = "4242 (my (odd) prog) R 1 4242 4242 0 -1 4194304 102 0 0 0 250 130 0 0 20 0 3 0 \
                    4081024 3133440 380 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";

/// What [`parse_stat`] gives for [`STAT`].
const PARSED: Stat = Stat {
    cpu_ticks: 380,
    rss_pages: 380,
};

/// The CPU ticks of `text`, if it parses.
fn parse_stat_cpu_ticks(text: &str) -> Option<u64> {
    parse_stat(text).map(|s| s.cpu_ticks)
}

#[test]
fn stat_fields_are_counted_from_the_last_parenthesis() {
    assert_eq!(parse_stat(STAT), Some(PARSED));
    // A plain name.
    let plain = STAT.replace("(my (odd) prog)", "(cat)");
    assert_eq!(parse_stat(&plain), Some(PARSED));
    // A name holding a `)` followed by numbers does not shift the fields.
    let tricky = STAT.replace("(my (odd) prog)", "(x) 1 2 3 4 5 6 7 8 9 10 11 12)");
    assert_eq!(parse_stat(&tricky), Some(PARSED));
    // rss is its own field: change it alone.
    let bigger = STAT.replace(" 3133440 380 ", " 3133440 1000 ");
    assert_eq!(
        parse_stat(&bigger).map(|s| (s.cpu_ticks, s.rss_pages)),
        Some((380, 1000))
    );
}

#[test]
fn stat_cpu_ticks_refuse_odd_text() {
    assert_eq!(parse_stat_cpu_ticks(""), None);
    assert_eq!(parse_stat_cpu_ticks("4242 no parenthesis R 1 2 3"), None);
    // Cut before stime, or before rss.
    let cut: String = STAT.split(" 130 ").next().unwrap().to_string();
    assert_eq!(parse_stat_cpu_ticks(&cut), None);
    let cut: String = STAT
        .split(" 380 18446744073709551615")
        .next()
        .unwrap()
        .to_string();
    assert_eq!(parse_stat(&cut), None);
    // A field that is not a number.
    assert_eq!(parse_stat_cpu_ticks(&STAT.replace(" 250 ", " x ")), None);
    // Sums that overflow.
    let huge = STAT
        .replace(" 250 ", &format!(" {} ", u64::MAX))
        .replace(" 130 ", " 1 ");
    assert_eq!(parse_stat_cpu_ticks(&huge), None);
}

#[test]
fn ticks_are_hundredths_of_a_second() {
    assert_eq!(ticks_to_duration(0), Duration::ZERO);
    assert_eq!(ticks_to_duration(1), Duration::from_millis(10));
    assert_eq!(ticks_to_duration(380), Duration::from_millis(3_800));
    assert_eq!(
        ticks_to_duration(u64::MAX),
        Duration::from_secs(u64::MAX / 100) + Duration::from_millis(150)
    );
}

#[test]
fn the_page_size_is_the_auxiliary_vectors_at_pagesz() {
    let words = |pairs: &[(usize, usize)]| -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|&(k, v)| [k.to_ne_bytes(), v.to_ne_bytes()])
            .flatten()
            .collect()
    };
    // AT_HWCAP, AT_PAGESZ, AT_NULL.
    assert_eq!(
        parse_auxv_page_size(&words(&[(16, 0xff), (6, 16384), (0, 0)])),
        Some(16384)
    );
    // After the end (key 0), or missing, or zero: none.
    assert_eq!(
        parse_auxv_page_size(&words(&[(16, 1), (0, 0), (6, 4096)])),
        None
    );
    assert_eq!(parse_auxv_page_size(&words(&[(16, 1)])), None);
    assert_eq!(parse_auxv_page_size(&words(&[(6, 0), (0, 0)])), None);
    assert_eq!(parse_auxv_page_size(&[]), None);
    // A cut pair is not read.
    let cut = words(&[(6, 4096)]);
    assert_eq!(parse_auxv_page_size(&cut[..cut.len() - 1]), None);
}

#[test]
fn status_rss_reads_kib() {
    let status = "Name:\tflujo\nVmPeak:\t  9000 kB\nVmRSS:\t    2240 kB\nThreads:\t3\n";
    assert_eq!(parse_status_rss(status), Some(2240 * 1024));
    // Missing, without a unit, with another unit, not a number.
    assert_eq!(parse_status_rss("Name:\tflujo\nThreads:\t3\n"), None);
    assert_eq!(parse_status_rss("VmRSS:\t2240\n"), None);
    assert_eq!(parse_status_rss("VmRSS:\t2240 MB\n"), None);
    assert_eq!(parse_status_rss("VmRSS:\tlots kB\n"), None);
    // `VmRSSx` is not `VmRSS`, nor is a line where it is not the key.
    assert_eq!(parse_status_rss("Other: VmRSS: 5 kB\n"), None);
}

#[test]
fn limits_max_and_v1_unlimited_are_none() {
    assert_eq!(parse_limit("max\n"), None);
    assert_eq!(parse_limit("1073741824\n"), Some(1 << 30));
    assert_eq!(parse_limit("9223372036854771712\n"), None); // v1 "unlimited"
    assert_eq!(
        parse_limit(&format!("{}", (1u64 << 62) - 1)),
        Some((1 << 62) - 1)
    );
    assert_eq!(parse_limit(""), None);
    assert_eq!(parse_limit("-1"), None);
    assert_eq!(parse_limit("12 bytes"), None);
}

#[test]
fn cgroup_paths_take_v2_and_the_v1_memory_controller() {
    let text = "9:name=systemd:/\n4:memory:/jobs/a\n3:cpu,cpuacct:/x\n0::/user.slice/b\n\
                odd line\n2:cpuset,memory:/both\n";
    assert_eq!(
        parse_cgroup_paths(text),
        vec![
            (Version::V1, "/jobs/a".to_string()),
            (Version::V2, "/user.slice/b".to_string()),
            (Version::V1, "/both".to_string()),
        ]
    );
    assert_eq!(parse_cgroup_paths(""), Vec::new());
}

/// Mountinfo lines of a hybrid host (v1 memory and a v2 hierarchy), the mount points under
/// `base`; the v1 mount shows the hierarchy from `/jobs` down.
fn mountinfo(base: &str) -> String {
    format!(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
         31 22 0:28 / {base}/cg rw - tmpfs tmpfs rw\n\
         35 31 0:32 /jobs {base}/cg/memory rw,relatime - cgroup cgroup rw,memory\n\
         36 31 0:33 / {base}/cg/cpu rw,relatime - cgroup cgroup rw,cpu\n\
         41 31 0:38 / {base}/cg/uni\\040fied rw,relatime - cgroup2 cgroup2 rw\n"
    )
}

#[test]
fn mounts_are_found_by_type_and_option_with_escapes_decoded() {
    let text = mountinfo("/sys");
    assert_eq!(
        find_mount(&text, Version::V2),
        Some(("/".to_string(), "/sys/cg/uni fied".to_string()))
    );
    assert_eq!(
        find_mount(&text, Version::V1),
        Some(("/jobs".to_string(), "/sys/cg/memory".to_string()))
    );
    assert_eq!(find_mount("", Version::V2), None);
    assert_eq!(find_mount("no dash here at all", Version::V1), None);
    assert_eq!(unescape(r"a\040b\134c\12"), "a b\\c\\12");
}

/// A fresh directory under the system's temporary directory.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flujo-resources-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_walk_reads_every_level_up_to_the_mount_and_keeps_the_smallest_limit() {
    let base = scratch_dir("walk");
    let base_text = base.to_str().unwrap();
    // v1: the process is in /jobs/a/b; the mount shows /jobs as its root.
    let v1 = base.join("cg/memory");
    fs::create_dir_all(v1.join("a/b")).unwrap();
    fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
    fs::write(v1.join("a/memory.limit_in_bytes"), "536870912\n").unwrap(); // 512 MiB
    fs::write(
        v1.join("a/b/memory.limit_in_bytes"),
        "9223372036854771712\n",
    )
    .unwrap();
    // v2: the process is in /svc; its own level says max, the mount root has no file.
    let v2 = base.join("cg/uni fied");
    fs::create_dir_all(v2.join("svc")).unwrap();
    fs::write(v2.join("svc/memory.max"), "max\n").unwrap();

    let cgroups = "4:memory:/jobs/a/b\n0::/svc\n";
    let files = cgroup_limit_files(cgroups, &mountinfo(base_text));
    assert_eq!(
        files,
        vec![
            v1.join("memory.limit_in_bytes"),
            v1.join("a/memory.limit_in_bytes"),
            v1.join("a/b/memory.limit_in_bytes"),
            v2.join("memory.max"),
            v2.join("svc/memory.max"),
        ]
    );
    // An ancestor's limit binds the process (and a missing file is skipped).
    assert_eq!(limit_of(&files), Some(512 << 20));
    // A tighter v2 limit wins over the v1 one.
    fs::write(v2.join("svc/memory.max"), "268435456\n").unwrap();
    assert_eq!(limit_of(&files), Some(256 << 20));
    // No limit anywhere: none.
    fs::write(v2.join("svc/memory.max"), "max\n").unwrap();
    fs::write(v1.join("a/memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
    assert_eq!(limit_of(&files), None);
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn paths_outside_the_mount_root_or_climbing_out_are_skipped() {
    let text = mountinfo("/sys");
    // The v1 mount shows /jobs only.
    assert_eq!(
        cgroup_limit_files("4:memory:/other/a\n", &text),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        cgroup_limit_files("0::/a/../../etc\n", &text),
        Vec::<PathBuf>::new()
    );
    // No mount of that hierarchy.
    let no_v2 = text.replace("cgroup2 cgroup2", "tmpfs tmpfs");
    assert_eq!(
        cgroup_limit_files("0::/svc\n", &no_v2),
        Vec::<PathBuf>::new()
    );
    // The root cgroup: only the mount point's file.
    assert_eq!(
        cgroup_limit_files("0::/\n", &text),
        vec![PathBuf::from("/sys/cg/uni fied/memory.max")]
    );
}

/// A reading with these figures, `at` after `origin`.
fn reading_at(origin: Instant, at: Duration, cpu: Option<Duration>) -> ProcessReading {
    ProcessReading {
        cpu_time: cpu,
        resident_bytes: Some(1 << 20),
        memory_limit_bytes: None,
        taken_at: origin + at,
    }
}

#[test]
fn utilisation_is_cpu_time_over_wall_time_between_readings() {
    let origin = Instant::now();
    let cores = NonZeroUsize::new(4).unwrap();
    let first = reading_at(origin, Duration::ZERO, Some(Duration::from_millis(500)));
    let alone = stats_between(None, &first, cores);
    assert_eq!(
        (alone.cpu_cores_busy, alone.cpu_share_of_cores),
        (None, None)
    );
    assert_eq!(alone.cpu_time_ns, Some(500_000_000));
    assert_eq!(
        (alone.resident_bytes, alone.cores_available),
        (Some(1 << 20), 4)
    );

    // 3 s of CPU in 2 s of wall time: 1.5 cores, 37.5 % of four.
    let second = reading_at(
        origin,
        Duration::from_secs(2),
        Some(Duration::from_millis(3_500)),
    );
    let s = stats_between(Some(&first), &second, cores);
    assert_eq!(s.cpu_cores_busy, Some(1.5));
    assert_eq!(s.cpu_share_of_cores, Some(0.375));
    assert_eq!(s.interval_ns, Some(2_000_000_000));

    // No wall time, or no CPU reading: no utilisation.
    assert_eq!(
        stats_between(Some(&first), &first, cores).cpu_cores_busy,
        None
    );
    let unread = reading_at(origin, Duration::from_secs(3), None);
    let s = stats_between(Some(&second), &unread, cores);
    assert_eq!((s.cpu_cores_busy, s.cpu_time_ns), (None, None));
    // A CPU time that went backwards (it cannot; the reading saturates) is zero busy.
    let back = reading_at(origin, Duration::from_secs(4), Some(Duration::ZERO));
    assert_eq!(
        stats_between(Some(&second), &back, cores).cpu_cores_busy,
        Some(0.0)
    );
}

/// This thread's CPU time, from `/proc/thread-self/stat` (a file the module does not read).
#[cfg(target_os = "linux")]
fn thread_cpu() -> Duration {
    let text = fs::read_to_string("/proc/thread-self/stat").unwrap();
    ticks_to_duration(parse_stat(&text).unwrap().cpu_ticks)
}

/// Burns CPU on this thread until it has used `d` more (the machine may be shared, so wall
/// time says little), giving up after a minute of wall time.
#[cfg(target_os = "linux")]
fn busy(d: Duration) -> Duration {
    let (start, from) = (Instant::now(), thread_cpu());
    let mut x = 0u64;
    loop {
        let used = thread_cpu().saturating_sub(from);
        if used >= d {
            return used;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no CPU for this thread"
        );
        for i in 0..100_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        x = std::hint::black_box(x);
    }
}

#[test]
#[cfg(target_os = "linux")]
fn live_readings_of_this_process() {
    let before = read();
    assert!(before.resident_bytes.unwrap() > 0);
    let cpu_before = before.cpu_time.unwrap();
    let mut sampler = ProcessSampler::new();
    assert!(sampler.last().is_none());
    let first = sampler.sample();
    assert_eq!(first.cpu_cores_busy, None);
    let used = busy(Duration::from_millis(200));
    let second = sampler.sample();
    let after = read();
    // The process's CPU time covers this thread's.
    let grown = after.cpu_time.unwrap() - cpu_before;
    assert!(
        grown >= used,
        "process grew {grown:?}, this thread used {used:?}"
    );
    let grown_ns = second.cpu_time_ns.unwrap() - first.cpu_time_ns.unwrap();
    assert!(grown_ns >= 200_000_000, "{grown_ns}");
    let busy_cores = second.cpu_cores_busy.unwrap();
    let interval = second.interval_ns.unwrap() as f64;
    assert!((busy_cores - grown_ns as f64 / interval).abs() < 1e-9);
    assert!(busy_cores > 0.0 && second.cpu_share_of_cores.unwrap() <= busy_cores);
    assert!(second.resident_bytes.unwrap() > 0);
    // The page size is the kernel's, and the two ways of reading RSS agree within a quarter
    // (other tests' threads allocate meanwhile, and the kernel's per-thread RSS counters lag
    // by up to 64 pages each), which a wrong page size or field would not.
    let page = page_size().unwrap();
    assert!(page.is_power_of_two() && page >= 4096, "{page}");
    let status = parse_status_rss(&fs::read_to_string("/proc/self/status").unwrap()).unwrap();
    let stat = reading(Some(page), None).resident_bytes.unwrap();
    assert!(
        status.abs_diff(stat) <= status / 4,
        "status {status}, stat {stat}"
    );
    assert_eq!(
        reading(None, None).resident_bytes.map(|b| b % 1024),
        Some(0)
    );
    // Whatever this machine's cgroups say, the figure is a number of bytes or none, and both
    // ways of reading agree.
    assert_eq!(after.memory_limit_bytes, second.memory_limit_bytes);
    if let Some(limit) = after.memory_limit_bytes {
        assert!(limit > 0 && limit < V1_UNLIMITED_BYTES);
    }
}

#[test]
fn the_report_counts_core_histograms_of_the_size_they_are() {
    // Walk the buckets of a histogram from 0 to u64::MAX, one value per bucket.
    let mut h = Histogram::new();
    let mut value = 0u64;
    let mut buckets = 0usize;
    loop {
        h.reset();
        h.record(value);
        let bucket = h.buckets().next().unwrap();
        buckets += 1;
        if bucket.high == u64::MAX {
            break;
        }
        value = bucket.high + 1;
    }
    assert_eq!(buckets, crate::report::HISTOGRAM_BUCKETS);
}
