//! Random step graphs shared by the property and runtime tests: a small tree language `T`,
//! its generator, and its translation into a flujo graph; and a panic hook for injected
//! panics. The semantics contract tests' fixtures are in [`semantics`].
#![allow(dead_code)] // each test binary uses a different part

pub mod semantics;

use flujo_core::context::{Context, MergeStrategy};
use flujo_core::graph::{
    FailureStrategy, GraphBuilder, LoopOptions, MapOptions, NodeRef, ParallelOptions, StepError,
    TaskConfig,
};
use flujo_core::policy::{Backoff, RetryPolicy};

/// Silences the panics a test injects (their message contains "injected"); any other panic
/// still prints.
pub fn quiet_injected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if !msg.contains("injected") {
            default(info);
        }
    }));
}

pub struct Prng(pub u64);

impl Prng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub const PARTS: usize = 3;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ctx(pub [i64; PARTS]);

impl Context for Ctx {
    const PARTS: usize = PARTS;
    fn part_name(index: usize) -> &'static str {
        ["p0", "p1", "p2"][index]
    }
    fn part_eq(&self, other: &Self, index: usize) -> bool {
        self.0[index] == other.0[index]
    }
    fn copy_part(&mut self, from: &Self, index: usize) {
        self.0[index] = from.0[index];
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Merge {
    None,
    Overwrite,
    KeepFirst,
    Conflict,
}

#[derive(Clone, Debug)]
pub enum T {
    /// `x * mul + add`; fails when `x % modulus == 0` (after writing, so the write must be
    /// discarded); writes part `write` with `x` when set. With `retry`, the failure happens
    /// only on the first attempt (so the retry succeeds); with `fallback`, a failure runs a
    /// fallback adding `fallback`.
    Task {
        mul: i64,
        add: i64,
        modulus: i64,
        write: Option<usize>,
        retry: bool,
        fallback: Option<i64>,
    },
    Seq(Vec<T>),
    Par(Vec<T>, Merge, bool),
    Loop(Box<T>, u32, i64),
    Switch(Vec<T>, Option<Box<T>>),
    Map(Box<T>, u32, Merge),
}

pub fn gen(rng: &mut Prng, depth: u32) -> T {
    let leaf = depth == 0 || rng.below(3) == 0;
    if leaf {
        return T::Task {
            mul: rng.below(3) as i64 + 1,
            add: rng.below(7) as i64 - 3,
            modulus: [0, 0, 5, 7, 11][rng.below(5) as usize],
            write: (rng.below(2) == 0).then(|| rng.below(PARTS as u64) as usize),
            retry: rng.below(4) == 0,
            fallback: (rng.below(4) == 0).then(|| rng.below(100) as i64),
        };
    }
    let merge = |rng: &mut Prng| {
        [
            Merge::None,
            Merge::Overwrite,
            Merge::KeepFirst,
            Merge::Conflict,
        ][rng.below(4) as usize]
    };
    let kids = |rng: &mut Prng| {
        (0..rng.below(3) + 1)
            .map(|_| gen(rng, depth - 1))
            .collect::<Vec<_>>()
    };
    match rng.below(5) {
        0 => T::Seq(kids(rng)),
        1 => T::Par(kids(rng), merge(rng), rng.below(2) == 0),
        2 => T::Loop(
            Box::new(gen(rng, depth - 1)),
            rng.below(4) as u32 + 1,
            rng.below(200) as i64,
        ),
        3 => T::Switch(
            kids(rng),
            (rng.below(2) == 0).then(|| Box::new(gen(rng, depth - 1))),
        ),
        _ => T::Map(
            Box::new(gen(rng, depth - 1)),
            rng.below(3) as u32 + 1,
            merge(rng),
        ),
    }
}

pub fn clamp(x: i64) -> i64 {
    x.rem_euclid(1_000_003)
}

pub fn reduce(a: i64, x: i64) -> i64 {
    clamp(a.wrapping_mul(31).wrapping_add(x))
}

// ---- The same tree as a flujo graph -------------------------------------------------------

pub fn strategy(m: Merge) -> MergeStrategy<Ctx> {
    match m {
        Merge::None => MergeStrategy::NoMerge,
        Merge::Overwrite => MergeStrategy::Overwrite,
        Merge::KeepFirst => MergeStrategy::KeepFirst,
        Merge::Conflict => MergeStrategy::ErrorOnConflict,
    }
}

pub fn build(t: &T, b: &mut GraphBuilder<'_, i64, Ctx>, names: &mut u32) -> NodeRef {
    *names += 1;
    let name = format!("n{names}");
    match t {
        T::Task {
            mul,
            add,
            modulus,
            write,
            retry,
            fallback,
        } => {
            let (mul, add, modulus, write, retry) = (*mul, *add, *modulus, *write, *retry);
            let mut cfg = TaskConfig::new();
            if write.is_some() {
                cfg = cfg.writes_context();
            }
            if retry {
                cfg = cfg.retry(
                    RetryPolicy::new(2, Backoff::Constant { delay_ticks: 1 }).expect("valid"),
                );
            }
            if let Some(k) = *fallback {
                let fb = b.task(&format!("{name}-fb"), move |x, _| Ok(clamp(x + k)));
                cfg = cfg.fallback(fb);
            }
            b.task_with(
                &name,
                move |x, cx| {
                    if let Some(p) = write {
                        cx.ctx_mut()?.0[p] = x;
                    }
                    let fails = modulus != 0 && x % modulus == 0 && !(retry && cx.attempt() > 1);
                    if fails {
                        let class = if retry {
                            StepError::transient("first attempt")
                        } else {
                            StepError::permanent("mod")
                        };
                        return Err(class);
                    }
                    Ok(clamp(x * mul + add))
                },
                cfg,
            )
        }
        T::Seq(kids) => {
            let k: Vec<_> = kids.iter().map(|k| build(k, b, names)).collect();
            b.sequence(&name, &k)
        }
        T::Par(kids, m, ignore) => {
            let k: Vec<_> = kids.iter().map(|k| build(k, b, names)).collect();
            let failure = if *ignore {
                FailureStrategy::Ignore
            } else {
                FailureStrategy::Propagate
            };
            b.parallel(
                &name,
                &k,
                reduce,
                ParallelOptions::new().merge(strategy(*m)).failure(failure),
            )
        }
        T::Loop(body, max, threshold) => {
            let body = build(body, b, names);
            let threshold = *threshold;
            b.loop_(
                &name,
                body,
                LoopOptions::new()
                    .max_iterations(*max)
                    .until(move |x, _, _| *x > threshold),
            )
        }
        T::Switch(arms, default) => {
            let a: Vec<_> = arms
                .iter()
                .enumerate()
                .map(|(i, a)| (i as u64, build(a, b, names)))
                .collect();
            let d = default.as_ref().map(|d| build(d, b, names));
            let n = arms.len() as i64;
            b.switch(&name, move |x, _| x.rem_euclid(n + 1) as u64, &a, d)
        }
        T::Map(body, max_items, m) => {
            let body = build(body, b, names);
            b.map(
                &name,
                |x, _, items| {
                    for i in 0..x.rem_euclid(4) {
                        if items.push(x + i).is_err() {
                            break;
                        }
                    }
                    Ok(0)
                },
                body,
                reduce,
                MapOptions::new().max_items(*max_items).merge(strategy(*m)),
            )
        }
    }
}
