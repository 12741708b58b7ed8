//! Fuzz-style property tests (issue 14, item 9): random and mutated bytes fed to the
//! expression parser, the field-path parser, the CSV reader (block decoder and
//! inference) and the JSON-lines readers (bag and frame). Each must answer or give
//! an error, never panic, never hang, and never report a bug in itself ("internal
//! error": the scheduler turns a task's panic into one).

use std::sync::mpsc;
use std::time::Duration;

use outcore::bag::{FieldPath, RecordExpr};
use outcore::scheduler::Mode;
use proptest::prelude::*;

use crate::common::*;

/// Runs `f` on another thread; fails the test if it takes longer than `secs` (a
/// hang) or panics.
fn bounded<T: Send + 'static>(what: &str, secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer in {secs} s (a hang)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

fn no_bug<T>(what: &str, r: &outcore::Result<T>) {
    if let Err(e) = r {
        let msg = e.to_string();
        assert!(!msg.contains("this is a bug"), "{what}: {msg}");
    }
}

/// Valid inputs to mutate.
const EXPRS: &[&str] = &[
    "x > 1 and y <= 2.5",
    "name == 'Oslo' or not (a != b)",
    "(x + y) * 3 - z / 2 as total",
    "timestamp >= '2000-01-01 00:00' and x.isnull()",
    "abs(x) + cast(y as float64)",
    "address.city == \"Bergen\" and age > 30",
];
const PATHS: &[&str] = &[
    "a",
    "a.b.c",
    "transactions[].amount",
    "x[0].y",
    "a[]",
    "\"q\".b",
];

/// A valid input with random edits: delete, insert or replace characters.
fn mutated(bases: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        0..bases.len(),
        proptest::collection::vec((any::<u8>(), any::<usize>(), any::<char>()), 0..6),
    )
        .prop_map(move |(i, edits)| {
            let mut s: Vec<char> = bases[i].chars().collect();
            for (kind, at, c) in edits {
                let at = at % (s.len() + 1);
                match kind % 3 {
                    0 if at < s.len() => {
                        s.remove(at);
                    }
                    1 => s.insert(at, c),
                    _ if at < s.len() => s[at] = c,
                    _ => s.push(c),
                }
            }
            s.into_iter().collect()
        })
}

/// Strings over the characters that matter to the parsers, plus any char.
fn tokens() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::sample::select(vec![
                "x", "1", "2.5e3", "'", "\"", "(", ")", "[", "]", ".", ",", " ", "and", "or",
                "not", "==", ">", "<=", "!=", "+", "-", "*", "/", "as", "cast", "isnull",
                "\\", "e", "[]", "..",
            ])
            .prop_map(String::from),
            1 => any::<char>().prop_map(String::from),
        ],
        0..24,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn expression_and_path_parsers_never_panic(
        a in mutated(EXPRS),
        b in tokens(),
        p in mutated(PATHS),
    ) {
        for s in [&a, &b] {
            no_bug("parse", &outcore::expr::parse(s));
            no_bug("RecordExpr::parse", &RecordExpr::parse(s));
        }
        for s in [&p, &b] {
            no_bug("FieldPath::parse", &FieldPath::parse(s));
        }
    }
}

/// A CSV text with random edits (bytes: quotes, delimiters, line ends, invalid
/// UTF-8 and anything else).
fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
    let base = "id,name,x,when\n1,a,1.5,2000-01-01 00:00\n2,\"b,c\",2,2000-01-02\n3,\"q\"\"\",,\n4,d,-3e2,2000-01-03 12:00\n";
    proptest::collection::vec(
        (
            any::<usize>(),
            prop_oneof![
                Just(b'"'),
                Just(b','),
                Just(b'\n'),
                Just(b'\r'),
                Just(0xffu8),
                Just(b'1'),
                any::<u8>()
            ],
            0..3u8,
        ),
        0..12,
    )
    .prop_map(move |edits| mutate(base, edits))
}

fn json_bytes() -> impl Strategy<Value = Vec<u8>> {
    let base = "{\"a\": 1, \"b\": {\"c\": [1, 2.5, \"x\"]}, \"d\": null}\n{\"a\": -2e3, \"b\": {\"c\": []}, \"e\": \"\\u00e9\"}\n[1, 2]\n\"s\"\n{\"a\": true}\n";
    proptest::collection::vec(
        (
            any::<usize>(),
            prop_oneof![
                Just(b'{'),
                Just(b'}'),
                Just(b'"'),
                Just(b'\n'),
                Just(b'\\'),
                Just(b','),
                Just(0xc3u8),
                any::<u8>()
            ],
            0..3u8,
        ),
        0..12,
    )
    .prop_map(move |edits| mutate(base, edits))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, failure_persistence: None, ..ProptestConfig::default() })]

    /// Mutated CSV through inference and the block decoder, at several block sizes.
    #[test]
    fn csv_reader_never_panics_or_hangs(bytes in csv_bytes(), blocksize in 1u64..64) {
        bounded("read_csv", 60, move || {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.csv");
            std::fs::write(&path, &bytes).unwrap();
            let s = session(2, Mode::Parallel, blocksize);
            let df = s.read_csv(path.to_str().unwrap()).load();
            no_bug("load", &df);
            if let Ok(df) = df {
                no_bug("compute", &df.compute());
            }
        });
    }

    /// Mutated JSON lines through the bag reader (records, plucks) and the frame
    /// reader.
    #[test]
    fn json_readers_never_panic_or_hang(bytes in json_bytes(), blocksize in 1u64..64) {
        bounded("read_json", 60, move || {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.jsonl");
            std::fs::write(&path, &bytes).unwrap();
            let s = session(2, Mode::Parallel, blocksize);
            let f = path.to_str().unwrap();
            if let Ok(bag) = s.read_json(f).load() {
                no_bug("bag compute", &bag.compute());
                if let Ok(p) = bag.pluck("b.c") {
                    no_bug("bag pluck", &p.compute());
                }
            }
            let frame = s.read_json_frame(f).load();
            no_bug("frame load", &frame);
            if let Ok(df) = frame {
                no_bug("frame compute", &df.compute());
            }
        });
    }
}

/// `base` with `edits` applied: (position, byte, 0 = delete / 1 = insert / else
/// overwrite), positions taken modulo the length so every edit lands.
fn mutate(base: &str, edits: Vec<(usize, u8, u8)>) -> Vec<u8> {
    let mut s = base.as_bytes().to_vec();
    for (at, byte, kind) in edits {
        let at = at % (s.len() + 1);
        match kind {
            0 if at < s.len() => {
                s.remove(at);
            }
            1 => s.insert(at, byte),
            _ if at < s.len() => s[at] = byte,
            _ => s.push(byte),
        }
    }
    s
}
