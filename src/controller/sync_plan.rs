//! The SyncSchedule decision, pure and with an injected clock, the way Kubernetes'
//! CronJob controller decides: given the schedule, its status, its Jobs and now, which Job
//! to start, which to stop, which to prune, and when to look again.

use std::time::Duration;

use super::names::job_name;

use jiff::Timestamp;

use crate::api::sync_schedule::{ConcurrencyPolicy, RunMode};
use crate::schedule::Schedule;

/// Where a Job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Active,
    Succeeded,
    Failed,
}

/// What the decision needs to know about one of the schedule's Jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobView {
    pub name: String,
    pub state: JobState,
    /// When the Job was created (its slot for scheduled runs).
    pub created: Timestamp,
    pub finished: Option<Timestamp>,
}

/// Everything the decision depends on.
#[derive(Clone, Debug)]
pub struct PlanInput<'a> {
    pub now: Timestamp,
    pub name: &'a str,
    pub schedule: &'a Schedule,
    pub suspend: bool,
    pub policy: ConcurrencyPolicy,
    pub starting_deadline: Option<Duration>,
    /// The slot of the last Job started (or skipped on purpose).
    pub last_schedule_time: Option<Timestamp>,
    /// When the SyncSchedule was created: no slot before it is ever run.
    pub created: Timestamp,
    pub jobs: &'a [JobView],
    /// A user asked for a run now (`orgconnect.dev/run=now`).
    pub run_now: bool,
}

/// A Job to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    pub job_name: String,
    /// The slot it runs for (now, for a manual run).
    pub slot: Timestamp,
    pub manual: bool,
}

/// Why a due run was not started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub reason: &'static str,
    pub message: String,
}

/// What to do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub start: Option<Start>,
    /// Active Jobs to delete first (`Replace`).
    pub replace: Vec<String>,
    pub skip: Option<Skip>,
    /// More than one slot passed since the last run; only the latest runs.
    pub missed: u32,
    /// The new `lastScheduleTime`, when a slot was used (started or skipped on purpose).
    pub last_schedule_time: Option<Timestamp>,
    /// The next slot.
    pub next: Option<Timestamp>,
}

/// Decides the next step.
pub fn decide(input: &PlanInput<'_>) -> Plan {
    let active: Vec<&JobView> = input
        .jobs
        .iter()
        .filter(|j| j.state == JobState::Active)
        .collect();
    let plan = Plan {
        next: input.schedule.next_after(input.now),
        ..Plan::default()
    };
    if input.run_now {
        return manual_run(input, &active, plan);
    }
    if input.suspend {
        return plan;
    }
    scheduled_run(input, &active, plan)
}

/// A run asked for by `orgconnect.dev/run=now`: started now unless Forbid and one runs.
fn manual_run(input: &PlanInput<'_>, active: &[&JobView], mut plan: Plan) -> Plan {
    let slot = input.now;
    match input.policy {
        ConcurrencyPolicy::Forbid if !active.is_empty() => {
            plan.skip = Some(Skip {
                reason: "ConcurrentRunForbidden",
                message: format!(
                    "a manual run was asked for while {} still runs; concurrencyPolicy is Forbid",
                    active[0].name
                ),
            });
        }
        policy => {
            if policy == ConcurrencyPolicy::Replace {
                plan.replace = active.iter().map(|j| j.name.clone()).collect();
            }
            plan.start = Some(Start {
                job_name: job_name(input.name, slot, true),
                slot,
                manual: true,
            });
        }
    }
    plan
}

/// The latest slot the schedule missed, started unless it is too late or Forbid holds it.
fn scheduled_run(input: &PlanInput<'_>, active: &[&JobView], mut plan: Plan) -> Plan {
    let since = input
        .last_schedule_time
        .unwrap_or(input.created)
        .max(input.created);
    let missed = input.schedule.missed(since, input.now);
    let Some(slot) = missed.latest else {
        return plan;
    };
    plan.last_schedule_time = Some(slot);
    // The slot's Job exists already: an operator stopped between creating it and recording
    // the slot. The slot ran (and was reported): record it, start, skip or replace nothing.
    let slot_job = job_name(input.name, slot, false);
    if input.jobs.iter().any(|job| job.name == slot_job) {
        return plan;
    }
    plan.missed = missed.count.saturating_sub(1);
    if let Some(deadline) = input.starting_deadline {
        let late = input.now.duration_since(slot);
        if late > jiff::SignedDuration::try_from(deadline).unwrap_or(jiff::SignedDuration::MAX) {
            plan.skip = Some(Skip {
                reason: "MissedStartingDeadline",
                message: format!(
                    "the run due at {slot} could not start within startingDeadlineSeconds ({}s)",
                    deadline.as_secs()
                ),
            });
            return plan;
        }
    }
    match input.policy {
        ConcurrencyPolicy::Forbid if !active.is_empty() => {
            plan.skip = Some(Skip {
                reason: "ConcurrentRunForbidden",
                message: format!(
                    "the run due at {slot} was skipped: {} still runs and concurrencyPolicy is Forbid",
                    active[0].name
                ),
            });
            return plan;
        }
        ConcurrencyPolicy::Replace => {
            plan.replace = active.iter().map(|j| j.name.clone()).collect();
        }
        _ => {}
    }
    plan.start = Some(Start {
        job_name: job_name(input.name, slot, false),
        slot,
        manual: false,
    });
    plan
}

/// Finished Jobs beyond the history limits, oldest first: these are deleted.
pub fn prune(jobs: &[JobView], successful_limit: usize, failed_limit: usize) -> Vec<String> {
    let mut doomed = Vec::new();
    for (state, limit) in [
        (JobState::Succeeded, successful_limit),
        (JobState::Failed, failed_limit),
    ] {
        let mut finished: Vec<&JobView> = jobs.iter().filter(|j| j.state == state).collect();
        finished.sort_by_key(|j| (j.finished.unwrap_or(j.created), j.created));
        let excess = finished.len().saturating_sub(limit);
        doomed.extend(finished.into_iter().take(excess).map(|j| j.name.clone()));
    }
    doomed
}

/// What a run fetches: a backfill until one has succeeded (when backfill is enabled),
/// then increments since the start of the last successful run.
pub fn run_mode(
    now: Timestamp,
    backfill_enabled: bool,
    backfill_done: bool,
    lookback: Duration,
    last_successful_start: Option<Timestamp>,
) -> (RunMode, Timestamp) {
    if backfill_enabled && !backfill_done {
        let since = now
            .checked_sub(
                jiff::SignedDuration::try_from(lookback).unwrap_or(jiff::SignedDuration::ZERO),
            )
            .unwrap_or(Timestamp::UNIX_EPOCH);
        return (RunMode::Backfill, since);
    }
    let since = last_successful_start.unwrap_or_else(|| {
        now.checked_sub(jiff::SignedDuration::from_hours(1))
            .unwrap_or(Timestamp::UNIX_EPOCH)
    });
    (RunMode::Incremental, since)
}

/// The schedule's active runs once `plan` is carried out (its replaced runs deleted, and
/// `started` created when the run it called for did start), sorted: the status's
/// `active` without listing the Jobs again.
pub fn active_after(jobs: &[JobView], plan: &Plan, started: Option<&str>) -> Vec<String> {
    let mut active: Vec<String> = jobs
        .iter()
        .filter(|j| j.state == JobState::Active && !plan.replace.contains(&j.name))
        .map(|j| j.name.clone())
        .chain(started.map(str::to_owned))
        .collect();
    active.sort();
    active.dedup();
    active
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_runs_after_a_plan_drop_the_replaced_and_add_the_started() {
        let jobs = [
            job("a", JobState::Active, "2026-03-01T10:00:00Z", None),
            job("b", JobState::Active, "2026-03-01T10:30:00Z", None),
            job(
                "c",
                JobState::Succeeded,
                "2026-03-01T09:00:00Z",
                Some("2026-03-01T09:05:00Z"),
            ),
        ];
        let plan = Plan {
            replace: vec!["a".to_owned()],
            ..Plan::default()
        };
        assert_eq!(active_after(&jobs, &plan, Some("d")), ["b", "d"]);
        assert_eq!(active_after(&jobs, &Plan::default(), None), ["a", "b"]);
        // A run refused (nothing started) adds nothing.
        assert_eq!(
            active_after(&[], &Plan::default(), None),
            Vec::<String>::new()
        );
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn job(name: &str, state: JobState, created: &str, finished: Option<&str>) -> JobView {
        JobView {
            name: name.into(),
            state,
            created: at(created),
            finished: finished.map(at),
        }
    }

    struct Case<'a> {
        name: &'a str,
        now: &'a str,
        last: Option<&'a str>,
        policy: ConcurrencyPolicy,
        deadline: Option<u64>,
        suspend: bool,
        run_now: bool,
        jobs: Vec<JobView>,
        expect_start: Option<&'a str>,
        expect_skip: Option<&'static str>,
        expect_replace: usize,
        expect_missed: u32,
    }

    impl Default for Case<'_> {
        fn default() -> Self {
            Self {
                name: "",
                now: "2026-03-01T10:31:00Z",
                last: Some("2026-03-01T10:00:00Z"),
                policy: ConcurrencyPolicy::Forbid,
                deadline: None,
                suspend: false,
                run_now: false,
                jobs: vec![],
                expect_start: None,
                expect_skip: None,
                expect_replace: 0,
                expect_missed: 0,
            }
        }
    }

    #[test]
    fn decides_like_a_cronjob() {
        let running = || {
            vec![job(
                "sync-29539320",
                JobState::Active,
                "2026-03-01T10:00:00Z",
                None,
            )]
        };
        let cases = [
            Case {
                name: "a due slot starts",
                expect_start: Some("2026-03-01T10:30:00Z"),
                ..Case::default()
            },
            Case {
                name: "nothing due yet",
                now: "2026-03-01T10:20:00Z",
                ..Case::default()
            },
            Case {
                name: "after downtime only the latest missed slot runs",
                now: "2026-03-01T12:05:00Z",
                expect_start: Some("2026-03-01T12:00:00Z"),
                expect_missed: 3,
                ..Case::default()
            },
            Case {
                name: "a slot past its starting deadline is skipped",
                now: "2026-03-01T10:45:00Z",
                deadline: Some(300),
                expect_skip: Some("MissedStartingDeadline"),
                ..Case::default()
            },
            Case {
                name: "within the deadline it still starts",
                now: "2026-03-01T10:33:00Z",
                deadline: Some(300),
                expect_start: Some("2026-03-01T10:30:00Z"),
                ..Case::default()
            },
            Case {
                name: "Forbid skips while a run is active",
                jobs: running(),
                expect_skip: Some("ConcurrentRunForbidden"),
                ..Case::default()
            },
            Case {
                name: "Allow runs alongside",
                policy: ConcurrencyPolicy::Allow,
                jobs: running(),
                expect_start: Some("2026-03-01T10:30:00Z"),
                ..Case::default()
            },
            Case {
                name: "Replace stops the active run",
                policy: ConcurrencyPolicy::Replace,
                jobs: running(),
                expect_start: Some("2026-03-01T10:30:00Z"),
                expect_replace: 1,
                ..Case::default()
            },
            Case {
                name: "suspended schedules start nothing",
                suspend: true,
                ..Case::default()
            },
            Case {
                name: "a manual run starts at once",
                now: "2026-03-01T10:20:00Z",
                run_now: true,
                expect_start: Some("2026-03-01T10:20:00Z"),
                ..Case::default()
            },
            Case {
                name: "a manual run under Forbid waits for the active one",
                now: "2026-03-01T10:20:00Z",
                run_now: true,
                jobs: running(),
                expect_skip: Some("ConcurrentRunForbidden"),
                ..Case::default()
            },
            Case {
                name: "a new schedule never runs slots from before it existed",
                now: "2026-03-01T10:31:00Z",
                last: None,
                expect_start: Some("2026-03-01T10:30:00Z"),
                ..Case::default()
            },
        ];
        let schedule = Schedule::parse("*/30 * * * *", None).expect("valid");
        for case in &cases {
            let input = PlanInput {
                now: at(case.now),
                name: "sync",
                schedule: &schedule,
                suspend: case.suspend,
                policy: case.policy,
                starting_deadline: case.deadline.map(Duration::from_secs),
                last_schedule_time: case.last.map(at),
                created: at("2026-03-01T10:10:00Z"),
                jobs: &case.jobs,
                run_now: case.run_now,
            };
            let plan = decide(&input);
            assert_eq!(
                plan.start.as_ref().map(|s| s.slot),
                case.expect_start.map(at),
                "{}",
                case.name
            );
            assert_eq!(
                plan.skip.as_ref().map(|s| s.reason),
                case.expect_skip,
                "{}",
                case.name
            );
            assert_eq!(plan.replace.len(), case.expect_replace, "{}", case.name);
            assert_eq!(plan.missed, case.expect_missed, "{}", case.name);
            assert!(
                plan.next.is_some_and(|next| next > at(case.now)),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn a_slot_whose_job_exists_is_recorded_and_not_started_again() {
        // An operator created sync-29539350 (the 10:30 slot) and was killed before it
        // recorded the slot; its successor sees the slot due and its Job running.
        let schedule = Schedule::parse("*/30 * * * *", None).expect("valid");
        let jobs = [job(
            "sync-29539350",
            JobState::Active,
            "2026-03-01T10:30:01Z",
            None,
        )];
        for policy in [
            ConcurrencyPolicy::Forbid,
            ConcurrencyPolicy::Allow,
            ConcurrencyPolicy::Replace,
        ] {
            let plan = decide(&PlanInput {
                now: at("2026-03-01T10:30:05Z"),
                name: "sync",
                schedule: &schedule,
                suspend: false,
                policy,
                starting_deadline: None,
                last_schedule_time: Some(at("2026-03-01T09:00:00Z")),
                created: at("2026-03-01T08:00:00Z"),
                jobs: &jobs,
                run_now: false,
            });
            assert_eq!(
                plan,
                Plan {
                    last_schedule_time: Some(at("2026-03-01T10:30:00Z")),
                    next: Some(at("2026-03-01T11:00:00Z")),
                    ..Plan::default()
                },
                "{policy:?}: no second start, no skip, no replacement, no missed-slot report"
            );
        }
    }

    #[test]
    fn daylight_saving_slots_in_a_time_zone() {
        // 01:30 local in New York: on 2026-11-01 that hour happens twice.
        let schedule = Schedule::parse("30 1 * * *", Some("America/New_York")).expect("valid");
        let input = PlanInput {
            now: at("2026-11-01T05:35:00Z"),
            name: "nightly",
            schedule: &schedule,
            suspend: false,
            policy: ConcurrencyPolicy::Forbid,
            starting_deadline: None,
            last_schedule_time: Some(at("2026-10-31T05:30:00Z")),
            created: at("2026-10-01T00:00:00Z"),
            jobs: &[],
            run_now: false,
        };
        let plan = decide(&input);
        assert_eq!(
            plan.start.map(|s| s.slot),
            Some(at("2026-11-01T05:30:00Z")),
            "01:30 EDT"
        );
        // Once run, the repeated 01:30 EST an hour later is not a second run that day.
        let after = PlanInput {
            now: at("2026-11-01T06:35:00Z"),
            last_schedule_time: Some(at("2026-11-01T05:30:00Z")),
            ..input
        };
        assert_eq!(decide(&after).start, None);
    }

    #[test]
    fn history_limits_prune_the_oldest() {
        let jobs = vec![
            job(
                "a",
                JobState::Succeeded,
                "2026-03-01T08:00:00Z",
                Some("2026-03-01T08:05:00Z"),
            ),
            job(
                "b",
                JobState::Succeeded,
                "2026-03-01T09:00:00Z",
                Some("2026-03-01T09:05:00Z"),
            ),
            job(
                "c",
                JobState::Failed,
                "2026-03-01T09:30:00Z",
                Some("2026-03-01T09:35:00Z"),
            ),
            job(
                "d",
                JobState::Failed,
                "2026-03-01T10:00:00Z",
                Some("2026-03-01T10:05:00Z"),
            ),
            job("e", JobState::Active, "2026-03-01T10:30:00Z", None),
        ];
        assert_eq!(prune(&jobs, 1, 1), ["a", "c"]);
        assert_eq!(prune(&jobs, 3, 0), ["c", "d"]);
        assert!(prune(&jobs, 5, 5).is_empty());
    }

    #[test]
    fn backfill_first_then_incremental_since_the_last_success() {
        let now = at("2026-03-01T10:30:00Z");
        let year = Duration::from_secs(365 * 24 * 3600);
        assert_eq!(
            run_mode(now, true, false, year, None),
            (RunMode::Backfill, at("2025-03-01T10:30:00Z"))
        );
        let last = at("2026-03-01T10:00:00Z");
        assert_eq!(
            run_mode(now, true, true, year, Some(last)),
            (RunMode::Incremental, last)
        );
        assert_eq!(
            run_mode(now, false, false, year, Some(last)).0,
            RunMode::Incremental
        );
    }
}
