//! Mapping schedules, as CronJob has them: a cron expression (or macro such
//! as `@hourly`) in a time zone, or an interval `@every 15m`. Pure: no clock,
//! no client; the Mapping controller passes the times in.

use std::str::FromStr;

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("spec.schedule {expr:?} is not a cron expression, a macro (@hourly, @daily, ...) or an interval (@every 15m): {message}")]
    Invalid { expr: String, message: String },
    #[error("spec.timeZone {0:?} is not an IANA time zone (like Europe/Berlin or UTC)")]
    TimeZone(String),
}

/// A parsed schedule.
#[derive(Clone, Debug)]
pub enum Schedule {
    Cron {
        cron: Box<Cron>,
        tz: TimeZone,
    },
    /// Ticks at `anchor + n × every`.
    Every {
        every: SignedDuration,
        anchor: Timestamp,
    },
}

/// What the schedule asks for now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing to run yet.
    Nothing,
    /// Run once for this tick (the latest one missed, if several were).
    Run(Timestamp),
    /// The latest tick is older than the starting deadline: skip it.
    Missed(Timestamp),
}

impl Schedule {
    /// Parses `expr` in `time_zone` (default UTC); `anchor` anchors intervals
    /// (the Mapping's creation time).
    pub fn parse(expr: &str, time_zone: Option<&str>, anchor: Timestamp) -> Result<Schedule, ScheduleError> {
        let invalid = |message: String| ScheduleError::Invalid { expr: expr.to_string(), message };
        let trimmed = expr.trim();
        if let Some(rest) = trimmed.strip_prefix("@every") {
            let d = humantime::parse_duration(rest.trim()).map_err(|e| invalid(e.to_string()))?;
            let every = SignedDuration::try_from(d).map_err(|e| invalid(e.to_string()))?;
            if every < SignedDuration::from_secs(1) {
                return Err(invalid("the interval must be at least 1s".into()));
            }
            return Ok(Schedule::Every { every, anchor });
        }
        let tz = match time_zone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(name.to_string()))?,
        };
        let cron = Cron::from_str(trimmed).map_err(|e| invalid(e.to_string()))?;
        Ok(Schedule::Cron { cron: Box::new(cron), tz })
    }

    /// The latest tick in `(after, now]`, if any.
    pub fn latest_tick(&self, after: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let tick = match self {
            Schedule::Cron { cron, tz } => {
                let zoned = now.to_zoned(tz.clone());
                cron.find_previous_occurrence(&zoned, true).ok()?.timestamp()
            }
            Schedule::Every { every, anchor } => {
                if now < *anchor {
                    return None;
                }
                let n = now.duration_since(*anchor).as_millis() / every.as_millis();
                anchor.checked_add(SignedDuration::from_millis((n * every.as_millis()) as i64)).ok()?
            }
        };
        (tick > after && tick <= now).then_some(tick)
    }

    /// The first tick after `t`.
    pub fn next_tick(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Cron { cron, tz } => cron.find_next_occurrence(&t.to_zoned(tz.clone()), false).ok().map(|z| z.timestamp()),
            Schedule::Every { every, anchor } => {
                if t < *anchor {
                    return Some(*anchor);
                }
                let n = t.duration_since(*anchor).as_millis() / every.as_millis() + 1;
                anchor.checked_add(SignedDuration::from_millis((n * every.as_millis()) as i64)).ok()
            }
        }
    }

    /// Whether a sync is due: the latest tick after the last scheduled one,
    /// run once however many were missed, unless it is older than the
    /// starting deadline.
    pub fn due(&self, last: Timestamp, now: Timestamp, starting_deadline_seconds: Option<i64>) -> Due {
        match self.latest_tick(last, now) {
            None => Due::Nothing,
            Some(tick) => match starting_deadline_seconds {
                Some(s) if now.duration_since(tick).as_secs() > s => Due::Missed(tick),
                _ => Due::Run(tick),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn cron_in_a_time_zone() {
        let s = Schedule::parse("0 9 * * *", Some("Europe/Berlin"), t("2026-01-01T00:00:00Z")).unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        assert_eq!(s.next_tick(t("2026-01-10T12:00:00Z")), Some(t("2026-01-11T08:00:00Z")));
        assert_eq!(s.next_tick(t("2026-07-10T12:00:00Z")), Some(t("2026-07-11T07:00:00Z")));
        assert!(matches!(Schedule::parse("0 9 * * *", Some("Mars/Olympus"), t("2026-01-01T00:00:00Z")), Err(ScheduleError::TimeZone(_))));
        assert!(Schedule::parse("every tuesday", None, t("2026-01-01T00:00:00Z")).is_err());
        assert!(Schedule::parse("@hourly", None, t("2026-01-01T00:00:00Z")).is_ok());
    }

    #[test]
    fn missed_ticks_run_once_within_the_starting_deadline() {
        let s = Schedule::parse("*/5 * * * *", None, t("2026-01-01T00:00:00Z")).unwrap();
        let last = t("2026-01-01T10:00:00Z");
        // Down for 23 minutes: four ticks missed, one run, for the latest.
        assert_eq!(s.due(last, t("2026-01-01T10:23:00Z"), None), Due::Run(t("2026-01-01T10:20:00Z")));
        assert_eq!(s.due(last, t("2026-01-01T10:23:00Z"), Some(60)), Due::Missed(t("2026-01-01T10:20:00Z")));
        assert_eq!(s.due(last, t("2026-01-01T10:23:00Z"), Some(300)), Due::Run(t("2026-01-01T10:20:00Z")));
        assert_eq!(s.due(t("2026-01-01T10:20:00Z"), t("2026-01-01T10:23:00Z"), None), Due::Nothing, "once per tick");
    }

    #[test]
    fn intervals_are_anchored_at_creation() {
        let s = Schedule::parse("@every 15m", None, t("2026-01-01T10:07:00Z")).unwrap();
        assert_eq!(s.next_tick(t("2026-01-01T10:07:00Z")), Some(t("2026-01-01T10:22:00Z")));
        assert_eq!(s.due(t("2026-01-01T10:07:00Z"), t("2026-01-01T10:40:00Z"), None), Due::Run(t("2026-01-01T10:37:00Z")));
        assert!(Schedule::parse("@every 0s", None, t("2026-01-01T10:07:00Z")).is_err());
    }
}
