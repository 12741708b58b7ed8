//! Walking a JSON line without a parser's machinery. The readers that build only
//! part of each record ([`super::project`], [`super::extract`]) step through the
//! line's structure here: objects key by key, lists item by item, skipping every
//! value they do not need with byte loops (eight string bytes at a time), and
//! building only the values they do.
//!
//! The scanner checks everything it passes over, so it never accepts a line that
//! `serde_json` rejects: a line it cannot vouch for, because it is not JSON or
//! because it nests past [`MAX_DEPTH`], gives [`Bail`]. The caller then parses the
//! line whole with `serde_json`, which gives the error (the same message as
//! before) or the record. Values that are built come from `serde_json` too (on
//! their own bytes) unless they are plain: a string without escapes, an integer of
//! up to 18 digits, a float in range (by lexical-core, which rounds as
//! serde_json's `float_roundtrip` does), `true`, `false` or `null`. Escaped keys
//! are decoded by `serde_json`, and strings with `\u` surrogates checked by it.

use std::borrow::Cow;

use serde_json::Value as J;

/// The scanner leaves this line to `serde_json`: it is not valid JSON, or is JSON
/// the scanner does not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bail;

pub(crate) type Scanned<T> = Result<T, Bail>;

/// How deep lists and objects may nest before the line is left to `serde_json`
/// (whose own limit is 128).
pub(crate) const MAX_DEPTH: u32 = 100;

/// A cursor in one line.
pub(crate) struct Scan<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    depth: u32,
}

/// What the next value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Object,
    List,
    Scalar,
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` below `n` (`n` ≤ 128); the lowest set bit is
/// always a true one (only bytes above a true one can be marked falsely).
#[inline]
fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(LO * u64::from(n)) & !w & HI
}

/// The high bit of each byte of `w` equal to `c` (lowest set bit true, as above).
#[inline]
fn equal(w: u64, c: u8) -> u64 {
    below(w ^ (LO * u64::from(c)), 1)
}

impl<'a> Scan<'a> {
    /// A cursor at the start of `line`, which must be UTF-8 (else [`Bail`]: the
    /// strings the scanner skips are not checked one by one).
    pub(crate) fn new(line: &'a [u8]) -> Scanned<Self> {
        let text = std::str::from_utf8(line).map_err(|_| Bail)?;
        Ok(Scan {
            text,
            b: line,
            i: 0,
            depth: 0,
        })
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte after whitespace, not taken.
    #[inline]
    fn peek(&mut self) -> Scanned<u8> {
        self.ws();
        self.b.get(self.i).copied().ok_or(Bail)
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Scanned<()> {
        if self.peek()? != c {
            return Err(Bail);
        }
        self.i += 1;
        Ok(())
    }

    /// Only whitespace is left.
    pub(crate) fn finish(mut self) -> Scanned<()> {
        self.ws();
        if self.i == self.b.len() {
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// What the next value is.
    pub(crate) fn kind(&mut self) -> Scanned<Kind> {
        Ok(match self.peek()? {
            b'{' => Kind::Object,
            b'[' => Kind::List,
            _ => Kind::Scalar,
        })
    }

    fn enter(&mut self) -> Scanned<()> {
        self.depth += 1;
        self.i += 1;
        if self.depth > MAX_DEPTH {
            return Err(Bail);
        }
        Ok(())
    }

    /// Steps into the object next (its `{`); then [`Scan::key`] gives its keys.
    pub(crate) fn open_object(&mut self) -> Scanned<()> {
        if self.peek()? != b'{' {
            return Err(Bail);
        }
        self.enter()
    }

    /// The object's next key (its `:` taken, the cursor before its value), or
    /// `None` after its `}`. `first` for the first call on an object.
    pub(crate) fn key(&mut self, first: bool) -> Scanned<Option<Cow<'a, str>>> {
        match self.peek()? {
            b'}' => {
                self.i += 1;
                self.depth -= 1;
                return Ok(None);
            }
            b',' if !first => {
                self.i += 1;
                if self.peek()? != b'"' {
                    return Err(Bail);
                }
            }
            b'"' if first => {}
            _ => return Err(Bail),
        }
        let start = self.i + 1;
        let (end, escaped) = self.string()?;
        self.expect(b':')?;
        // Between two ASCII quotes: whole characters.
        let text = &self.text[start..end];
        if !escaped {
            return Ok(Some(Cow::Borrowed(text)));
        }
        let decoded = serde_json::from_str(&self.text[start - 1..end + 1]).map_err(|_| Bail)?;
        Ok(Some(Cow::Owned(decoded)))
    }

    /// Steps into the list next (its `[`); then [`Scan::item`] moves along it.
    pub(crate) fn open_list(&mut self) -> Scanned<()> {
        if self.peek()? != b'[' {
            return Err(Bail);
        }
        self.enter()
    }

    /// Whether the list has another item (the cursor then before it); `false`
    /// after its `]`. `first` for the first call on a list.
    pub(crate) fn item(&mut self, first: bool) -> Scanned<bool> {
        match self.peek()? {
            b']' => {
                self.i += 1;
                self.depth -= 1;
                Ok(false)
            }
            b',' if !first => {
                self.i += 1;
                Ok(true)
            }
            _ if first => Ok(true),
            _ => Err(Bail),
        }
    }

    /// Passes over the string whose opening quote is at the cursor, checking its
    /// escapes; returns where its closing quote is and whether it has escapes.
    fn string(&mut self) -> Scanned<(usize, bool)> {
        let b = self.b;
        let mut i = self.i + 1;
        let mut escaped = false;
        let mut surrogate = false;
        loop {
            while let Some(chunk) = b.get(i..i + 8) {
                let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
                let m = equal(w, b'"') | equal(w, b'\\') | below(w, 0x20);
                if m != 0 {
                    i += (m.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            match *b.get(i).ok_or(Bail)? {
                b'"' => {
                    if surrogate && serde_json::from_slice::<String>(&b[self.i..=i]).is_err() {
                        return Err(Bail);
                    }
                    self.i = i + 1;
                    return Ok((i, escaped));
                }
                b'\\' => {
                    escaped = true;
                    i += 1;
                    match *b.get(i).ok_or(Bail)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 1,
                        b'u' => {
                            let hex = b.get(i + 1..i + 5).ok_or(Bail)?;
                            let mut code = 0u32;
                            for &h in hex {
                                code = code * 16 + (h as char).to_digit(16).ok_or(Bail)?;
                            }
                            // Surrogates are valid only in pairs: serde_json checks.
                            surrogate |= (0xD800..0xE000).contains(&code);
                            i += 5;
                        }
                        _ => return Err(Bail),
                    }
                }
                c if c < 0x20 => return Err(Bail),
                _ => i += 1,
            }
        }
    }

    /// Passes over the number at the cursor, checking its form
    /// (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`); returns whether it is
    /// an integer.
    fn number(&mut self) -> Scanned<bool> {
        let b = self.b;
        let mut i = self.i;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - from
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return Err(Bail),
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            integer = false;
            if digits(&mut i) == 0 {
                return Err(Bail);
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            integer = false;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return Err(Bail);
            }
        }
        self.i = i;
        Ok(integer)
    }

    fn literal(&mut self, word: &[u8]) -> Scanned<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// Passes over the next value, checking it.
    pub(crate) fn skip(&mut self) -> Scanned<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => {
                self.open_object()?;
                let mut first = true;
                while self.key(first)?.is_some() {
                    first = false;
                    self.skip()?;
                }
                Ok(())
            }
            b'[' => {
                self.open_list()?;
                let mut first = true;
                while self.item(first)? {
                    first = false;
                    self.skip()?;
                }
                Ok(())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => {
                let start = self.i;
                self.number()?;
                // serde_json refuses a number past f64's range ("number out of
                // range") even where nothing reads it: one with an exponent or
                // of 300 digits or more is built to check (rare, so cheap).
                let text = &self.b[start..self.i];
                let wide = text.len() >= 300 || text.iter().any(|&c| c == b'e' || c == b'E');
                if wide && float(text).is_none() {
                    return Err(Bail);
                }
                Ok(())
            }
        }
    }

    /// Builds the next value, as `serde_json` would.
    pub(crate) fn value(&mut self) -> Scanned<J> {
        let start = match self.peek()? {
            b'"' => {
                let start = self.i + 1;
                let (end, escaped) = self.string()?;
                if !escaped {
                    return Ok(J::String(self.text[start..end].to_owned()));
                }
                start - 1
            }
            b't' => return self.literal(b"true").map(|()| J::Bool(true)),
            b'f' => return self.literal(b"false").map(|()| J::Bool(false)),
            b'n' => return self.literal(b"null").map(|()| J::Null),
            b'{' | b'[' => {
                let start = self.i;
                self.skip()?;
                start
            }
            _ => {
                let start = self.i;
                let integer = self.number()?;
                let text = &self.b[start..self.i];
                let built = if integer {
                    small_integer(text)
                } else {
                    float(text)
                };
                if let Some(v) = built {
                    return Ok(v);
                }
                start
            }
        };
        serde_json::from_slice(&self.b[start..self.i]).map_err(|_| Bail)
    }
}

/// An integer of up to 18 digits (so it fits an `i64`) as `serde_json` builds it:
/// `None` for `-0` (a float there) and longer ones.
fn small_integer(text: &[u8]) -> Option<J> {
    let (negative, digits) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, text),
    };
    if digits.len() > 18 {
        return None;
    }
    let n = digits
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    match (negative, n) {
        (true, 0) => None,
        (true, n) => Some(J::from(-n)),
        (false, n) => Some(J::from(n as u64)),
    }
}

/// A number with a fraction or an exponent, as `serde_json` builds it: both round
/// correctly (serde_json's `float_roundtrip`), so they agree. `None` for one out of
/// range, which serde_json refuses.
fn float(text: &[u8]) -> Option<J> {
    let x = lexical_core::parse::<f64>(text).ok()?;
    serde_json::Number::from_f64(x).map(J::Number)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Numbers past f64's range are refused when skipped too, as serde_json
    /// refuses them (a proptest found `[1E400]` taken as an empty projection).
    #[test]
    fn skipped_numbers_out_of_range_are_refused() {
        let long = format!("[{}]", "9".repeat(310));
        let fine = format!("[{}]", "9".repeat(299));
        for line in ["[1E400]", "{\"a\": -2e308}", "[1e999, 1]", long.as_str()] {
            assert!(serde_json::from_str::<J>(line).is_err(), "{line}");
            assert!(!takes(line.as_bytes()), "{line}");
        }
        for line in ["[1e-400]", "[1.5E300]", "{\"a\": -1e308}", fine.as_str()] {
            assert!(serde_json::from_str::<J>(line).is_ok(), "{line}");
            assert!(takes(line.as_bytes()), "{line}");
        }
    }

    /// Whether the scanner takes `line` as one valid value.
    fn takes(line: &[u8]) -> bool {
        let Ok(mut s) = Scan::new(line) else {
            return false;
        };
        s.skip().is_ok() && s.finish().is_ok()
    }

    /// The value the scanner builds of `line`.
    fn built(line: &[u8]) -> Scanned<J> {
        let mut s = Scan::new(line)?;
        let v = s.value()?;
        s.finish()?;
        Ok(v)
    }

    #[test]
    fn it_takes_what_serde_json_takes_and_builds_the_same() {
        let good: &[&[u8]] = &[
            br#"{"a": 1, "b": [true, false, null, -0, -0.0, 1e5, 2E-3, 0.25], "c": {}}"#,
            br#"  [ ] "#,
            br#""\" \\ \/ \b \f \n \r \t \u00e9 \u20ac""#,
            b"\"caf\xc3\xa9\"",
            b"123456789012345678",
            b"1234567890123456789",
            b"-123456789012345678",
            b"18446744073709551616",
            b"-9223372036854775809",
            br#"{"k": "v", "k": [1, {"x": []}]}"#,
        ];
        for line in good {
            assert!(takes(line), "{}", String::from_utf8_lossy(line));
            let whole: J = serde_json::from_slice(line).unwrap();
            assert_eq!(built(line), Ok(whole), "{}", String::from_utf8_lossy(line));
        }
        let bad: &[&[u8]] = &[
            b"",
            b"{",
            b"{\"a\" 1}",
            b"{\"a\": 1,}",
            b"[1,]",
            b"[,1]",
            b"01",
            b"1.",
            b".5",
            b"-",
            b"1e",
            b"1e+",
            b"+1",
            b"nul",
            b"truex",
            b"\"a\x01\"",
            b"\"\\x\"",
            b"\"\\u12g4\"",
            b"\"abc",
            b"{} x",
            b"{1: 2}",
            b"\"\xff\"",
        ];
        for line in bad {
            assert!(serde_json::from_slice::<J>(line).is_err());
            assert!(!takes(line), "{}", String::from_utf8_lossy(line));
        }
        // Surrogates in pairs, escaped keys; lone surrogates are refused.
        for line in [&br#"["\ud83d\ude00", {"\u0061\n": 1}]"#[..]] {
            let whole: J = serde_json::from_slice(line).unwrap();
            assert!(takes(line));
            assert_eq!(built(line), Ok(whole));
        }
        for line in [&br#""\ud83d""#[..], br#""\ude00 x""#, br#"{"\ud83d": 1}"#] {
            assert!(serde_json::from_slice::<J>(line).is_err());
            assert!(!takes(line));
        }
        let deep = format!("{}{}", "[".repeat(101), "]".repeat(101));
        assert!(!takes(deep.as_bytes()));
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(takes(ok.as_bytes()));
    }

    /// Random text near JSON: records with random spacing, then bytes changed.
    pub(crate) fn near_json() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            (-20i64..20).prop_map(|n| n.to_string()),
            "-?[0-9]{1,3}(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
            "\"([a-z ]|\\\\[nt\"/]|\\\\u00e9|\\\\ud83d(\\\\ude00)?|é){0,10}\"",
        ];
        let value = leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(" ,"))),
                proptest::collection::vec(("[ab]{1,2}", inner), 0..4).prop_map(|v| {
                    let fields: Vec<String> =
                        v.into_iter().map(|(k, x)| format!("\"{k}\":{x}")).collect();
                    format!("{{ {} }}", fields.join(","))
                }),
            ]
        });
        let edit = (
            any::<proptest::sample::Index>(),
            prop_oneof![
                Just(None),
                proptest::sample::select(b"{}[],:\"\\0-.e x\x01".to_vec()).prop_map(Some),
            ],
            0u8..3,
        );
        (value, proptest::collection::vec(edit, 0..3)).prop_map(|(text, edits)| {
            let mut b = text.into_bytes();
            for (at, byte, how) in edits {
                if b.is_empty() {
                    break;
                }
                let i = at.index(b.len());
                match (how, byte) {
                    (0, _) => {
                        b.remove(i);
                    }
                    (1, Some(c)) => b.insert(i, c),
                    (_, Some(c)) => b[i] = c,
                    (_, None) => {}
                }
            }
            b
        })
    }

    proptest::proptest! {
        /// Floats in every spelling round as serde_json rounds them.
        #[test]
        fn floats_are_serde_jsons(x in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL, digits in 1usize..25, form in 0u8..3) {
            let text = match form {
                0 => format!("{x:?}"),
                1 => format!("{x:.digits$e}"),
                _ => format!("{x:.digits$}"),
            };
            let whole = serde_json::from_str::<J>(&text);
            proptest::prop_assert_eq!(built(text.as_bytes()).ok(), whole.ok(), "{}", text);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The scanner takes a line exactly when serde_json does, and builds the
        /// same value.
        #[test]
        fn scanning_agrees_with_serde_json(line in near_json()) {
            let whole = serde_json::from_slice::<J>(&line);
            proptest::prop_assert_eq!(takes(&line), whole.is_ok(), "{}", String::from_utf8_lossy(&line));
            if let Ok(v) = whole {
                proptest::prop_assert_eq!(built(&line), Ok(v));
            }
        }
    }
}
