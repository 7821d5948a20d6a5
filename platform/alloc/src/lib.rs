//! The allocator of Tessera's binaries: mimalloc (glibc's per-thread arenas fragment under many
//! small short-lived allocations and keep what they free), with one setting changed.
//!
//! mimalloc hands pages freed by the program back to the system only after a delay, and only
//! when the allocator runs again; its default delay is a second. A batch write allocates and
//! frees several megabytes within milliseconds (the request, its rows, its statements), so an
//! idle server kept up to the last second's worth of them: after a bulk load of 100,000
//! records in batches of 1,000, 40 MB of its 105 MB resident memory was memory it had freed.
//! `tune` shortens the delay to `PURGE_DELAY_MS`. Purging at once (0) measured 67 MB resident
//! but loaded 10–15% slower, every freed page then being a system call; 50 ms measured 85 MB
//! and no slower (see the README's performance section).

/// The global allocator to install (`#[global_allocator]`) in each binary that calls `tune`.
pub use mimalloc::MiMalloc;

/// How long freed memory stays with the allocator before it goes back to the system.
pub const PURGE_DELAY_MS: std::ffi::c_long = 50;

/// `mi_option_purge_delay` of mimalloc's `mi_option_e` (its Rust bindings do not name it; the
/// position is the same in mimalloc 2 and 3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Environment variable through which an operator sets the delay instead (mimalloc reads it at
/// start-up); `tune` then leaves it alone.
const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// Sets the allocator's purge delay to `PURGE_DELAY_MS`, unless `MIMALLOC_PURGE_DELAY` set it.
/// Call it first thing in `main`.
pub fn tune() {
    if std::env::var_os(PURGE_DELAY_ENV).is_some() {
        return;
    }
    // SAFETY: `mi_option_set` stores an integer option, which mimalloc reads atomically
    // whenever it schedules a purge; it has no preconditions on the caller and may be called
    // at any time, from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The allocator's purge delay now in force, in milliseconds.
    fn purge_delay_ms() -> std::ffi::c_long {
        // SAFETY: reads an integer option; no preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY)
        }
    }

    #[global_allocator]
    static GLOBAL: MiMalloc = MiMalloc;

    #[test]
    fn tune_shortens_the_purge_delay_unless_the_environment_sets_it() {
        let before = purge_delay_ms();
        tune();
        if std::env::var_os(PURGE_DELAY_ENV).is_some() {
            assert_eq!(purge_delay_ms(), before);
        } else {
            // mimalloc 3 starts at one second: the option at position 15 is the purge delay.
            assert_eq!(before, 1_000);
            assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
        }
    }
}
