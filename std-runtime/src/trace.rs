//! Trace export in the Chrome trace-event JSON format, which Perfetto (ui.perfetto.dev) and
//! `chrome://tracing` open.
//!
//! The format is the "JSON object format" of Google's *Trace Event Format* document:
//!
//! ```text
//! {"traceEvents":[ ...events... ], "displayTimeUnit":"ns", "otherData":{ ... }}
//! ```
//!
//! with three kinds of events:
//! - complete events (`"ph":"X"`): a [`Span`] with `name`, `cat`, `ts` and `dur` (both in
//!   microseconds, written as decimals with exactly three fractional digits, so nanoseconds
//!   survive), `pid`, `tid` and `args`;
//! - instant events (`"ph":"i"`, thread scope `"s":"t"`): an [`Instant`];
//! - metadata events (`"ph":"M"`) naming the process and the threads
//!   ([`TraceWriter::process_name`], [`TraceWriter::thread_name`]).
//!
//! `otherData` holds what the trace left out: `dropped_spans` and `dropped_instants` count,
//! exactly, the records refused because the writer was at its bound
//! ([`TraceWriter::new`]), and `max_records` is that bound.
//!
//! The JSON is written by hand (no serde): strings are escaped as RFC 8259 asks (`"` and `\`
//! by a backslash, every control character below U+0020 as `\u00XX`); non-finite floats,
//! which JSON cannot represent, are written as `null`.
//!
//! [`spans_from_events`] turns a worker's core telemetry [`Event`]s into spans and instants.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};

use flujo_core::policy::BreakerState;
use flujo_core::telemetry::{Event, EventKind, StepOutcome};

/// The value of one argument of a [`Span`] or [`Instant`] (shown in the viewer's details
/// pane).
#[derive(Clone, Debug, PartialEq)]
pub enum ArgValue {
    /// An unsigned integer.
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// A float; written as `null` when it is NaN or infinite.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(Cow<'static, str>),
}

impl From<u64> for ArgValue {
    fn from(v: u64) -> Self {
        ArgValue::U64(v)
    }
}

impl From<u32> for ArgValue {
    fn from(v: u32) -> Self {
        ArgValue::U64(u64::from(v))
    }
}

impl From<i64> for ArgValue {
    fn from(v: i64) -> Self {
        ArgValue::I64(v)
    }
}

impl From<f64> for ArgValue {
    fn from(v: f64) -> Self {
        ArgValue::F64(v)
    }
}

impl From<bool> for ArgValue {
    fn from(v: bool) -> Self {
        ArgValue::Bool(v)
    }
}

impl From<&'static str> for ArgValue {
    fn from(v: &'static str) -> Self {
        ArgValue::Str(Cow::Borrowed(v))
    }
}

impl From<String> for ArgValue {
    fn from(v: String) -> Self {
        ArgValue::Str(Cow::Owned(v))
    }
}

/// Arguments of a span or an instant, written in this order. A key given twice is written
/// twice; JSON readers then usually keep the last one.
pub type Args = Vec<(&'static str, ArgValue)>;

/// Something that took time on one thread: a complete event (`"ph":"X"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// What ran (a step's name, for example).
    pub name: Cow<'static, str>,
    /// Its category (viewers can filter by it).
    pub cat: &'static str,
    /// The thread it ran on (a worker index).
    pub tid: u32,
    /// When it started, in nanoseconds from the trace's origin (any fixed instant).
    pub start_ns: u64,
    /// How long it took, in nanoseconds.
    pub dur_ns: u64,
    /// Details shown with it.
    pub args: Args,
}

/// Something that happened at one moment on one thread: an instant event (`"ph":"i"`,
/// `"s":"t"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Instant {
    /// What happened.
    pub name: Cow<'static, str>,
    /// Its category.
    pub cat: &'static str,
    /// The thread it happened on.
    pub tid: u32,
    /// When, in nanoseconds from the trace's origin.
    pub ts_ns: u64,
    /// Details shown with it.
    pub args: Args,
}

/// Collects spans and instants, up to a bound, and writes them as a Chrome trace.
///
/// The bound counts spans and instants together; the writer keeps the first `max_records`
/// and counts the rest, exactly, by kind ([`dropped_spans`](Self::dropped_spans),
/// [`dropped_instants`](Self::dropped_instants)); the counts are written in the trace's
/// `otherData`. Keeping the first records (as the core's `VecSink` does) needs no ring and
/// shows how a run began; thread and process names are not bounded (one per thread).
///
/// # Examples
///
/// ```
/// use flujo_runtime::trace::{ArgValue, Span, TraceWriter};
///
/// let mut trace = TraceWriter::new(1);
/// trace.thread_name(0, "worker-0");
/// let span = |name: &'static str| Span {
///     name: name.into(),
///     cat: "step",
///     tid: 0,
///     start_ns: 1_500,
///     dur_ns: 250,
///     args: vec![("attempts", ArgValue::U64(1))],
/// };
/// assert!(trace.span(span("fetch")));
/// assert!(!trace.span(span("parse"))); // over the bound: dropped and counted
/// assert_eq!(trace.dropped_spans(), 1);
///
/// let json = trace.to_json_string();
/// assert!(json.starts_with(r#"{"traceEvents":["#));
/// assert!(json.contains(r#""ph":"X","name":"fetch","cat":"step","ts":1.500,"dur":0.250"#));
/// assert!(json.contains(r#""dropped_spans":1"#));
/// ```
#[derive(Clone, Debug)]
pub struct TraceWriter {
    pid: u32,
    process_name: Option<String>,
    thread_names: BTreeMap<u32, String>,
    /// Invariant: `spans.len() + instants.len() <= max_records`.
    spans: Vec<Span>,
    instants: Vec<Instant>,
    max_records: usize,
    dropped_spans: u64,
    dropped_instants: u64,
}

impl TraceWriter {
    /// A writer that keeps at most `max_records` spans and instants (together), in process
    /// `pid` 1. It allocates as records come, not up front.
    pub fn new(max_records: usize) -> Self {
        Self {
            pid: 1,
            process_name: None,
            thread_names: BTreeMap::new(),
            spans: Vec::new(),
            instants: Vec::new(),
            max_records,
            dropped_spans: 0,
            dropped_instants: 0,
        }
    }

    /// The same writer, writing `pid` as the process id of every event.
    pub fn with_pid(mut self, pid: u32) -> Self {
        self.pid = pid;
        self
    }

    /// Names the process (a `process_name` metadata event).
    pub fn process_name(&mut self, name: impl Into<String>) {
        self.process_name = Some(name.into());
    }

    /// Names thread `tid` (a `thread_name` metadata event); a later name replaces an earlier.
    pub fn thread_name(&mut self, tid: u32, name: impl Into<String>) {
        self.thread_names.insert(tid, name.into());
    }

    /// Keeps `span`, or drops and counts it when the writer is at its bound. Returns whether
    /// it was kept.
    pub fn span(&mut self, span: Span) -> bool {
        if self.is_full() {
            self.dropped_spans = self.dropped_spans.saturating_add(1);
            return false;
        }
        self.spans.push(span);
        true
    }

    /// Keeps `instant`, or drops and counts it when the writer is at its bound. Returns
    /// whether it was kept.
    pub fn instant(&mut self, instant: Instant) -> bool {
        if self.is_full() {
            self.dropped_instants = self.dropped_instants.saturating_add(1);
            return false;
        }
        self.instants.push(instant);
        true
    }

    /// Keeps what [`spans_from_events`] made (spans first), up to the bound.
    pub fn extend(&mut self, trace: EventTrace) {
        for span in trace.spans {
            self.span(span);
        }
        for instant in trace.instants {
            self.instant(instant);
        }
    }

    /// Moves every span and instant of `other` into this writer (up to its bound, counting
    /// what it drops), adds `other`'s drop counts to its own and takes `other`'s thread
    /// names. `other` is left empty, its record memory freed (its bound, pid and process
    /// name stay), as if new.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_runtime::trace::{Instant, TraceWriter};
    ///
    /// let mut runner = TraceWriter::new(8);
    /// let tick = |ts_ns| Instant { name: "tick".into(), cat: "flujo", tid: 1, ts_ns, args: vec![] };
    /// runner.instant(tick(10));
    /// runner.instant(tick(20));
    /// assert!(runner.held_bytes() > 0);
    ///
    /// let mut taken = TraceWriter::new(1);
    /// taken.append(&mut runner);
    /// assert_eq!((taken.instants().len(), taken.dropped_instants()), (1, 1));
    /// assert_eq!((runner.instants().len(), runner.held_bytes()), (0, 0));
    /// ```
    pub fn append(&mut self, other: &mut TraceWriter) {
        for span in std::mem::take(&mut other.spans) {
            self.span(span);
        }
        for instant in std::mem::take(&mut other.instants) {
            self.instant(instant);
        }
        self.dropped_spans = self.dropped_spans.saturating_add(other.dropped_spans);
        self.dropped_instants = self.dropped_instants.saturating_add(other.dropped_instants);
        (other.dropped_spans, other.dropped_instants) = (0, 0);
        for (tid, name) in std::mem::take(&mut other.thread_names) {
            self.thread_names.insert(tid, name);
        }
    }

    /// The bytes of the records this writer holds: the span and instant vectors (capacity
    /// times element size), each record's owned name and argument list, and owned argument
    /// strings. The process and thread names (one short string per thread) are not counted.
    pub fn held_bytes(&self) -> usize {
        let args = |args: &Args| {
            args.capacity() * size_of::<(&'static str, ArgValue)>()
                + args
                    .iter()
                    .map(|(_, value)| match value {
                        ArgValue::Str(Cow::Owned(s)) => s.capacity(),
                        _ => 0,
                    })
                    .sum::<usize>()
        };
        let name = |name: &Cow<'static, str>| match name {
            Cow::Owned(s) => s.capacity(),
            Cow::Borrowed(_) => 0,
        };
        let spans: usize = self
            .spans
            .iter()
            .map(|s| name(&s.name) + args(&s.args))
            .sum();
        let instants: usize = self
            .instants
            .iter()
            .map(|i| name(&i.name) + args(&i.args))
            .sum();
        self.spans.capacity() * size_of::<Span>()
            + self.instants.capacity() * size_of::<Instant>()
            + spans
            + instants
    }

    /// Whether the next span or instant would be dropped.
    pub fn is_full(&self) -> bool {
        self.spans.len() + self.instants.len() >= self.max_records
    }

    /// The bound given to [`new`](Self::new).
    pub fn max_records(&self) -> usize {
        self.max_records
    }

    /// The spans kept, in the order they came.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// The instants kept, in the order they came.
    pub fn instants(&self) -> &[Instant] {
        &self.instants
    }

    /// Spans dropped because the writer was at its bound (exact, saturating).
    pub fn dropped_spans(&self) -> u64 {
        self.dropped_spans
    }

    /// Instants dropped because the writer was at its bound (exact, saturating).
    pub fn dropped_instants(&self) -> u64 {
        self.dropped_instants
    }

    /// Writes the trace as JSON to `w` (buffered here, so a bare `File` is fine): metadata
    /// events, then the spans, then the instants, then `otherData` with the drop counts.
    ///
    /// # Errors
    ///
    /// Whatever `w` returns.
    pub fn write_json(&self, w: impl Write) -> io::Result<()> {
        let mut out = io::BufWriter::new(w);
        let w = &mut out;
        w.write_all(b"{\"traceEvents\":[")?;
        let mut first = true;
        if let Some(name) = &self.process_name {
            self.write_metadata(w, &mut first, "process_name", 0, name)?;
        }
        for (&tid, name) in &self.thread_names {
            self.write_metadata(w, &mut first, "thread_name", tid, name)?;
        }
        for span in &self.spans {
            separator(w, &mut first)?;
            w.write_all(b"{\"ph\":\"X\",\"name\":")?;
            write_str(w, &span.name)?;
            w.write_all(b",\"cat\":")?;
            write_str(w, span.cat)?;
            w.write_all(b",\"ts\":")?;
            write_micros(w, span.start_ns)?;
            w.write_all(b",\"dur\":")?;
            write_micros(w, span.dur_ns)?;
            write!(w, ",\"pid\":{},\"tid\":{},\"args\":", self.pid, span.tid)?;
            write_args(w, &span.args)?;
            w.write_all(b"}")?;
        }
        for instant in &self.instants {
            separator(w, &mut first)?;
            w.write_all(b"{\"ph\":\"i\",\"s\":\"t\",\"name\":")?;
            write_str(w, &instant.name)?;
            w.write_all(b",\"cat\":")?;
            write_str(w, instant.cat)?;
            w.write_all(b",\"ts\":")?;
            write_micros(w, instant.ts_ns)?;
            write!(w, ",\"pid\":{},\"tid\":{},\"args\":", self.pid, instant.tid)?;
            write_args(w, &instant.args)?;
            w.write_all(b"}")?;
        }
        write!(
            w,
            "],\"displayTimeUnit\":\"ns\",\"otherData\":{{\"dropped_spans\":{},\
             \"dropped_instants\":{},\"max_records\":{}}}}}",
            self.dropped_spans, self.dropped_instants, self.max_records
        )?;
        out.flush()
    }

    /// The trace as a JSON string (see [`write_json`](Self::write_json)).
    pub fn to_json_string(&self) -> String {
        let mut bytes = Vec::new();
        // Writing to a Vec cannot fail.
        self.write_json(&mut bytes)
            .expect("writing to a Vec never fails");
        // Everything written is ASCII punctuation, numbers and whole UTF-8 strings.
        String::from_utf8(bytes).expect("the writer writes UTF-8")
    }

    fn write_metadata(
        &self,
        w: &mut impl Write,
        first: &mut bool,
        kind: &str,
        tid: u32,
        name: &str,
    ) -> io::Result<()> {
        separator(w, first)?;
        write!(
            w,
            "{{\"ph\":\"M\",\"name\":\"{kind}\",\"pid\":{},\"tid\":{tid},\"args\":{{\"name\":",
            self.pid
        )?;
        write_str(w, name)?;
        w.write_all(b"}}")
    }
}

/// Writes a comma before every element but the first.
fn separator(w: &mut impl Write, first: &mut bool) -> io::Result<()> {
    if *first {
        *first = false;
        Ok(())
    } else {
        w.write_all(b",")
    }
}

/// Writes `ns` nanoseconds as microseconds with exactly three decimals: exact, and a JSON
/// number that every reader parses as a float.
fn write_micros(w: &mut impl Write, ns: u64) -> io::Result<()> {
    write!(w, "{}.{:03}", ns / 1_000, ns % 1_000)
}

/// Writes `args` as a JSON object.
fn write_args(w: &mut impl Write, args: &[(&'static str, ArgValue)]) -> io::Result<()> {
    w.write_all(b"{")?;
    let mut first = true;
    for (key, value) in args {
        separator(w, &mut first)?;
        write_str(w, key)?;
        w.write_all(b":")?;
        match value {
            ArgValue::U64(v) => write!(w, "{v}")?,
            ArgValue::I64(v) => write!(w, "{v}")?,
            // `Display` of a finite f64 never uses an exponent and is a valid JSON number;
            // it prints the shortest decimal that reads back as the same float.
            ArgValue::F64(v) if v.is_finite() => write!(w, "{v}")?,
            ArgValue::F64(_) => w.write_all(b"null")?,
            ArgValue::Bool(v) => write!(w, "{v}")?,
            ArgValue::Str(s) => write_str(w, s)?,
        }
    }
    w.write_all(b"}")
}

/// Writes `s` as a JSON string: `"` and `\` escaped by a backslash, control characters
/// (below U+0020, and DEL) as `\u00XX`, everything else as its UTF-8 bytes. Scanning bytes is
/// sound for UTF-8: the bytes escaped are ASCII, and ASCII bytes never occur inside a
/// multi-byte sequence.
fn write_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    w.write_all(b"\"")?;
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: [u8; 6];
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x00..=0x1F | 0x7F => {
                escape = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xF)],
                ];
                &escape
            }
            _ => continue,
        };
        w.write_all(&bytes[plain_from..i])?;
        w.write_all(escaped)?;
        plain_from = i + 1;
    }
    w.write_all(&bytes[plain_from..])?;
    w.write_all(b"\"")
}

/// Converts a tick count to nanoseconds: `ticks * ns_per_tick`, exact when `ns_per_tick` is
/// 1, rounded to the nearest nanosecond otherwise, saturating at `u64::MAX`.
///
/// # Panics
///
/// If `ns_per_tick` is negative, NaN or infinite.
pub fn ticks_to_ns(ticks: u64, ns_per_tick: f64) -> u64 {
    assert!(
        ns_per_tick.is_finite() && ns_per_tick >= 0.0,
        "ns_per_tick {ns_per_tick} is not a finite non-negative number"
    );
    if ns_per_tick == 1.0 {
        return ticks;
    }
    // A float-to-int `as` saturates (and maps NaN, which cannot occur here, to 0).
    (ticks as f64 * ns_per_tick).round() as u64
}

/// What [`spans_from_events`] made of one thread's events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventTrace {
    /// One span per step execution, in the order they ended (inner before outer).
    pub spans: Vec<Span>,
    /// Retries, breaker transitions and refusals, fallbacks, usage denials, and events with
    /// no open span.
    pub instants: Vec<Instant>,
    /// Starts with no matching end: closed at an enclosing step's end or at the last tick.
    pub unmatched_starts: u64,
    /// Ends with no matching start (its start was dropped): written as instants.
    pub unmatched_ends: u64,
}

/// A step execution started and not yet ended.
struct Open {
    step: u32,
    start_tick: u64,
    args: Args,
}

/// Pairs the `StepStart` / `StepEnd` events of one thread into spans on thread `tid`, and
/// turns the other events into instants or span arguments. `names` gives a step id's name;
/// ticks become nanoseconds through `ns_per_tick` (see [`ticks_to_ns`]).
///
/// Rules:
/// - Steps nest (a fallback runs inside the failed step): starts go on a stack, and an end
///   closes the nearest open start of the same step. Starts above it that have no end are
///   closed at that end's tick (they cannot have outlived their parent) with the argument
///   `"unterminated": true`. Starts still open after the last event are closed at the
///   **last tick seen** (the greatest tick among `events`), with the same argument. Both count
///   in [`EventTrace::unmatched_starts`].
/// - An end with no open start (its start was dropped by a full ring) becomes an instant
///   named after the step with `"unmatched_end": true`.
/// - A span's arguments: `step_id`, `outcome` (`succeeded`, `failed`, `skipped`,
///   `aborted`), and, when the events say so, `attempts` (the last retry's attempt number),
///   `cache` (`hit` / `miss`), `fallback_to` (the fallback step's name), `breaker`
///   (`rejected`) and `usage` (`denied`).
/// - Instants (category `flujo`, with a `step` argument naming the step): `retry`
///   (`attempt`), `breaker` (`from`, `to`), `breaker rejected`, `fallback` (`to`),
///   `usage denied`; cache hits and misses become instants only outside an open span of
///   their step.
///
/// Spans have category `step`.
///
/// # Panics
///
/// If `ns_per_tick` is negative, NaN or infinite.
///
/// # Examples
///
/// ```
/// use flujo_core::telemetry::{Event, EventKind, StepOutcome};
/// use flujo_runtime::trace::spans_from_events;
///
/// let end = EventKind::StepEnd { outcome: StepOutcome::Succeeded };
/// let events = [
///     Event::new(0, 100, EventKind::StepStart),
///     Event::new(1, 110, EventKind::StepStart),
///     Event::new(1, 150, end),
///     Event::new(0, 200, end),
/// ];
/// let t = spans_from_events(&events, |id| format!("step-{id}"), 3, 1.0);
/// assert_eq!(t.spans.len(), 2);
/// assert_eq!((&*t.spans[0].name, t.spans[0].start_ns, t.spans[0].dur_ns), ("step-1", 110, 40));
/// assert_eq!((&*t.spans[1].name, t.spans[1].start_ns, t.spans[1].dur_ns), ("step-0", 100, 100));
/// assert_eq!(t.spans[1].tid, 3);
/// ```
pub fn spans_from_events(
    events: &[Event],
    names: impl Fn(u32) -> String,
    tid: u32,
    ns_per_tick: f64,
) -> EventTrace {
    let mut out = EventTrace::default();
    let mut stack: Vec<Open> = Vec::new();
    let mut last_tick = 0u64;
    let ns = |tick: u64| ticks_to_ns(tick, ns_per_tick);
    // Ticks in a ring are in order, but the bound on span ends does not rely on it.
    let close = |out: &mut EventTrace, open: Open, end_tick: u64| {
        let start_ns = ns(open.start_tick);
        let end_ns = ns(end_tick.max(open.start_tick));
        out.spans.push(Span {
            name: Cow::Owned(names(open.step)),
            cat: "step",
            tid,
            start_ns,
            dur_ns: end_ns - start_ns,
            args: open.args,
        });
    };
    let instant = |out: &mut EventTrace, e: &Event, name: &'static str, mut args: Args| {
        args.insert(0, ("step", ArgValue::Str(Cow::Owned(names(e.step)))));
        out.instants.push(Instant {
            name: Cow::Borrowed(name),
            cat: "flujo",
            tid,
            ts_ns: ns(e.tick),
            args,
        });
    };
    for e in events {
        last_tick = last_tick.max(e.tick);
        let open_at = stack.iter().rposition(|o| o.step == e.step);
        match e.kind {
            EventKind::StepStart => stack.push(Open {
                step: e.step,
                start_tick: e.tick,
                args: vec![("step_id", ArgValue::U64(u64::from(e.step)))],
            }),
            EventKind::StepEnd { outcome } => {
                let outcome = ("outcome", ArgValue::from(outcome_name(outcome)));
                let Some(at) = open_at else {
                    out.unmatched_ends += 1;
                    let args = vec![outcome, ("unmatched_end", ArgValue::Bool(true))];
                    out.instants.push(Instant {
                        name: Cow::Owned(names(e.step)),
                        cat: "step",
                        tid,
                        ts_ns: ns(e.tick),
                        args,
                    });
                    continue;
                };
                while stack.len() > at + 1 {
                    let mut inner = stack.pop().expect("the stack is longer than at + 1");
                    inner.args.push(("unterminated", ArgValue::Bool(true)));
                    out.unmatched_starts += 1;
                    close(&mut out, inner, e.tick);
                }
                let mut open = stack.pop().expect("the step is open at `at`");
                open.args.push(outcome);
                close(&mut out, open, e.tick);
            }
            EventKind::Retry { attempt } => {
                if let Some(at) = open_at {
                    set_arg(&mut stack[at].args, "attempts", ArgValue::from(attempt));
                }
                instant(&mut out, e, "retry", vec![("attempt", attempt.into())]);
            }
            EventKind::CacheHit | EventKind::CacheMiss => {
                let (value, name) = if e.kind == EventKind::CacheHit {
                    ("hit", "cache hit")
                } else {
                    ("miss", "cache miss")
                };
                match open_at {
                    Some(at) => set_arg(&mut stack[at].args, "cache", value.into()),
                    None => instant(&mut out, e, name, Vec::new()),
                }
            }
            EventKind::BreakerTransition { from, to } => {
                let args = vec![
                    ("from", breaker_name(from).into()),
                    ("to", breaker_name(to).into()),
                ];
                instant(&mut out, e, "breaker", args);
            }
            EventKind::BreakerRejected => {
                if let Some(at) = open_at {
                    set_arg(&mut stack[at].args, "breaker", "rejected".into());
                }
                instant(&mut out, e, "breaker rejected", Vec::new());
            }
            EventKind::Fallback { to_step } => {
                let to = names(to_step);
                if let Some(at) = open_at {
                    set_arg(&mut stack[at].args, "fallback_to", to.clone().into());
                }
                instant(&mut out, e, "fallback", vec![("to", to.into())]);
            }
            EventKind::UsageDenied => {
                if let Some(at) = open_at {
                    set_arg(&mut stack[at].args, "usage", "denied".into());
                }
                instant(&mut out, e, "usage denied", Vec::new());
            }
        }
    }
    while let Some(mut open) = stack.pop() {
        open.args.push(("unterminated", ArgValue::Bool(true)));
        out.unmatched_starts += 1;
        close(&mut out, open, last_tick);
    }
    out
}

/// Sets `key` to `value`, replacing an earlier value of the key.
fn set_arg(args: &mut Args, key: &'static str, value: ArgValue) {
    match args.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => *v = value,
        None => args.push((key, value)),
    }
}

/// The lowercase name of a step outcome.
fn outcome_name(outcome: StepOutcome) -> &'static str {
    match outcome {
        StepOutcome::Succeeded => "succeeded",
        StepOutcome::Failed => "failed",
        StepOutcome::Skipped => "skipped",
        StepOutcome::Aborted => "aborted",
    }
}

/// The lowercase name of a breaker state.
fn breaker_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half-open",
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
