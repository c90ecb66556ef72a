use std::borrow::Cow;

use serde_json::Value;

use super::*;

/// Parses a writer's output, asserting it is JSON with the expected top-level shape.
fn parse(trace: &TraceWriter) -> Value {
    let json = trace.to_json_string();
    let v: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["displayTimeUnit"], "ns");
    assert!(v["traceEvents"].is_array());
    v
}

/// The events of phase `ph`, in order.
fn phase<'v>(v: &'v Value, ph: &str) -> Vec<&'v Value> {
    v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == ph)
        .collect()
}

/// Microseconds as written back to nanoseconds (the writer writes exactly three decimals).
fn ns(us: &Value) -> u64 {
    let us = us.as_f64().unwrap();
    (us * 1_000.0).round() as u64
}

/// The JSON form of an argument value.
fn arg_json(value: &ArgValue) -> Value {
    match value {
        ArgValue::U64(v) => Value::from(*v),
        ArgValue::I64(v) => Value::from(*v),
        ArgValue::F64(v) if v.is_finite() => Value::from(*v),
        ArgValue::F64(_) => Value::Null,
        ArgValue::Bool(v) => Value::from(*v),
        ArgValue::Str(s) => Value::from(s.as_ref()),
    }
}

fn assert_args(json: &Value, args: &Args) {
    let obj = json.as_object().unwrap();
    assert_eq!(obj.len(), args.len(), "{json}");
    for (key, value) in args {
        assert_eq!(obj[*key], arg_json(value), "argument {key}");
    }
}

const TRICKY: [&str; 6] = [
    "say \"hi\"",
    "back\\slash\\",
    "line\nbreak\r\ttab",
    "ünïcødé → 步骤 🚀",
    "\u{0}\u{1}\u{1f}\u{7f} controls",
    "",
];

#[test]
fn nested_spans_with_tricky_names_round_trip() {
    let mut trace = TraceWriter::new(10).with_pid(42);
    trace.process_name("flujo \"test\"");
    trace.thread_name(0, "worker\n0");
    trace.thread_name(7, "wörker 7");
    let mut spans = Vec::new();
    // An outer span on thread 0 with the tricky names nested inside it, one per level.
    for (depth, name) in TRICKY.iter().enumerate() {
        let depth = depth as u64;
        spans.push(Span {
            name: Cow::Owned((*name).to_owned()),
            cat: "step",
            tid: (depth % 2) as u32 * 7,
            start_ns: 1_000_000_007 + depth * 10,
            dur_ns: 5_000 - depth * 20,
            args: vec![
                ("depth", ArgValue::U64(depth)),
                ("neg", ArgValue::I64(-(depth as i64) - 1)),
                ("ratio", ArgValue::F64(0.1 + depth as f64)),
                ("odd", ArgValue::Bool(depth % 2 == 1)),
                (
                    "label",
                    ArgValue::Str(Cow::Borrowed(TRICKY[5 - depth as usize])),
                ),
            ],
        });
    }
    spans.push(Span {
        name: "huge".into(),
        cat: "c\"at",
        tid: u32::MAX,
        start_ns: u64::MAX,
        dur_ns: 0,
        args: vec![
            ("max", ArgValue::U64(u64::MAX)),
            ("min", ArgValue::I64(i64::MIN)),
        ],
    });
    for span in &spans {
        assert!(trace.span(span.clone()));
    }
    let instant = Instant {
        name: "retry \"2\"".into(),
        cat: "flujo",
        tid: 7,
        ts_ns: 999,
        args: vec![("attempt", ArgValue::U64(2))],
    };
    assert!(trace.instant(instant.clone()));
    // At the bound (7 spans + 1 instant of 10): two more fit, the rest are counted.
    for i in 0..5u64 {
        let mut s = spans[0].clone();
        s.start_ns = i;
        trace.span(s);
    }
    for _ in 0..3 {
        trace.instant(instant.clone());
    }
    assert_eq!(trace.spans().len(), 9);
    assert_eq!(trace.instants().len(), 1);
    assert_eq!(trace.dropped_spans(), 3);
    assert_eq!(trace.dropped_instants(), 3);
    assert!(trace.is_full());

    let v = parse(&trace);
    assert_eq!(v["otherData"]["dropped_spans"], 3);
    assert_eq!(v["otherData"]["dropped_instants"], 3);
    assert_eq!(v["otherData"]["max_records"], 10);

    let meta = phase(&v, "M");
    assert_eq!(meta.len(), 3);
    assert_eq!(meta[0]["name"], "process_name");
    assert_eq!(meta[0]["args"]["name"], "flujo \"test\"");
    assert_eq!(meta[1]["name"], "thread_name");
    assert_eq!(
        (&meta[1]["tid"], &meta[1]["args"]["name"]),
        (&0.into(), &"worker\n0".into())
    );
    assert_eq!(
        (&meta[2]["tid"], &meta[2]["args"]["name"]),
        (&7.into(), &"wörker 7".into())
    );

    let complete = phase(&v, "X");
    assert_eq!(complete.len(), trace.spans().len());
    for (json, span) in complete.iter().zip(trace.spans()) {
        assert_eq!(json["name"], span.name.as_ref());
        assert_eq!(json["cat"], span.cat);
        assert_eq!(json["tid"], span.tid);
        assert_eq!(json["pid"], 42);
        if span.start_ns < 1 << 50 {
            // Exactly representable as microseconds in an f64.
            assert_eq!(ns(&json["ts"]), span.start_ns, "{json}");
        }
        assert_eq!(ns(&json["dur"]), span.dur_ns);
        assert_args(&json["args"], &span.args);
    }
    // Huge timestamps are exact in the text even where an f64 is not.
    assert!(trace.to_json_string().contains(&format!(
        "\"ts\":{}.{:03}",
        u64::MAX / 1000,
        u64::MAX % 1000
    )));

    let inst = phase(&v, "i");
    assert_eq!(inst.len(), 1);
    assert_eq!(inst[0]["s"], "t");
    assert_eq!(inst[0]["name"], "retry \"2\"");
    assert_eq!(ns(&inst[0]["ts"]), 999);
    assert_eq!(inst[0]["tid"], 7);
    assert_args(&inst[0]["args"], &instant.args);
}

#[test]
fn every_control_character_and_generated_strings_round_trip() {
    let controls: String = (0u8..0x20).chain([0x7f]).map(char::from).collect();
    let mut trace = TraceWriter::new(1000);
    trace.thread_name(1, controls.clone());
    // Strings drawn from a small alphabet of troublesome characters.
    let alphabet = [
        '"', '\\', '\n', '\u{1}', 'a', 'é', '步', '🚀', '/', '\u{2028}',
    ];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut names = Vec::new();
    let count = if cfg!(miri) { 20 } else { 300 };
    for _ in 0..count {
        let mut s = String::new();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        for k in 0..(seed >> 60) {
            s.push(alphabet[((seed >> (k * 3)) % 10) as usize]);
        }
        names.push(s);
    }
    for (i, name) in names.iter().enumerate() {
        trace.span(Span {
            name: Cow::Owned(name.clone()),
            cat: "gen",
            tid: 1,
            start_ns: i as u64,
            dur_ns: 1,
            args: vec![("copy", ArgValue::Str(Cow::Owned(name.clone())))],
        });
    }
    let text = trace.to_json_string();
    // Control characters are written as \u00XX, never raw.
    assert!(text.contains("\\u0000\\u0001"));
    assert!(text.contains("\\u000a\\u000b"));
    assert!(text.contains("\\u007f"));
    assert!(!text.bytes().any(|b| b < 0x20 || b == 0x7f));
    let v = parse(&trace);
    assert_eq!(phase(&v, "M")[0]["args"]["name"], controls.as_str());
    let complete = phase(&v, "X");
    assert_eq!(complete.len(), names.len());
    for (json, name) in complete.iter().zip(&names) {
        assert_eq!(json["name"], name.as_str());
        assert_eq!(json["args"]["copy"], name.as_str());
    }
}

#[test]
fn empty_trace_and_non_finite_floats_are_valid_json() {
    let mut trace = TraceWriter::new(0);
    let v = parse(&trace);
    assert_eq!(v["traceEvents"].as_array().unwrap().len(), 0);
    assert_eq!(v["otherData"]["dropped_spans"], 0);
    assert!(!trace.instant(Instant {
        name: "x".into(),
        cat: "c",
        tid: 0,
        ts_ns: 0,
        args: Vec::new(),
    }));
    assert_eq!(parse(&trace)["otherData"]["dropped_instants"], 1);

    let mut trace = TraceWriter::new(1);
    trace.span(Span {
        name: "floats".into(),
        cat: "c",
        tid: 0,
        start_ns: 0,
        dur_ns: 0,
        args: vec![
            ("nan", ArgValue::F64(f64::NAN)),
            ("inf", ArgValue::F64(f64::NEG_INFINITY)),
            ("big", ArgValue::F64(1e300)),
            ("tiny", ArgValue::F64(-1e-300)),
        ],
    });
    let v = parse(&trace);
    let args = &phase(&v, "X")[0]["args"];
    assert!(args["nan"].is_null() && args["inf"].is_null());
    assert_eq!(args["big"].as_f64(), Some(1e300));
    assert_eq!(args["tiny"].as_f64(), Some(-1e-300));
}

#[test]
fn write_json_reports_the_writers_error() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let err = TraceWriter::new(4).write_json(Broken).unwrap_err();
    assert_eq!(err.to_string(), "disk full");
}

fn end(outcome: StepOutcome) -> EventKind {
    EventKind::StepEnd { outcome }
}

fn name(id: u32) -> String {
    format!("s{id}")
}

fn arg<'a>(args: &'a Args, key: &str) -> Option<&'a ArgValue> {
    args.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

#[test]
fn events_pair_into_nested_spans_with_their_details() {
    let events = [
        Event::new(0, 100, EventKind::StepStart),
        Event::new(0, 101, EventKind::CacheMiss),
        Event::new(0, 120, EventKind::Retry { attempt: 2 }),
        Event::new(0, 130, EventKind::Retry { attempt: 3 }),
        Event::new(0, 140, EventKind::Fallback { to_step: 5 }),
        Event::new(5, 141, EventKind::StepStart),
        Event::new(5, 160, end(StepOutcome::Succeeded)),
        Event::new(0, 161, end(StepOutcome::Succeeded)),
        Event::new(
            2,
            170,
            EventKind::BreakerTransition {
                from: BreakerState::Closed,
                to: BreakerState::Open,
            },
        ),
        Event::new(2, 171, EventKind::StepStart),
        Event::new(2, 171, EventKind::BreakerRejected),
        Event::new(2, 172, end(StepOutcome::Failed)),
        Event::new(3, 180, EventKind::CacheHit), // outside any span of step 3
        Event::new(4, 190, EventKind::StepStart),
        Event::new(4, 191, EventKind::UsageDenied),
        Event::new(4, 192, end(StepOutcome::Aborted)),
    ];
    let t = spans_from_events(&events, name, 9, 2.0);
    assert_eq!((t.unmatched_starts, t.unmatched_ends), (0, 0));
    let spans: Vec<(&str, u64, u64)> = t
        .spans
        .iter()
        .map(|s| (s.name.as_ref(), s.start_ns, s.dur_ns))
        .collect();
    // Ticks are doubled into nanoseconds; inner spans end first.
    assert_eq!(
        spans,
        [
            ("s5", 282, 38),
            ("s0", 200, 122),
            ("s2", 342, 2),
            ("s4", 380, 4)
        ]
    );
    assert!(t.spans.iter().all(|s| s.tid == 9 && s.cat == "step"));
    let outer = &t.spans[1].args;
    assert_eq!(arg(outer, "step_id"), Some(&ArgValue::U64(0)));
    assert_eq!(arg(outer, "cache"), Some(&ArgValue::from("miss")));
    assert_eq!(arg(outer, "attempts"), Some(&ArgValue::U64(3)));
    assert_eq!(arg(outer, "fallback_to"), Some(&ArgValue::from("s5")));
    assert_eq!(arg(outer, "outcome"), Some(&ArgValue::from("succeeded")));
    assert_eq!(arg(outer, "unterminated"), None);
    assert_eq!(
        arg(&t.spans[2].args, "breaker"),
        Some(&ArgValue::from("rejected"))
    );
    assert_eq!(
        arg(&t.spans[2].args, "outcome"),
        Some(&ArgValue::from("failed"))
    );
    assert_eq!(
        arg(&t.spans[3].args, "usage"),
        Some(&ArgValue::from("denied"))
    );
    assert_eq!(
        arg(&t.spans[3].args, "outcome"),
        Some(&ArgValue::from("aborted"))
    );

    let instants: Vec<(&str, u64)> = t
        .instants
        .iter()
        .map(|i| (i.name.as_ref(), i.ts_ns))
        .collect();
    assert_eq!(
        instants,
        [
            ("retry", 240),
            ("retry", 260),
            ("fallback", 280),
            ("breaker", 340),
            ("breaker rejected", 342),
            ("cache hit", 360),
            ("usage denied", 382),
        ]
    );
    assert_eq!(arg(&t.instants[1].args, "attempt"), Some(&ArgValue::U64(3)));
    assert_eq!(arg(&t.instants[2].args, "to"), Some(&ArgValue::from("s5")));
    assert_eq!(
        arg(&t.instants[3].args, "from"),
        Some(&ArgValue::from("closed"))
    );
    assert_eq!(
        arg(&t.instants[3].args, "to"),
        Some(&ArgValue::from("open"))
    );
    assert_eq!(
        arg(&t.instants[5].args, "step"),
        Some(&ArgValue::from("s3"))
    );
    assert!(t.instants.iter().all(|i| i.tid == 9));

    // The writer takes it all, and the result is a valid trace.
    let mut trace = TraceWriter::new(100);
    trace.extend(t.clone());
    assert_eq!(trace.spans(), &t.spans[..]);
    assert_eq!(trace.instants(), &t.instants[..]);
    let v = parse(&trace);
    assert_eq!(phase(&v, "X").len(), 4);
    assert_eq!(phase(&v, "i").len(), 7);
}

#[test]
fn unmatched_starts_and_ends_are_closed_and_counted() {
    let events = [
        Event::new(7, 5, end(StepOutcome::Failed)), // its start was dropped
        Event::new(0, 10, EventKind::StepStart),
        Event::new(1, 20, EventKind::StepStart), // never ends: closed at s0's end
        Event::new(2, 25, EventKind::StepStart), // never ends: closed at s0's end
        Event::new(0, 40, end(StepOutcome::Succeeded)),
        Event::new(0, 50, EventKind::StepStart), // same step again, never ends
        Event::new(3, 60, EventKind::StepStart),
        Event::new(3, 70, end(StepOutcome::Skipped)),
        Event::new(4, 90, EventKind::CacheHit), // the last tick seen
    ];
    let t = spans_from_events(&events, name, 0, 1.0);
    assert_eq!(t.unmatched_ends, 1);
    assert_eq!(t.unmatched_starts, 3);
    let spans: Vec<(&str, u64, u64, bool)> = t
        .spans
        .iter()
        .map(|s| {
            let unterminated = arg(&s.args, "unterminated") == Some(&ArgValue::Bool(true));
            (s.name.as_ref(), s.start_ns, s.dur_ns, unterminated)
        })
        .collect();
    assert_eq!(
        spans,
        [
            ("s2", 25, 15, true),
            ("s1", 20, 20, true),
            ("s0", 10, 30, false),
            ("s3", 60, 10, false),
            ("s0", 50, 40, true), // closed at the last tick, 90
        ]
    );
    assert_eq!(t.instants[0].name, "s7");
    assert_eq!(t.instants[0].ts_ns, 5);
    assert_eq!(
        arg(&t.instants[0].args, "unmatched_end"),
        Some(&ArgValue::Bool(true))
    );
    assert_eq!(
        arg(&t.instants[0].args, "outcome"),
        Some(&ArgValue::from("failed"))
    );
    assert_eq!(t.instants[1].name, "cache hit");
    assert_eq!(spans_from_events(&[], name, 0, 1.0), EventTrace::default());
}

#[test]
fn ticks_convert_to_nanoseconds() {
    assert_eq!(ticks_to_ns(u64::MAX, 1.0), u64::MAX);
    assert_eq!(ticks_to_ns(1_000, 0.25), 250);
    assert_eq!(ticks_to_ns(3, 1.0 / 3.0), 1);
    assert_eq!(ticks_to_ns(u64::MAX, 2.0), u64::MAX); // saturates
    assert_eq!(ticks_to_ns(123, 0.0), 0);
}

#[test]
#[should_panic(expected = "ns_per_tick")]
fn ticks_reject_a_negative_rate() {
    ticks_to_ns(1, -1.0);
}
