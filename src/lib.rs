pub mod alert;
pub mod api;
pub mod controller;
pub mod destination;
pub mod engine;
pub mod fieldmap;
#[doc(hidden)]
pub mod fuzzing;
pub mod local;
pub mod mask;
pub mod plugin;
pub mod record;
pub mod schedule;
pub mod telemetry;
pub mod warehouse;
pub mod worker;

/// Tunes the allocator (mimalloc, set in `main`) for a process that streams
/// rows through it: memory a sync frees goes back to the system after
/// [`PURGE_DELAY_MS`], not a second later (mimalloc 3's default). Together
/// with mimalloc built without transparent huge pages (feature `no_thp`),
/// peak RSS went from 53 MB at 100,000 rows and 68 MB at 5,000,000 rows to
/// about 42 MB at both.
pub fn tune_memory() {
    set_purge_delay(PURGE_DELAY_MS);
}

/// How long freed memory stays with the process before it goes back to the
/// system. Measured on the benchmark's 1M-row sync (docs/benchmark.md): at
/// 0 ms (returned at once) the kernel spent 0.9 s zeroing pages the next
/// batch faulted back in, and peak RSS was 26 MB; at 100 ms, 0.4 s and
/// 30 MB; at 1 s, 0.4 s and 35-40 MB.
pub const PURGE_DELAY_MS: i64 = 100;

/// Sets the allocator's purge delay for the whole process (milliseconds).
pub fn set_purge_delay(ms: i64) {
    // SAFETY: sets a process-wide allocator option; reads no memory of ours.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms as std::ffi::c_long) }
}

/// `mi_option_purge_delay` in the `mi_option_e` enum of the mimalloc that
/// libmimalloc-sys builds (include/mimalloc.h; the crate does not name it).
/// A test checks it against the option's documented default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Installs rustls' ring crypto provider as the process default (once); the
/// HTTP client and the Kubernetes client both use it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_tuned() {
        // 1 s is purge_delay's default in mimalloc 3, and the option before it
        // (a deprecated one) is 1.
        // SAFETY: reads a process-wide setting.
        let (delay, eager_commit_delay) = unsafe {
            (libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY), libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY - 1))
        };
        assert_eq!((delay, eager_commit_delay), (1000, 1));
        super::tune_memory();
        // SAFETY: as above.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) }, super::PURGE_DELAY_MS as std::ffi::c_long);
    }
}
