//! One sync, start to end: a readable pipeline of the engine's steps.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::decide::{Decider, Decision};
use super::load::Loader;
use super::tally::Tally;
use super::{EngineError, Observer, SyncContext, SyncReport, guard};
use crate::api::{ChangeKind, ExtractedCounts, SyncPhase, SyncTrigger, conditions::reason};
use crate::destination::Destination;
use crate::fieldmap::FieldMapper;
use crate::record::skip;
use crate::warehouse::{DiffCounts, DiffMode, DiffRequest, StateScope, SyncLock, SyncRun, Warehouse, WarehouseError};

/// Runs one sync to its end and returns what happened. Never panics and
/// never returns early: every failure becomes a Failed report with a reason
/// and a message a person can act on, and the report is saved in the
/// warehouse's sync-run table.
pub async fn run_sync(
    ctx: &SyncContext,
    warehouse: &dyn Warehouse,
    destination: Arc<dyn Destination>,
    observer: &dyn Observer,
    cancel: &CancellationToken,
) -> SyncReport {
    run_sync_until(ctx, warehouse, destination, observer, cancel, None).await
}

/// [`run_sync`] that stops at the next batch boundary once `deadline_seconds`
/// have passed (the Mapping's `activeDeadlineSeconds`, which the Job
/// controller enforces for workers and this enforces for local runs). It
/// then ends `Failed` with reason `DeadlineExceeded`, as a worker does;
/// what was acknowledged stays committed. Requests in flight at the
/// deadline finish first (each within the destination's timeout).
pub async fn run_sync_until(
    ctx: &SyncContext,
    warehouse: &dyn Warehouse,
    destination: Arc<dyn Destination>,
    observer: &dyn Observer,
    cancel: &CancellationToken,
    deadline_seconds: Option<i64>,
) -> SyncReport {
    let stop = cancel.child_token();
    let passed = std::sync::atomic::AtomicBool::new(false);
    let run = run_inner(ctx, warehouse, destination, observer, &stop, || {
        passed.load(std::sync::atomic::Ordering::SeqCst).then_some(deadline_seconds.unwrap_or_default())
    });
    let Some(seconds) = deadline_seconds else { return run.await };
    tokio::pin!(run);
    let timer = tokio::time::sleep(std::time::Duration::from_secs(seconds.max(0) as u64));
    tokio::select! {
        report = &mut run => report,
        () = timer => {
            // Stop at the next batch boundary; the run then ends and says why.
            passed.store(true, std::sync::atomic::Ordering::SeqCst);
            stop.cancel();
            run.await
        }
    }
}

async fn run_inner(
    ctx: &SyncContext,
    warehouse: &dyn Warehouse,
    destination: Arc<dyn Destination>,
    observer: &dyn Observer,
    cancel: &CancellationToken,
    deadline_passed: impl Fn() -> Option<i64>,
) -> SyncReport {
    let scope = StateScope::from_uid(&ctx.mapping_uid);
    let mut report = SyncReport::started(Timestamp::now());
    let mut tally = Tally::default();
    // Held to the end, past the saved outcome: until then a sync that starts
    // must neither diff against a snapshot this one is still moving, nor
    // take this one for abandoned.
    let (lock, result) = match hold(ctx, warehouse, &scope).await {
        Ok(lock) => (Some(lock), steps(ctx, warehouse, destination, observer, cancel, &scope, &mut tally, &report).await),
        Err(e) => (None, Err(e)),
    };
    if lock.is_some() {
        // What this sync committed moves into the snapshot, however it
        // ended. Should this fail, the next sync merges it before it diffs.
        if let Err(e) = warehouse.merge(&scope).await {
            tracing::warn!(sync = %ctx.sync_name, error = %e, "could not merge the sync's records into the snapshot; the next sync does");
        }
    }
    let (phase, why, message) = match result {
        Ok(Step::Loaded { canceled }) => {
            let rest = tally.unaccounted();
            tally.skip(if canceled { skip::CANCELED } else { skip::NOT_PROCESSED }, rest);
            tally.outcome(canceled)
        }
        Ok(Step::GuardTripped(message)) => {
            let rest = tally.unaccounted();
            tally.skip(skip::GUARD_TRIPPED, rest);
            (SyncPhase::Failed, Some(reason::GUARD_TRIPPED.to_string()), Some(message))
        }
        Err(e) => {
            let rest = tally.unaccounted();
            tally.skip(skip::NOT_PROCESSED, rest);
            (SyncPhase::Failed, Some(e.reason().to_string()), Some(e.to_string()))
        }
    };
    report.phase = phase;
    report.reason = why;
    report.message = message;
    report.completed = Some(Timestamp::now());
    report.extracted = tally.extracted.clone();
    report.loaded = tally.loaded.clone();
    report.skipped = tally.skipped();
    report.failed_records = tally.samples();
    report.errors = tally.errors();
    if let Some(seconds) = deadline_passed()
        && report.phase == SyncPhase::Canceled
    {
        report.deadline_exceeded(seconds);
    }
    if let Err(e) = warehouse.save_run(&run_row(ctx, &report)).await {
        tracing::warn!(sync = %ctx.sync_name, error = %e, "could not save the sync's run record");
    }
    if let Err(e) = warehouse.drop_stage(&scope, &ctx.sync_name).await {
        tracing::warn!(sync = %ctx.sync_name, error = %e, "could not drop the sync's stage");
    }
    drop(lock);
    report
}

/// Takes the Mapping's lock (waiting up to `ctx.lock_wait`), then closes the
/// syncs of the Mapping still marked InProgress: nobody holds the lock but
/// this sync, so whoever ran them is gone.
async fn hold(ctx: &SyncContext, warehouse: &dyn Warehouse, scope: &StateScope) -> Result<SyncLock, EngineError> {
    warehouse.prepare_state(scope).await?;
    let Some(lock) = warehouse.lock_sync(scope, ctx.lock_wait).await? else {
        return Err(EngineError::InProgress { mapping: ctx.mapping_name.clone(), waited_secs: ctx.lock_wait.as_secs() });
    };
    super::abandoned::close_abandoned(warehouse, scope, &ctx.sync_name).await?;
    Ok(lock)
}

enum Step {
    Loaded { canceled: bool },
    GuardTripped(String),
}

#[allow(clippy::too_many_arguments)]
async fn steps(
    ctx: &SyncContext,
    warehouse: &dyn Warehouse,
    destination: Arc<dyn Destination>,
    observer: &dyn Observer,
    cancel: &CancellationToken,
    scope: &StateScope,
    tally: &mut Tally,
    report: &SyncReport,
) -> Result<Step, EngineError> {
    warehouse.prepare_state(scope).await?;
    warehouse.save_run(&run_row(ctx, report)).await?;
    let window = retry_window(&ctx.mapping.retry_window)?;
    let now_ms = Timestamp::now().as_millisecond();
    // What a dead sync committed but did not merge goes into the snapshot
    // first, so the diff below does not find it again.
    let merged = warehouse.merge(scope).await?;
    if merged > 0 {
        tracing::info!(sync = %ctx.sync_name, records = merged, "records a stopped sync delivered are merged into the snapshot");
    }
    // Records a dead sync sent without committing their outcome: whether or
    // not the destination has them, the diff below now treats them as sent.
    let recovered = warehouse.recover_in_flight(scope).await?;
    if recovered > 0 {
        tracing::info!(sync = %ctx.sync_name, records = recovered, "records a stopped sync had in flight are sent again (or deleted)");
    }
    warehouse.prune(scope, now_ms - window).await?;
    if ctx.trigger == SyncTrigger::Reset {
        // A reset forgets what was delivered, so its own diff can no longer
        // see that the model went empty: look before forgetting. Resetting
        // while the model is broken would leave every record delivered so
        // far in the destination with nothing left to delete it.
        if let Some(message) = reset_guard(ctx, warehouse, scope, now_ms - window).await? {
            return Ok(Step::GuardTripped(message));
        }
        warehouse.reset(scope).await?;
    }

    // Extract and diff, inside the warehouse.
    let (request, mapper) = prepare(ctx, warehouse, scope, now_ms - window, false).await?;
    let counts = warehouse.stage(scope, &request).await?;
    tally.extracted = extracted(&counts);
    // Saved now, so that a sync killed while it loads still shows what it
    // found (its record log tells what it delivered).
    let found = SyncReport { extracted: tally.extracted.clone(), ..report.clone() };
    warehouse.save_run(&run_row(ctx, &found)).await?;
    observer.progress(&tally.progress()).await;
    if let Err(message) = guard::check(&ctx.mapping.guards, &ctx.mapping.send, &counts) {
        return Ok(Step::GuardTripped(message));
    }

    // Map, load and commit, batch by batch.
    let budget = super::Budget::new(&ctx.rate_share, destination.batch_size().clamp(1, crate::destination::MAX_BATCH_SIZE) as u32);
    let skip_for = |kind| destination.skip_reason(kind);
    let decider = Decider { send: &ctx.mapping.send, skip_for: &skip_for, mapper: &mapper, primary_key: &ctx.model.primary_key };
    let streamed = counts.streamed;
    let loader =
        Loader { ctx, warehouse, destination: destination.clone(), observer, cancel, scope, request: &request, streamed, decider, budget };
    let canceled = loader.run(tally).await?;
    Ok(Step::Loaded { canceled })
}

/// The guards, checked against the state as it is before a reset: a scratch
/// diff (as `retl plan` makes), dropped again.
async fn reset_guard(
    ctx: &SyncContext,
    warehouse: &dyn Warehouse,
    scope: &StateScope,
    expire_before_ms: i64,
) -> Result<Option<String>, EngineError> {
    let (request, _) = prepare(ctx, warehouse, scope, expire_before_ms, true).await?;
    let counts = warehouse.stage(scope, &request).await;
    warehouse.drop_stage(scope, &request.stage).await?;
    let counts = counts?;
    // Only the empty-model guard: a reset sends no deletes, whatever the
    // diff before it would have found.
    let empty = DiffCounts { deleted: 0, ..counts };
    Ok(guard::check(&ctx.mapping.guards, &ctx.mapping.send, &empty).err())
}

/// Checks the model and the mapping, and builds the diff request.
async fn prepare(
    ctx: &SyncContext,
    warehouse: &dyn Warehouse,
    scope: &StateScope,
    expire_before_ms: i64,
    dry_run: bool,
) -> Result<(DiffRequest, FieldMapper), EngineError> {
    // A replay re-sends what a past sync of this Mapping extracted: that
    // sync must be in its history.
    if let Some(sync) = &ctx.replay_of
        && !warehouse.has_run(scope, sync).await?
    {
        return Err(WarehouseError::NothingToReplay { sync: sync.clone() }.into());
    }
    let columns = warehouse.describe(&ctx.model.query).await?;
    let request = DiffRequest {
        query: ctx.model.query.clone(),
        primary_key: ctx.model.primary_key.clone(),
        columns,
        mode: match (&ctx.replay_of, ctx.trigger) {
            (Some(sync), _) => DiffMode::Replay { sync: sync.clone() },
            (None, _) => DiffMode::Normal,
        },
        expire_before_ms,
        stage: if dry_run { format!("plan:{}", ctx.sync_name) } else { ctx.sync_name.clone() },
        dry_run,
    };
    crate::warehouse::check_columns(&request)?;
    let names: Vec<String> = request.columns.iter().map(|c| c.name.clone()).collect();
    let mapper = FieldMapper::new(&ctx.mapping.fields, &ctx.action, ctx.mapping.skip_nulls, &names)?;
    Ok((request, mapper))
}

fn extracted(c: &DiffCounts) -> ExtractedCounts {
    ExtractedCounts {
        total: c.added + c.updated + c.deleted + c.unchanged,
        added: c.added,
        updated: c.updated,
        deleted: c.deleted,
        unchanged: c.unchanged,
        retried: c.retried,
    }
}

/// The retry window in milliseconds (`336h`, `14d`, `14days`).
fn retry_window(text: &str) -> Result<i64, EngineError> {
    humantime::parse_duration(text.trim())
        .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
        .map_err(|_| EngineError::RetryWindow(text.to_string()))
}

pub(super) fn run_row(ctx: &SyncContext, report: &SyncReport) -> SyncRun {
    SyncRun {
        sync: ctx.sync_name.clone(),
        namespace: ctx.namespace.clone(),
        mapping: ctx.mapping_name.clone(),
        mapping_uid: StateScope::from_uid(&ctx.mapping_uid).id,
        model: ctx.model_name.clone(),
        destination: ctx.destination_name.clone(),
        trigger: format!("{:?}", ctx.trigger),
        phase: report.phase.as_str().to_string(),
        started_ms: report.started.as_millisecond(),
        completed_ms: report.completed.map(|t| t.as_millisecond()),
        status_json: serde_json::to_string(report).unwrap_or_else(|_| "{}".to_string()),
    }
}

/// What `retl plan` shows for one Mapping.
#[derive(Clone, Debug, Default)]
pub struct PlanReport {
    pub extracted: ExtractedCounts,
    /// Changes that would be sent, by kind (`added`, `updated`, `deleted`).
    pub to_send: [u64; 3],
    /// Changes that would be skipped.
    pub skipped: u64,
    /// Records that would be rejected before sending, by code.
    pub would_fail: Vec<(String, u64)>,
    /// A few payloads that would be sent: (key, kind, payload).
    pub samples: Vec<(String, String, Value)>,
    /// The guard that would stop the sync, if any.
    pub guard: Option<String>,
}

/// How a Destination's type skips a kind of change (`retl plan` has no
/// destination to ask, only its spec).
pub type SkipFor<'a> = &'a (dyn Fn(ChangeKind) -> Option<&'static str> + Sync);

/// Shows what a sync would send without sending anything or changing any
/// sync state (only a scratch stage is written, then dropped).
pub async fn plan_sync(
    ctx: &SyncContext,
    warehouse: &dyn Warehouse,
    skip_for: SkipFor<'_>,
    samples: usize,
) -> Result<PlanReport, EngineError> {
    let scope = StateScope::from_uid(&ctx.mapping_uid);
    warehouse.prepare_state(&scope).await?;
    let window = retry_window(&ctx.mapping.retry_window)?;
    let (request, mapper) = prepare(ctx, warehouse, &scope, Timestamp::now().as_millisecond() - window, true).await?;
    let counts = warehouse.stage(&scope, &request).await?;
    let decider = Decider { send: &ctx.mapping.send, skip_for, mapper: &mapper, primary_key: &ctx.model.primary_key };
    let result = plan_pages(ctx, warehouse, &scope, &request.stage, &decider, &counts, samples).await;
    warehouse.drop_stage(&scope, &request.stage).await?;
    result
}

async fn plan_pages(
    ctx: &SyncContext,
    warehouse: &dyn Warehouse,
    scope: &StateScope,
    stage: &str,
    decider: &Decider<'_>,
    counts: &DiffCounts,
    samples: usize,
) -> Result<PlanReport, EngineError> {
    let mut plan = PlanReport {
        extracted: extracted(counts),
        guard: guard::check(&ctx.mapping.guards, &ctx.mapping.send, counts).err(),
        ..Default::default()
    };
    let mut fails = std::collections::BTreeMap::<String, u64>::new();
    let mut after = 0;
    loop {
        let page = warehouse.read_stage(scope, stage, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for mut change in page {
            match decider.decide(&mut change) {
                Decision::Skip(_) => plan.skipped += 1,
                Decision::Reject { code, .. } => *fails.entry(code).or_default() += 1,
                Decision::Send(p) => {
                    plan.to_send[change.kind as usize] += 1;
                    if plan.samples.len() < samples {
                        let key = change.key.clone().unwrap_or_default();
                        plan.samples.push((key, change.kind.name().to_string(), p.to_value()));
                    }
                }
            }
        }
    }
    plan.would_fail = fails.into_iter().collect();
    Ok(plan)
}
