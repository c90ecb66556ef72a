//! W14_typed_chain: a three-stage chain of differently typed stages (`Line -> Event ->
//! Enriched -> u64`), built two ways over one payload enum:
//!
//! - `flujo_typed`: typed steps (`Graph::build_typed`), each stage a plain function of its
//!   own type; the builder projects the payload in and out;
//! - `flujo_enum`: the same stages as untyped steps over the enum, each matching the variant
//!   by hand and erring on the ones that cannot happen (what a host wrote before typed steps).
//!
//! The payload, the data and the stage bodies are the same, so the difference is the cost of
//! the typed lowering (goal: at most 1.1x the enum form).
#![allow(dead_code)] // each bench target uses a part

use flujo_core::graph::{Graph, StepError};

/// A raw record: the id in the high half, the value in the low half.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Line(pub u64);

/// A parsed record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event {
    pub id: u32,
    pub value: u32,
}

/// A record with its looked-up weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Enriched {
    pub id: u32,
    pub value: u64,
    pub weight: u64,
}

flujo_core::payload! {
    /// The one payload both forms run over.
    #[derive(Clone, Debug, PartialEq)]
    pub enum Msg {
        Line(Line),
        Event(Event),
        Enriched(Enriched),
        Score(u64),
    }
}

#[inline]
fn parse(l: Line) -> Event {
    Event {
        id: (l.0 >> 32) as u32,
        value: l.0 as u32,
    }
}

#[inline]
fn enrich(e: Event) -> Enriched {
    Enriched {
        id: e.id,
        value: u64::from(e.value),
        weight: u64::from(e.id % 7) + 1,
    }
}

#[inline]
fn score(e: Enriched) -> u64 {
    e.value * e.weight
}

/// The input of run `i`.
pub fn input(i: u64) -> Msg {
    Msg::Line(Line((i << 32) | i))
}

/// What run `i` gives.
pub fn expected(i: u64) -> u64 {
    i * (i % 7 + 1)
}

/// The chain with typed steps.
pub fn typed_graph() -> Graph<Msg, ()> {
    Graph::build_typed(|b| {
        let p = b.task("parse", |l: Line, _| Ok(parse(l)));
        let e = b.task("enrich", |ev: Event, _| Ok(enrich(ev)));
        let s = b.task("score", |en: Enriched, _| Ok(score(en)));
        b.sequence("chain", p.then(e).then(s))
    })
    .expect("the typed chain is valid")
}

/// The cold error of a variant a stage cannot get.
#[cold]
#[inline(never)]
fn unexpected() -> StepError {
    StepError::permanent("unexpected payload variant")
}

/// The same chain through the enum by hand.
pub fn enum_graph() -> Graph<Msg, ()> {
    Graph::build(|b| {
        let p = b.task("parse", |m, _| match m {
            Msg::Line(l) => Ok(Msg::Event(parse(l))),
            _ => Err(unexpected()),
        });
        let e = b.task("enrich", |m, _| match m {
            Msg::Event(ev) => Ok(Msg::Enriched(enrich(ev))),
            _ => Err(unexpected()),
        });
        let s = b.task("score", |m, _| match m {
            Msg::Enriched(en) => Ok(Msg::Score(score(en))),
            _ => Err(unexpected()),
        });
        b.sequence("chain", &[p, e, s])
    })
    .expect("the enum chain is valid")
}
