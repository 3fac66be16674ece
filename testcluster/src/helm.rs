//! The real `helm`, v3.22.0, built from the Go module proxy once per
//! machine (see [`crate::go_tool`]). `$RETL_HELM` names a helm to use
//! instead (scripts/test sets it after building up front, so that a failing
//! build is one clear message).

use std::path::PathBuf;

pub use crate::go_tool::GoToolError as HelmError;

/// The helm version the chart is tested with.
pub const HELM_VERSION: &str = crate::go_tool::HELM.version;

/// The helm binary: `$RETL_HELM` when set, else the cached build.
pub fn helm() -> Result<PathBuf, HelmError> {
    crate::go_tool::HELM.path()
}

/// The cached helm, built when this version is not there yet.
pub fn ensure_built() -> Result<PathBuf, HelmError> {
    crate::go_tool::HELM.ensure_built()
}
