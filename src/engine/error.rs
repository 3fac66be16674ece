//! Errors that stop a whole sync (as opposed to rejected records).

use thiserror::Error;

use crate::api::conditions::reason;
use crate::fieldmap::MappingError;
use crate::warehouse::WarehouseError;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),

    #[error("the Mapping does not fit the model or the action: {0}")]
    Mapping(#[from] MappingError),

    #[error("{0}")]
    Guard(String),

    #[error(
        "another sync of Mapping {mapping} holds its lock (it is still running); this sync waited {waited_secs}s and sent \
         nothing. Sync again once that one has finished (`retl history` shows it as InProgress)"
    )]
    InProgress { mapping: String, waited_secs: u64 },

    #[error("spec.retryWindow {0:?} is not a duration; write it like 336h or 14d")]
    RetryWindow(String),

    /// A test record found no row to send (`retl test`).
    #[error("{0}")]
    NoRow(String),
}

impl EngineError {
    /// The reason a Sync that failed with this error shows.
    pub fn reason(&self) -> &'static str {
        match self {
            EngineError::Warehouse(e) => e.reason(),
            EngineError::Mapping(_) | EngineError::RetryWindow(_) | EngineError::NoRow(_) => reason::INVALID_SPEC,
            EngineError::Guard(_) => reason::GUARD_TRIPPED,
            EngineError::InProgress { .. } => reason::SYNC_IN_PROGRESS,
        }
    }
}
