//! Merge strategies over a three-part context, and spare reuse.

use std::vec;
use std::vec::Vec;

use super::*;

/// A three-part context (also the interpreter tests' context).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Ctx {
    pub(crate) a: i64,
    pub(crate) b: i64,
    pub(crate) log: Vec<u32>,
}

// `derive(Clone)` does not write `clone_from` (it clones and drops); a context that wants
// allocation-free copies writes it.
impl Clone for Ctx {
    fn clone(&self) -> Self {
        Ctx {
            a: self.a,
            b: self.b,
            log: self.log.clone(),
        }
    }
    fn clone_from(&mut self, src: &Self) {
        self.a = src.a;
        self.b = src.b;
        self.log.clone_from(&src.log);
    }
}

impl Context for Ctx {
    const PARTS: usize = 3;
    fn part_name(index: usize) -> &'static str {
        ["a", "b", "log"][index]
    }
    fn part_eq(&self, other: &Self, index: usize) -> bool {
        match index {
            0 => self.a == other.a,
            1 => self.b == other.b,
            _ => self.log == other.log,
        }
    }
    fn copy_part(&mut self, from: &Self, index: usize) {
        match index {
            0 => self.a = from.a,
            1 => self.b = from.b,
            _ => self.log.clone_from(&from.log),
        }
    }
}

fn merge_all(
    strategy: &MergeStrategy<Ctx>,
    base: &Ctx,
    branches: &[Ctx],
) -> Result<Option<Ctx>, MergeError> {
    let mut spares = Spares::new(4);
    let mut merged = None;
    for (i, b) in branches.iter().enumerate() {
        merge_branch(strategy, base, &mut merged, b, i as u32, &mut spares)?;
    }
    Ok(merged)
}

fn base() -> Ctx {
    Ctx {
        a: 1,
        b: 2,
        log: vec![0],
    }
}

#[test]
fn overwrite_takes_each_part_from_the_last_branch_that_changed_it() {
    let b0 = Ctx { a: 10, ..base() };
    let b1 = Ctx {
        a: 20,
        b: 30,
        ..base()
    };
    let b2 = Ctx {
        log: vec![7],
        ..base()
    };
    let m = merge_all(&MergeStrategy::Overwrite, &base(), &[b0, b1, b2])
        .unwrap()
        .unwrap();
    assert_eq!(
        m,
        Ctx {
            a: 20,
            b: 30,
            log: vec![7]
        }
    );
}

#[test]
fn keep_first_takes_each_part_from_the_first_branch_that_changed_it() {
    let b0 = Ctx { a: 10, ..base() };
    let b1 = Ctx {
        a: 20,
        b: 30,
        ..base()
    };
    let m = merge_all(&MergeStrategy::KeepFirst, &base(), &[b0, b1])
        .unwrap()
        .unwrap();
    assert_eq!(
        m,
        Ctx {
            a: 10,
            b: 30,
            log: vec![0]
        }
    );
}

#[test]
fn error_on_conflict_names_the_part_two_branches_changed() {
    let b0 = Ctx { a: 10, ..base() };
    let b1 = Ctx { b: 5, ..base() };
    let b2 = Ctx { b: 5, ..base() };
    let ok = merge_all(
        &MergeStrategy::ErrorOnConflict,
        &base(),
        &[b0.clone(), b1.clone()],
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        ok,
        Ctx {
            a: 10,
            b: 5,
            log: vec![0]
        }
    );
    let err = merge_all(&MergeStrategy::ErrorOnConflict, &base(), &[b0, b1, b2]).unwrap_err();
    assert_eq!(
        err,
        MergeError::Conflict {
            part: "b",
            branch: 2
        }
    );
}

#[test]
fn no_merge_keeps_the_context_at_fan_out() {
    let b0 = Ctx { a: 10, ..base() };
    assert_eq!(
        merge_all(&MergeStrategy::NoMerge, &base(), &[b0]).unwrap(),
        None
    );
}

#[test]
fn user_merge_sees_merged_base_and_branch_in_declaration_order() {
    let strategy: MergeStrategy<Ctx> =
        MergeStrategy::User(Box::new(|m: &mut Ctx, base: &Ctx, b: &Ctx| {
            m.a += b.a - base.a;
            m.log.extend_from_slice(&b.log[base.log.len()..]);
            Ok(())
        }));
    let b0 = Ctx {
        a: 3,
        log: vec![0, 5],
        ..base()
    };
    let b1 = Ctx {
        a: 11,
        log: vec![0, 6],
        ..base()
    };
    let m = merge_all(&strategy, &base(), &[b0, b1]).unwrap().unwrap();
    assert_eq!(
        m,
        Ctx {
            a: 1 + 2 + 10,
            b: 2,
            log: vec![0, 5, 6]
        }
    );
}

#[test]
fn a_branch_equal_to_the_base_changes_nothing_and_copies_nothing() {
    for s in [
        MergeStrategy::Overwrite,
        MergeStrategy::KeepFirst,
        MergeStrategy::ErrorOnConflict,
    ] {
        assert_eq!(
            merge_all(&s, &base(), &[base(), base()]).unwrap(),
            None,
            "{s:?}"
        );
    }
}

#[test]
fn spares_reuse_memory_and_are_bounded() {
    let mut spares: Spares<Ctx> = Spares::new(1);
    let src = Ctx {
        a: 1,
        b: 2,
        log: vec![1, 2, 3],
    };
    let c = spares.copy_of(&src);
    assert_eq!(c, src);
    let ptr = c.log.as_ptr();
    spares.give(c);
    spares.give(Ctx::default());
    assert_eq!(spares.len(), 1, "beyond the bound, copies are dropped");
    let again = spares.copy_of(&src);
    assert_eq!(
        again.log.as_ptr(),
        ptr,
        "clone_from reused the spare's buffer"
    );
    assert!(spares.is_empty());
}

#[test]
fn frame_commit_gives_the_replaced_copy_back() {
    let mut spares: Spares<Ctx> = Spares::new(4);
    let outer = base();
    let mut f = Frame::Borrowed(&outer);
    f.commit(Ctx { a: 9, ..base() }, &mut spares);
    assert_eq!(spares.len(), 0, "a borrowed view has nothing to give back");
    f.commit(Ctx { a: 10, ..base() }, &mut spares);
    assert_eq!(spares.len(), 1);
    assert_eq!(f.get().a, 10);
    f.release(&mut spares);
    assert_eq!(spares.len(), 2);
}
