//! Turning the engine's report into a Sync's status.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::conditions;
use crate::api::{SyncPhase, SyncProgress, SyncStatus};
use crate::controller::status::set_condition;
use crate::engine::{Progress, SyncReport};

/// The final status of a Sync from its report.
pub fn finished(mut status: SyncStatus, report: &SyncReport, generation: Option<i64>, now: Timestamp) -> SyncStatus {
    status.phase = Some(report.phase);
    status.reason = report.reason.clone();
    status.message = report.message.clone();
    status.start_time = status.start_time.or(Some(Time(report.started)));
    status.completion_time = report.completed.map(Time);
    status.duration = report.duration();
    status.extracted = report.extracted.clone();
    status.loaded = report.loaded.clone();
    status.skipped = report.skipped.clone();
    status.failed_records = report.failed_records.clone();
    status.errors = report.errors.clone();
    status.progress = None;
    let why = report.reason.clone().unwrap_or_else(|| report.phase.to_string());
    let msg = report.message.clone().unwrap_or_else(|| report.phase.to_string());
    let failed = report.phase == SyncPhase::Failed;
    set_condition(&mut status.conditions, conditions::COMPLETE, !failed, &why, &msg, generation, now);
    set_condition(&mut status.conditions, conditions::FAILED, failed, &why, &msg, generation, now);
    status
}

/// A sync stopped by SIGTERM ends `Failed` with reason `Terminated`: it
/// did not do all its work, and the platform, not a person, stopped it.
/// What was acknowledged is committed; the counts stay as the engine kept
/// them (the rest is skipped), so they still add up.
pub fn terminated(report: &mut SyncReport) {
    report.phase = SyncPhase::Failed;
    report.reason = Some(conditions::reason::TERMINATED.to_string());
    report.message = Some(format!(
        "the worker was stopped (SIGTERM: its pod was deleted, drained or evicted); {} records accepted and {} rejected before it stopped are committed, and the next sync sends the rest",
        report.loaded.succeeded, report.loaded.failed
    ));
}

/// A sync stopped at the Mapping's `activeDeadlineSeconds` ends `Failed`
/// with reason `DeadlineExceeded`, as the Sync controller says when it
/// sees the Job's deadline first.
pub fn deadline_exceeded(report: &mut SyncReport, seconds: i64) {
    report.deadline_exceeded(seconds);
}

/// A running Sync's status with the latest progress.
pub fn in_progress(mut status: SyncStatus, p: &Progress) -> SyncStatus {
    status.phase = Some(SyncPhase::InProgress);
    status.extracted = p.extracted.clone();
    status.loaded = p.loaded.clone();
    status.progress = Some(SyncProgress { extracted: p.read, loaded: p.answered() });
    status
}
