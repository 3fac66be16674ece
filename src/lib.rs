pub mod api;
pub mod controller;
pub mod warehouse;
pub mod worker;
pub mod destination;
pub mod engine;
pub mod fieldmap;
pub mod local;
pub mod telemetry;

/// Keeps this process off transparent huge pages. The allocator (mimalloc)
/// asks for them, and with 2 MiB pages a sync's resident memory was about
/// half again its use (99 MB against 64 MB for the benchmark's sync), for no
/// speed gained. Linux only; elsewhere nothing to do.
pub fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process; it reads
    // no memory of ours. A kernel without it returns an error, which leaves
    // things as they were.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Installs rustls' ring crypto provider as the process default (once); the
/// HTTP client and the Kubernetes client both use it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
