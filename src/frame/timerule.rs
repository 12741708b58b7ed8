//! Time rules in pandas' spelling (`15min`, `1h`, `D`, `W`, `ME`, `MS`) and the
//! binning they imply: which bin a timestamp falls in, and each bin's label. Shared
//! by `resample`, `rolling` (time windows) and `repartition(freq)`.
//!
//! Bins follow pandas' defaults: fixed rules are anchored at midnight of the first
//! timestamp's day (`origin='start_day'`); `W` (weeks ending Sunday) and `ME` (month
//! end) are closed and labelled on the right, the others on the left. For `W` and
//! `ME` closed on the right, pandas moves the bin edges to the end of the edge day,
//! so a week is Monday to Sunday labelled with its Sunday, a month its first to its
//! last day labelled with the last; we do the same.
//!
//! Timestamps are nanoseconds since the epoch (no time zone).

use crate::error::{Error, Result};
use crate::io::csv::days_from_civil;

const NS_PER_DAY: i64 = 86_400_000_000_000;

/// The spellings a rule may use, for error messages.
pub const RULE_SPELLINGS: &str = "ns, us, ms (L), s (S), min (T), h (H), D, W (W-SUN), \
ME (M, month end), MS (month start), each with an optional multiple as in 15min or 6h";

/// The unit of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A fixed span of nanoseconds (`s`, `min`, `h`, `D`, ...).
    Fixed(i64),
    /// Weeks ending on Sunday (`W`, `W-SUN`).
    Week,
    /// Calendar months labelled by their last day (`ME`, `M`).
    MonthEnd,
    /// Calendar months labelled by their first day (`MS`).
    MonthStart,
}

/// A parsed rule: a multiple of a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// How many units a bin spans (at least 1).
    pub n: i64,
    /// The unit.
    pub unit: Unit,
    /// The text it was parsed from.
    pub text: String,
}

impl Rule {
    /// Parses `15min`, `1h`, `D`, `W`, `ME`, ... (pandas' spelling); an unknown rule
    /// is an error listing the valid ones.
    pub fn parse(text: &str) -> Result<Rule> {
        let t = text.trim();
        let digits = t.bytes().take_while(|b| b.is_ascii_digit()).count();
        let n: i64 = if digits == 0 {
            1
        } else {
            t[..digits].parse().map_err(|_| bad_rule(text))?
        };
        let unit = match &t[digits..] {
            "ns" | "N" => Unit::Fixed(1),
            "us" | "U" => Unit::Fixed(1_000),
            "ms" | "L" => Unit::Fixed(1_000_000),
            "s" | "S" => Unit::Fixed(1_000_000_000),
            "min" | "T" => Unit::Fixed(60_000_000_000),
            "h" | "H" => Unit::Fixed(3_600_000_000_000),
            "D" | "d" => Unit::Fixed(NS_PER_DAY),
            "W" | "W-SUN" => Unit::Week,
            "ME" | "M" => Unit::MonthEnd,
            "MS" => Unit::MonthStart,
            _ => return Err(bad_rule(text)),
        };
        if n == 0 {
            return Err(bad_rule(text));
        }
        if let Unit::Fixed(ns) = unit {
            n.checked_mul(ns).ok_or_else(|| bad_rule(text))?;
        }
        Ok(Rule {
            n,
            unit,
            text: text.to_string(),
        })
    }

    /// The rule's span in nanoseconds when it is fixed (not weeks or months).
    pub fn fixed_ns(&self) -> Option<i64> {
        match self.unit {
            Unit::Fixed(ns) => Some(ns * self.n),
            _ => None,
        }
    }

    /// True for the rules pandas closes and labels on the right by default.
    fn is_end_type(&self) -> bool {
        matches!(self.unit, Unit::Week | Unit::MonthEnd)
    }
}

fn bad_rule(text: &str) -> Error {
    Error::plan(
        "resample",
        format!("unknown rule {text:?}; valid rules: {RULE_SPELLINGS}"),
    )
}

/// Which side of a bin is closed, or which edge labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The left edge.
    Left,
    /// The right edge.
    Right,
}

impl Side {
    /// `left` or `right`.
    pub fn parse(text: &str) -> Result<Side> {
        match text {
            "left" => Ok(Side::Left),
            "right" => Ok(Side::Right),
            other => Err(Error::plan(
                "resample",
                format!("closed and label are 'left' or 'right', not {other:?}"),
            )),
        }
    }
}

/// Bins of a rule anchored for a series that starts at a given timestamp: maps a
/// timestamp to its bin number (bins are numbered consecutively, in time order) and
/// a bin to its label and edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binner {
    rule: Rule,
    closed: Side,
    label: Side,
    /// Fixed and weekly rules: the edge of bin 0 (ns). Monthly: the month index
    /// (year * 12 + month - 1) of bin 0's edge.
    origin: i64,
    /// Added to the label edges to get the membership edges (a day less 1 ns for
    /// `W`/`ME` closed on the right).
    adjust: i64,
}

impl Binner {
    /// Bins of `rule` for a series whose first timestamp is `first`, with pandas'
    /// defaults where `closed` or `label` is `None`.
    pub fn new(rule: &Rule, closed: Option<Side>, label: Option<Side>, first: i64) -> Binner {
        let default = if rule.is_end_type() {
            Side::Right
        } else {
            Side::Left
        };
        let closed = closed.unwrap_or(default);
        let label = label.unwrap_or(default);
        let day = first.div_euclid(NS_PER_DAY);
        // pandas adds one day less one nanosecond, so the edge day itself (and the
        // midnight after it) falls as on a calendar.
        let adjust = if rule.is_end_type() && closed == Side::Right {
            NS_PER_DAY - 1
        } else {
            0
        };
        let origin = match rule.unit {
            Unit::Fixed(_) => day * NS_PER_DAY,
            Unit::Week => {
                // 1970-01-01 was a Thursday; days back to the Sunday on or before.
                let back = (day + 4).rem_euclid(7);
                let back = if closed == Side::Right && back == 0 {
                    7
                } else {
                    back
                };
                (day - back) * NS_PER_DAY
            }
            Unit::MonthStart => {
                let (y, m, d) = civil_from_days(day);
                let mi = y * 12 + m as i64 - 1;
                if closed == Side::Right && d == 1 {
                    mi - 1
                } else {
                    mi
                }
            }
            Unit::MonthEnd => {
                let (y, m, _) = civil_from_days(day);
                let mi = y * 12 + m as i64 - 1;
                let on_end = month_start(mi + 1) / NS_PER_DAY - 1 == day;
                if closed == Side::Left && on_end {
                    mi
                } else {
                    mi - 1
                }
            }
        };
        Binner {
            rule: rule.clone(),
            closed,
            label,
            origin,
            adjust,
        }
    }

    /// The step of fixed and weekly rules.
    fn step(&self) -> Option<i64> {
        match self.rule.unit {
            Unit::Fixed(ns) => Some(ns * self.rule.n),
            Unit::Week => Some(7 * NS_PER_DAY * self.rule.n),
            _ => None,
        }
    }

    /// The label edge of unit `j` (fixed/weekly: of bin `j`).
    fn edge(&self, j: i64) -> i64 {
        match self.step() {
            Some(step) => self.origin + j * step,
            None => match self.rule.unit {
                Unit::MonthStart => month_start(j),
                _ => month_start(j + 1) - NS_PER_DAY,
            },
        }
    }

    /// The bin `t` falls in.
    #[inline]
    pub fn bin(&self, t: i64) -> i64 {
        if let Some(step) = self.step() {
            let x = t - self.origin - self.adjust;
            return match self.closed {
                Side::Left => x.div_euclid(step),
                Side::Right => -((-x).div_euclid(step)) - 1,
            };
        }
        // Months: find unit j with E(j) <= t < E(j+1) (or E(j) < t <= E(j+1)).
        let (y, m, _) = civil_from_days(t.div_euclid(NS_PER_DAY));
        let mut j = y * 12 + m as i64 - 1 + 1;
        let inside = |e: i64| match self.closed {
            Side::Left => e <= t,
            Side::Right => e < t,
        };
        while !inside(self.edge(j) + self.adjust) {
            j -= 1;
        }
        (j - self.origin).div_euclid(self.rule.n)
    }

    fn unit_of_bin(&self, k: i64) -> i64 {
        match self.step() {
            Some(_) => k,
            None => self.origin + k * self.rule.n,
        }
    }

    fn units_per_bin(&self) -> i64 {
        if self.step().is_some() {
            1
        } else {
            self.rule.n
        }
    }

    /// The label of bin `k`.
    pub fn label(&self, k: i64) -> i64 {
        let j = self.unit_of_bin(k);
        match self.label {
            Side::Left => self.edge(j),
            Side::Right => self.edge(j + self.units_per_bin()),
        }
    }

    /// The left membership edge of bin `k`: the bin holds timestamps from here (or
    /// just after, when closed on the right) to the left edge of bin `k + 1`.
    pub fn left_edge(&self, k: i64) -> i64 {
        self.edge(self.unit_of_bin(k)) + self.adjust
    }
}

/// Midnight of the first day of month index `mi` (year * 12 + month - 1), in ns.
fn month_start(mi: i64) -> i64 {
    let y = mi.div_euclid(12);
    let m = (mi.rem_euclid(12) + 1) as u32;
    days_from_civil(y, m, 1) * NS_PER_DAY
}

/// (year, month, day) of a day number since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses a timestamp given as text (`2000-01-05`, `2000-01-05 12:00`) to ns.
pub fn parse_timestamp(text: &str) -> Result<i64> {
    crate::io::csv::parse_timestamp_ns(text.trim().as_bytes()).ok_or_else(|| {
        Error::plan(
            "timestamp",
            format!("{text:?} is not a timestamp (expected ISO 8601, as 2000-01-05 or 2000-01-05T12:00:00)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        parse_timestamp(s).unwrap()
    }

    #[test]
    fn parses_rules() {
        assert_eq!(
            Rule::parse("15min").unwrap().fixed_ns(),
            Some(900_000_000_000)
        );
        assert_eq!(
            Rule::parse("1h").unwrap().fixed_ns(),
            Some(3_600_000_000_000)
        );
        assert_eq!(Rule::parse("T").unwrap().fixed_ns(), Some(60_000_000_000));
        assert_eq!(Rule::parse("M").unwrap().unit, Unit::MonthEnd);
        let e = Rule::parse("1fortnight").unwrap_err().to_string();
        assert!(e.contains("unknown rule") && e.contains("15min"), "{e}");
        assert!(Rule::parse("0h").is_err());
    }

    #[test]
    fn civil_round_trip() {
        for d in [-1000, -1, 0, 59, 60, 11_016, 11_017, 20_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn fixed_bins() {
        let r = Rule::parse("1h").unwrap();
        let b = Binner::new(&r, None, None, ts("2000-01-01 00:30"));
        assert_eq!(b.bin(ts("2000-01-01 00:30")), 0);
        assert_eq!(b.bin(ts("2000-01-01 01:00")), 1);
        assert_eq!(b.label(1), ts("2000-01-01 01:00"));
        let b = Binner::new(&r, Some(Side::Right), Some(Side::Right), ts("2000-01-01"));
        assert_eq!(b.bin(ts("2000-01-01 01:00")), 0);
        assert_eq!(b.label(0), ts("2000-01-01 01:00"));
    }

    #[test]
    fn weeks_and_months() {
        // 2000-01-01 was a Saturday; 2000-01-02 a Sunday.
        let b = Binner::new(&Rule::parse("W").unwrap(), None, None, ts("2000-01-01"));
        let k = b.bin(ts("2000-01-02 12:00"));
        assert_eq!(b.label(k), ts("2000-01-02"));
        assert_eq!(b.bin(ts("2000-01-03")), k + 1);
        assert_eq!(b.bin(ts("2000-01-01")), k);
        let b = Binner::new(&Rule::parse("ME").unwrap(), None, None, ts("2000-01-15"));
        let k = b.bin(ts("2000-01-31 23:00"));
        assert_eq!(b.label(k), ts("2000-01-31"));
        assert_eq!(b.bin(ts("2000-02-01")), k + 1);
        assert_eq!(
            b.bin(ts("2000-02-01")) - 1,
            b.bin(ts("2000-01-31 23:59:59.999999999"))
        );
        assert_eq!(b.label(k + 1), ts("2000-02-29"));
        let b = Binner::new(&Rule::parse("MS").unwrap(), None, None, ts("2000-01-15"));
        assert_eq!(b.label(b.bin(ts("2000-02-10"))), ts("2000-02-01"));
    }
}
