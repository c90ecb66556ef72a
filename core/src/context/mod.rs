//! The run context: copy-on-write views and the merge of parallel branches.
//!
//! # Design
//!
//! The context type is the host's. The engine needs two things from it, expressed by the
//! [`Context`] trait: `Clone` (a writer gets its own copy; `clone_from` lets a spare copy's
//! memory be reused, so steady-state runs do not allocate), and a division into *parts*, the
//! unit of merging: a fixed number of parts, each with a name, an equality test and a copy.
//! A part is whatever the host wants to merge as a whole (a field, a map, a group of fields).
//!
//! Copy-on-write:
//! - A step reads the context through a shared reference. Its first write copies the current
//!   context into a spare; the copy replaces the run's context only when the attempt
//!   succeeds, so a failed attempt's writes are discarded. A step that does not write never
//!   copies.
//! - Parallel branches (and map items) each start from a *borrowed* view of the context at
//!   fan-out. A branch that never writes never copies; one that writes gets its own copy.
//! - After the branches, the copies that exist are merged into the parent in declaration
//!   order by the node's [`MergeStrategy`]; a branch's changes are the parts that differ from
//!   the context at fan-out (`part_eq`). Failed branches' contexts are discarded.
//!
//! Architecture invariant: a context is only ever copied on a write or a merge, never to
//! read it.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::step_error::StepError;

/// A run context the engine can copy on write and merge by parts.
///
/// A struct context is declared with [`context!`](crate::context!) (`context!(Ctx { hits,
/// note })`: one part per field), which writes these four items; write them by hand only to
/// group fields into parts or merge a part other than by `==` and `clone_from`.
///
/// Copies are made with `Clone::clone_from` into a spare copy, so a context whose
/// `clone_from` reuses its memory (`Vec::clone_from` does; a derived `Clone` does not
/// override `clone_from`, so write it by hand for heap-owning contexts) makes context writes
/// allocation-free in steady state.
///
/// # Examples
///
/// ```
/// use flujo_core::context::Context;
///
/// #[derive(Clone, Debug, Default, PartialEq)]
/// struct Ctx { hits: u32, note: &'static str }
///
/// impl Context for Ctx {
///     const PARTS: usize = 2;
///     fn part_name(index: usize) -> &'static str {
///         ["hits", "note"][index]
///     }
///     fn part_eq(&self, other: &Self, index: usize) -> bool {
///         match index { 0 => self.hits == other.hits, _ => self.note == other.note }
///     }
///     fn copy_part(&mut self, from: &Self, index: usize) {
///         match index { 0 => self.hits = from.hits, _ => self.note = from.note }
///     }
/// }
/// assert_eq!(Ctx::part_name(1), "note");
/// ```
pub trait Context: Clone {
    /// Number of independently merged parts.
    const PARTS: usize;

    /// The name of part `index` (`0 .. PARTS`), used in merge-conflict errors.
    fn part_name(index: usize) -> &'static str;

    /// Whether part `index` of `self` and `other` are equal.
    fn part_eq(&self, other: &Self, index: usize) -> bool;

    /// Copies part `index` of `from` into `self`.
    fn copy_part(&mut self, from: &Self, index: usize);
}

/// Implements [`Context`] for a struct, one part per field listed (named after the field,
/// compared with `==`, copied with `Clone::clone_from`), so a struct context needs no
/// hand-written items. Each listed field's type must be `Clone + PartialEq`; fields left out
/// are not merged (a branch's change to one is lost at the merge). The struct itself must be
/// `Clone`.
///
/// `context!(Name)` alone makes the whole struct one part, named `"context"` (it must then
/// be `Clone + PartialEq`).
///
/// A derive would write the same thing; this declarative macro needs no proc-macro crate
/// (and its build time) and works in `no_std`.
///
/// # Examples
///
/// ```
/// use flujo_core::context::Context;
///
/// #[derive(Clone, Debug, Default, PartialEq)]
/// struct Ctx { hits: u32, note: String }
/// flujo_core::context!(Ctx { hits, note });
///
/// assert_eq!(Ctx::PARTS, 2);
/// assert_eq!(Ctx::part_name(1), "note");
/// let (a, mut b) = (Ctx { hits: 1, note: "x".into() }, Ctx::default());
/// assert!(!a.part_eq(&b, 0));
/// b.copy_part(&a, 0);
/// assert!(a.part_eq(&b, 0) && !a.part_eq(&b, 1));
///
/// #[derive(Clone, PartialEq)]
/// struct Settings { limit: u64 }
/// flujo_core::context!(Settings);
/// assert_eq!(Settings::PARTS, 1);
/// ```
#[macro_export]
macro_rules! context {
    ($name:ident) => {
        impl $crate::context::Context for $name {
            const PARTS: usize = 1;
            fn part_name(_index: usize) -> &'static str {
                "context"
            }
            fn part_eq(&self, other: &Self, _index: usize) -> bool {
                self == other
            }
            fn copy_part(&mut self, from: &Self, _index: usize) {
                ::core::clone::Clone::clone_from(self, from);
            }
        }
    };
    ($name:ident { $($field:ident),+ $(,)? }) => {
        impl $crate::context::Context for $name {
            const PARTS: usize = [$(stringify!($field)),+].len();
            fn part_name(index: usize) -> &'static str {
                [$(stringify!($field)),+][index]
            }
            #[allow(unused_assignments)]
            fn part_eq(&self, other: &Self, index: usize) -> bool {
                let mut part = 0usize;
                $(
                    if index == part {
                        return self.$field == other.$field;
                    }
                    part += 1;
                )+
                true
            }
            #[allow(unused_assignments)]
            fn copy_part(&mut self, from: &Self, index: usize) {
                let mut part = 0usize;
                $(
                    if index == part {
                        ::core::clone::Clone::clone_from(&mut self.$field, &from.$field);
                        return;
                    }
                    part += 1;
                )+
            }
        }
    };
}

/// The empty context: nothing to read, write or merge.
impl Context for () {
    const PARTS: usize = 0;
    fn part_name(_index: usize) -> &'static str {
        "()"
    }
    fn part_eq(&self, _other: &Self, _index: usize) -> bool {
        true
    }
    fn copy_part(&mut self, _from: &Self, _index: usize) {}
}

macro_rules! whole_context {
    ($($t:ty),*) => {$(
        /// A scalar context is one part, named `"context"`.
        impl Context for $t {
            const PARTS: usize = 1;
            fn part_name(_index: usize) -> &'static str {
                "context"
            }
            fn part_eq(&self, other: &Self, _index: usize) -> bool {
                self == other
            }
            fn copy_part(&mut self, from: &Self, _index: usize) {
                self.clone_from(from);
            }
        }
    )*};
}
whole_context!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, bool);

/// A context merged as one part: any `Clone + PartialEq` type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Whole<T>(pub T);

impl<T: Clone + PartialEq> Context for Whole<T> {
    const PARTS: usize = 1;
    fn part_name(_index: usize) -> &'static str {
        "context"
    }
    fn part_eq(&self, other: &Self, _index: usize) -> bool {
        self.0 == other.0
    }
    fn copy_part(&mut self, from: &Self, _index: usize) {
        self.0.clone_from(&from.0);
    }
}

/// A user merge: `(merged, at_fan_out, branch)`; called in declaration order for each
/// successful branch that wrote the context, with `merged` starting as the context at fan-out.
pub type UserMerge<C> = Box<dyn Fn(&mut C, &C, &C) -> Result<(), StepError> + Send + Sync>;

/// How parallel branches' contexts come back together.
pub enum MergeStrategy<C> {
    /// Branch writes are discarded; the context after the node is the one before it.
    NoMerge,
    /// Each changed part takes the value of the last branch (in declaration order) that
    /// changed it.
    Overwrite,
    /// Each changed part takes the value of the first branch that changed it.
    KeepFirst,
    /// Two branches changing the same part is an error naming the part (even if they wrote
    /// equal values).
    ErrorOnConflict,
    /// The host merges.
    User(UserMerge<C>),
}

impl<C> Default for MergeStrategy<C> {
    /// [`MergeStrategy::ErrorOnConflict`]: no write is ever lost silently.
    fn default() -> Self {
        MergeStrategy::ErrorOnConflict
    }
}

impl<C> fmt::Debug for MergeStrategy<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MergeStrategy::NoMerge => "NoMerge",
            MergeStrategy::Overwrite => "Overwrite",
            MergeStrategy::KeepFirst => "KeepFirst",
            MergeStrategy::ErrorOnConflict => "ErrorOnConflict",
            MergeStrategy::User(_) => "User",
        })
    }
}

/// Why a merge failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergeError {
    /// Two branches changed the same part; `branch` is the later one (0-based position).
    Conflict {
        /// Name of the part.
        part: &'static str,
        /// Position of the second branch that changed it.
        branch: u32,
    },
    /// The user merge failed.
    User(StepError),
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeError::Conflict { part, branch } => write!(
                f,
                "context part `{part}` changed by branch {branch} and an earlier branch"
            ),
            MergeError::User(e) => write!(f, "user merge failed: {e}"),
        }
    }
}

impl core::error::Error for MergeError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            MergeError::User(e) => Some(e),
            MergeError::Conflict { .. } => None,
        }
    }
}

/// Spare context copies, reused so writes and merges do not allocate in steady state.
/// Bounded: beyond `max` spares, returned copies are dropped.
#[derive(Debug)]
pub struct Spares<C> {
    free: Vec<C>,
    max: usize,
}

impl<C: Clone> Spares<C> {
    /// At most `max` spare copies kept.
    pub fn new(max: usize) -> Self {
        Self {
            free: Vec::with_capacity(max),
            max,
        }
    }

    /// A copy of `src`, made in a spare's memory when there is one.
    #[inline]
    pub fn copy_of(&mut self, src: &C) -> C {
        match self.free.pop() {
            Some(mut c) => {
                c.clone_from(src);
                c
            }
            None => src.clone(),
        }
    }

    /// Gives a copy back for reuse.
    #[inline]
    pub fn give(&mut self, c: C) {
        if self.free.len() < self.max {
            self.free.push(c);
        }
    }

    /// Spares held.
    pub fn len(&self) -> usize {
        self.free.len()
    }

    /// Whether no spare is held.
    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
    }
}

/// A node's view of the context: borrowed from the parent (a branch that has not written),
/// or owned (after a write or at the top of a run).
#[derive(Debug)]
pub(crate) enum Frame<'a, C> {
    Borrowed(&'a C),
    Owned(C),
    /// An eager copy of the parent's context that has not been written (copy-on-write
    /// switched off): read like a borrowed view, merged like one (not at all).
    Copied(C),
}

impl<C: Clone> Frame<'_, C> {
    #[inline(always)]
    pub(crate) fn get(&self) -> &C {
        match self {
            Frame::Borrowed(c) => c,
            Frame::Owned(c) | Frame::Copied(c) => c,
        }
    }

    /// Replaces the view with `next`, giving an owned previous value back to `spares`.
    #[inline]
    pub(crate) fn commit(&mut self, next: C, spares: &mut Spares<C>) {
        if let Frame::Owned(old) | Frame::Copied(old) = core::mem::replace(self, Frame::Owned(next))
        {
            spares.give(old);
        }
    }

    /// Gives an owned value back to `spares`.
    pub(crate) fn release(self, spares: &mut Spares<C>) {
        if let Frame::Owned(c) | Frame::Copied(c) = self {
            spares.give(c);
        }
    }
}

/// Merges one successful branch's context into `merged` (created from `base` on the first
/// change). `branch` is the branch's position in declaration order.
pub(crate) fn merge_branch<C: Context>(
    strategy: &MergeStrategy<C>,
    base: &C,
    merged: &mut Option<C>,
    branch_ctx: &C,
    branch: u32,
    spares: &mut Spares<C>,
) -> Result<(), MergeError> {
    match strategy {
        MergeStrategy::NoMerge => Ok(()),
        MergeStrategy::User(f) => {
            let m = merged.get_or_insert_with(|| spares.copy_of(base));
            f(m, base, branch_ctx).map_err(MergeError::User)
        }
        MergeStrategy::Overwrite | MergeStrategy::KeepFirst | MergeStrategy::ErrorOnConflict => {
            for part in 0..C::PARTS {
                if branch_ctx.part_eq(base, part) {
                    continue;
                }
                let already = merged.as_ref().is_some_and(|m| !m.part_eq(base, part));
                match strategy {
                    MergeStrategy::KeepFirst if already => continue,
                    MergeStrategy::ErrorOnConflict if already => {
                        return Err(MergeError::Conflict {
                            part: C::part_name(part),
                            branch,
                        });
                    }
                    _ => {}
                }
                let m = merged.get_or_insert_with(|| spares.copy_of(base));
                m.copy_part(branch_ctx, part);
            }
            Ok(())
        }
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests;
