//! Health: the level of degradation the monitor's triggers call for, with a minimum dwell, and
//! the actions each move takes and undoes (the executor applies them).
//!
//! The state machine is plain data driven by the clock ticks and trigger states it is given,
//! so a manual clock decides every move in the tests.

use std::collections::VecDeque;

use crate::config::{Action, DegradationConfig, MEMORY_TRIGGER};

/// Health events kept (the oldest go first; their count is kept).
pub const MAX_HEALTH_EVENTS: usize = 256;

/// How the executor is doing, by the degradation level in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Health {
    /// No level is in force.
    #[default]
    Healthy,
    /// Level `n` (1 = the first configured level) is in force, with its actions and those of
    /// the levels below.
    Degraded(u8),
    /// A level marked `critical` is in force.
    Critical,
}

impl Health {
    /// `"healthy"`, `"degraded"` or `"critical"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded(_) => "degraded",
            Health::Critical => "critical",
        }
    }
}

/// A move of the health: from, to, why, and the actions it took and undid.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct HealthEvent {
    /// The health before.
    pub from: Health,
    /// The health after.
    pub to: Health,
    /// The level now in force (its name), if any.
    pub level: Option<String>,
    /// The triggers on at the move (rule names, or `memory`).
    pub triggers: Vec<String>,
    /// Actions taken by the move (names).
    pub taken: Vec<String>,
    /// Actions undone by the move (names).
    pub undone: Vec<String>,
    /// The clock tick (nanosecond) of the move.
    pub at_ns: u64,
}

/// One action's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ActionRow {
    /// The action's name.
    pub action: String,
    /// In force now.
    pub active: bool,
    /// Times taken, exact.
    pub taken: u64,
    /// Times undone, exact.
    pub undone: u64,
}

/// The report's view of the health.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct HealthStats {
    /// The health now.
    pub health: Health,
    /// The level in force: 0 when healthy, else its 1-based position in the configuration.
    pub level: u8,
    /// Since when (clock tick).
    pub since_ns: u64,
    /// Moves so far, exact.
    pub transitions: u64,
    /// Every configured action, in configuration order.
    pub actions: Vec<ActionRow>,
    /// The last moves, oldest first (at most [`MAX_HEALTH_EVENTS`]).
    pub events: Vec<HealthEvent>,
    /// Moves older than those kept.
    pub events_dropped: u64,
    /// Whether the memory trigger is on, and the last resident share of the budget read.
    pub memory_pressure: bool,
    /// The last resident memory read against the budget, as a share (`None`: no budget).
    pub memory_share: Option<f64>,
    /// Performance-based selection: the automatic cache bypass's steps and flips.
    #[cfg_attr(feature = "serde", serde(default))]
    pub selection: SelectionStats,
}

/// Selection events kept (the oldest go first; their count is kept).
pub const MAX_SELECTION_EVENTS: usize = 256;

/// What a performance-based selection flip changed (see
/// [`CacheBypass`](crate::config::CacheBypass)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum SelectionChange {
    /// The step's cache bypass was taken: its hit rate fell below the threshold.
    BypassTaken,
    /// The step's cache bypass was undone: its probes hit at the threshold or above, or the
    /// configuration changed.
    BypassUndone,
    /// The adaptive inline cutoff rose: a fan-out above it, forked and timed, cost less per
    /// task execution than forking does.
    CutoffRaised,
    /// The adaptive inline cutoff fell: a fan-out below it, forked as a probe and timed, cost
    /// more per task execution than forking does.
    CutoffLowered,
}

impl SelectionChange {
    /// `"bypass_taken"`, `"bypass_undone"`, `"cutoff_raised"` or `"cutoff_lowered"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SelectionChange::BypassTaken => "bypass_taken",
            SelectionChange::BypassUndone => "bypass_undone",
            SelectionChange::CutoffRaised => "cutoff_raised",
            SelectionChange::CutoffLowered => "cutoff_lowered",
        }
    }
}

/// One flip of performance-based selection: a step's cache bypass, or the adaptive inline
/// cutoff (then `step` and `node` are the timed fan-out's).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct SelectionEvent {
    /// What changed.
    pub change: SelectionChange,
    /// The step's name.
    pub step: String,
    /// Its graph's id ([`Graph::id`](flujo_core::graph::Graph::id)) and node index.
    pub graph: u32,
    /// Its node index.
    pub node: u32,
    /// The hit rate of the window judged (0 for an undo by reconfiguration and for cutoff
    /// changes).
    pub hit_rate: f64,
    /// The lookups in that window (0 for cutoff changes).
    pub lookups: u64,
    /// For cutoff changes: the cutoff before and after (0 and 0 for bypass flips).
    pub cutoff: (u32, u32),
    /// For cutoff changes: the timed fan-out's branch time per task execution, in
    /// nanoseconds (0 for bypass flips).
    pub per_task_ns: u64,
    /// The clock tick (nanosecond) of the flip.
    pub at_ns: u64,
}

/// One step's cache-bypass counts (exact, but a window being judged while they are read may
/// show in `lookups` and `hits` a moment late).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct BypassRow {
    /// The step's name.
    pub step: String,
    /// Its graph's id.
    pub graph: u32,
    /// Its node index.
    pub node: u32,
    /// Bypassed now.
    pub bypassed: bool,
    /// Cache lookups made (probes included).
    pub lookups: u64,
    /// Of which hits.
    pub hits: u64,
    /// Executions that skipped the cache (no key, no lookup, no fill).
    pub bypassed_runs: u64,
    /// Executions that probed while bypassed.
    pub probes: u64,
    /// Times the bypass was taken.
    pub taken: u64,
    /// Times it was undone.
    pub undone: u64,
}

/// Performance-based selection in the report: per step followed, its counts; the last flips.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct SelectionStats {
    /// The steps followed, in the order first met.
    pub steps: Vec<BypassRow>,
    /// Executions of steps met after the table was full (never bypassed).
    pub untracked: u64,
    /// The adaptive inline cutoff now (before the `inline_more` factor), when adaptive.
    pub inline_cutoff: Option<u32>,
    /// Fan-outs timed for it (forked ones and probes).
    pub cutoff_samples: u64,
    /// Times it rose.
    pub cutoff_raised: u64,
    /// Times it fell.
    pub cutoff_lowered: u64,
    /// The last flips, oldest first (at most [`MAX_SELECTION_EVENTS`]).
    pub events: Vec<SelectionEvent>,
    /// Flips older than those kept.
    pub events_dropped: u64,
}

/// The health state machine.
pub(crate) struct HealthMachine {
    cfg: DegradationConfig,
    /// 0: healthy; `k`: level `k` (1-based) in force.
    level: usize,
    since: u64,
    memory_on: bool,
    memory_share: Option<f64>,
    transitions: u64,
    /// Per configured action (in order): taken, undone.
    counts: Vec<(Action, u64, u64)>,
    events: VecDeque<HealthEvent>,
    events_dropped: u64,
}

impl HealthMachine {
    pub(crate) fn new(cfg: &DegradationConfig) -> Self {
        Self {
            counts: cfg
                .levels
                .iter()
                .flat_map(|l| &l.actions)
                .map(|&a| (a, 0, 0))
                .collect(),
            cfg: cfg.clone(),
            level: 0,
            since: 0,
            memory_on: false,
            memory_share: None,
            transitions: 0,
            events: VecDeque::new(),
            events_dropped: 0,
        }
    }

    /// The configuration it runs.
    pub(crate) fn config(&self) -> &DegradationConfig {
        &self.cfg
    }

    /// The health now.
    pub(crate) fn health(&self) -> Health {
        self.health_at(self.level)
    }

    fn health_at(&self, level: usize) -> Health {
        match level {
            0 => Health::Healthy,
            k if self.cfg.levels[k - 1].critical => Health::Critical,
            k => Health::Degraded(k as u8),
        }
    }

    /// The actions in force.
    pub(crate) fn active(&self) -> impl Iterator<Item = Action> + '_ {
        self.cfg.levels[..self.level]
            .iter()
            .flat_map(|l| l.actions.iter().copied())
    }

    /// Reads the triggers at tick `now`: `firing`, the alert rules firing, and `memory`, the
    /// resident share of the memory budget (`None`: no budget). Moves the health if they call
    /// for it: up at once, down once the current level has held `min_dwell`. Returns the move
    /// and the actions it took and undid.
    pub(crate) fn evaluate(
        &mut self,
        now: u64,
        firing: &[String],
        memory: Option<f64>,
    ) -> Option<(HealthEvent, Vec<Action>, Vec<Action>)> {
        self.memory_share = memory;
        let m = self.cfg.memory;
        self.memory_on = match memory {
            Some(share) if share > m.high => true,
            Some(share) if share < m.low => false,
            Some(_) => self.memory_on,
            None => false,
        };
        if !self.cfg.enabled {
            return None;
        }
        let on = |t: &String| {
            if t == MEMORY_TRIGGER {
                self.memory_on
            } else {
                firing.contains(t)
            }
        };
        let target = self
            .cfg
            .levels
            .iter()
            .rposition(|l| l.when.iter().any(on))
            .map_or(0, |i| i + 1);
        let dwell = u64::try_from(self.cfg.min_dwell.as_nanos()).unwrap_or(u64::MAX);
        let moves =
            target > self.level || (target < self.level && now.saturating_sub(self.since) >= dwell);
        if !moves {
            return None;
        }
        let (from, to) = (self.level, target);
        let levels = &self.cfg.levels;
        let (taken, undone): (Vec<Action>, Vec<Action>) = if to > from {
            (
                levels[from..to]
                    .iter()
                    .flat_map(|l| l.actions.clone())
                    .collect(),
                Vec::new(),
            )
        } else {
            (
                Vec::new(),
                levels[to..from]
                    .iter()
                    .flat_map(|l| l.actions.clone())
                    .collect(),
            )
        };
        for (a, t, u) in &mut self.counts {
            *t += u64::from(taken.iter().any(|b| b.name() == a.name()));
            *u += u64::from(undone.iter().any(|b| b.name() == a.name()));
        }
        let triggers = levels.iter().flat_map(|l| &l.when).filter(|t| on(t)).fold(
            Vec::new(),
            |mut v: Vec<String>, t| {
                if !v.contains(t) {
                    v.push(t.clone());
                }
                v
            },
        );
        let event = HealthEvent {
            from: self.health_at(from),
            to: self.health_at(to),
            level: (to > 0).then(|| levels[to - 1].name.clone()),
            triggers,
            taken: taken.iter().map(|a| a.name().to_string()).collect(),
            undone: undone.iter().map(|a| a.name().to_string()).collect(),
            at_ns: now,
        };
        (self.level, self.since) = (to, now);
        self.transitions += 1;
        if self.events.len() == MAX_HEALTH_EVENTS {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event.clone());
        Some((event, taken, undone))
    }

    /// Undoes every action in force (counted) and goes back to healthy, for a new
    /// configuration; returns what was undone.
    pub(crate) fn reset(&mut self, cfg: &DegradationConfig, now: u64) -> Vec<Action> {
        let undone: Vec<Action> = self.active().collect();
        let mut next = Self::new(cfg);
        // Totals carry over for the actions that stay configured.
        for (a, t, u) in &mut next.counts {
            if let Some((_, t0, u0)) = self.counts.iter().find(|(b, ..)| b.name() == a.name()) {
                *t = *t0;
                *u = *u0 + u64::from(undone.iter().any(|b| b.name() == a.name()));
            }
        }
        next.transitions = self.transitions + u64::from(self.level > 0);
        next.events = std::mem::take(&mut self.events);
        next.events_dropped = self.events_dropped;
        next.since = now;
        *self = next;
        undone
    }

    /// The report's view.
    pub(crate) fn stats(&self) -> HealthStats {
        let active: Vec<Action> = self.active().collect();
        HealthStats {
            health: self.health(),
            level: self.level as u8,
            since_ns: self.since,
            transitions: self.transitions,
            actions: self
                .counts
                .iter()
                .map(|(a, t, u)| ActionRow {
                    action: a.name().to_string(),
                    active: active.iter().any(|b| b.name() == a.name()),
                    taken: *t,
                    undone: *u,
                })
                .collect(),
            events: self.events.iter().cloned().collect(),
            events_dropped: self.events_dropped,
            memory_pressure: self.memory_on,
            memory_share: self.memory_share,
            selection: SelectionStats::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::DegradationLevel;

    const S: u64 = 1_000_000_000;

    fn cfg() -> DegradationConfig {
        DegradationConfig {
            enabled: true,
            min_dwell: Duration::from_secs(5),
            levels: vec![
                DegradationLevel {
                    name: "busy".into(),
                    when: vec!["wait".into()],
                    actions: vec![Action::ShedLow, Action::StopSampling],
                    critical: false,
                },
                DegradationLevel {
                    name: "overload".into(),
                    when: vec!["errors".into(), MEMORY_TRIGGER.into()],
                    actions: vec![Action::ShedNormal],
                    critical: true,
                },
            ],
            ..DegradationConfig::default()
        }
    }

    fn names(a: &[Action]) -> Vec<&'static str> {
        a.iter().map(|a| a.name()).collect()
    }

    #[test]
    fn up_at_once_down_after_the_dwell_with_cumulative_actions() {
        let mut h = HealthMachine::new(&cfg());
        let wait = vec!["wait".to_string()];
        assert!(h.evaluate(0, &[], None).is_none());
        let (e, taken, undone) = h.evaluate(S, &wait, None).unwrap();
        assert_eq!((e.from, e.to), (Health::Healthy, Health::Degraded(1)));
        assert_eq!(names(&taken), ["shed_low", "stop_sampling"]);
        assert!(undone.is_empty());
        // Straight to the critical level: only its own action is taken.
        let both = vec!["wait".to_string(), "errors".to_string()];
        let (e, taken, _) = h.evaluate(2 * S, &both, None).unwrap();
        assert_eq!(e.to, Health::Critical);
        assert_eq!(e.triggers, ["wait", "errors"]);
        assert_eq!(names(&taken), ["shed_normal"]);
        // Pressure gone: held for the dwell (5 s from the last move), then down to healthy.
        for t in 3..7 {
            assert!(h.evaluate(t * S, &[], None).is_none(), "{t} s");
        }
        let (e, taken, undone) = h.evaluate(7 * S, &[], None).unwrap();
        assert_eq!((e.from, e.to), (Health::Critical, Health::Healthy));
        assert!(taken.is_empty());
        assert_eq!(names(&undone), ["shed_low", "stop_sampling", "shed_normal"]);
        let s = h.stats();
        assert_eq!(s.transitions, 3);
        assert_eq!(s.events.len(), 3);
        for row in &s.actions {
            assert_eq!(
                (row.taken, row.undone, row.active),
                (1, 1, false),
                "{row:?}"
            );
        }
    }

    #[test]
    fn the_memory_trigger_has_hysteresis() {
        let mut h = HealthMachine::new(&cfg());
        assert!(
            h.evaluate(0, &[], Some(0.85)).is_none(),
            "between low and high"
        );
        assert_eq!(
            h.evaluate(S, &[], Some(0.95)).unwrap().0.to,
            Health::Critical
        );
        // Between the two: still on, so no move even after the dwell.
        assert!(h.evaluate(10 * S, &[], Some(0.85)).is_none());
        assert!(h.stats().memory_pressure);
        let (e, _, undone) = h.evaluate(11 * S, &[], Some(0.5)).unwrap();
        assert_eq!(e.to, Health::Healthy);
        // From healthy straight to level 2: every action of both levels went, and came back.
        assert_eq!(names(&undone), ["shed_low", "stop_sampling", "shed_normal"]);
    }

    #[test]
    fn disabled_never_moves_and_reset_undoes_what_is_in_force() {
        let mut off = cfg();
        off.enabled = false;
        let mut h = HealthMachine::new(&off);
        assert!(h.evaluate(S, &["wait".to_string()], None).is_none());
        let mut h = HealthMachine::new(&cfg());
        h.evaluate(S, &["wait".to_string()], None).unwrap();
        let undone = h.reset(&cfg(), 2 * S);
        assert_eq!(names(&undone), ["shed_low", "stop_sampling"]);
        let s = h.stats();
        assert_eq!(s.health, Health::Healthy);
        assert_eq!(s.actions[0].undone, 1);
        assert_eq!(s.transitions, 2);
    }
}
