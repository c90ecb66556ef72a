//! Fan-outs (parallel and map nodes): budget shares lent to branches and repaid, inline
//! branches and forked ones (through the host), folded in declaration order with the merge,
//! reduce and failure rules.

use super::{Exec, MAX_RECORD_BUFS, UNLIMITED};
use alloc::vec::Vec;

use crate::context::{merge_branch, Context, Frame, MergeError, MergeStrategy};
use crate::graph::{CancelFlag, Clock, FailureStrategy, Items, NodeId, Reduce};
use crate::interp::host::{Fan, Host, Lane};
use crate::interp::results::{ErrorKind, Stop};
use crate::policy::UsageBudget;
use crate::step_error::StepError;
use crate::telemetry::EventSink;

impl<P: Clone, C: Context, K: Clock, S: EventSink, H: Host<P, C, K>> Exec<'_, '_, P, C, K, S, H> {
    /// Merges a finished branch's context (if it wrote one) and gives the copy back.
    fn merge_back(
        &mut self,
        node: u32,
        strategy: &MergeStrategy<C>,
        base: &C,
        merged: &mut Option<C>,
        branch_frame: Frame<'_, C>,
        position: u32,
    ) -> Result<(), Stop> {
        let c = match branch_frame {
            Frame::Owned(c) => c,
            Frame::Borrowed(_) => return Ok(()),
            Frame::Copied(c) => {
                self.s.spares.give(c);
                return Ok(());
            }
        };
        let r = merge_branch(strategy, base, merged, &c, position, &mut self.s.spares);
        self.s.spares.give(c);
        r.map_err(|e| {
            let kind = match e {
                MergeError::Conflict { part, branch } => ErrorKind::MergeConflict { part, branch },
                MergeError::User(e) => ErrorKind::MergeFailed(e),
            };
            self.fail(node, kind, false)
        })
    }

    /// Lends the run's budget to the `parts` branches (or items) of a fan-out: the shares
    /// sum to what was available, so branches cannot together overspend it whatever order a
    /// concurrent runtime runs them in (the same rule here, one branch after another). They
    /// wait on the share stack, the first branch's on top; returns the stack's height below
    /// them.
    ///
    /// A run without a budget shares its unlimited one instead ([`UNLIMITED`]): nothing can
    /// be denied, so splitting would only cost time.
    fn lend(&mut self, parts: usize) -> usize {
        if !self.limited {
            return UNLIMITED;
        }
        let bottom = self.s.shares.len();
        let split = self.budget.split(parts);
        self.s.shares.extend(split);
        self.s.shares[bottom..].reverse();
        bottom
    }

    /// Runs node `id` on the next share of the fan-out under way, then merges the share
    /// back: what the branch did not use returns to the budget.
    fn on_share(
        &mut self,
        shares: usize,
        id: u32,
        x: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        if shares == UNLIMITED {
            return self.node(id, x, frame);
        }
        let share = self.s.shares.pop().expect("one share per branch");
        let parent = core::mem::replace(&mut self.budget, share);
        let result = self.node(id, x, frame);
        let share = core::mem::replace(&mut self.budget, parent);
        // A branch that went past its share (an overrun at reconciliation) reported it in
        // its own budget; the charge here can only mark the run's budget exceeded.
        let _ = self.budget.merge(share);
        result
    }

    /// Merges back, unused, the shares of branches that will not run (a fan-out that
    /// stopped early).
    fn repay(&mut self, bottom: usize) {
        if bottom == UNLIMITED {
            return;
        }
        while self.s.shares.len() > bottom {
            let share = self.s.shares.pop().expect("above bottom");
            let _ = self.budget.merge(share);
        }
    }

    /// What the branches of a forked fan-out over `base` share.
    fn fan<'f>(&self, base: &'f C, flags: &'f [CancelFlag], stop_later: bool) -> Fan<'f, P, C, K, H>
    where
        Self: 'f,
    {
        Fan {
            g: self.g,
            base,
            clock: self.clock,
            deadline: self.env.deadline,
            cancel: self.env.cancel,
            flags,
            stop_later,
            limited: self.limited,
            telemetry: self.tel.is_some(),
            host: self.host,
        }
    }

    /// One branch (or map item) of a forked fan-out, with its share of the budget (lent by
    /// [`lend`](Self::lend)) and a spare record buffer.
    fn branch_job(&mut self, node: u32, input: P, index: usize, shares: usize) -> Lane<P, C> {
        let budget = if shares == UNLIMITED {
            UsageBudget::unlimited()
        } else {
            self.s.shares.pop().expect("one share per branch")
        };
        Lane {
            node,
            input: Some(input),
            index,
            budget,
            records: self.s.record_bufs.pop().unwrap_or_default(),
            out: None,
        }
    }

    /// `count` lowered cancel flags and an empty branch list, from the scratch's spares.
    fn take_fan(&mut self, count: usize) -> (Vec<CancelFlag>, Vec<Lane<P, C>>) {
        let mut flags = self.s.flag_bufs.pop().unwrap_or_default();
        flags.clear();
        flags.resize_with(count, CancelFlag::new);
        let branches = self.s.fan_bufs.pop().unwrap_or_default();
        (flags, branches)
    }

    /// Keeps a forked fan-out's flags and (emptied) branch list for the next one.
    fn give_fan(&mut self, flags: Vec<CancelFlag>, mut branches: Vec<Lane<P, C>>) {
        branches.clear();
        if self.s.fan_bufs.len() < MAX_RECORD_BUFS {
            self.s.fan_bufs.push(branches);
            self.s.flag_bufs.push(flags);
        }
    }

    /// Hands a forked fan-out's branches to the host (at most `width` at once), folds what
    /// they did ([`fold_forked`](Self::fold_forked)) and keeps the lists for the next fork.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn fork_fold(
        &mut self,
        id: u32,
        width: u32,
        merge: &MergeStrategy<C>,
        propagate: bool,
        (flags, mut branches): (Vec<CancelFlag>, Vec<Lane<P, C>>),
        base: &C,
        acc: Option<P>,
        reduce: &Reduce<P>,
    ) -> Result<(Option<P>, Option<C>), Stop> {
        let fan = self.fan(base, &flags, propagate);
        self.host.fork(width as usize, &fan, &mut branches);
        let folded = self.fold_forked(id, merge, propagate, &mut branches, base, acc, reduce);
        self.give_fan(flags, branches);
        folded
    }

    /// Folds what the branches of a forked fan-out did, in declaration order, by the inline
    /// path's rules: every branch's records, counters, usage and unused share are taken (they
    /// ran); outputs are reduced from `acc` and contexts merged until the first failure that
    /// stops the fan-out (any under `propagate`, an abort always), which is returned. Returns
    /// the reduced output (`None` if no branch succeeded) and the merged context.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn fold_forked(
        &mut self,
        id: u32,
        merge: &MergeStrategy<C>,
        propagate: bool,
        branches: &mut [Lane<P, C>],
        base: &C,
        mut acc: Option<P>,
        reduce: &Reduce<P>,
    ) -> Result<(Option<P>, Option<C>), Stop> {
        let mut merged: Option<C> = None;
        let mut stop: Option<Stop> = None;
        for (position, b) in branches.iter_mut().enumerate() {
            let out = b
                .out
                .take()
                .expect("the host runs every branch it is given");
            for rec in &b.records {
                self.records.push(*rec);
            }
            self.records.dropped = self.records.dropped.saturating_add(out.dropped);
            if self.s.record_bufs.len() < MAX_RECORD_BUFS {
                let mut buf = core::mem::take(&mut b.records);
                buf.clear();
                self.s.record_bufs.push(buf);
            }
            self.counters.add(&out.counters);
            self.usage = self.usage.saturating_add(out.usage);
            if self.limited {
                let share = core::mem::replace(&mut b.budget, UsageBudget::unlimited());
                let _ = self.budget.merge(share);
            }
            if stop.is_some() {
                if let Some(c) = out.context {
                    self.s.spares.give(c);
                }
                continue;
            }
            match out.result {
                Ok(y) => {
                    let bf = match out.context {
                        Some(c) => Frame::Owned(c),
                        None => Frame::Borrowed(base),
                    };
                    match self.merge_back(id, merge, base, &mut merged, bf, position as u32) {
                        Ok(()) => match acc.take() {
                            None => acc = Some(y),
                            Some(a) => match reduce.apply(a, y) {
                                Ok(reduced) => acc = Some(reduced),
                                Err(e) => stop = Some(self.reduce_failed(id, e)),
                            },
                        },
                        Err(s) => stop = Some(s),
                    }
                }
                Err((s, kind)) => {
                    if let Some(c) = out.context {
                        self.s.spares.give(c);
                    }
                    if s.abort || propagate {
                        self.s.error = Some(kind);
                        stop = Some(s);
                    }
                }
            }
        }
        match stop {
            Some(s) => {
                self.release(merged);
                Err(s)
            }
            None => Ok((acc, merged)),
        }
    }

    /// A branch's view of the fan-out's context `base`: borrowed (copy-on-write), or an
    /// eager copy when copy-on-write is switched off.
    #[inline]
    pub(crate) fn branch_frame<'b>(&mut self, base: &'b C) -> Frame<'b, C> {
        if self.s.copy_on_write {
            Frame::Borrowed(base)
        } else {
            Frame::Copied(self.s.spares.copy_of(base))
        }
    }

    /// The failure of fan-out or map `node` whose reducer failed with `e`: the node fails
    /// with `e` (an abort if its class always aborts).
    #[cold]
    #[inline(never)]
    pub(super) fn reduce_failed(&mut self, node: u32, e: StepError) -> Stop {
        let abort = e.class().always_aborts();
        self.fail(node, ErrorKind::Step(e), abort)
    }

    fn release(&mut self, merged: Option<C>) {
        if let Some(m) = merged {
            self.s.spares.give(m);
        }
    }

    pub(super) fn parallel(
        &mut self,
        id: u32,
        p: usize,
        input: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        let g = self.g;
        let par = &g.pars[p];
        debug_assert!(par.max_width >= 1, "validated: width");
        if let (Some(program), true) = (par.program, self.pure_ok()) {
            return self.pure_fan(&g.pure_ops[program.range()], input, frame.get());
        }
        let count = par.branches.len;
        let propagate = par.failure == FailureStrategy::Propagate;
        if count >= 2
            && self
                .host
                .forks(NodeId(id), count as usize, g.cost[id as usize])
        {
            return self.parallel_forked(id, p, input, frame);
        }
        let base: &C = frame.get();
        let mut merged: Option<C> = None;
        let mut acc: Option<P> = None;
        let mut input = Some(input);
        let shares = self.lend(count as usize);
        for (position, &branch) in g.children[par.branches.range()].iter().enumerate() {
            let position = position as u32;
            let x = if position + 1 == count {
                input.take().expect("the last branch takes the input")
            } else {
                input
                    .as_ref()
                    .expect("input kept until the last branch")
                    .clone()
            };
            let mut bf = self.branch_frame(base);
            match self.on_share(shares, branch, x, &mut bf) {
                Ok(out) => {
                    if let Err(stop) =
                        self.merge_back(id, &par.merge, base, &mut merged, bf, position)
                    {
                        self.release(merged);
                        self.repay(shares);
                        return Err(stop);
                    }
                    acc = Some(match acc.take() {
                        None => out,
                        Some(a) => match g.par_reduce[p].apply(a, out) {
                            Ok(reduced) => reduced,
                            Err(e) => {
                                // Siblings not yet started are told to stop by never starting.
                                self.release(merged);
                                self.repay(shares);
                                return Err(self.reduce_failed(id, e));
                            }
                        },
                    });
                }
                Err(stop) => {
                    bf.release(&mut self.s.spares);
                    if stop.abort || propagate {
                        // Siblings not yet started are told to stop by never starting.
                        self.release(merged);
                        self.repay(shares);
                        return Err(stop);
                    }
                }
            }
        }
        debug_assert!(
            shares == UNLIMITED || self.s.shares.len() == shares,
            "every branch took its share"
        );
        self.parallel_end(id, count, acc, merged, frame)
    }

    /// A parallel node whose branches the host runs ([`Host::fork`]).
    pub(super) fn parallel_forked(
        &mut self,
        id: u32,
        p: usize,
        input: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        let g = self.g;
        let par = &g.pars[p];
        let count = par.branches.len;
        let propagate = par.failure == FailureStrategy::Propagate;
        let (flags, mut branches) = self.take_fan(count as usize);
        let shares = self.lend(count as usize);
        let mut input = Some(input);
        let children = &g.children[par.branches.range()];
        for (index, &node) in children.iter().enumerate() {
            let x = if index + 1 == children.len() {
                input.take().expect("the last branch takes the input")
            } else {
                input.as_ref().expect("kept until the last branch").clone()
            };
            branches.push(self.branch_job(node, x, index, shares));
        }
        let (acc, merged) = self.fork_fold(
            id,
            par.max_width,
            &par.merge,
            propagate,
            (flags, branches),
            frame.get(),
            None,
            &g.par_reduce[p],
        )?;
        self.parallel_end(id, count, acc, merged, frame)
    }

    /// A parallel node's end: its reduced output and merged context, or, when no branch
    /// succeeded (the ignore strategy), the all-failed error.
    fn parallel_end(
        &mut self,
        id: u32,
        count: u32,
        acc: Option<P>,
        merged: Option<C>,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        match acc {
            Some(out) => {
                if let Some(m) = merged {
                    frame.commit(m, &mut self.s.spares);
                }
                Ok(out)
            }
            None => {
                self.release(merged);
                Err(self.fail(id, ErrorKind::AllBranchesFailed { branches: count }, false))
            }
        }
    }

    pub(super) fn map(
        &mut self,
        id: u32,
        m: usize,
        input: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        let g = self.g;
        let mp = &g.maps[m];
        // Items live on the runner's item stack above `bottom`; nested maps push above ours
        // and pop theirs before returning.
        let bottom = self.s.items.len();
        let mut items = Items {
            buf: &mut self.s.items,
            base: bottom,
            limit: mp.max_items as usize,
            overflowed: false,
        };
        let seed = (mp.split)(input, frame.get(), &mut items);
        let overflowed = items.overflowed;
        let seed = match seed {
            Ok(_) if overflowed => {
                self.s.items.truncate(bottom);
                return Err(self.fail(
                    id,
                    ErrorKind::TooManyItems {
                        limit: mp.max_items,
                    },
                    false,
                ));
            }
            Ok(seed) => seed,
            Err(e) => {
                self.s.items.truncate(bottom);
                let abort = e.class().always_aborts();
                return Err(self.fail(id, ErrorKind::Step(e), abort));
            }
        };
        let count = self.s.items.len() - bottom;
        if count >= 2 && self.host.forks(NodeId(id), count, g.cost[id as usize]) {
            let (flags, mut branches) = self.take_fan(count);
            let shares = self.lend(count);
            let mut items = core::mem::take(&mut self.s.items);
            for (index, item) in items.drain(bottom..).enumerate() {
                branches.push(self.branch_job(mp.body, item, index, shares));
            }
            self.s.items = items;
            let (acc, merged) = self.fork_fold(
                id,
                mp.max_width,
                &mp.merge,
                true,
                (flags, branches),
                frame.get(),
                Some(seed),
                &mp.reduce,
            )?;
            if let Some(m) = merged {
                frame.commit(m, &mut self.s.spares);
            }
            return Ok(acc.expect("a map's fold starts from its seed"));
        }
        self.s.items[bottom..].reverse();
        let base: &C = frame.get();
        let mut merged: Option<C> = None;
        let mut acc = seed;
        let shares = self.lend(count);
        for position in 0..count as u32 {
            let item = self
                .s
                .items
                .pop()
                .expect("this map's items are above `bottom`");
            let mut bf = self.branch_frame(base);
            let out = match self.on_share(shares, mp.body, item, &mut bf) {
                Ok(out) => out,
                Err(stop) => {
                    bf.release(&mut self.s.spares);
                    self.s.items.truncate(bottom);
                    self.release(merged);
                    self.repay(shares);
                    return Err(stop);
                }
            };
            if let Err(stop) = self.merge_back(id, &mp.merge, base, &mut merged, bf, position) {
                self.s.items.truncate(bottom);
                self.release(merged);
                self.repay(shares);
                return Err(stop);
            }
            acc = match mp.reduce.apply(acc, out) {
                Ok(reduced) => reduced,
                Err(e) => {
                    self.s.items.truncate(bottom);
                    self.release(merged);
                    self.repay(shares);
                    return Err(self.reduce_failed(id, e));
                }
            };
        }
        debug_assert_eq!(
            self.s.items.len(),
            bottom,
            "a map leaves the item stack as it found it"
        );
        if let Some(m) = merged {
            frame.commit(m, &mut self.s.spares);
        }
        Ok(acc)
    }
}
