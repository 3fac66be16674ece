//! Dev-only: a real Kubernetes control plane for retl's end-to-end tests.
//!
//! - [`binaries`]: kube-apiserver, etcd, kube-controller-manager,
//!   kube-scheduler and kubectl 1.34, built once per version from the Go
//!   module in `go/` into a cache outside the clone.
//! - [`ControlPlane`]: starts them on loopback (RBAC, ServiceAccount tokens
//!   and admission on, an admin token), with the [`Kubelet`] stand-in as its
//!   one Ready Node; stops every process it started.
//! - [`TestCluster`]: one control plane per test binary, one namespace per
//!   test, the real kubectl, processes that run as a ServiceAccount.
//!
//! - [`helm`]: the real helm v3.22.0, built once per machine the same way.
//!
//! `scripts/control-plane up|down|build|build-helm` drives the same code by hand.

pub mod binaries;
mod cluster;
mod control_plane;
pub mod credentials;
pub mod go_tool;
pub mod helm;
mod kubectl;
pub mod kubelet;
mod pki;
mod process;

pub use cluster::{Namespace, TestCluster, wait_until};
pub use control_plane::{ControlPlane, ControlPlaneError, KCM_QPS_ENV, Options};
pub use kubectl::{Kubectl, KubectlError, KubectlOutput};
pub use kubelet::{ImageMap, Kubelet};
pub use process::Process;
