//! SQLite: one sync per Mapping at a time, by an exclusive lock on a small
//! file beside the database (`<database>.retl-<prefix>-<mapping>.lock`).
//! The operating system releases it when the file is closed, which the death
//! of the process holding it does too, so a killed sync never keeps it. The
//! file itself stays (it is empty); only its lock matters.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::warehouse::{LOCK_POLL, StateScope, SyncLock, WarehouseError};

/// The lock file of one Mapping's syncs.
pub fn lock_path(database: &Path, prefix: &str, scope: &StateScope) -> PathBuf {
    let mut name = database.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".retl-{prefix}-{}.lock", scope.id));
    database.with_file_name(name)
}

/// Takes the lock, trying again until `wait` has passed.
pub async fn lock_sync(path: &Path, wait: Duration) -> Result<Option<SyncLock>, WarehouseError> {
    let err = |e: std::io::Error| WarehouseError::State { action: "locked", message: format!("{}: {e}", path.display()) };
    let file: File = OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(err)?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(SyncLock::new(file))),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(err(e)),
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
}
