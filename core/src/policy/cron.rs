//! Five-field cron schedules (minute hour day-of-month month day-of-week), UTC, for freeze windows.

use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Schedule {
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    days: BTreeSet<u32>,
    months: BTreeSet<u32>,
    weekdays: BTreeSet<u32>,
    /// Cron's rule: when both day fields are restricted, either may match.
    days_restricted: bool,
    weekdays_restricted: bool,
}

/// A UTC calendar minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Minute {
    pub minute: u32,
    pub hour: u32,
    pub day: u32,
    pub month: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

impl Minute {
    /// The calendar minute of a Unix time (seconds).
    pub(crate) fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Civil-from-days (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Minute {
            minute: (rem / 60 % 60) as u32,
            hour: (rem / 3600) as u32,
            day,
            month,
            weekday: (days + 4).rem_euclid(7) as u32, // 1970-01-01 was a Thursday
        }
    }
}

impl Schedule {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!("{text:?} must have five fields: minute hour day-of-month month day-of-week"));
        };
        let weekdays: BTreeSet<u32> = field(weekday, 0, 7, "day-of-week")?.into_iter().map(|d| d % 7).collect();
        Ok(Schedule {
            minutes: field(minute, 0, 59, "minute")?,
            hours: field(hour, 0, 23, "hour")?,
            days: field(day, 1, 31, "day-of-month")?,
            months: field(month, 1, 12, "month")?,
            weekdays,
            days_restricted: day != "*",
            weekdays_restricted: weekday != "*",
        })
    }

    pub(crate) fn matches(&self, m: Minute) -> bool {
        let day = self.days.contains(&m.day);
        let weekday = self.weekdays.contains(&m.weekday);
        let day_ok = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            _ => day && weekday,
        };
        self.minutes.contains(&m.minute) && self.hours.contains(&m.hour) && self.months.contains(&m.month) && day_ok
    }
}

fn field(text: &str, min: u32, max: u32, name: &str) -> Result<BTreeSet<u32>, String> {
    let bad = || format!("{name} field {text:?} is not valid (use *, N, N-M, */S, N-M/S or lists with ',')");
    let mut out = BTreeSet::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(bad)?),
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
                None => {
                    let n = r.parse().map_err(|_| bad())?;
                    (n, if step > 1 { max } else { n })
                }
            },
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{name} field {text:?} is outside {min}-{max}"));
        }
        out.extend((lo..=hi).step_by(step as usize));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_unix_time_to_calendar() {
        // 2026-11-26T01:10:00Z is a Thursday.
        let m = Minute::from_unix(1_795_655_400);
        assert_eq!((m.month, m.day, m.hour, m.minute, m.weekday), (11, 26, 1, 10, 4));
    }

    #[test]
    fn matches_friday_evenings() {
        let s = Schedule::parse("0 18 * * 5").unwrap();
        assert!(s.matches(Minute { minute: 0, hour: 18, day: 27, month: 11, weekday: 5 }));
        assert!(!s.matches(Minute { minute: 0, hour: 18, day: 26, month: 11, weekday: 4 }));
    }

    #[test]
    fn either_day_field_matches_when_both_are_restricted() {
        let s = Schedule::parse("0 0 1 * 1").unwrap();
        assert!(s.matches(Minute { minute: 0, hour: 0, day: 1, month: 3, weekday: 3 }));
        assert!(s.matches(Minute { minute: 0, hour: 0, day: 9, month: 3, weekday: 1 }));
    }

    #[test]
    fn rejects_bad_schedules() {
        for text in ["* * * *", "60 * * * *", "*/0 * * * *", "a * * * *", "5-1 * * * *"] {
            assert!(Schedule::parse(text).is_err(), "{text}");
        }
    }
}
