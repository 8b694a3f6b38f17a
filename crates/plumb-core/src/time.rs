//! Local days in a site's timezone. A day number is days since 1970-01-01 of the local date.

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();

pub fn day_number(date: NaiveDate) -> i32 {
    (date - EPOCH).num_days() as i32
}

pub fn date_of_day(day: i32) -> NaiveDate {
    if day >= 0 { EPOCH + Days::new(day as u64) } else { EPOCH - Days::new(day.unsigned_abs() as u64) }
}

/// The first day of the month `months` calendar months before `day`'s: what a site keeping
/// `months` months keeps from (the current month and the `months` before it, whole).
pub fn first_kept_day(day: i32, months: u32) -> i32 {
    let month_start = date_of_day(day).with_day(1).unwrap_or_else(|| date_of_day(day));
    month_start.checked_sub_months(chrono::Months::new(months)).map_or(i32::MIN, day_number)
}

/// The local day of an instant in `tz`.
pub fn local_day(tz: Tz, ts_ms: i64) -> i32 {
    local_day_hour(tz, ts_ms).0
}

/// The local day and wall-clock hour (0–23) of an instant in `tz`. In the hour a DST change
/// repeats, both occurrences share one hour number.
pub fn local_day_hour(tz: Tz, ts_ms: i64) -> (i32, u8) {
    let local = DateTime::<Utc>::from_timestamp_millis(ts_ms).unwrap_or_default().with_timezone(&tz);
    (day_number(local.date_naive()), local.hour() as u8)
}

/// The instant (unix ms) at which local `day` begins in `tz`. A midnight that a DST jump skips
/// begins at the first instant that exists.
pub fn day_start_ms(tz: Tz, day: i32) -> i64 {
    hour_start_ms(tz, day, 0)
}

/// The instant (unix ms) at which local `hour` (0–23) of `day` begins in `tz`; an hour that a DST
/// jump skips begins at the first instant after it that exists.
pub fn hour_start_ms(tz: Tz, day: i32, hour: u8) -> i64 {
    let mut t = date_of_day(day).and_hms_opt(u32::from(hour.min(23)), 0, 0).unwrap();
    loop {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.timestamp_millis();
        }
        t += chrono::Duration::minutes(15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retention_keeps_whole_months() {
        let day = |y, m, d| day_number(NaiveDate::from_ymd_opt(y, m, d).unwrap());
        assert_eq!(first_kept_day(day(2026, 12, 7), 12), day(2025, 12, 1));
        assert_eq!(first_kept_day(day(2026, 3, 31), 1), day(2026, 2, 1));
        assert_eq!(first_kept_day(day(2026, 1, 1), 1), day(2025, 12, 1));
        assert_eq!(first_kept_day(day(2026, 1, 15), 1200), day(1926, 1, 1));
    }

    #[test]
    fn local_days_follow_the_timezone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let la: Tz = "America/Los_Angeles".parse().unwrap();
        // 2024-03-10T07:30Z: Berlin 08:30 on the 10th, Los Angeles 23:30 on the 9th.
        let ts = 1_710_055_800_000;
        let d10 = day_number(NaiveDate::from_ymd_opt(2024, 3, 10).unwrap());
        assert_eq!(local_day(berlin, ts), d10);
        assert_eq!(local_day(la, ts), d10 - 1);
        assert_eq!(date_of_day(d10), NaiveDate::from_ymd_opt(2024, 3, 10).unwrap());
        assert_eq!(date_of_day(-1), NaiveDate::from_ymd_opt(1969, 12, 31).unwrap());
        // The DST day in Los Angeles lasts 23 hours.
        let start = day_start_ms(la, d10);
        let end = day_start_ms(la, d10 + 1);
        assert_eq!(end - start, 23 * 3_600_000);
        assert_eq!(local_day(la, start), d10);
        assert_eq!(local_day(la, start - 1), d10 - 1);
        // India is 5:30 ahead: 2024-03-10T07:30Z is 13:00 there.
        let india: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(local_day_hour(india, ts), (d10, 13));
    }
}
