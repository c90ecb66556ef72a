//! Property test: random graphs give the same output, outcome and final context under the
//! interpreter as under a simple reference evaluator written here (clone-everything
//! semantics, explicit "taken" flags for merges).

mod common;

use common::{clamp, gen, reduce, Ctx, Merge, Prng, PARTS, T};
use flujo_core::graph::{Graph, NoClock};
use flujo_core::interp::{Outcome, RunOptions, Runner, RunnerConfig};

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
        T::Switch(arms, default) => {
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

#[test]
fn random_graphs_agree_with_the_reference_evaluator() {
    let graphs = if cfg!(miri) { 5 } else { 400 };
    let mut rng = Prng(0x000F_1070);
    let mut runner = Runner::new(RunnerConfig::default());
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..graphs {
        let tree = gen(&mut rng, 4);
        let g =
            Graph::build(|b| common::build(&tree, b, &mut 0)).expect("generated graphs are valid");
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
