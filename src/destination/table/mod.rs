//! `postgres` and `mysql`: records land in a table of an operational
//! database. Added and updated records are upserted by the key column,
//! deleted ones deleted; each batch is one transaction.
//!
//! A row the server refuses (a CHECK, NOT NULL, unique or foreign key
//! constraint, a value that does not fit its column, a trigger's refusal)
//! must fail alone: every statement runs under a SAVEPOINT, and a refused
//! statement is rolled back to it and split in halves until the refused rows
//! stand alone, each failing with the server's message while the rest of
//! the batch commits (see [`apply`]). A batch without bad rows costs one
//! statement per kind of change. A lost connection, a deadlock or a
//! serialization failure retries the whole batch in a new transaction; a
//! server that cannot be reached fails the batch with a message that says
//! what to check, and the engine retries its records on the next sync.
//!
//! What the two dialects share is here and in [`apply`] and [`schema`];
//! each dialect ([`postgres`], [`mysql`]) connects, reads the table's
//! columns, creates it, and writes the statements of one batch.

mod apply;
mod mysql;
mod postgres;
mod schema;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use self::apply::{Failure, Plan};
use self::schema::{Dialect, TableInfo, Target};
use super::{Delivery, Destination, DestinationError, OutRecord, exchange};
use crate::api::{ActionField, DestinationSpec, DestinationType, FieldType, SecretKeyRef, TableDestination as Settings};
use crate::mask::Masker;
use crate::record::codes;
use crate::warehouse::{SecretValues, WarehouseError};

/// Retries of a batch that failed for a passing reason (a deadlock, a
/// serialization failure, a connection lost mid-batch), inside one sync.
const RETRIES: u32 = 3;
/// First delay before such a retry, quadrupled each time (0.2 s, 0.8 s, 3.2 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// After a batch found the server unreachable, later batches fail at once
/// for this long instead of each waiting out the connect timeout.
const DOWN_FOR: Duration = Duration::from_secs(30);
/// Most records per transaction and most transactions at once.
const MAX_BATCH_SIZE: usize = 10_000;
const MAX_IN_FLIGHT: usize = 16;

/// The `postgres` and `mysql` types.
pub struct Table;

impl super::Kind for Table {
    fn build(&self, name: &str, spec: &DestinationSpec, secrets: &SecretValues, _: &std::path::Path) -> super::Built {
        Ok(Arc::new(TableDestination::new(name, spec, secrets)?))
    }

    fn secret_refs(&self, spec: &DestinationSpec) -> Vec<SecretKeyRef> {
        secret_refs(spec).collect()
    }
}

/// The Secrets of a table destination's connection.
pub fn secret_refs(spec: &DestinationSpec) -> impl Iterator<Item = SecretKeyRef> + '_ {
    [&spec.postgres, &spec.mysql]
        .into_iter()
        .flatten()
        .flat_map(|s| [s.connection.password_secret_ref.clone(), s.connection.url_secret_ref.clone()])
        .flatten()
}

pub struct TableDestination {
    name: String,
    target: Target,
    dialect: Box<dyn Dialect>,
    /// Each action's fields: the columns its upserts write.
    actions: HashMap<String, Vec<ActionField>>,
    /// The columns of a table retl creates: every field of every action, once.
    create_columns: Vec<(String, FieldType)>,
    /// The table as last read from the server; read again after a statement
    /// found it changed.
    known: tokio::sync::Mutex<Option<Arc<TableInfo>>>,
    /// When and why a batch last found the server unreachable.
    down: Mutex<Option<(Instant, String)>>,
    batch_size: usize,
    max_in_flight: usize,
    /// Masks every secret value in what the server says (its messages may
    /// echo a password or a connection URL).
    masker: Masker,
}

impl TableDestination {
    /// The destination of a `postgres` or `mysql` spec.
    pub fn new(name: &str, spec: &DestinationSpec, secrets: &SecretValues) -> Result<Self, DestinationError> {
        let config = |message: String| DestinationError::Config { destination: name.to_string(), message };
        let (field, settings) = match spec.type_ {
            DestinationType::Postgres => ("postgres", &spec.postgres),
            _ => ("mysql", &spec.mysql),
        };
        let s: &Settings = settings.as_ref().ok_or_else(|| {
            config(format!("type is {field} but spec.{field} is missing; add spec.{field} with the connection settings and the table"))
        })?;
        let target = Target::new(field, s).map_err(config)?;
        let create_columns = schema::columns_to_create(&target, &spec.actions).map_err(config)?;
        let max_in_flight = (s.max_in_flight.unwrap_or(2) as usize).clamp(1, MAX_IN_FLIGHT);
        let server = crate::warehouse::server::ServerTarget::resolve(name, field, Some(&s.connection), secrets).map_err(|e| match e {
            WarehouseError::MissingSecret { name, key } => DestinationError::MissingSecret { name, key },
            other => config(other.to_string()),
        })?;
        crate::install_crypto_provider();
        let dialect: Box<dyn Dialect> = match field {
            "postgres" => Box::new(postgres::Postgres::new(server, max_in_flight).map_err(config)?),
            _ => Box::new(mysql::Mysql::new(server, max_in_flight).map_err(config)?),
        };
        Ok(TableDestination {
            name: name.to_string(),
            target,
            dialect,
            actions: spec.actions.iter().map(|a| (a.name.clone(), a.fields.clone())).collect(),
            create_columns,
            known: tokio::sync::Mutex::new(None),
            down: Mutex::new(None),
            batch_size: (s.batch_size.unwrap_or(500) as usize).clamp(1, MAX_BATCH_SIZE),
            max_in_flight,
            masker: Masker::new(secrets),
        })
    }

    fn unavailable(&self, message: &str) -> DestinationError {
        DestinationError::Unavailable { destination: self.name.clone(), message: self.masker.owned(message.to_string()) }
    }

    fn misfit(&self, message: &str) -> DestinationError {
        DestinationError::Config { destination: self.name.clone(), message: self.masker.owned(message.to_string()) }
    }

    /// Why the server was unreachable, if a batch found it so a moment ago.
    fn still_down(&self) -> Option<String> {
        let down = self.down.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        down.as_ref().filter(|(at, _)| at.elapsed() < DOWN_FOR).map(|(_, why)| why.clone())
    }

    fn mark_down(&self, why: &str) {
        *self.down.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), why.to_string()));
    }

    /// Why a statement could not reach the server, in words: a fresh
    /// connection outside the pool says what went wrong (the pool only
    /// says it timed out).
    async fn explain(&self, fallback: String) -> Failure {
        match self.dialect.probe().await {
            Err(why) => Failure::Down(why),
            // Reachable again: the batch is worth another try.
            Ok(()) => Failure::Transient(fallback),
        }
    }

    /// The table, read from the server (and created first when it does not
    /// exist and `createTable` is set).
    async fn table(&self) -> Result<Arc<TableInfo>, Failure> {
        let mut known = self.known.lock().await;
        if let Some(t) = known.as_ref() {
            return Ok(t.clone());
        }
        let mut info = self.describe().await?;
        if info.is_none() && self.target.create {
            self.dialect.create(&self.target, &self.create_columns).await.map_err(|e| self.failure_of(&e))?;
            info = self.describe().await?;
        }
        let info = Arc::new(info.ok_or_else(|| Failure::Table(self.target.missing_message()))?);
        *known = Some(info.clone());
        Ok(info)
    }

    async fn describe(&self) -> Result<Option<TableInfo>, Failure> {
        match self.dialect.describe(&self.target).await {
            Ok(t) => Ok(t),
            Err(e) => Err(match self.failure_of(&e) {
                Failure::Transient(why) | Failure::Down(why) => self.explain(why).await,
                other => other,
            }),
        }
    }

    fn failure_of(&self, e: &sqlx::Error) -> Failure {
        Failure::of(self.dialect.as_ref(), e)
    }

    /// Every record of the batch rejected for the same reason.
    fn reject_all(&self, code: &str, message: &str, n: usize) -> Vec<Delivery> {
        vec![Delivery::Rejected { code: code.to_string(), message: self.masker.owned(message.to_string()) }; n]
    }

    /// One try of the whole batch; `Err` for a failure of the batch as such.
    async fn attempt(&self, table: &TableInfo, plan: &Plan) -> Result<Vec<Delivery>, Failure> {
        let outcomes = match apply::run(self.dialect.as_ref(), table, plan).await {
            Err(Failure::Down(why)) => return Err(self.explain(why).await),
            other => other?,
        };
        let deliveries: Vec<Delivery> = outcomes
            .into_iter()
            .map(|o| match o {
                None => Delivery::Accepted,
                Some((code, message)) => Delivery::Rejected { code: code.to_string(), message: self.masker.owned(message) },
            })
            .collect();
        // Only a test record records: a sync's batches copy no row for it.
        if exchange::recording() {
            for ((delete, row), delivery) in plan.rows().into_iter().zip(&deliveries) {
                exchange::note(|| self.exchange(table, delete, row, delivery));
            }
        }
        Ok(deliveries)
    }

    /// One record's statement and what the server said, as a person reads it.
    fn exchange(
        &self,
        table: &TableInfo,
        delete: bool,
        row: serde_json::Map<String, serde_json::Value>,
        d: &Delivery,
    ) -> exchange::Exchange {
        let (status, said) = match d {
            Delivery::Accepted if delete => ("deleted".to_string(), "the row of this key is gone; the transaction committed".to_string()),
            Delivery::Accepted => {
                ("written".to_string(), format!("upserted by key column {:?}; the transaction committed", self.target.key))
            }
            Delivery::Rejected { code, message } => (format!("refused ({code})"), message.clone()),
        };
        let body = self.masker.owned(serde_json::Value::Object(row).to_string());
        exchange::Exchange {
            request: exchange::Sent {
                method: if delete { "DELETE" } else { "UPSERT" }.into(),
                target: table.shown.clone(),
                headers: Vec::new(),
                body: exchange::body(&body),
            },
            reply: Some(exchange::Reply { status, body: said.into() }),
            error: None,
        }
    }
}

#[async_trait]
impl Destination for TableDestination {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Connects, and checks that the table fits every action (or that retl
    /// may create it), without writing anything.
    async fn check(&self) -> Result<(), DestinationError> {
        self.dialect.probe().await.map_err(|why| self.unavailable(&why))?;
        let table = match self.dialect.describe(&self.target).await {
            Ok(Some(t)) => t,
            Ok(None) if self.target.create => return Ok(()),
            Ok(None) => return Err(self.misfit(&self.target.missing_message())),
            Err(e) => return Err(self.misfit(&self.dialect.message(&e))),
        };
        let mut names: Vec<&String> = self.actions.keys().collect();
        names.sort();
        for action in names {
            self.target.fits(&table, action, &self.actions[action]).map_err(|why| self.misfit(&why))?;
        }
        Ok(())
    }

    async fn send(&self, action: &str, batch: &[OutRecord]) -> Result<Vec<Delivery>, DestinationError> {
        let Some(fields) = self.actions.get(action) else {
            return Err(self.misfit(&format!("has no action {action:?}")));
        };
        if let Some(why) = self.still_down() {
            return Err(self.unavailable(&why));
        }
        let mut retries = 0;
        loop {
            let result = match self.table().await {
                Ok(table) => match self.target.fits(&table, action, fields) {
                    Err(why) => Err(Failure::Table(why)),
                    Ok(()) => self.attempt(&table, &Plan::new(&self.target, fields, batch, self.dialect.as_ref())).await,
                },
                Err(e) => Err(e),
            };
            match result {
                Ok(deliveries) => return Ok(deliveries),
                Err(Failure::Transient(why)) if retries < RETRIES => {
                    tracing::debug!(destination = %self.name, error = %self.masker.apply(&why), "retrying batch");
                    tokio::time::sleep(FIRST_BACKOFF * 4u32.pow(retries)).await;
                    retries += 1;
                }
                Err(Failure::Table(why)) => {
                    // The table may have changed under retl: read it again next time.
                    *self.known.lock().await = None;
                    return Ok(self.reject_all(codes::TABLE_MISMATCH, &why, batch.len()));
                }
                Err(Failure::Down(why)) => {
                    self.mark_down(&why);
                    return Err(self.unavailable(&why));
                }
                Err(Failure::Transient(why)) => {
                    return Err(self.unavailable(&format!("{why} (after {} attempts)", retries + 1)));
                }
                Err(Failure::Other(why)) => return Err(self.unavailable(&why)),
            }
        }
    }
}
