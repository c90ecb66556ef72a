//! Property test: random graphs give the same output, outcome and final context under the
//! interpreter as under a simple reference evaluator written here (clone-everything
//! semantics, explicit "taken" flags for merges).

use flujo_core::context::{Context, MergeStrategy};
use flujo_core::graph::FailureStrategy;
use flujo_core::graph::{
    Backoff, Graph, GraphBuilder, LoopOptions, MapOptions, NoClock, NodeRef, ParallelOptions,
    RetryPolicy, StepError, TaskConfig,
};
use flujo_core::interp::{Outcome, RunOptions, Runner, RunnerConfig};

struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PARTS: usize = 3;

#[derive(Clone, Debug, Default, PartialEq)]
struct Ctx([i64; PARTS]);

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
enum Merge {
    None,
    Overwrite,
    KeepFirst,
    Conflict,
}

#[derive(Clone, Debug)]
enum T {
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
    Branch(Vec<T>, Option<Box<T>>),
    Map(Box<T>, u32, Merge),
}

fn gen(rng: &mut Prng, depth: u32) -> T {
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
        3 => T::Branch(
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

fn clamp(x: i64) -> i64 {
    x.rem_euclid(1_000_003)
}

fn reduce(a: i64, x: i64) -> i64 {
    clamp(a.wrapping_mul(31).wrapping_add(x))
}

// ---- The reference evaluator --------------------------------------------------------------

#[allow(clippy::needless_range_loop)] // a part indexes three arrays at once
fn merge_ref(
    m: Merge,
    base: &Ctx,
    merged: &mut Ctx,
    taken: &mut [bool; PARTS],
    branch: &Ctx,
) -> Result<(), ()> {
    for p in 0..PARTS {
        if branch.0[p] == base.0[p] {
            continue;
        }
        match m {
            Merge::None => {}
            Merge::Overwrite => merged.0[p] = branch.0[p],
            Merge::KeepFirst if taken[p] => {}
            Merge::Conflict if taken[p] => return Err(()),
            Merge::KeepFirst | Merge::Conflict => merged.0[p] = branch.0[p],
        }
        taken[p] = true;
    }
    Ok(())
}

fn eval(t: &T, x: i64, ctx: &mut Ctx) -> Result<i64, ()> {
    match t {
        T::Task {
            mul,
            add,
            modulus,
            write,
            retry,
            fallback,
        } => {
            let fails = *modulus != 0 && x % modulus == 0 && !retry;
            if fails {
                return match fallback {
                    Some(k) => Ok(clamp(x + k)),
                    None => Err(()),
                };
            }
            if let Some(p) = write {
                ctx.0[*p] = x;
            }
            Ok(clamp(x * mul + add))
        }
        T::Seq(kids) => kids.iter().try_fold(x, |x, k| eval(k, x, ctx)),
        T::Par(kids, m, ignore) => {
            let base = ctx.clone();
            let mut merged = base.clone();
            let mut taken = [false; PARTS];
            let mut acc = None;
            for k in kids {
                let mut bc = base.clone();
                match eval(k, x, &mut bc) {
                    Ok(out) => {
                        merge_ref(*m, &base, &mut merged, &mut taken, &bc)?;
                        acc = Some(acc.map_or(out, |a| reduce(a, out)));
                    }
                    Err(()) if *ignore => {}
                    Err(()) => return Err(()),
                }
            }
            let out = acc.ok_or(())?;
            *ctx = merged;
            Ok(out)
        }
        T::Loop(body, max, threshold) => {
            let mut x = x;
            for _ in 0..*max {
                x = eval(body, x, ctx)?;
                if x > *threshold {
                    break;
                }
            }
            Ok(x)
        }
        T::Branch(arms, default) => {
            let key = x.rem_euclid(arms.len() as i64 + 1) as usize;
            match (arms.get(key), default) {
                (Some(arm), _) => eval(arm, x, ctx),
                (None, Some(d)) => eval(d, x, ctx),
                (None, None) => Err(()),
            }
        }
        T::Map(body, max_items, m) => {
            let n = x.rem_euclid(4) as u32;
            if n > *max_items {
                return Err(());
            }
            let base = ctx.clone();
            let mut merged = base.clone();
            let mut taken = [false; PARTS];
            let mut acc = 0;
            for i in 0..n {
                let mut bc = base.clone();
                let out = eval(body, x + i64::from(i), &mut bc)?;
                merge_ref(*m, &base, &mut merged, &mut taken, &bc)?;
                acc = reduce(acc, out);
            }
            *ctx = merged;
            Ok(acc)
        }
    }
}

// ---- The same tree as a flujo graph -------------------------------------------------------

fn strategy(m: Merge) -> MergeStrategy<Ctx> {
    match m {
        Merge::None => MergeStrategy::NoMerge,
        Merge::Overwrite => MergeStrategy::Overwrite,
        Merge::KeepFirst => MergeStrategy::KeepFirst,
        Merge::Conflict => MergeStrategy::ErrorOnConflict,
    }
}

fn build(t: &T, b: &mut GraphBuilder<'_, i64, Ctx>, names: &mut u32) -> NodeRef {
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
            b.repeat(
                &name,
                body,
                LoopOptions::new()
                    .max_iterations(*max)
                    .until(move |x, _, _| *x > threshold),
            )
        }
        T::Branch(arms, default) => {
            let a: Vec<_> = arms
                .iter()
                .enumerate()
                .map(|(i, a)| (i as u64, build(a, b, names)))
                .collect();
            let d = default.as_ref().map(|d| build(d, b, names));
            let n = arms.len() as i64;
            b.branch(&name, move |x, _| x.rem_euclid(n + 1) as u64, &a, d)
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

#[test]
fn random_graphs_agree_with_the_reference_evaluator() {
    let graphs = if cfg!(miri) { 5 } else { 400 };
    let mut rng = Prng(0x000F_1070);
    let mut runner = Runner::new(RunnerConfig::default());
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..graphs {
        let tree = gen(&mut rng, 4);
        let g = Graph::build(|b| build(&tree, b, &mut 0)).expect("generated graphs are valid");
        for _ in 0..8 {
            let input = rng.below(1000) as i64;
            let start = Ctx([rng.below(3) as i64, 0, -1]);
            let mut want_ctx = start.clone();
            let want = eval(&tree, input, &mut want_ctx);
            let r = runner.run(&g, input, start.clone(), &NoClock, &RunOptions::default());
            match want {
                Ok(out) => {
                    assert_eq!(
                        r.outcome,
                        Outcome::Succeeded,
                        "{tree:?} on {input}: {:?}",
                        r.error
                    );
                    assert_eq!(r.output, Some(out), "{tree:?} on {input}");
                    assert_eq!(r.context, want_ctx, "{tree:?} on {input}");
                    ok += 1;
                }
                Err(()) => {
                    assert_eq!(r.outcome, Outcome::Failed, "{tree:?} on {input}");
                    assert!(r.error.is_some());
                    assert_eq!(
                        r.context, want_ctx,
                        "{tree:?} on {input}: writes before the failure stay"
                    );
                    failed += 1;
                }
            }
        }
    }
    // The generator exercises both sides.
    assert!(
        ok > graphs && failed > graphs / 10,
        "ok {ok}, failed {failed}"
    );
}
