//! The degradation actions in force, as the hot paths read them (one relaxed load each), and
//! how a health move applies them (see [`crate::monitor::health`] and
//! [`crate::config::Action`]).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use flujo_core::context::Context;
use flujo_core::graph::Clock;

use super::runner_pool::lock;
use super::select::{AdaptiveCutoff, OnSelection, Selection};
use super::Inner;
use crate::config::{Action, InlineCutoff, OptimizationConfig};
use crate::monitor::health::{HealthEvent, HealthMachine, HealthStats};
use crate::monitor::resources::ProcessSampler;
use crate::Priority;

/// The host's health callback.
pub(crate) type OnHealth = Arc<dyn Fn(&HealthEvent) + Send + Sync>;

/// The actions in force, and the health machine.
pub(crate) struct Degrade {
    /// 0: shed nothing; 1: shed `Low`; 2: shed `Normal` and `Low`.
    shed: AtomicU8,
    /// Whether sampling is stopped.
    sampling_off: AtomicBool,
    /// What the inline cutoff is multiplied by.
    inline_factor: AtomicU32,
    /// The heaviest output the result cache stores (`usize::MAX`: no bound).
    store_max: AtomicUsize,
    /// `try_run` calls allowed under way at once (`u32::MAX`: no bound).
    runs_above: AtomicU32,
    machine: Mutex<HealthMachine>,
    on_health: Option<OnHealth>,
    /// The memory trigger's readings (its own: a report's sampler measures CPU between
    /// reports).
    process: Mutex<ProcessSampler>,
    /// The automatic cache bypass's per-step table (sized at construction), and where every
    /// selection event goes.
    pub(crate) selection: Selection,
    /// The adaptive inline cutoff.
    pub(crate) adaptive: AdaptiveCutoff,
}

impl Degrade {
    pub(crate) fn new(
        cfg: &OptimizationConfig,
        on_health: Option<OnHealth>,
        on_selection: Option<OnSelection>,
    ) -> Self {
        let (inline, cfg) = (&cfg.inline_cutoff, &cfg.degradation);
        Self {
            shed: AtomicU8::new(0),
            sampling_off: AtomicBool::new(false),
            inline_factor: AtomicU32::new(1),
            store_max: AtomicUsize::new(usize::MAX),
            runs_above: AtomicU32::new(u32::MAX),
            machine: Mutex::new(HealthMachine::new(cfg)),
            on_health,
            process: Mutex::new(ProcessSampler::new()),
            selection: Selection::new(&cfg.cache_bypass, on_selection),
            adaptive: AdaptiveCutoff::new(inline),
        }
    }

    /// Whether a submission of `priority` is shed.
    #[inline]
    pub(crate) fn sheds(&self, priority: Priority) -> bool {
        let shed = self.shed.load(Ordering::Relaxed);
        shed != 0
            && match priority {
                Priority::Low => true,
                Priority::Normal => shed >= 2,
                Priority::High => false,
            }
    }

    /// Whether sampling is stopped.
    #[inline]
    pub(crate) fn sampling_off(&self) -> bool {
        self.sampling_off.load(Ordering::Relaxed)
    }

    /// The inline cutoff `max_cost` with the `inline_more` factor in force.
    #[inline]
    pub(crate) fn cutoff(&self, max_cost: u32) -> u32 {
        max_cost.saturating_mul(self.inline_factor.load(Ordering::Relaxed))
    }

    /// Reads the process (resident memory, the cgroup limit) for the memory trigger.
    pub(crate) fn read_process(&self) -> crate::report::ProcessStats {
        lock(&self.process).sample()
    }

    /// `try_run` calls allowed under way at once now (`u32::MAX`: no bound).
    #[inline]
    pub(crate) fn runs_above(&self) -> u32 {
        self.runs_above.load(Ordering::Relaxed)
    }

    /// The heaviest output the result cache stores now.
    #[inline]
    pub(crate) fn store_max(&self) -> usize {
        self.store_max.load(Ordering::Relaxed)
    }

    /// The report's view.
    /// The report's view (`inline` is the inline cutoff's configuration in force).
    pub(crate) fn stats(&self, inline: &InlineCutoff) -> HealthStats {
        let mut stats = lock(&self.machine).stats();
        stats.selection = self.selection.stats();
        self.adaptive.stats(inline, &mut stats.selection);
        stats
    }
}

impl<P, C> Inner<P, C>
where
    P: Clone + Send + Sync + 'static,
    C: Context + Send + Sync + 'static,
{
    /// Reads the triggers at tick `now` (the rules firing, the memory pressure) and moves the
    /// health if they call for it, applying what the move takes and undoes.
    pub(super) fn evaluate_health(&self, now: u64, firing: &[String], memory: Option<f64>) {
        let moved = {
            let mut machine = lock(&self.degrade.machine);
            let moved = machine.evaluate(now, firing, memory);
            if let Some((_, taken, _)) = &moved {
                let active: Vec<Action> = machine.active().collect();
                self.apply(&active, taken);
            }
            moved
        };
        if let (Some((event, ..)), Some(f)) = (moved, &self.degrade.on_health) {
            f(&event);
        }
    }

    /// A new configuration `cfg` (already in force): a changed `[degradation]` section undoes
    /// every action in force (counted) and starts healthy; otherwise the actions in force are
    /// put back over the new sizes and bounds.
    pub(super) fn reconfigure_health(&self, cfg: &OptimizationConfig) {
        let bypass_changed =
            lock(&self.degrade.machine).config().cache_bypass != cfg.degradation.cache_bypass;
        if bypass_changed {
            // New settings judge afresh: every bypass in force is undone (counted, raised).
            self.degrade.selection.reset(self.clock.now());
        }
        self.degrade.adaptive.reconfigure(&cfg.inline_cutoff);
        let mut machine = lock(&self.degrade.machine);
        if *machine.config() != cfg.degradation {
            machine.reset(&cfg.degradation, self.clock.now());
        }
        let active: Vec<Action> = machine.active().collect();
        self.apply_with(&active, &[], cfg);
    }

    /// Puts the actions `active` in force (and what is not in it out of force); `taken` are
    /// those the move took (`free_idle_runners` acts when taken).
    fn apply(&self, active: &[Action], taken: &[Action]) {
        let cfg = self.config.load();
        self.apply_with(active, taken, &cfg);
    }

    fn apply_with(&self, active: &[Action], taken: &[Action], cfg: &OptimizationConfig) {
        let d = &self.degrade;
        let has = |name: &str| active.iter().find(|a| a.name() == name).copied();
        let shed = if has("shed_normal").is_some() {
            2
        } else {
            u8::from(has("shed_low").is_some())
        };
        d.shed.store(shed, Ordering::Relaxed);
        d.sampling_off
            .store(has("stop_sampling").is_some(), Ordering::Relaxed);
        let factor = match has("inline_more") {
            Some(Action::InlineMore { factor }) => factor,
            _ => 1,
        };
        d.inline_factor.store(factor, Ordering::Relaxed);
        let store_max = match has("bypass_large_payloads") {
            Some(Action::BypassLargePayloads { bytes }) => bytes,
            _ => usize::MAX,
        };
        d.store_max.store(store_max, Ordering::Relaxed);
        let runs_above = match has("refuse_runs") {
            Some(Action::RefuseRuns { above }) => above,
            _ => u32::MAX,
        };
        d.runs_above.store(runs_above, Ordering::Relaxed);
        let (entries, bytes) = (
            cfg.result_cache.max_entries.max(1),
            cfg.result_cache.max_bytes.max(1),
        );
        let (entries, bytes) = match has("shrink_cache") {
            Some(Action::ShrinkCache { share }) => (
                ((entries as f64 * share) as usize).max(1),
                ((bytes as f64 * share) as usize).max(1),
            ),
            _ => (entries, bytes),
        };
        if self.cache.capacity() != (entries, bytes) {
            self.cache.set_capacity(entries, bytes);
        }
        let (min, max) = cfg.adaptive_concurrency.bounds();
        let max = match has("tighten_admission") {
            Some(Action::TightenAdmission { share }) => ((f64::from(max) * share) as u32).max(min),
            _ => max,
        };
        // The bounds were checked with the configuration; a lower ceiling within them holds.
        let _ = self.limit.set_bounds(min, max);
        if taken.iter().any(|a| a.name() == "free_idle_runners") {
            self.runners.free_idle();
        }
    }
}
