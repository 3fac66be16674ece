//! Errors of warehouses. Messages name the object and say what to do; they
//! never carry a secret value.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum WarehouseError {
    #[error("cannot connect to Source {source_name}: {message}")]
    Connect { source_name: String, message: String },

    #[error("the model's query failed: {message}. Fix the query in the Model (try it in the warehouse's own client first)")]
    Query { message: String },

    #[error(
        "the model's primary key column {column:?} is not among the columns the query returns ({columns}); set spec.primaryKey of the Model to one of them or add it to the query"
    )]
    MissingPrimaryKey { column: String, columns: String },

    #[error("the model's query returns the column {column:?} more than once; give each column a unique name with AS")]
    DuplicateColumn { column: String },

    #[error("retl's state in the warehouse could not be {action}: {message}")]
    State { action: &'static str, message: String },

    #[error(
        "Secret {name:?} has no key {key:?} (or the Secret does not exist); create it, or in a local run set it in a Secret manifest or the environment"
    )]
    MissingSecret { name: String, key: String },

    #[error("Source {source_name}: {message}")]
    Config { source_name: String, message: String },

    #[error(
        "sync {sync:?} has no records in the record log (it extracted nothing, or it is older than the retry window); replay a more recent sync"
    )]
    NothingToReplay { sync: String },
}

impl WarehouseError {
    /// The same error with every secret value masked in its text.
    pub fn masked(self, m: &crate::mask::Masker) -> WarehouseError {
        use WarehouseError as E;
        match self {
            E::Connect { source_name, message } => E::Connect { source_name, message: m.owned(message) },
            E::Query { message } => E::Query { message: m.owned(message) },
            E::MissingPrimaryKey { column, columns } => E::MissingPrimaryKey { column, columns },
            E::DuplicateColumn { column } => E::DuplicateColumn { column },
            E::State { action, message } => E::State { action, message: m.owned(message) },
            E::MissingSecret { name, key } => E::MissingSecret { name, key },
            E::Config { source_name, message } => E::Config { source_name, message: m.owned(message) },
            E::NothingToReplay { sync } => E::NothingToReplay { sync },
        }
    }

    /// The reason used for a Sync's or Source's condition.
    pub fn reason(&self) -> &'static str {
        use crate::api::conditions::reason;
        match self {
            WarehouseError::Connect { .. } => reason::WAREHOUSE_UNREACHABLE,
            WarehouseError::Query { .. } | WarehouseError::MissingPrimaryKey { .. } | WarehouseError::DuplicateColumn { .. } => {
                reason::QUERY_FAILED
            }
            WarehouseError::State { .. } => reason::STATE_ERROR,
            WarehouseError::MissingSecret { .. } => reason::SECRET_NOT_FOUND,
            WarehouseError::Config { .. } | WarehouseError::NothingToReplay { .. } => reason::INVALID_SPEC,
        }
    }
}
