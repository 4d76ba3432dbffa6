//! Cron and time-zone arithmetic for SyncSchedules, pure: five-field cron expressions
//! and the usual macros, read in an IANA time zone (correct across daylight-saving
//! changes), with the slot times before and after a moment.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// At most this many missed slots are counted; beyond it the count says "at least".
pub const MISSED_COUNT_LIMIT: u32 = 100;

/// Why a schedule cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression {expression:?}: {reason}")]
    Cron { expression: String, reason: String },
    #[error("unknown time zone {0:?}: use an IANA name such as Europe/Berlin")]
    TimeZone(String),
}

/// A parsed schedule in its time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
}

/// The slots between the last run and now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missed {
    /// The most recent slot at or before now (after the window's start).
    pub latest: Option<Timestamp>,
    /// How many slots fell in the window, up to [`MISSED_COUNT_LIMIT`].
    pub count: u32,
}

impl Schedule {
    /// Parses `expression` (five fields, or `@hourly`, `@daily`, `@weekly`, `@monthly`,
    /// `@yearly`) in `time_zone` (UTC when `None`).
    pub fn parse(expression: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(expression)
            .map_err(|err| ScheduleError::Cron {
                expression: expression.to_owned(),
                reason: err.to_string(),
            })?;
        let zone = match time_zone.filter(|z| !z.is_empty()) {
            None => TimeZone::UTC,
            Some(name) => {
                TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(name.to_owned()))?
            }
        };
        Ok(Self { cron, zone })
    }

    /// The first slot strictly after `moment`.
    pub fn next_after(&self, moment: Timestamp) -> Option<Timestamp> {
        let zoned = moment.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The latest slot at or before `moment`.
    pub fn latest_at_or_before(&self, moment: Timestamp) -> Option<Timestamp> {
        let zoned = moment.to_zoned(self.zone.clone());
        self.cron
            .find_previous_occurrence(&zoned, true)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The slots in `(after, now]`.
    pub fn missed(&self, after: Timestamp, now: Timestamp) -> Missed {
        let latest = self.latest_at_or_before(now).filter(|slot| *slot > after);
        let mut count = 0;
        if latest.is_some() {
            let mut cursor = after;
            while count < MISSED_COUNT_LIMIT {
                match self.next_after(cursor) {
                    Some(slot) if slot <= now => {
                        count += 1;
                        cursor = slot;
                    }
                    _ => break,
                }
            }
        }
        Missed { latest, count }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn default_schedule_runs_every_half_hour() {
        let schedule = Schedule::parse("*/30 * * * *", None).expect("valid");
        assert_eq!(
            schedule.next_after(at("2026-03-01T10:00:00Z")),
            Some(at("2026-03-01T10:30:00Z"))
        );
        assert_eq!(
            schedule.next_after(at("2026-03-01T10:29:59Z")),
            Some(at("2026-03-01T10:30:00Z"))
        );
        assert_eq!(
            schedule.latest_at_or_before(at("2026-03-01T10:30:00Z")),
            Some(at("2026-03-01T10:30:00Z"))
        );
    }

    #[test]
    fn macros_are_understood() {
        let hourly = Schedule::parse("@hourly", None).expect("valid");
        assert_eq!(
            hourly.next_after(at("2026-03-01T10:10:00Z")),
            Some(at("2026-03-01T11:00:00Z"))
        );
        let daily = Schedule::parse("@daily", None).expect("valid");
        assert_eq!(
            daily.next_after(at("2026-03-01T10:10:00Z")),
            Some(at("2026-03-02T00:00:00Z"))
        );
    }

    #[test]
    fn bad_input_is_an_error_naming_the_problem() {
        let six = Schedule::parse("0 */5 * * * *", None).expect_err("six fields");
        assert!(six.to_string().contains("0 */5 * * * *"), "{six}");
        assert!(Schedule::parse("61 * * * *", None).is_err());
        assert!(Schedule::parse("every minute", None).is_err());
        let zone = Schedule::parse("@daily", Some("Mars/Olympus_Mons")).expect_err("zone");
        assert!(zone.to_string().contains("Mars/Olympus_Mons"));
    }

    #[test]
    fn time_zones_follow_daylight_saving() {
        // 02:30 every day in Berlin: on 2026-03-29 clocks jump from 02:00 to 03:00.
        let schedule = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).expect("valid");
        // Before the change, 02:30 CET is 01:30 UTC.
        assert_eq!(
            schedule.next_after(at("2026-03-27T12:00:00Z")),
            Some(at("2026-03-28T01:30:00Z"))
        );
        // The skipped local time does not run twice and the next day is 02:30 CEST = 00:30 UTC.
        let after_gap = schedule.next_after(at("2026-03-29T12:00:00Z"));
        assert_eq!(after_gap, Some(at("2026-03-30T00:30:00Z")));
        // 09:00 every day in New York, across its November fall-back.
        let ny = Schedule::parse("0 9 * * *", Some("America/New_York")).expect("valid");
        assert_eq!(
            ny.next_after(at("2026-10-31T20:00:00Z")),
            Some(at("2026-11-01T14:00:00Z"))
        );
        assert_eq!(
            ny.next_after(at("2026-11-01T20:00:00Z")),
            Some(at("2026-11-02T14:00:00Z"))
        );
    }

    #[test]
    fn counts_missed_slots_and_finds_the_latest() {
        let schedule = Schedule::parse("*/30 * * * *", None).expect("valid");
        let missed = schedule.missed(at("2026-03-01T10:00:00Z"), at("2026-03-01T12:10:00Z"));
        assert_eq!(missed.latest, Some(at("2026-03-01T12:00:00Z")));
        assert_eq!(missed.count, 4);
        let none = schedule.missed(at("2026-03-01T12:00:00Z"), at("2026-03-01T12:10:00Z"));
        assert_eq!(
            none,
            Missed {
                latest: None,
                count: 0
            }
        );
        let long = schedule.missed(at("2025-01-01T00:00:00Z"), at("2026-03-01T12:10:00Z"));
        assert_eq!(long.count, MISSED_COUNT_LIMIT);
        assert_eq!(long.latest, Some(at("2026-03-01T12:00:00Z")));
    }
}
