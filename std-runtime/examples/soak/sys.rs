//! What the soak reads from the operating system (Linux `/proc`): resident memory, the
//! process's and a thread's CPU time, the thread count and the load average. Each reader
//! returns `None` where `/proc` is missing (the soak then prints "n/a").

use std::time::Duration;

/// Bytes of a page (`getconf PAGESIZE`, 4096 when it cannot be run).
pub fn page_bytes() -> u64 {
    getconf("PAGESIZE").unwrap_or(4096)
}

/// Clock ticks per second of `/proc`'s CPU times (`getconf CLK_TCK`, 100 when it cannot be
/// run).
pub fn clock_ticks_per_s() -> u64 {
    getconf("CLK_TCK").unwrap_or(100)
}

fn getconf(name: &str) -> Option<u64> {
    let out = std::process::Command::new("getconf")
        .arg(name)
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// Resident set size in bytes, from `/proc/self/statm` (its second field, in pages).
pub fn rss_bytes(page_bytes: u64) -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_bytes)
}

/// utime + stime of a `stat` file (`/proc/self/stat`, `/proc/thread-self/stat`), in ticks.
fn stat_cpu_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The fields after the command name (which may hold spaces and parentheses) start at
    // field 3 (state); utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The process's CPU time so far (user + system).
pub fn process_cpu(ticks_per_s: u64) -> Option<Duration> {
    stat_cpu_ticks("/proc/self/stat").map(|t| ticks_to_duration(t, ticks_per_s))
}

/// The calling thread's CPU time so far (user + system).
pub fn thread_cpu(ticks_per_s: u64) -> Option<Duration> {
    stat_cpu_ticks("/proc/thread-self/stat").map(|t| ticks_to_duration(t, ticks_per_s))
}

fn ticks_to_duration(ticks: u64, ticks_per_s: u64) -> Duration {
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / ticks_per_s.max(1))
}

/// Threads of the process (`Threads:` of `/proc/self/status`).
pub fn threads() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` prints them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}
