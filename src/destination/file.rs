//! `file`: appends one JSON line per record. Accepts everything; for local
//! runs, demos and debugging.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::{Delivery, Destination, DestinationError, Kind, OutRecord, exchange};
use crate::api::{self, DestinationSpec};
use crate::warehouse::SecretValues;

/// The `file` type.
pub struct File;

impl Kind for File {
    fn build(&self, name: &str, spec: &DestinationSpec, _: &SecretValues, base_dir: &Path) -> super::Built {
        let settings = spec.file.as_ref().ok_or_else(|| super::missing_settings(name, "file"))?;
        Ok(std::sync::Arc::new(FileDestination::new(settings, base_dir)))
    }
}

pub struct FileDestination {
    path: PathBuf,
    batch_size: usize,
}

impl FileDestination {
    pub fn new(settings: &api::FileDestination, base_dir: &Path) -> Self {
        let path = Path::new(&settings.path);
        FileDestination {
            path: if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) },
            batch_size: (settings.batch_size.unwrap_or(500) as usize).clamp(1, super::MAX_BATCH_SIZE),
        }
    }

    fn unavailable(&self, e: std::io::Error) -> DestinationError {
        DestinationError::Unavailable { destination: self.path.display().to_string(), message: e.to_string() }
    }
}

#[async_trait]
impl Destination for FileDestination {
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn max_in_flight(&self) -> usize {
        1
    }

    async fn check(&self) -> Result<(), DestinationError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| self.unavailable(e))?;
        }
        Ok(())
    }

    async fn send(&self, action: &str, batch: &[OutRecord]) -> Result<Vec<Delivery>, DestinationError> {
        self.check().await?;
        let mut bytes = Vec::new();
        for r in batch {
            // `{"action": ..., "operation": ..., "key": ..., "payload": ...}`
            bytes.extend_from_slice(b"{\"action\":");
            let _ = serde_json::to_writer(&mut bytes, action);
            bytes.extend_from_slice(b",\"operation\":\"");
            bytes.extend_from_slice(super::operation(r.kind).as_bytes());
            bytes.extend_from_slice(b"\",\"key\":");
            let _ = serde_json::to_writer(&mut bytes, &r.key);
            bytes.extend_from_slice(b",\"payload\":");
            bytes.extend_from_slice(r.payload.as_str().as_bytes());
            bytes.extend_from_slice(b"}\n");
        }
        // JSON written from strings is UTF-8.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let written = async {
            let mut f = tokio::fs::OpenOptions::new().create(true).append(true).open(&self.path).await?;
            f.write_all(text.as_bytes()).await?;
            f.flush().await
        }
        .await;
        exchange::note(|| exchange::Exchange {
            request: exchange::Sent {
                method: "APPEND".into(),
                target: self.path.display().to_string(),
                headers: Vec::new(),
                body: exchange::body(text.trim_end()),
            },
            reply: written.as_ref().ok().map(|()| exchange::Reply {
                status: "written".into(),
                body: format!("{} line(s), {} bytes appended", batch.len(), text.len()).into(),
            }),
            error: written.as_ref().err().map(ToString::to_string),
        });
        written.map_err(|e| self.unavailable(e))?;
        Ok(vec![Delivery::Accepted; batch.len()])
    }
}
