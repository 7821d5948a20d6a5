//! The allocator of Tessera's binaries: mimalloc (glibc's per-thread arenas fragment under many
//! small short-lived allocations and keep what they free), and `release`, which hands the
//! memory it holds freed back to the system.
//!
//! mimalloc returns pages freed by the program to the system only after a delay (a second), and
//! only when the allocator next runs. A batch write allocates and frees several megabytes
//! within milliseconds (the request, its rows, its statements), so a server that falls idle
//! after a bulk load keeps the last second's garbage: 40 MB of its 105 MB resident memory after
//! 100,000 records in batches of 1,000. Shortening the delay (to 50 ms, as this crate first did)
//! returned that memory, but a loading server then handed pages back and faulted them in again
//! all the time: page faults and `madvise` were 12% of its request threads' CPU. So the delay
//! keeps its default while the server works, and the server calls `release` when no request is
//! in flight (`http::idle::IdleRelease` in the platform crate).
//!
//! SQLite allocates through mimalloc too, once the store has called `route_sqlite`.

mod sqlite;

pub use sqlite::route_sqlite;

/// The global allocator to install (`#[global_allocator]`) in each binary.
pub use mimalloc::MiMalloc;

/// Hands every page the allocator holds freed back to the system now, whatever the purge
/// delay. It takes a few milliseconds after a large load (a system call per freed range), so
/// call it off the async workers (`spawn_blocking`), when the process is idle.
pub fn release() {
    // SAFETY: `mi_collect` frees the calling thread's empty pages and purges the arenas shared
    // by all threads under mimalloc's own locks; it has no preconditions and may be called at
    // any time, from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static GLOBAL: MiMalloc = MiMalloc;

    /// This process's resident anonymous memory, in KiB.
    fn rss_anon_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap_or_default();
        line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
    }

    #[test]
    fn release_hands_freed_memory_back_without_waiting_for_the_purge_delay() {
        // 64 MiB in 4 KiB blocks, each written so that its pages are resident, then freed.
        let blocks: Vec<Vec<u8>> = (0..16_384).map(|i| vec![(i % 251) as u8 + 1; 4096]).collect();
        assert!(blocks.iter().all(|b| b[4095] != 0));
        drop(blocks);
        let freed = rss_anon_kib();
        release();
        let released = rss_anon_kib();
        assert!(freed.saturating_sub(released) >= 32 * 1024, "resident memory went from {freed} KiB to {released} KiB");
    }
}
