//! Condition types, reasons and well-known labels/annotations, in one place so
//! that controllers, the engine's callers and tests agree on the spelling.

/// The object is usable: its references resolve and its connection works.
pub const READY: &str = "Ready";
/// A Sync finished (Successful, PartiallySuccessful or Canceled): `kubectl wait --for=condition=Complete`.
pub const COMPLETE: &str = "Complete";
/// A Sync finished as Failed.
pub const FAILED: &str = "Failed";
/// A Sync of a Destination with `maxConcurrentSyncs` got one of its slots
/// (False while it waits for one).
pub const ADMITTED: &str = "Admitted";

/// Reasons of conditions and Events.
pub mod reason {
    pub const SUCCESSFUL: &str = "Successful";
    pub const PARTIALLY_SUCCESSFUL: &str = "PartiallySuccessful";
    pub const FAILED: &str = "SyncFailed";
    pub const CANCELED: &str = "Canceled";
    pub const GUARD_TRIPPED: &str = "GuardTripped";
    pub const QUERY_FAILED: &str = "QueryFailed";
    pub const WAREHOUSE_UNREACHABLE: &str = "WarehouseUnreachable";
    pub const DESTINATION_UNREACHABLE: &str = "DestinationUnreachable";
    pub const ALL_RECORDS_REJECTED: &str = "AllRecordsRejected";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const REFERENCE_NOT_FOUND: &str = "ReferenceNotFound";
    /// A Mapping's Model, Source or Destination exists but is not Ready.
    pub const REFERENCE_NOT_READY: &str = "ReferenceNotReady";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const WORKER_DIED: &str = "WorkerDied";
    /// Another sync of the same Mapping held its lock for the whole wait.
    pub const SYNC_IN_PROGRESS: &str = "SyncInProgress";
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// The worker got SIGTERM (pod deletion, node drain, eviction) and stopped early.
    pub const TERMINATED: &str = "Terminated";
    /// The worker's pod did not start within the Mapping's startup deadline.
    pub const WORKER_NOT_STARTED: &str = "WorkerNotStarted";
    pub const STATE_ERROR: &str = "StateError";
    /// The Destination's `maxConcurrentSyncs` Syncs are running; this one waits.
    pub const WAITING_FOR_DESTINATION: &str = "WaitingForDestination";
    /// A slot of the Destination was free: the Sync's Job was created.
    pub const ADMITTED: &str = "Admitted";
}

/// Labels every Sync carries, so `kubectl get syncs -l ...` filters like the
/// sync overview does.
pub mod label {
    pub const MAPPING: &str = "retl.dev/mapping";
    pub const MODEL: &str = "retl.dev/model";
    pub const DESTINATION: &str = "retl.dev/destination";
    pub const STATUS: &str = "retl.dev/status";
}

/// Request annotations (the Flux `requestedAt` pattern: the value is a token).
pub mod annotation {
    pub const SYNC_NOW: &str = "retl.dev/sync-now";
    pub const RESET: &str = "retl.dev/reset";
    pub const REPLAY: &str = "retl.dev/replay";
    pub const CANCEL: &str = "retl.dev/cancel";
}
