//! The operator's controllers: one reconciler per kind. They know no SQL and
//! send no records: warehouses and destinations are the worker's business.

pub mod schedule;
pub mod naming;
pub mod mapping_plan;
pub mod status;
pub mod job;
pub mod sync_plan;
pub mod error;
pub mod metrics;
pub mod leader;
pub mod context;
pub mod mapping;
pub mod sync;
pub mod secrets;
pub mod destination;
pub mod model;
pub mod source;
pub mod run;
