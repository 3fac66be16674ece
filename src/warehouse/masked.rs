//! A warehouse whose errors never carry a secret value: a server's error
//! message may echo a password or a connection URL retl sent, so every
//! error is masked where it leaves the dialect (see [`crate::mask`]).

use async_trait::async_trait;

use super::{
    Column, DiffCounts, DiffRequest, HistoryFilter, LogCount, LoggedFailure, RecordOutcome, StagedChange, StateScope, SyncLock, SyncRun,
    Warehouse, WarehouseError,
};
use crate::mask::Masker;

pub struct Masked {
    pub inner: Box<dyn Warehouse>,
    pub masker: Masker,
}

impl Masked {
    fn mask<T>(&self, r: Result<T, WarehouseError>) -> Result<T, WarehouseError> {
        r.map_err(|e| e.masked(&self.masker))
    }
}

#[async_trait]
impl Warehouse for Masked {
    async fn check(&self) -> Result<(), WarehouseError> {
        self.mask(self.inner.check().await)
    }
    async fn describe(&self, query: &str) -> Result<Vec<Column>, WarehouseError> {
        self.mask(self.inner.describe(query).await)
    }
    async fn prepare_state(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        self.mask(self.inner.prepare_state(scope).await)
    }
    async fn reset(&self, scope: &StateScope) -> Result<(), WarehouseError> {
        self.mask(self.inner.reset(scope).await)
    }
    async fn stage(&self, scope: &StateScope, req: &DiffRequest) -> Result<DiffCounts, WarehouseError> {
        self.mask(self.inner.stage(scope, req).await)
    }
    async fn read_stage(&self, scope: &StateScope, stage: &str, after: i64, limit: usize) -> Result<Vec<StagedChange>, WarehouseError> {
        self.mask(self.inner.read_stage(scope, stage, after, limit).await)
    }
    fn changes<'a>(&'a self, scope: &'a StateScope, req: &'a DiffRequest, streamed: bool, page: usize) -> super::ChangeStream<'a> {
        use futures::StreamExt;
        Box::pin(self.inner.changes(scope, req, streamed, page).map(|r| r.map_err(|e| e.masked(&self.masker))))
    }
    async fn drop_stage(&self, scope: &StateScope, stage: &str) -> Result<(), WarehouseError> {
        self.mask(self.inner.drop_stage(scope, stage).await)
    }
    async fn commit(&self, scope: &StateScope, sync: &str, batches: &[i64], outcomes: &[RecordOutcome]) -> Result<(), WarehouseError> {
        self.mask(self.inner.commit(scope, sync, batches, outcomes).await)
    }
    async fn merge(&self, scope: &StateScope) -> Result<u64, WarehouseError> {
        self.mask(self.inner.merge(scope).await)
    }
    async fn save_run(&self, run: &SyncRun) -> Result<(), WarehouseError> {
        self.mask(self.inner.save_run(run).await)
    }
    async fn runs(&self, filter: &HistoryFilter) -> Result<Vec<SyncRun>, WarehouseError> {
        self.mask(self.inner.runs(filter).await)
    }
    async fn has_run(&self, scope: &StateScope, sync: &str) -> Result<bool, WarehouseError> {
        self.mask(self.inner.has_run(scope, sync).await)
    }
    async fn prune(&self, scope: &StateScope, older_than_ms: i64) -> Result<(), WarehouseError> {
        self.mask(self.inner.prune(scope, older_than_ms).await)
    }
    async fn execute(&self, sql: &str) -> Result<u64, WarehouseError> {
        self.mask(self.inner.execute(sql).await)
    }
    async fn mark_in_flight(&self, scope: &StateScope, sync: &str, batch: i64, keys: &[&str]) -> Result<(), WarehouseError> {
        self.mask(self.inner.mark_in_flight(scope, sync, batch, keys).await)
    }
    async fn recover_in_flight(&self, scope: &StateScope) -> Result<u64, WarehouseError> {
        self.mask(self.inner.recover_in_flight(scope).await)
    }
    async fn log_counts(&self, scope: &StateScope, sync: &str) -> Result<Vec<LogCount>, WarehouseError> {
        self.mask(self.inner.log_counts(scope, sync).await)
    }
    async fn failed_records(&self, scope: &StateScope, sync: &str, offset: u64, limit: u64) -> Result<Vec<LoggedFailure>, WarehouseError> {
        self.mask(self.inner.failed_records(scope, sync, offset, limit).await)
    }
    async fn lock_sync(&self, scope: &StateScope, wait: std::time::Duration) -> Result<Option<SyncLock>, WarehouseError> {
        self.mask(self.inner.lock_sync(scope, wait).await)
    }
    async fn sample_row(&self, req: &DiffRequest, key: Option<&str>) -> Result<Vec<super::SampledRow>, WarehouseError> {
        self.mask(self.inner.sample_row(req, key).await)
    }
}
