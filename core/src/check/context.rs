//! Context merges, every strategy, against a model.
//!
//! The bytes decode into a fan-out: a context of four parts (each a short list of numbers,
//! so copies own heap memory and `clone_from` reuses it), a merge strategy (no-merge,
//! overwrite, keep-first, error-on-conflict, or a user merge that appends and can fail), and
//! up to eight branches, each failing, reading only, or writing some parts (sometimes the
//! value a part already has, which is not a change).
//!
//! The same fan-out runs twice and both must agree with a model that tracks, per part, who
//! changed it first:
//! - directly through `merge_branch`, copies made and given back through `Spares` (whose
//!   bound is checked after every step);
//! - as a parallel node on the interpreter (failure strategy ignore or propagate), where the
//!   outcome, the error (the conflicting part and branch, the failed user merge) and the
//!   final context are checked.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;

use super::Bytes;
use crate::context::{merge_branch, Context, MergeError, MergeStrategy, Spares};
use crate::graph::{
    FailureStrategy, Graph, NoClock, NodeRef, ParallelOptions, StepError, TaskConfig,
};
use crate::interp::{ErrorKind, Outcome, RunOptions, Runner, RunnerConfig};
use crate::policy::ErrorClass;

const PARTS: usize = 4;
const BRANCHES_MAX: usize = 8;
const SPARES_MAX: usize = 3;
/// A user merge fails when it would make a part longer than this.
const USER_PART_LEN_MAX: usize = 6;

/// Four parts, each a short list: copies own heap memory.
#[derive(Debug, Default, PartialEq, Eq)]
struct Ctx([Vec<i8>; PARTS]);

impl Clone for Ctx {
    fn clone(&self) -> Self {
        Ctx(self.0.clone())
    }
    fn clone_from(&mut self, src: &Self) {
        for (mine, theirs) in self.0.iter_mut().zip(&src.0) {
            mine.clone_from(theirs);
        }
    }
}

impl Context for Ctx {
    const PARTS: usize = PARTS;
    fn part_name(index: usize) -> &'static str {
        ["alpha", "beta", "gamma", "delta"][index]
    }
    fn part_eq(&self, other: &Self, index: usize) -> bool {
        self.0[index] == other.0[index]
    }
    fn copy_part(&mut self, from: &Self, index: usize) {
        self.0[index].clone_from(&from.0[index]);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    NoMerge,
    Overwrite,
    KeepFirst,
    Conflict,
    /// Appends every changed part of the branch to the merged part; fails past
    /// `USER_PART_LEN_MAX`.
    Append,
}

#[derive(Clone, Debug)]
enum Branch {
    Fails,
    /// Writes these (part, value) pairs in order.
    Writes(Vec<(usize, Vec<i8>)>),
}

/// Why the fan-out failed, as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Failure {
    Conflict {
        part: &'static str,
        branch: u32,
    },
    User,
    /// Propagate: the first failed branch; ignore: every branch failed.
    Branch,
}

fn list(bytes: &mut Bytes<'_>) -> Vec<i8> {
    let n = usize::from(bytes.next() % 3);
    (0..n).map(|_| (bytes.next() % 4) as i8).collect()
}

fn strategy(s: Strategy) -> MergeStrategy<Ctx> {
    match s {
        Strategy::NoMerge => MergeStrategy::NoMerge,
        Strategy::Overwrite => MergeStrategy::Overwrite,
        Strategy::KeepFirst => MergeStrategy::KeepFirst,
        Strategy::Conflict => MergeStrategy::ErrorOnConflict,
        Strategy::Append => {
            MergeStrategy::User(Box::new(|merged: &mut Ctx, base: &Ctx, branch: &Ctx| {
                append(merged, base, branch).map_err(|()| StepError::permanent("too long"))
            }))
        }
    }
}

/// The user merge of [`Strategy::Append`] (the model uses it too: it is the host's code).
fn append(merged: &mut Ctx, base: &Ctx, branch: &Ctx) -> Result<(), ()> {
    for p in 0..PARTS {
        if branch.0[p] != base.0[p] {
            if merged.0[p].len() + branch.0[p].len() > USER_PART_LEN_MAX {
                return Err(());
            }
            merged.0[p].extend_from_slice(&branch.0[p]);
        }
    }
    Ok(())
}

/// The branch's context: `base` with its writes applied.
fn written(base: &Ctx, writes: &[(usize, Vec<i8>)]) -> Ctx {
    let mut c = base.clone();
    for (p, v) in writes {
        c.0[*p] = v.clone();
    }
    c
}

#[allow(clippy::needless_range_loop)] // a part indexes two contexts and the flags
/// The model: what the context is after the fan-out, or why it fails. `ignore` says whether
/// failed branches are left out (else the first one fails the fan-out).
fn model(s: Strategy, base: &Ctx, branches: &[Branch], ignore: bool) -> Result<Ctx, Failure> {
    let mut merged = base.clone();
    let mut taken = [false; PARTS];
    let mut succeeded = 0;
    for (position, b) in branches.iter().enumerate() {
        let writes = match b {
            Branch::Fails if ignore => continue,
            Branch::Fails => return Err(Failure::Branch),
            Branch::Writes(w) => w,
        };
        succeeded += 1;
        if writes.is_empty() {
            // A branch that never wrote has nothing to merge.
            continue;
        }
        let c = written(base, writes);
        if s == Strategy::Append {
            append(&mut merged, base, &c).map_err(|()| Failure::User)?;
            continue;
        }
        for p in 0..PARTS {
            if c.0[p] == base.0[p] {
                continue;
            }
            match s {
                Strategy::Conflict if taken[p] => {
                    return Err(Failure::Conflict {
                        part: Ctx::part_name(p),
                        branch: position as u32,
                    })
                }
                Strategy::KeepFirst if taken[p] => {}
                Strategy::NoMerge => {}
                _ => merged.0[p] = c.0[p].clone(),
            }
            taken[p] = true;
        }
    }
    if succeeded == 0 {
        return Err(Failure::Branch);
    }
    Ok(merged)
}

/// The fan-out through `merge_branch` and `Spares`, as the interpreter does it.
fn direct(s: &MergeStrategy<Ctx>, base: &Ctx, branches: &[Branch]) -> Result<Ctx, Failure> {
    let mut spares = Spares::new(SPARES_MAX);
    let mut merged: Option<Ctx> = None;
    let mut succeeded = 0;
    for (position, b) in branches.iter().enumerate() {
        let Branch::Writes(writes) = b else {
            continue;
        };
        succeeded += 1;
        if writes.is_empty() {
            continue;
        }
        let mut c = spares.copy_of(base);
        for (p, v) in writes {
            c.0[*p].clone_from(v);
        }
        let r = merge_branch(s, base, &mut merged, &c, position as u32, &mut spares);
        spares.give(c);
        assert!(spares.len() <= SPARES_MAX, "spares are bounded");
        if let Err(e) = r {
            if let Some(m) = merged.take() {
                spares.give(m);
            }
            return Err(match e {
                MergeError::Conflict { part, branch } => Failure::Conflict { part, branch },
                MergeError::User(_) => Failure::User,
            });
        }
    }
    if succeeded == 0 {
        return Err(Failure::Branch);
    }
    Ok(merged.unwrap_or_else(|| base.clone()))
}

/// The fan-out as a parallel node on the interpreter.
fn interpreted(s: Strategy, base: &Ctx, branches: &[Branch], ignore: bool) -> Result<Ctx, Failure> {
    let g = Graph::<u32, Ctx>::build(|b| {
        let kids: Vec<NodeRef> = branches
            .iter()
            .enumerate()
            .map(|(i, br)| {
                let name = format!("b{i}");
                match br.clone() {
                    Branch::Fails => b.task(&name, |_, _| Err(StepError::permanent("fails"))),
                    Branch::Writes(writes) => b.task_with(
                        &name,
                        move |x, cx| {
                            for (p, v) in &writes {
                                cx.ctx_mut()?.0[*p].clone_from(v);
                            }
                            Ok(x + 1)
                        },
                        TaskConfig::new().writes_context(),
                    ),
                }
            })
            .collect();
        let failure = if ignore {
            FailureStrategy::Ignore
        } else {
            FailureStrategy::Propagate
        };
        let opts = ParallelOptions::new().merge(strategy(s)).failure(failure);
        b.parallel("fan", &kids, |a, x| a + x, opts)
    })
    .expect("a fan-out with at least one branch builds");
    let mut runner = Runner::new(RunnerConfig {
        max_spare_contexts: SPARES_MAX,
        ..RunnerConfig::default()
    });
    let r = runner.run(&g, 0, base.clone(), &NoClock, &RunOptions::default());
    match r.outcome {
        Outcome::Succeeded => {
            let succeeded = branches
                .iter()
                .filter(|b| matches!(b, Branch::Writes(_)))
                .count();
            assert_eq!(r.output, Some(succeeded as u32), "reduced in full");
            Ok(r.context)
        }
        Outcome::Failed => {
            assert_eq!(&r.context, base, "a failed fan-out leaves the context");
            let e = r.error.expect("a failed run has an error");
            Err(match e.kind {
                ErrorKind::MergeConflict { part, branch } => Failure::Conflict { part, branch },
                ErrorKind::MergeFailed(_) => Failure::User,
                ErrorKind::Step(se) => {
                    assert_eq!(se.class(), ErrorClass::Permanent);
                    Failure::Branch
                }
                ErrorKind::AllBranchesFailed { branches: n } => {
                    assert_eq!(n as usize, branches.len());
                    Failure::Branch
                }
                other => panic!("unexpected error {other:?}"),
            })
        }
        Outcome::Aborted => panic!("nothing here aborts"),
    }
}

/// Runs `data` as a fan-out program: its merge directly and on the interpreter, both against
/// the model.
pub fn run(data: &[u8]) {
    let mut bytes = Bytes::new(data);
    let head = bytes.next();
    let s = [
        Strategy::NoMerge,
        Strategy::Overwrite,
        Strategy::KeepFirst,
        Strategy::Conflict,
        Strategy::Append,
    ][usize::from(head % 5)];
    let ignore = head & 0x80 != 0;
    let mut base = Ctx::default();
    for part in &mut base.0 {
        *part = list(&mut bytes);
    }
    let count = usize::from(bytes.next()) % BRANCHES_MAX + 1;
    let branches: Vec<Branch> = (0..count)
        .map(|_| {
            let kind = bytes.next();
            if kind.is_multiple_of(8) {
                return Branch::Fails;
            }
            let writes = (0..kind % 4)
                .map(|_| {
                    let p = usize::from(bytes.next()) % PARTS;
                    (p, list(&mut bytes))
                })
                .collect();
            Branch::Writes(writes)
        })
        .collect();
    let expected = model(s, &base, &branches, ignore);
    if ignore || !branches.iter().any(|b| matches!(b, Branch::Fails)) {
        // `direct` leaves failed branches out, as the ignore strategy does.
        assert_eq!(
            direct(&strategy(s), &base, &branches),
            expected,
            "direct merge"
        );
    }
    assert_eq!(
        interpreted(s, &base, &branches, ignore),
        expected,
        "interpreted"
    );
}
