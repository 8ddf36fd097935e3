//! Budget windows in UTC: the frame a policy's spend is summed over at `now`, and the bucket a
//! charge made at an instant is recorded under. Pure integer arithmetic on Unix seconds.
//! Reads no clock (`now` is always an argument) and knows nothing of where spend is stored.
//!
//! **Calendar** frames reset at UTC boundaries: the hour, midnight, the ISO week (Monday 00:00)
//! and the first of the month (true month lengths, Feb 29 in leap years). A charge is recorded
//! under the start of its frame.
//!
//! **Rolling** frames are the trailing duration counted in fixed sub-buckets aligned to the
//! Unix epoch (`bucket_start = floor(t / size) * size`):
//!
//! | window  | bucket size        | buckets N | nominal span |
//! |---------|--------------------|-----------|--------------|
//! | hourly  | 60 s               | 60        | 1 hour       |
//! | daily   | 900 s (15 min)     | 96        | 1 day        |
//! | weekly  | 3 600 s (1 hour)   | 168       | 7 days       |
//! | monthly | 21 600 s (6 hours) | 120       | 30 days      |
//!
//! The rolling frame at `now` is the N buckets ending with the bucket that contains `now`:
//! `start = bucket_start(now) - (N-1)·size`, `end = bucket_start(now) + size`. A charge is
//! recorded under the start of its sub-bucket. So the effective look-back from `now` is between
//! `(N-1)·size` (just after a bucket boundary) and `N·size` (just before the next one): a charge
//! leaves the window up to one bucket early, never late.
//!
//! **Total** frames are `[1970-01-01T00:00:00Z, 10000-01-01T00:00:00Z)`; every charge is
//! recorded under the Unix epoch. (A rolling `total` is rejected by `PolicySpec::validate`; if
//! one reaches this module anyway it is treated as the calendar total.)
//!
//! Domain: every function is total (never panics) for any `DateTime<Utc>`. Within years
//! 1970..=9999 no clamping happens and every invariant below holds. Only within weeks of chrono's
//! representable limits (year ±262 143) would a bound fall outside what chrono can represent;
//! such a bound is clamped to `DateTime::<Utc>::MIN_UTC` / `MAX_UTC`.
//!
//! Invariants (property-tested): `frame.start <= now < frame.end`; `charge_bucket(at)` lies in
//! `current_frame(at)`; a charge recorded under bucket `b` counts in frame `f` iff
//! `f.start <= b < f.end` (see [`WindowFrame::counts_bucket`]).

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::core::policy::{TimeWindow, WindowType};

const SECS_PER_HOUR: i64 = 3_600;
const SECS_PER_DAY: i64 = 86_400;
const SECS_PER_WEEK: i64 = 7 * SECS_PER_DAY;
/// 1970-01-01 was a Thursday: the ISO week containing the epoch started 3 days before it.
const EPOCH_WEEK_OFFSET_SECS: i64 = 3 * SECS_PER_DAY;

/// End of every `total` frame: 10000-01-01T00:00:00Z, the first instant after the supported
/// domain (years 1970..=9999), in Unix seconds.
pub const TOTAL_WINDOW_END_SECS: i64 = 253_402_300_800;

/// A half-open interval of time `[start, end)` over which a policy's spend is summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WindowFrame {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl WindowFrame {
    /// Whether `at` lies in `[start, end)`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }

    /// Whether a charge recorded under bucket start `bucket` counts in this frame.
    pub fn counts_bucket(&self, bucket: DateTime<Utc>) -> bool {
        self.contains(bucket)
    }
}

/// Sub-bucket size and count of a rolling window; `None` for `total`, which has no rolling form.
fn rolling_spec(window: TimeWindow) -> Option<(i64, i64)> {
    match window {
        TimeWindow::Hourly => Some((60, 60)),
        TimeWindow::Daily => Some((900, 96)),
        TimeWindow::Weekly => Some((SECS_PER_HOUR, 168)),
        TimeWindow::Monthly => Some((21_600, 120)),
        TimeWindow::Total => None,
    }
}

/// Size in seconds of one sub-bucket of a rolling window; `None` for `total`.
pub fn rolling_bucket_secs(window: TimeWindow) -> Option<i64> {
    rolling_spec(window).map(|(size, _)| size)
}

/// Number of sub-buckets in a rolling frame; `None` for `total`.
pub fn rolling_bucket_count(window: TimeWindow) -> Option<i64> {
    rolling_spec(window).map(|(_, count)| count)
}

/// Start of the `total` frame: the Unix epoch.
pub fn total_window_start() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

/// End of the `total` frame: 10000-01-01T00:00:00Z (see [`TOTAL_WINDOW_END_SECS`]).
pub fn total_window_end() -> DateTime<Utc> {
    at_secs(TOTAL_WINDOW_END_SECS)
}

/// The frame of `window`/`kind` that contains `now`.
pub fn current_frame(window: TimeWindow, kind: WindowType, now: DateTime<Utc>) -> WindowFrame {
    let secs = now.timestamp();
    match (window, kind) {
        (TimeWindow::Total, _) => WindowFrame {
            start: total_window_start(),
            end: total_window_end(),
        },
        (_, WindowType::Rolling) => match rolling_spec(window) {
            Some((size, count)) => {
                let bucket = floor_to(secs, size, 0);
                let span_before = size.saturating_mul(count.saturating_sub(1));
                WindowFrame {
                    start: at_secs(bucket.saturating_sub(span_before)),
                    end: at_secs(bucket.saturating_add(size)),
                }
            }
            None => current_frame(TimeWindow::Total, WindowType::Calendar, now),
        },
        (TimeWindow::Hourly, WindowType::Calendar) => fixed_frame(secs, SECS_PER_HOUR, 0),
        (TimeWindow::Daily, WindowType::Calendar) => fixed_frame(secs, SECS_PER_DAY, 0),
        (TimeWindow::Weekly, WindowType::Calendar) => {
            fixed_frame(secs, SECS_PER_WEEK, EPOCH_WEEK_OFFSET_SECS)
        }
        (TimeWindow::Monthly, WindowType::Calendar) => month_frame(now),
    }
}

/// The bucket start under which a charge made at `at` is recorded: the frame start for a
/// calendar window, the sub-bucket start for a rolling window, the epoch for `total`.
pub fn charge_bucket(window: TimeWindow, kind: WindowType, at: DateTime<Utc>) -> DateTime<Utc> {
    match (kind, rolling_spec(window)) {
        (WindowType::Rolling, Some((size, _))) => at_secs(floor_to(at.timestamp(), size, 0)),
        _ => current_frame(window, kind, at).start,
    }
}

/// Start of the sub-bucket of a rolling window that contains `at`; `None` for `total`.
pub fn rolling_bucket_start(window: TimeWindow, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    rolling_bucket_secs(window).map(|size| at_secs(floor_to(at.timestamp(), size, 0)))
}

/// The frame of fixed length `len` containing `secs`, with frames aligned so that one starts at
/// `-offset` (the epoch shifted back by `offset` seconds).
fn fixed_frame(secs: i64, len: i64, offset: i64) -> WindowFrame {
    let start = floor_to(secs, len, offset);
    WindowFrame {
        start: at_secs(start),
        end: at_secs(start.saturating_add(len)),
    }
}

/// Largest `s <= secs` with `(s + offset) % len == 0`. `len > 0`; saturates at the i64 ends
/// (unreachable for chrono's timestamps, which stay within ±2^43).
fn floor_to(secs: i64, len: i64, offset: i64) -> i64 {
    let shifted = secs.saturating_add(offset);
    shifted
        .div_euclid(len.max(1))
        .saturating_mul(len)
        .saturating_sub(offset)
}

/// The calendar month containing `now`: from the 1st 00:00 UTC to the next month's 1st.
fn month_frame(now: DateTime<Utc>) -> WindowFrame {
    let (year, month) = (now.year(), now.month());
    let (next_year, next_month) = if month == 12 {
        (year.checked_add(1), 1)
    } else {
        (Some(year), month + 1)
    };
    let start = NaiveDate::from_ymd_opt(year, month, 1);
    let end = next_year.and_then(|y| NaiveDate::from_ymd_opt(y, next_month, 1));
    WindowFrame {
        start: start.map_or(DateTime::<Utc>::MIN_UTC, midnight_utc),
        end: end.map_or(DateTime::<Utc>::MAX_UTC, midnight_utc),
    }
}

fn midnight_utc(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0)
        .map_or(DateTime::<Utc>::MIN_UTC, |naive| naive.and_utc())
}

/// The instant `secs` Unix seconds, clamped into chrono's representable range.
fn at_secs(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or(if secs < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::{Duration, TimeZone, Timelike, Weekday};
    use proptest::prelude::*;

    const WINDOWS: [TimeWindow; 5] = [
        TimeWindow::Hourly,
        TimeWindow::Daily,
        TimeWindow::Weekly,
        TimeWindow::Monthly,
        TimeWindow::Total,
    ];
    const KINDS: [WindowType; 2] = [WindowType::Calendar, WindowType::Rolling];

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn calendar(window: TimeWindow, now: &str) -> (DateTime<Utc>, DateTime<Utc>) {
        let f = current_frame(window, WindowType::Calendar, utc(now));
        (f.start, f.end)
    }

    fn year_10000() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap()
    }

    fn is_leap(year: i32) -> bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    /// Any instant in the supported domain, years 1970..=9999, to the nanosecond.
    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        (0..TOTAL_WINDOW_END_SECS, 0u32..1_000_000_000)
            .prop_map(|(s, n)| Utc.timestamp_opt(s, n).unwrap())
    }

    fn window() -> impl Strategy<Value = TimeWindow> {
        prop::sample::select(WINDOWS.to_vec())
    }

    fn kind() -> impl Strategy<Value = WindowType> {
        prop::sample::select(KINDS.to_vec())
    }

    #[test]
    fn a_leap_day_belongs_to_a_29_day_february() {
        let (start, end) = calendar(TimeWindow::Monthly, "2024-02-29T12:00:00Z");
        assert_eq!(
            (start, end),
            (utc("2024-02-01T00:00:00Z"), utc("2024-03-01T00:00:00Z"))
        );
        let (start, end) = calendar(TimeWindow::Daily, "2024-02-29T23:59:59Z");
        assert_eq!(
            (start, end),
            (utc("2024-02-29T00:00:00Z"), utc("2024-03-01T00:00:00Z"))
        );
        let (start, end) = calendar(TimeWindow::Monthly, "2023-02-15T00:00:00Z");
        assert_eq!(end - start, Duration::days(28));
    }

    #[test]
    fn the_last_microsecond_of_a_year_closes_every_calendar_frame_at_new_year() {
        let now = utc("2026-12-31T23:59:59.999999Z");
        let new_year = utc("2027-01-01T00:00:00Z");
        assert_eq!(
            calendar(TimeWindow::Hourly, "2026-12-31T23:59:59.999999Z").1,
            new_year
        );
        assert_eq!(
            calendar(TimeWindow::Daily, "2026-12-31T23:59:59.999999Z").1,
            new_year
        );
        assert_eq!(
            calendar(TimeWindow::Monthly, "2026-12-31T23:59:59.999999Z"),
            (utc("2026-12-01T00:00:00Z"), new_year)
        );
        let next = current_frame(TimeWindow::Monthly, WindowType::Calendar, new_year);
        assert_eq!(
            (next.start, next.end),
            (new_year, utc("2027-02-01T00:00:00Z"))
        );
        // 2027-01-01 is a Friday: the ISO week runs Mon 2026-12-28 to Mon 2027-01-04.
        let week = current_frame(TimeWindow::Weekly, WindowType::Calendar, now);
        assert_eq!(
            (week.start, week.end),
            (utc("2026-12-28T00:00:00Z"), utc("2027-01-04T00:00:00Z"))
        );
    }

    #[test]
    fn an_iso_week_starts_on_the_monday_before_a_thursday_new_year() {
        // 2026-01-01 is a Thursday.
        let (start, end) = calendar(TimeWindow::Weekly, "2026-01-01T10:00:00Z");
        assert_eq!(
            (start, end),
            (utc("2025-12-29T00:00:00Z"), utc("2026-01-05T00:00:00Z"))
        );
        let (start, _) = calendar(TimeWindow::Weekly, "2025-12-29T00:00:00Z");
        assert_eq!(start, utc("2025-12-29T00:00:00Z"));
        let (start, _) = calendar(TimeWindow::Weekly, "2025-12-28T23:59:59Z");
        assert_eq!(start, utc("2025-12-22T00:00:00Z"));
        // The week of the epoch itself starts before it.
        let (start, _) = calendar(TimeWindow::Weekly, "1970-01-01T00:00:00Z");
        assert_eq!(start, utc("1969-12-29T00:00:00Z"));
    }

    #[test]
    fn a_rolling_daily_frame_spans_96_quarter_hours_ending_with_the_current_one() {
        let now = utc("2026-03-10T12:07:30Z");
        let f = current_frame(TimeWindow::Daily, WindowType::Rolling, now);
        assert_eq!(f.end, utc("2026-03-10T12:15:00Z"));
        assert_eq!(f.start, utc("2026-03-09T12:15:00Z"));
        assert_eq!(
            charge_bucket(TimeWindow::Daily, WindowType::Rolling, now),
            utc("2026-03-10T12:00:00Z")
        );
        // A charge 23 h 45 min ago still counts, one made a day ago no longer does.
        let bucket = |at| charge_bucket(TimeWindow::Daily, WindowType::Rolling, at);
        assert!(f.counts_bucket(bucket(utc("2026-03-09T12:15:00Z"))));
        assert!(!f.counts_bucket(bucket(utc("2026-03-09T12:14:59Z"))));
    }

    #[test]
    fn rolling_bucket_sizes_are_the_documented_ones() {
        let table = [
            (TimeWindow::Hourly, 60, 60),
            (TimeWindow::Daily, 900, 96),
            (TimeWindow::Weekly, 3_600, 168),
            (TimeWindow::Monthly, 21_600, 120),
        ];
        for (window, size, count) in table {
            assert_eq!(rolling_bucket_secs(window), Some(size));
            assert_eq!(rolling_bucket_count(window), Some(count));
        }
        assert_eq!(
            rolling_bucket_secs(TimeWindow::Monthly).unwrap() * 120,
            30 * SECS_PER_DAY
        );
        assert_eq!(rolling_bucket_secs(TimeWindow::Total), None);
        assert_eq!(
            rolling_bucket_start(TimeWindow::Total, utc("2026-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn the_total_frame_runs_from_the_epoch_to_year_10000() {
        for kind in KINDS {
            let f = current_frame(TimeWindow::Total, kind, utc("2026-05-05T05:05:05Z"));
            assert_eq!(
                (f.start, f.end),
                (DateTime::<Utc>::UNIX_EPOCH, year_10000())
            );
            assert_eq!(
                charge_bucket(TimeWindow::Total, kind, utc("9999-12-31T23:59:59Z")),
                f.start
            );
        }
        assert!(current_frame(
            TimeWindow::Total,
            WindowType::Calendar,
            utc("9999-12-31T23:59:59.999999Z")
        )
        .contains(utc("9999-12-31T23:59:59.999999Z")));
    }

    #[test]
    fn the_total_end_constant_is_year_10000() {
        assert_eq!(total_window_end(), year_10000());
        assert_eq!(year_10000().timestamp(), TOTAL_WINDOW_END_SECS);
    }

    #[test]
    fn the_last_month_before_year_10000_ends_without_clamping() {
        let (start, end) = calendar(TimeWindow::Monthly, "9999-12-31T23:59:59.999999Z");
        assert_eq!((start, end), (utc("9999-12-01T00:00:00Z"), year_10000()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn now_lies_in_its_frame(now in instant(), window in window(), kind in kind()) {
            let f = current_frame(window, kind, now);
            prop_assert!(f.start <= now && now < f.end, "{now} not in {f:?}");
        }

        #[test]
        fn calendar_frames_start_on_their_boundary(now in instant()) {
            let hour = current_frame(TimeWindow::Hourly, WindowType::Calendar, now).start;
            prop_assert_eq!((hour.minute(), hour.second(), hour.nanosecond()), (0, 0, 0));
            prop_assert_eq!(hour.hour(), now.hour());
            let day = current_frame(TimeWindow::Daily, WindowType::Calendar, now).start;
            prop_assert_eq!(day, now.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc());
            let week = current_frame(TimeWindow::Weekly, WindowType::Calendar, now);
            prop_assert_eq!(week.start.weekday(), Weekday::Mon);
            prop_assert_eq!(week.start.num_seconds_from_midnight(), 0);
            prop_assert_eq!(week.end - week.start, Duration::days(7));
            let month = current_frame(TimeWindow::Monthly, WindowType::Calendar, now).start;
            prop_assert_eq!((month.day(), month.num_seconds_from_midnight()), (1, 0));
            prop_assert_eq!((month.year(), month.month()), (now.year(), now.month()));
        }

        #[test]
        fn consecutive_calendar_frames_are_adjacent(now in instant(), window in window()) {
            let f = current_frame(window, WindowType::Calendar, now);
            if window != TimeWindow::Total {
                let next = current_frame(window, WindowType::Calendar, f.end);
                prop_assert_eq!(next.start, f.end);
                let before = current_frame(window, WindowType::Calendar, f.start - Duration::nanoseconds(1));
                prop_assert_eq!(before.end, f.start);
            }
        }

        #[test]
        fn months_have_their_true_length(now in instant()) {
            let f = current_frame(TimeWindow::Monthly, WindowType::Calendar, now);
            let days = (f.end - f.start).num_days();
            prop_assert!((28..=31).contains(&days));
            prop_assert_eq!((f.end - f.start).num_seconds(), days * SECS_PER_DAY);
            let expected = match now.month() {
                2 if is_leap(now.year()) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            prop_assert_eq!(days, expected);
        }

        #[test]
        fn rolling_frames_are_n_aligned_buckets(now in instant(), window in window()) {
            if let (Some(size), Some(count)) = (rolling_bucket_secs(window), rolling_bucket_count(window)) {
                let f = current_frame(window, WindowType::Rolling, now);
                prop_assert_eq!((f.end - f.start).num_seconds(), size * count);
                prop_assert_eq!(f.start.timestamp().rem_euclid(size), 0);
                prop_assert_eq!(f.start.timestamp_subsec_nanos(), 0);
                let look_back = now - f.start;
                prop_assert!(look_back >= Duration::seconds((count - 1) * size));
                prop_assert!(look_back < Duration::seconds(count * size));
            }
        }

        #[test]
        fn a_charge_is_recorded_inside_its_own_frame(at in instant(), window in window(), kind in kind()) {
            let bucket = charge_bucket(window, kind, at);
            prop_assert!(bucket <= at);
            prop_assert!(current_frame(window, kind, at).counts_bucket(bucket));
        }

        #[test]
        fn a_calendar_charge_counts_exactly_in_its_own_frame(
            at in instant(), later_secs in 0i64..40 * SECS_PER_DAY, window in window()
        ) {
            let now = at + Duration::seconds(later_secs);
            let bucket = charge_bucket(window, WindowType::Calendar, at);
            let same = current_frame(window, WindowType::Calendar, at) == current_frame(window, WindowType::Calendar, now);
            prop_assert_eq!(current_frame(window, WindowType::Calendar, now).counts_bucket(bucket), same);
        }

        #[test]
        fn a_rolling_charge_counts_for_n_buckets_then_expires(
            at in instant(), later_secs in 0i64..40 * SECS_PER_DAY, window in window()
        ) {
            if let (Some(size), Some(count)) = (rolling_bucket_secs(window), rolling_bucket_count(window)) {
                let now = at + Duration::seconds(later_secs);
                let counts = current_frame(window, WindowType::Rolling, now)
                    .counts_bucket(charge_bucket(window, WindowType::Rolling, at));
                let buckets_apart = now.timestamp().div_euclid(size) - at.timestamp().div_euclid(size);
                prop_assert_eq!(counts, buckets_apart < count);
                if now - at < Duration::seconds((count - 1) * size) {
                    prop_assert!(counts);
                }
                if now - at >= Duration::seconds(count * size) {
                    prop_assert!(!counts);
                }
            }
        }

        #[test]
        fn no_instant_chrono_can_represent_makes_a_window_panic(
            secs in DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp(),
            window in window(), kind in kind()
        ) {
            let now = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
            let f = current_frame(window, kind, now);
            prop_assert!(f.start <= f.end);
            let _ = charge_bucket(window, kind, now);
        }
    }

    #[test]
    fn the_extremes_of_chrono_are_clamped_not_panicked_on() {
        for now in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            for window in WINDOWS {
                for kind in KINDS {
                    let f = current_frame(window, kind, now);
                    assert!(f.start <= f.end);
                    let _ = charge_bucket(window, kind, now);
                }
            }
        }
    }
}
