//! Dev-only test Kubernetes API server and end-to-end harness for retl.
//!
//! - [`server::TestApiServer`]: an in-memory API server speaking the real REST protocol.
//! - [`Harness`]: server + kubeconfig + `kubectl` + subprocesses + a test kubelet for Jobs.

pub mod server;

pub use server::{ServerConfig, TestApiServer};
pub mod harness;

pub use harness::{Harness, HarnessError, KubectlOutput, Kubelet, Process, wait_until};
