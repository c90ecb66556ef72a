//! Process readings: CPU time and utilisation, resident memory and the cgroup memory limit,
//! read from Linux's `/proc` and cgroup files (elsewhere every reading is `None`).
//!
//! The memory the engine itself holds is not read here: it is counted exactly from the
//! engine's own structures ([`MemoryStats`](crate::report::MemoryStats), filled by
//! [`Executor::report`](crate::Executor::report)). What this module reads is what the
//! operating system says about the whole process, host code included.
//!
//! # Where the figures come from
//!
//! | figure | file | unit and resolution |
//! |---|---|---|
//! | CPU time | `/proc/self/stat`, fields 14 and 15 (`utime`, `stime`) | clock ticks of `USER_HZ` = 100 per second (the kernel's ABI on every architecture Rust builds for Linux), so 10 ms |
//! | resident memory | `/proc/self/stat`, field 24 (`rss`) | pages, times the page size the kernel gave the process (`AT_PAGESZ` of `/proc/self/auxv`, read once); without it, `VmRSS` of `/proc/self/status` (kB) |
//! | memory limit | cgroup v2 `memory.max`, cgroup v1 `memory.limit_in_bytes` | bytes |
//!
//! The cgroup files are found as the kernel describes them: the process's cgroup paths from
//! `/proc/self/cgroup` (the v2 line `0::/path`, the v1 line whose controllers include
//! `memory`) joined to the hierarchy's mount point from `/proc/self/mountinfo`. A limit set on
//! an ancestor cgroup binds too, so every level from the process's cgroup up to the mount
//! point is read and the smallest limit wins. `max` (v2) means no limit, and so does a v1
//! value of 2^62 bytes or more (v1 writes "unlimited" as the largest page count it can hold,
//! `0x7FFF_FFFF_FFFF_F000` on 64-bit systems).
//!
//! CPU utilisation is the CPU time used between two readings over the wall time between them
//! ([`ProcessSampler`]): `1.0` is one core busy the whole time, and the share of all cores
//! divides that by [`std::thread::available_parallelism`] (which honours CPU affinity and a
//! cgroup CPU quota). With 10 ms ticks, utilisation over less than about a second is coarse.
//!
//! # Cost: taken at report time, never on a run's path
//!
//! A [`ProcessSampler`] reads `/proc/self/stat` on every sample (about 10 µs on the test
//! machine), and the cgroup limit files (one per level, found once) at most once a second
//! ([`LIMIT_REREAD`]); a plain [`read`] also finds the files and the page size (about 100 µs).
//! The executor samples once per [`Executor::report`](crate::Executor::report) (and so per
//! metrics scrape); no run, step or submission ever reads a file.
//!
//! # Examples
//!
//! ```
//! use flujo_runtime::monitor::resources::{self, ProcessSampler};
//!
//! let now = resources::read();
//! if cfg!(target_os = "linux") {
//!     assert!(now.resident_bytes.unwrap() > 0);
//!     assert!(now.cpu_time.is_some());
//! }
//! let mut sampler = ProcessSampler::new();
//! let first = sampler.sample(); // no utilisation yet: it needs two readings
//! assert_eq!(first.cpu_cores_busy, None);
//! let second = sampler.sample();
//! assert_eq!(second.cpu_time_ns.is_some(), cfg!(target_os = "linux"));
//! ```

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::report::ProcessStats;

#[cfg(test)]
mod tests;

/// Clock ticks per second of `/proc/self/stat`'s CPU times (`USER_HZ`, fixed by the kernel's
/// user ABI at 100 on the architectures Rust supports for Linux).
const USER_HZ: u64 = 100;

/// A cgroup v1 limit at or above this many bytes is "no limit" (see the module docs).
const V1_UNLIMITED_BYTES: u64 = 1 << 62;

/// The most cgroup levels read on the way up to the mount point (a bound on a malformed path).
const CGROUP_DEPTH_MAX: usize = 64;

/// A [`ProcessSampler`] reads the cgroup memory limit again once this long has passed since
/// it last did (a limit changes only when an operator changes it; each level costs a file
/// read).
pub const LIMIT_REREAD: Duration = Duration::from_secs(1);

/// `AT_PAGESZ`, the auxiliary vector's entry of the page size (`<elf.h>`).
const AT_PAGESZ: u64 = 6;

/// One reading of the process, taken by [`read`] or [`ProcessSampler::sample`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessReading {
    /// User plus system CPU time of every thread of the process since it started (10 ms
    /// resolution); `None` off Linux or if `/proc/self/stat` could not be read.
    pub cpu_time: Option<Duration>,
    /// Resident memory (`VmRSS`), in bytes; `None` off Linux or if unreadable.
    pub resident_bytes: Option<u64>,
    /// The smallest memory limit of the process's cgroups (v2 or v1), in bytes; `None` when
    /// no limit is set, off Linux, or when the files cannot be found.
    pub memory_limit_bytes: Option<u64>,
    /// When the reading was taken (the wall time utilisation is measured over).
    pub taken_at: Instant,
}

/// Reads the process once: CPU time, resident memory and the cgroup memory limit (see the
/// [module docs](self) for the files and their cost).
pub fn read() -> ProcessReading {
    let limit = limit_of(&limit_files());
    reading(page_size(), limit)
}

/// Takes readings and works out CPU utilisation from each to the next.
///
/// Keeps the previous reading and the cgroup limit files it found at its first reading (a
/// process does not move between cgroups in practice; if it does, make a new sampler).
///
/// # Examples
///
/// ```
/// use flujo_runtime::monitor::resources::ProcessSampler;
///
/// let mut sampler = ProcessSampler::new();
/// sampler.sample();
/// let mut x = 0u64;
/// for i in 0..20_000_000u64 {
///     x = x.wrapping_mul(31).wrapping_add(i); // busy work
/// }
/// std::hint::black_box(x);
/// let stats = sampler.sample();
/// if cfg!(target_os = "linux") {
///     // The busy loop kept about one core busy (the reading has 10 ms ticks).
///     assert!(stats.cpu_cores_busy.unwrap() >= 0.0);
///     assert!(stats.cpu_share_of_cores.unwrap() <= stats.cpu_cores_busy.unwrap());
/// }
/// ```
#[derive(Debug)]
pub struct ProcessSampler {
    /// The reading before the next one.
    last: Option<ProcessReading>,
    /// The cgroup limit files, found at the first reading.
    limit_files: Option<Vec<PathBuf>>,
    /// The limit they gave and when they were read (see [`LIMIT_REREAD`]).
    limit: Option<(Option<u64>, Instant)>,
    /// The page size, read at the first reading (`None`: unknown, `VmRSS` is read instead).
    page_size: Option<Option<u64>>,
    /// Cores available to the process.
    cores: NonZeroUsize,
}

impl Default for ProcessSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessSampler {
    /// A sampler with no reading yet (it reads nothing until [`sample`](Self::sample)).
    pub fn new() -> Self {
        Self {
            last: None,
            limit_files: None,
            limit: None,
            page_size: None,
            cores: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
        }
    }

    /// Takes a reading and returns it with the CPU utilisation since the previous one (none
    /// on the first call, or when no wall time passed).
    pub fn sample(&mut self) -> ProcessStats {
        let page_size = *self.page_size.get_or_insert_with(page_size);
        let files = self.limit_files.get_or_insert_with(limit_files);
        let limit = match self.limit {
            Some((limit, at)) if at.elapsed() < LIMIT_REREAD => limit,
            _ => {
                let limit = limit_of(files);
                self.limit = Some((limit, Instant::now()));
                limit
            }
        };
        let now = reading(page_size, limit);
        let stats = stats_between(self.last.as_ref(), &now, self.cores);
        self.last = Some(now);
        stats
    }

    /// The last reading taken, if any.
    pub fn last(&self) -> Option<&ProcessReading> {
        self.last.as_ref()
    }
}

/// The report's figures of `now`, with the utilisation since `before`.
fn stats_between(
    before: Option<&ProcessReading>,
    now: &ProcessReading,
    cores: NonZeroUsize,
) -> ProcessStats {
    let mut stats = ProcessStats {
        cpu_time_ns: now.cpu_time.map(duration_ns),
        resident_bytes: now.resident_bytes,
        memory_limit_bytes: now.memory_limit_bytes,
        cores_available: cores.get() as u64,
        ..ProcessStats::default()
    };
    if let Some(before) = before {
        let wall = now.taken_at.saturating_duration_since(before.taken_at);
        if let (Some(cpu_now), Some(cpu_before)) = (now.cpu_time, before.cpu_time) {
            if !wall.is_zero() {
                let busy = cpu_now.saturating_sub(cpu_before).as_secs_f64() / wall.as_secs_f64();
                stats.cpu_cores_busy = Some(busy);
                stats.cpu_share_of_cores = Some(busy / cores.get() as f64);
                stats.interval_ns = Some(duration_ns(wall));
            }
        }
    }
    stats
}

/// `d` in whole nanoseconds, saturating.
fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A reading from `/proc/self/stat` (resident pages times `page_size`; without a page size,
/// `VmRSS` of `/proc/self/status`), with the memory limit given.
fn reading(page_size: Option<u64>, limit: Option<u64>) -> ProcessReading {
    let taken_at = Instant::now();
    let stat = read_text("/proc/self/stat");
    let stat = stat.as_deref().and_then(parse_stat);
    let resident_bytes = match page_size {
        Some(page) => stat.and_then(|s| s.rss_pages.checked_mul(page)),
        None => read_text("/proc/self/status").and_then(|text| parse_status_rss(&text)),
    };
    ProcessReading {
        cpu_time: stat.map(|s| ticks_to_duration(s.cpu_ticks)),
        resident_bytes,
        memory_limit_bytes: limit,
        taken_at,
    }
}

/// The page size from `/proc/self/auxv`; `None` off Linux or if it cannot be read.
fn page_size() -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|bytes| parse_auxv_page_size(&bytes))
}

/// `AT_PAGESZ` from the bytes of `/proc/self/auxv`: pairs of native-endian words (key,
/// value), ended by key 0.
fn parse_auxv_page_size(bytes: &[u8]) -> Option<u64> {
    const WORD: usize = size_of::<usize>();
    let word = |chunk: &[u8]| -> u64 {
        let mut raw = [0u8; WORD];
        raw.copy_from_slice(chunk);
        usize::from_ne_bytes(raw) as u64
    };
    for pair in bytes.chunks_exact(2 * WORD) {
        match word(&pair[..WORD]) {
            0 => return None,
            AT_PAGESZ => return Some(word(&pair[WORD..])).filter(|&size| size > 0),
            _ => {}
        }
    }
    None
}

/// `ticks` of [`USER_HZ`] as a duration.
fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_secs(ticks / USER_HZ)
        + Duration::from_nanos((ticks % USER_HZ) * (1_000_000_000 / USER_HZ))
}

/// A file's text; `None` off Linux (nothing is read) or when it cannot be read.
fn read_text(path: impl AsRef<Path>) -> Option<String> {
    if cfg!(target_os = "linux") {
        std::fs::read_to_string(path).ok()
    } else {
        None
    }
}

/// The smallest limit in `files` (unreadable files and "no limit" are skipped).
fn limit_of(files: &[PathBuf]) -> Option<u64> {
    files
        .iter()
        .filter_map(|file| read_text(file).and_then(|text| parse_limit(&text)))
        .min()
}

/// The cgroup memory limit files of this process, from its own cgroup up to each
/// hierarchy's mount point (see the module docs); empty off Linux.
fn limit_files() -> Vec<PathBuf> {
    let (Some(cgroups), Some(mounts)) = (
        read_text("/proc/self/cgroup"),
        read_text("/proc/self/mountinfo"),
    ) else {
        return Vec::new();
    };
    cgroup_limit_files(&cgroups, &mounts)
}

/// What [`parse_limit`] and the file walk need to know of a hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    /// cgroup v2: `memory.max`.
    V2,
    /// cgroup v1 with the memory controller: `memory.limit_in_bytes`.
    V1,
}

impl Version {
    fn file(self) -> &'static str {
        match self {
            Version::V2 => "memory.max",
            Version::V1 => "memory.limit_in_bytes",
        }
    }
}

/// The limit files named by `/proc/self/cgroup` text `cgroups` and `/proc/self/mountinfo`
/// text `mounts`: for each hierarchy (v2, and v1's memory controller) whose mount is found,
/// the limit file of every level from the process's cgroup up to the mount's root.
fn cgroup_limit_files(cgroups: &str, mounts: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (version, path) in parse_cgroup_paths(cgroups) {
        let Some((root, mount_point)) = find_mount(mounts, version) else {
            continue;
        };
        // The mount shows the hierarchy from `root` down; a path outside it is not visible.
        let Some(below) = path.strip_prefix(root.as_str()) else {
            continue;
        };
        let mut dir = PathBuf::from(mount_point);
        let parts: Vec<&str> = below.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() > CGROUP_DEPTH_MAX || parts.contains(&"..") {
            continue;
        }
        let mut levels = vec![dir.join(version.file())];
        for part in parts {
            dir.push(part);
            levels.push(dir.join(version.file()));
        }
        files.extend(levels);
    }
    files
}

/// The cgroup paths of `/proc/self/cgroup`: the v2 line (`0::/path`) and the v1 line whose
/// controller list includes `memory`.
fn parse_cgroup_paths(text: &str) -> Vec<(Version, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            out.push((Version::V2, path.to_string()));
        } else if controllers.split(',').any(|c| c == "memory") {
            out.push((Version::V1, path.to_string()));
        }
    }
    out
}

/// The `(root, mount point)` of the hierarchy of `version` in `/proc/self/mountinfo` text:
/// the first `cgroup2` mount for v2, the first `cgroup` mount with the `memory` option for v1.
/// Fields (proc(5)): id, parent, dev, root, mount point, options, optional fields, `-`,
/// fstype, source, super options. Octal escapes (`\040` for a space) are decoded in paths.
fn find_mount(text: &str, version: Version) -> Option<(String, String)> {
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if dash < 5 {
            continue;
        }
        let (Some(fstype), super_options) = (fields.get(dash + 1), fields.get(dash + 3)) else {
            continue;
        };
        let matches = match version {
            Version::V2 => *fstype == "cgroup2",
            Version::V1 => {
                *fstype == "cgroup"
                    && super_options.is_some_and(|o| o.split(',').any(|opt| opt == "memory"))
            }
        };
        if matches {
            return Some((unescape(fields[3]), unescape(fields[4])));
        }
    }
    None
}

/// Decodes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash); anything else is kept as it is.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A limit file's value in bytes: `None` for `max` (v2), for a v1 value of 2^62 or more, and
/// for anything that is not a number.
fn parse_limit(text: &str) -> Option<u64> {
    let value = text.trim();
    if value == "max" {
        return None;
    }
    value
        .parse::<u64>()
        .ok()
        .filter(|&bytes| bytes < V1_UNLIMITED_BYTES)
}

/// What a reading takes from `/proc/self/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    /// `utime + stime`, in clock ticks.
    cpu_ticks: u64,
    /// `rss`, in pages.
    rss_pages: u64,
}

/// Fields 14, 15 (`utime`, `stime`) and 24 (`rss`) of `/proc/self/stat` text. The second
/// field (the command name, in parentheses) may itself hold spaces and parentheses, so fields
/// are counted from the last `)`: after it come field 3 (state) onwards.
fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let field =
        |n: usize| -> Option<u64> { after_name.split_whitespace().nth(n - 3)?.parse().ok() };
    Some(Stat {
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        rss_pages: field(24)?,
    })
}

/// `VmRSS` in bytes from `/proc/self/status` text (`VmRSS:   2240 kB`).
fn parse_status_rss(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut parts = line.split_whitespace();
    let kib: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => kib.checked_mul(1024),
        _ => None,
    }
}
