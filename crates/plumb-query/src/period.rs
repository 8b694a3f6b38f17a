//! The periods callers name (Plausible's `date_range`: `day`, `7d`, `month`, `all`, `[from, to]`…)
//! and comparison ranges, as inclusive local days.

use crate::{DayRange, HourWindow, Invalid};
use chrono::{Datelike, Months, NaiveDate};
use plumb_core::time::{date_of_day, day_number};
use serde_json::Value;

/// Dates a query may name: from 1970 through 2199.
const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2199;

fn parse_date(v: &Value) -> Result<i32, Invalid> {
    let s = v.as_str().unwrap_or_default();
    parse_day("date_range", s.get(..10).unwrap_or(s))
}

/// A `YYYY-MM-DD` date a caller names (`field` says where), as a day number, from 1970 through
/// 2199.
pub fn parse_day(field: &str, s: &str) -> Result<i32, Invalid> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| Invalid(format!("{field}: `{s}` is not a date (YYYY-MM-DD)")))?;
    if !(FIRST_YEAR..=LAST_YEAR).contains(&d.year()) {
        return Err(Invalid(format!("{field}: `{s}` is not between {FIRST_YEAR} and {LAST_YEAR}")));
    }
    Ok(day_number(d))
}

/// The named periods `resolve_range` knows (besides `[from, to]`): these, and any `Nd` up to
/// [`MAX_DAYS`] and `Nmo` up to [`MAX_MONTHS`], as Plausible's parser takes them.
pub const PERIODS: [&str; 10] = ["day", "7d", "28d", "30d", "91d", "month", "6mo", "12mo", "year", "all"];
/// Periods shorter than a day: `24h` (whole local hours, `resolve_window`) and the last 5 or 30
/// minutes (`realtime`, `30m`, answered from memory by the Stats API v2).
pub const SHORT_PERIODS: [&str; 3] = ["24h", "realtime", "30m"];
pub const MAX_DAYS: i32 = 5_000;
pub const MAX_MONTHS: u32 = 100;

/// `Nd` / `Nmo` with N in range: the number and whether it counts months.
fn shorthand(s: &str) -> Option<Result<(u32, bool), Invalid>> {
    let (num, months) = match s.strip_suffix("mo") {
        Some(n) => (n, true),
        None => (s.strip_suffix('d')?, false),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let max = if months { MAX_MONTHS } else { MAX_DAYS as u32 };
    Some(match num.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok((n, months)),
        _ => {
            Err(Invalid(format!("date_range: `{s}` must count 1 to {max} {}", if months { "months" } else { "days" })))
        }
    })
}

/// Inclusive local days for a Plausible date range, relative to `today` in the site's timezone.
/// `Nd` ranges end yesterday (today is partial); `day`, `month` and `year` include today.
pub fn resolve_range(range: &Value, today: i32) -> Result<DayRange, Invalid> {
    let t = date_of_day(today);
    let months_back = |n: u32| day_number(t.with_day(1).unwrap().checked_sub_months(Months::new(n)).unwrap());
    let (from, to) = match range {
        Value::String(s) => match s.as_str() {
            "day" => (today, today),
            "month" => (day_number(t.with_day(1).unwrap()), today),
            "year" => (day_number(t.with_ordinal(1).unwrap()), today),
            "all" => (ALL_FROM, today),
            "realtime" | "30m" => {
                return Err(Invalid(format!(
                    "date_range: `{s}` (minutes) cannot be answered from stored rows, which keep local hours; \
                     Stats API v2 queries of visitors and pageviews take it, `24h` is the last day by hour"
                )));
            }
            other => match shorthand(other) {
                // N days before today, or N whole months before the current one.
                Some(Ok((n, false))) => (today - n as i32, today - 1),
                Some(Ok((n, true))) => (months_back(n), months_back(0) - 1),
                Some(Err(e)) => return Err(e),
                None => return Err(Invalid(format!("date_range: `{other}` is not a known period"))),
            },
        },
        Value::Array(pair) if pair.len() == 2 => (parse_date(&pair[0])?, parse_date(&pair[1])?),
        other => return Err(Invalid(format!("date_range must be a period or [from, to], got {other}"))),
    };
    if from > to {
        return Err(Invalid("date_range: the first date is after the second".into()));
    }
    Ok(DayRange { from, to })
}

/// A range that may be bounded by hours: `24h` is the 24 local hours up to and including the
/// current one (`now_hour` of `today`); anything else is whole days, as [`resolve_range`].
pub fn resolve_window(range: &Value, today: i32, now_hour: u8) -> Result<(DayRange, Option<HourWindow>), Invalid> {
    if range.as_str() != Some("24h") {
        return resolve_range(range, today).map(|r| (r, None));
    }
    Ok(match now_hour {
        // The whole of today.
        23 => (DayRange { from: today, to: today }, None),
        h => (DayRange { from: today - 1, to: today }, Some(HourWindow { from_hour: h + 1, to_hour: h })),
    })
}

/// First day of `all` (1970-01-01): before any plausible data, so back-filled history is included.
const ALL_FROM: i32 = 0;

pub fn comparison_range(v: &Value, range: DayRange, today: i32) -> Result<DayRange, Invalid> {
    let mode = v.get("mode").and_then(Value::as_str).unwrap_or_default();
    match mode {
        "previous_period" => Ok(DayRange { from: range.from - range.days(), to: range.from - 1 }),
        "year_over_year" => {
            let back = |d: i32| date_of_day(d).checked_sub_months(Months::new(12)).map(day_number).unwrap_or(d - 365);
            Ok(DayRange { from: back(range.from), to: back(range.to) })
        }
        "custom" => resolve_range(v.get("date_range").unwrap_or(&Value::Null), today),
        other => Err(Invalid(format!(
            "include.comparisons.mode: `{other}` is not previous_period, year_over_year or custom"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_day_of_hours_ends_with_the_current_one() {
        let today = 20_000;
        let (range, hours) = resolve_window(&json!("24h"), today, 9).unwrap();
        assert_eq!(
            (range, hours),
            (DayRange { from: today - 1, to: today }, Some(HourWindow { from_hour: 10, to_hour: 9 }))
        );
        assert_eq!(resolve_window(&json!("24h"), today, 23).unwrap(), (DayRange { from: today, to: today }, None));
        assert_eq!(
            resolve_window(&json!("7d"), today, 9).unwrap(),
            (resolve_range(&json!("7d"), today).unwrap(), None)
        );
        assert!(resolve_window(&json!("25h"), today, 9).is_err());
    }

    #[test]
    fn periods_resolve_to_whole_local_days() {
        let today = day_number(NaiveDate::from_ymd_opt(2024, 3, 15).unwrap());
        let r = |from, to| Some(DayRange { from, to });
        assert_eq!(resolve_range(&json!("day"), today).ok(), r(today, today));
        assert_eq!(resolve_range(&json!("7d"), today).ok(), r(today - 7, today - 1));
        let march1 = day_number(NaiveDate::from_ymd_opt(2024, 3, 1).unwrap());
        assert_eq!(resolve_range(&json!("month"), today).ok(), r(march1, today));
        assert_eq!(resolve_range(&json!(["2024-03-01", "2024-03-02"]), today).ok(), r(march1, march1 + 1));
        let sept1 = day_number(NaiveDate::from_ymd_opt(2023, 9, 1).unwrap());
        assert_eq!(resolve_range(&json!("6mo"), today).ok(), r(sept1, march1 - 1));
        assert!(resolve_range(&json!(["2024-03-02", "2024-03-01"]), today).is_err());
        assert!(resolve_range(&json!("fortnight"), today).is_err());
        for p in PERIODS {
            assert!(resolve_range(&json!(p), today).is_ok(), "documented period {p} resolves");
        }
        // Shorter ones are a window of hours, or answered elsewhere and refused here with why.
        assert!(resolve_window(&json!(SHORT_PERIODS[0]), today, 3).unwrap().1.is_some());
        for p in &SHORT_PERIODS[1..] {
            assert!(resolve_range(&json!(p), today).unwrap_err().0.contains("minutes"), "{p}");
        }
        assert!(resolve_range(&json!(["2024-13-01", "2024-03-01"]), today).is_err());
        // Any `Nd` up to 5,000 and `Nmo` up to 100, as Plausible takes them.
        assert_eq!(resolve_range(&json!("1d"), today).ok(), r(today - 1, today - 1));
        assert_eq!(resolve_range(&json!("5000d"), today).ok(), r(today - 5000, today - 1));
        let jan1 = day_number(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap());
        assert_eq!(resolve_range(&json!("2mo"), today).ok(), r(jan1, march1 - 1));
        let nov2015 = day_number(NaiveDate::from_ymd_opt(2015, 11, 1).unwrap());
        assert_eq!(resolve_range(&json!("100mo"), today).ok(), r(nov2015, march1 - 1));
        for (bad, why) in [
            ("0d", "1 to 5000 days"),
            ("5001d", "1 to 5000 days"),
            ("101mo", "1 to 100 months"),
            ("99999999999999d", "1 to 5000 days"),
            ("-3d", "not a known period"),
            ("d", "not a known period"),
            ("3w", "not a known period"),
            ("+3d", "not a known period"),
            ("30m", "cannot be answered from stored rows"),
        ] {
            let e = resolve_range(&json!(bad), today).unwrap_err();
            assert!(e.0.contains(why), "{bad}: {}", e.0);
        }
        let e = resolve_range(&json!(["0000-01-01", "9999-12-31"]), today).unwrap_err();
        assert!(e.0.contains("between 1970 and 2199"), "{}", e.0);
    }

    #[test]
    fn comparisons_are_the_previous_period_the_year_before_or_given() {
        let range = DayRange { from: 100, to: 106 };
        let prev = comparison_range(&json!({"mode": "previous_period"}), range, 200).ok();
        assert_eq!(prev, Some(DayRange { from: 93, to: 99 }));
        let march = day_number(NaiveDate::from_ymd_opt(2024, 3, 1).unwrap());
        let year_before =
            comparison_range(&json!({"mode": "year_over_year"}), DayRange { from: march, to: march + 6 }, 0);
        let then = day_number(NaiveDate::from_ymd_opt(2023, 3, 1).unwrap());
        assert_eq!(year_before.ok(), Some(DayRange { from: then, to: then + 6 }));
        let custom = json!({"mode": "custom", "date_range": ["2024-03-01", "2024-03-02"]});
        assert_eq!(comparison_range(&custom, range, 0).ok(), Some(DayRange { from: march, to: march + 1 }));
        assert!(comparison_range(&json!({"mode": "last_week"}), range, 200).is_err());
    }
}
