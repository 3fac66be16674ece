//! Syncs whose process died: closed as `WorkerDied` by the next sync that
//! holds the Mapping's lock, with the counts their record log holds (what
//! they delivered, rejected and skipped was committed as it happened).

use jiff::Timestamp;

use super::SyncReport;
use super::tally::Tally;
use crate::api::{SyncPhase, conditions::reason};
use crate::record::skip;
use crate::warehouse::{HistoryFilter, StateScope, SyncRun, Warehouse, WarehouseError};

/// How long [`fail_abandoned_runs`] waits for the Mapping's lock: a sync that
/// was just killed may take a moment to let go of it (its server notices the
/// closed connection).
const ABANDONED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Marks runs of a Mapping that are still InProgress as Failed, when no sync
/// of the Mapping holds its lock (the process that ran them died: a local
/// run that was killed). With the lock held by a running sync, nothing is
/// abandoned and nothing is touched. Every sync does this itself once it
/// holds the lock; the operator also uses the Job's status.
pub async fn fail_abandoned_runs(warehouse: &dyn Warehouse, mapping_uid: &str) -> Result<u64, WarehouseError> {
    let scope = StateScope::from_uid(mapping_uid);
    warehouse.prepare_state(&scope).await?;
    let Some(lock) = warehouse.lock_sync(&scope, ABANDONED_WAIT).await? else { return Ok(0) };
    let closed = close_abandoned(warehouse, &scope, "").await;
    drop(lock);
    closed
}

/// Closes the InProgress runs of a Mapping but `except` (the caller's own);
/// the caller holds the Mapping's lock. What they delivered was committed as
/// it was acknowledged; the next sync finds the rest.
pub(super) async fn close_abandoned(warehouse: &dyn Warehouse, scope: &StateScope, except: &str) -> Result<u64, WarehouseError> {
    let filter = HistoryFilter {
        mapping_uids: vec![scope.id.clone()],
        phase: Some(SyncPhase::InProgress.as_str().to_string()),
        ..Default::default()
    };
    let stale: Vec<SyncRun> = warehouse.runs(&filter).await?.into_iter().filter(|r| r.sync != except).collect();
    for mut run in stale.iter().cloned() {
        let mut report: SyncReport = serde_json::from_str(&run.status_json).map_err(|e| WarehouseError::State {
            action: "read",
            message: format!("sync-run record of {} is not readable: {e}", run.sync),
        })?;
        recount(&mut report, &warehouse.log_counts(scope, &run.sync).await?);
        report.phase = SyncPhase::Failed;
        report.reason = Some(reason::WORKER_DIED.to_string());
        report.message = Some(
            "the process running this sync stopped before it finished (killed or crashed); what the destination \
             acknowledged was committed, and the next sync sends the rest"
                .to_string(),
        );
        let now = Timestamp::now();
        report.completed = Some(now);
        run.phase = report.phase.as_str().to_string();
        run.completed_ms = Some(now.as_millisecond());
        run.status_json = serde_json::to_string(&report).unwrap_or_else(|_| "{}".to_string());
        warehouse.save_run(&run).await?;
        warehouse.drop_stage(scope, &run.sync).await?;
    }
    Ok(stale.len() as u64)
}

/// The counts of a dead sync from its record log; what the log does not
/// account for was not processed (the next sync sends it).
fn recount(report: &mut SyncReport, logged: &[crate::warehouse::LogCount]) {
    let mut tally = Tally::default();
    tally.extracted = report.extracted.clone();
    for c in logged {
        tally.logged(c);
    }
    // A sync saved before it counted its changes (or by an older retl): the
    // changes it found are at least those it logged.
    let e = &mut tally.extracted;
    let by_kind = |k| logged.iter().filter(|c| c.kind == k).map(|c| c.count).sum::<u64>();
    use crate::api::ChangeKind::{Added, Deleted, Updated};
    if e.added + e.updated + e.deleted < logged.iter().map(|c| c.count).sum::<u64>() {
        (e.added, e.updated, e.deleted) = (by_kind(Added), by_kind(Updated), by_kind(Deleted));
        e.total = e.added + e.updated + e.deleted + e.unchanged;
    }
    let rest = tally.unaccounted();
    tally.skip(skip::NOT_PROCESSED, rest);
    report.extracted = tally.extracted.clone();
    report.loaded = tally.loaded.clone();
    report.skipped = tally.skipped();
    report.errors = tally.errors();
}
