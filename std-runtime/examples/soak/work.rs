//! The soak's work: the payload, the five graphs it submits, the seeded plan of each
//! submission (kind, priority, fault, latency) and what a correct run returns.
//!
//! Graphs (every one a sequence of tasks on `Job`, context `Ctx`):
//!
//! - `probe`: eight short tasks (a few microseconds in all). Always `High` and never
//!   faulted: the healthy runs whose latency the soak compares across its phases.
//! - `cpu`: `gate` -> `crunch` (a bounded loop of real work, 50-400 µs) -> `fold`.
//! - `blob`: `gate` -> `render` (cacheable by key: a payload of 4 KiB - 1 MiB, log-uniform,
//!   that the result cache weighs by its bytes) -> `digest` (checks the payload is the key's,
//!   sums it and drops it).
//! - `remote`: `gate` -> `call` (a blocking step on a `BlockingPool`: sleeps the planned
//!   latency in slices of at most 1 ms, stopping when told) -> `decode`.
//! - `poll`: `gate` -> `await` (`StepCx::wait_until` the planned latency has passed: the
//!   compute thread is lent to queued runs meanwhile) -> `decode`.
//!
//! `gate` carries the injected faults: a transient error on the first 1-3 attempts (retried
//! with jittered backoff, which lends the thread), a permanent error, or a panic. In the
//! no-fault phase no plan has a fault or a latency: the same mix, the same graphs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flujo_core::cache::{CanonicalEncode, KeyWriter, StepFingerprint};
use flujo_core::graph::{Graph, StepCx, StepError, TaskConfig};
use flujo_core::policy::{Backoff, RetryPolicy};
use flujo_runtime::blocking::BlockingPool;
use flujo_runtime::clock::ticks;
use flujo_runtime::Priority;

/// Distinct keys of the cacheable payloads.
pub const BLOB_KEYS: u64 = 2048;
/// The smallest and largest payload (bytes); sizes are log-uniform between them.
pub const BLOB_BYTES_MIN: u64 = 4 << 10;
pub const BLOB_BYTES_MAX: u64 = 1 << 20;
/// Tasks of the probe chain, and the mixing rounds each does.
const PROBE_STEPS: u64 = 8;
const PROBE_ROUNDS: u64 = 256;
/// The CPU-heavy step's length, in microseconds of calibrated work.
const CRUNCH_US_MIN: u64 = 50;
const CRUNCH_US_MAX: u64 = 400;
/// The latency of a slow call (Pareto: scale, shape, cap) in the fault phase.
const SLOW_SCALE_US: f64 = 300.0;
const SLOW_SHAPE: f64 = 1.3;
const SLOW_CAP_US: f64 = 200_000.0;
/// Deadlines (from submission): slow kinds, and everything else.
pub const DEADLINE_SLOW: Duration = Duration::from_millis(50);
pub const DEADLINE: Duration = Duration::from_secs(5);
/// What `decode` mixes into a call's answer.
const ANSWER_SALT: u64 = 0x5EED_CA11;

/// What a submission runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Probe,
    Cpu,
    Blob,
    Remote,
    Poll,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Probe, Kind::Cpu, Kind::Blob, Kind::Remote, Kind::Poll];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Probe => "probe",
            Kind::Cpu => "cpu",
            Kind::Blob => "blob",
            Kind::Remote => "remote",
            Kind::Poll => "poll",
        }
    }

    /// Kinds whose latency is drawn in the fault phase.
    pub fn is_slow_kind(self) -> bool {
        matches!(self, Kind::Remote | Kind::Poll)
    }
}

/// What `gate` does to a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Fails transiently on the first `n` attempts (1..=3), then passes: retried.
    Transient(u32),
    /// Fails permanently: the run fails.
    Permanent,
    /// Panics: the run fails with a panic-class error.
    Panic,
}

/// The payload every step passes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub kind: Kind,
    pub fault: Fault,
    /// Work seed, cache key (blob) or call id.
    pub key: u64,
    /// Rounds of work (`cpu`), bytes (`blob`).
    pub work: u64,
    /// Nanoseconds a `remote` or `poll` step waits.
    pub slow_ns: u64,
    /// The running result the submitter checks.
    pub acc: u64,
    /// The large payload (`blob`, between `render` and `digest`).
    pub blob: Vec<u8>,
}

/// The cache key of `render`: its kind and key (the size follows from the key).
impl CanonicalEncode for Job {
    fn encode(&self, out: &mut KeyWriter<'_>) {
        out.write_bytes(&[self.kind as u8]);
        self.key.encode(out);
    }
}

/// The bytes the result cache counts for a stored output.
pub fn weigh(job: &Job) -> usize {
    std::mem::size_of::<Job>() + job.blob.capacity()
}

/// The run context: the submission's id, handed back with every ending (ran, refused,
/// handed back), so the submitter can tell each submission ended once and as itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ctx {
    pub id: u64,
}
flujo_core::context!(Ctx { id });

/// SplitMix64 (Steele, Lea and Flood): the seeded generator and the unit of work.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `rounds` rounds of [`mix`] from `seed`: real work the optimizer cannot drop.
pub fn burn(seed: u64, rounds: u64) -> u64 {
    let mut x = seed;
    for _ in 0..rounds {
        x = mix(std::hint::black_box(x));
    }
    x
}

/// Rounds of [`burn`] per microsecond on this machine: the best of five measurements of
/// about 5 ms each (the best, because a busy neighbour only ever makes a measurement slower).
pub fn calibrate_rounds_per_us() -> u64 {
    let mut rounds = 1u64 << 12;
    let once = |rounds: u64| {
        let t = Instant::now();
        std::hint::black_box(burn(rounds, rounds));
        t.elapsed().as_nanos().max(1) as u64
    };
    while once(rounds) < 5_000_000 && rounds < 1 << 32 {
        rounds *= 2;
    }
    let ns = (0..5).map(|_| once(rounds)).min().unwrap_or(1);
    (rounds * 1000 / ns).max(1)
}

/// A seeded generator for the plans.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The size of key `key`'s payload: log-uniform in `BLOB_BYTES_MIN..=BLOB_BYTES_MAX`, fixed
/// by the key.
pub fn blob_bytes(key: u64) -> u64 {
    let u = (mix(key ^ 0xB10B) >> 11) as f64 / (1u64 << 53) as f64;
    let (lo, hi) = (BLOB_BYTES_MIN as f64, BLOB_BYTES_MAX as f64);
    ((lo * (hi / lo).powf(u)) as u64).clamp(BLOB_BYTES_MIN, BLOB_BYTES_MAX)
}

/// Key `key`'s payload: its key in the first 8 bytes, then a pattern of the key.
fn render(key: u64, bytes: u64) -> Vec<u8> {
    let mut blob = Vec::with_capacity(bytes as usize);
    blob.extend_from_slice(&key.to_le_bytes());
    let mut x = key;
    while blob.len() + 8 <= bytes as usize {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        blob.extend_from_slice(&x.to_le_bytes());
    }
    blob.resize(bytes as usize, 0xAB);
    blob
}

/// A payload's checksum (FNV-1a over 8-byte words, then its length).
fn checksum(blob: &[u8]) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325u64;
    for w in blob.chunks(8) {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(0x0100_0000_01B3);
    }
    h ^ blob.len() as u64
}

/// One probe task's work on the running value.
fn probe_step(acc: u64, i: u64) -> u64 {
    burn(acc ^ i, PROBE_ROUNDS)
}

/// One submission's plan.
#[derive(Clone, Debug)]
pub struct Plan {
    pub kind: Kind,
    pub priority: Priority,
    pub job: Job,
    pub deadline: Duration,
}

impl Plan {
    /// Draws a submission: kind (probe 30%, cpu 20%, blob 20%, remote 15%, poll 15%), its
    /// priority (probes High; others High 10%, Normal 50%, Low 40%), and, with `faults`, a
    /// fault for a non-probe run (transient 6%, permanent 2%, panic 1.5%) and a Pareto
    /// latency for `remote` and `poll`.
    pub fn draw(rng: &mut Rng, faults: bool, rounds_per_us: u64) -> Plan {
        let roll = rng.below(100);
        let kind = match roll {
            0..=29 => Kind::Probe,
            30..=49 => Kind::Cpu,
            50..=69 => Kind::Blob,
            70..=84 => Kind::Remote,
            _ => Kind::Poll,
        };
        let priority = if kind == Kind::Probe {
            Priority::High
        } else {
            match rng.below(100) {
                0..=9 => Priority::High,
                10..=59 => Priority::Normal,
                _ => Priority::Low,
            }
        };
        let fault = if faults && kind != Kind::Probe {
            match rng.below(1000) {
                0..=59 => Fault::Transient(1 + rng.below(3) as u32),
                60..=79 => Fault::Permanent,
                80..=94 => Fault::Panic,
                _ => Fault::None,
            }
        } else {
            Fault::None
        };
        let (key, work) = match kind {
            Kind::Probe => (rng.next(), 0),
            Kind::Cpu => {
                let us = CRUNCH_US_MIN + rng.below(CRUNCH_US_MAX - CRUNCH_US_MIN + 1);
                (rng.next(), us * rounds_per_us)
            }
            Kind::Blob => {
                // Skewed towards low keys, so some keys are hot and the cache hits.
                let u = rng.unit();
                let key = ((u * u * u) * BLOB_KEYS as f64) as u64;
                (key, blob_bytes(key))
            }
            Kind::Remote | Kind::Poll => (rng.next(), 0),
        };
        let slow_ns = if faults && kind.is_slow_kind() {
            // Pareto: scale / U^(1/shape), capped.
            let u = 1.0 - rng.unit(); // (0, 1]
            let us = (SLOW_SCALE_US / u.powf(1.0 / SLOW_SHAPE)).min(SLOW_CAP_US);
            (us * 1000.0) as u64
        } else {
            0
        };
        let deadline = if kind.is_slow_kind() {
            DEADLINE_SLOW
        } else {
            DEADLINE
        };
        Plan {
            kind,
            priority,
            job: Job {
                kind,
                fault,
                key,
                work,
                slow_ns,
                acc: 0,
                blob: Vec::new(),
            },
            deadline,
        }
    }

    /// The `acc` a successful run returns; `None` when checking it would cost the submitter
    /// as much as the run (a `cpu` run's crunch, a `blob` run's payload) and this run is not
    /// one of the sampled ones (`sample`).
    pub fn expected_acc(&self, sample: bool) -> Option<u64> {
        let j = &self.job;
        match self.kind {
            Kind::Probe => Some((0..PROBE_STEPS).fold(j.key, probe_step)),
            Kind::Cpu => sample.then(|| burn(j.key, j.work).rotate_left(7)),
            Kind::Blob => sample.then(|| checksum(&render(j.key, j.work))),
            Kind::Remote | Kind::Poll => Some(j.key.rotate_left(17) ^ ANSWER_SALT),
        }
    }
}

/// The message of every injected panic (the panic hook tells them from any other by it).
pub const INJECTED_PANIC: &str = "injected panic";

fn gate_step(job: Job, cx: &mut StepCx<'_, Ctx>) -> Result<Job, StepError> {
    match job.fault {
        Fault::None => Ok(job),
        Fault::Transient(n) if cx.attempt() <= n => {
            Err(StepError::transient("gate: injected transient error"))
        }
        Fault::Transient(_) => Ok(job),
        Fault::Permanent => Err(StepError::permanent("gate: injected permanent error")),
        Fault::Panic => std::panic::panic_any(INJECTED_PANIC),
    }
}

fn gate_config() -> TaskConfig<Job, Ctx> {
    let retry = RetryPolicy::new(
        4,
        Backoff::DecorrelatedJitter {
            base_ticks: ticks(Duration::from_micros(100)),
            delay_ticks_max: ticks(Duration::from_millis(2)),
        },
    )
    .expect("a valid retry policy");
    TaskConfig::new().retry(retry)
}

fn decode(mut job: Job, _: &mut StepCx<'_, Ctx>) -> Result<Job, StepError> {
    job.acc = job.acc.rotate_left(17) ^ ANSWER_SALT;
    Ok(job)
}

/// The five graphs, by [`Kind::index`].
pub struct Graphs(pub [Arc<Graph<Job, Ctx>>; 5]);

impl Graphs {
    pub fn build(blocking: &BlockingPool) -> Graphs {
        let probe = Graph::build(|b| {
            let steps: Vec<_> = (0..PROBE_STEPS)
                .map(|i| {
                    b.task(&format!("probe{i}"), move |mut j: Job, _| {
                        if i == 0 {
                            j.acc = j.key;
                        }
                        j.acc = probe_step(j.acc, i);
                        Ok(j)
                    })
                })
                .collect();
            b.sequence("probe", &steps)
        });
        let cpu = Graph::build(|b| {
            let gate = b.task_with("cpu_gate", gate_step, gate_config());
            let crunch = b.task("crunch", |mut j: Job, _| {
                j.acc = burn(j.key, j.work);
                Ok(j)
            });
            let fold = b.task("fold", |mut j: Job, _| {
                j.acc = j.acc.rotate_left(7);
                Ok(j)
            });
            b.sequence("cpu", &[gate, crunch, fold])
        });
        let blob = Graph::build(|b| {
            let gate = b.task_with("blob_gate", gate_step, gate_config());
            let render_cfg =
                TaskConfig::new().cacheable(StepFingerprint::builder("render", 1).build());
            let render_step = b.task_with(
                "render",
                |mut j: Job, _| {
                    j.blob = render(j.key, j.work);
                    Ok(j)
                },
                render_cfg,
            );
            let digest = b.task("digest", |mut j: Job, _| {
                let head = j
                    .blob
                    .get(..8)
                    .map(|h| u64::from_le_bytes(h.try_into().unwrap()));
                if head != Some(j.key) || j.blob.len() as u64 != j.work {
                    return Err(StepError::permanent("digest: the payload is not the key's"));
                }
                j.acc = checksum(&j.blob);
                j.blob = Vec::new();
                Ok(j)
            });
            b.sequence("blob", &[gate, render_step, digest])
        });
        let remote = Graph::build(|b| {
            let gate = b.task_with("remote_gate", gate_step, gate_config());
            let call = blocking.step(|mut j: Job, cx: &flujo_runtime::blocking::CallCx<'_>| {
                // A remote call: its latency slept in slices, stopping when told to.
                let until = Instant::now() + Duration::from_nanos(j.slow_ns);
                loop {
                    let now = Instant::now();
                    if now >= until || cx.should_stop() {
                        break;
                    }
                    std::thread::sleep((until - now).min(Duration::from_millis(1)));
                }
                j.acc = j.key;
                Ok(j)
            });
            // A call the pool refuses (full) fails transiently: retried.
            let retry = RetryPolicy::new(
                8,
                Backoff::DecorrelatedJitter {
                    base_ticks: ticks(Duration::from_micros(200)),
                    delay_ticks_max: ticks(Duration::from_millis(5)),
                },
            )
            .expect("a valid retry policy");
            let call = b.step("call", call, TaskConfig::new().retry(retry));
            let decode = b.task("remote_decode", decode);
            b.sequence("remote", &[gate, call, decode])
        });
        let poll = Graph::build(|b| {
            let gate = b.task_with("poll_gate", gate_step, gate_config());
            let wait = b.task("await", |mut j: Job, cx: &mut StepCx<'_, Ctx>| {
                let started = Instant::now();
                let gap = Duration::from_nanos(j.slow_ns);
                if !cx.wait_until(|| started.elapsed() >= gap) {
                    return Err(StepError::timeout("await: no answer before the deadline"));
                }
                j.acc = j.key;
                Ok(j)
            });
            let decode = b.task("poll_decode", decode);
            b.sequence("poll", &[gate, wait, decode])
        });
        let all = [probe, cpu, blob, remote, poll].map(|g| Arc::new(g.expect("a valid graph")));
        Graphs(all)
    }

    pub fn of(&self, kind: Kind) -> &Arc<Graph<Job, Ctx>> {
        &self.0[kind.index()]
    }
}
