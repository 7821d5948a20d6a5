//! SQLite's own allocations through mimalloc.
//!
//! SQLite allocates with the C library's `malloc` unless told otherwise, and by default keeps
//! statistics of its memory under a global mutex taken on every allocation and free. Its writer
//! allocates and frees a string for every value bound to a statement and a buffer for every
//! page it reads: during a bulk load, glibc's `malloc` and that mutex were a fifth of the SQLite
//! writer thread's CPU. Routed here, those allocations take mimalloc's per-thread free lists,
//! and the statistics (which Tessera never reads: it sets no soft heap limit) are off.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use libmimalloc_sys as mi;
use libsqlite3_sys as sqlite;

/// Sizes SQLite asks for are C `int`s; what mimalloc reports is clamped back into one.
fn to_int(n: usize) -> c_int {
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

fn to_size(n: c_int) -> usize {
    usize::try_from(n).unwrap_or(0)
}

// SAFETY (the four `unsafe` functions below): SQLite calls them as its `sqlite3_mem_methods`,
// only with pointers that `x_malloc` or `x_realloc` returned (and it has not freed) and with
// positive sizes, which is what mimalloc's functions of the same names require, from any
// thread (mimalloc takes frees from threads other than the allocating one). mimalloc's blocks
// are aligned to at least 16 bytes, more than the 8 SQLite needs.
#[allow(unsafe_code)]
unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    unsafe { mi::mi_malloc(to_size(n)) }
}

#[allow(unsafe_code)]
unsafe extern "C" fn x_free(p: *mut c_void) {
    unsafe { mi::mi_free(p) }
}

#[allow(unsafe_code)]
unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    unsafe { mi::mi_realloc(p, to_size(n)) }
}

/// The usable size of a block, which SQLite may fill entirely (as with glibc's
/// `malloc_usable_size`, which it uses by default).
#[allow(unsafe_code)]
unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    to_int(unsafe { mi::mi_usable_size(p) })
}

extern "C" fn x_roundup(n: c_int) -> c_int {
    // SAFETY: `mi_good_size` only computes a size class; it touches no memory.
    #[allow(unsafe_code)]
    to_int(unsafe { mi::mi_good_size(to_size(n)) })
}

extern "C" fn x_init(_: *mut c_void) -> c_int {
    sqlite::SQLITE_OK
}

extern "C" fn x_shutdown(_: *mut c_void) {}

/// Makes SQLite allocate through mimalloc, without its memory statistics, for the rest of the
/// process. SQLite accepts this only before its first use in the process (the first
/// connection opened initialises it), so call it before opening any; later calls return what
/// the first one did. Returns whether SQLite took the setting.
pub fn route_sqlite() -> bool {
    static ROUTED: OnceLock<bool> = OnceLock::new();
    *ROUTED.get_or_init(|| {
        let methods = sqlite::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: `sqlite3_config` copies the methods (they need not outlive the call) and
        // refuses, changing nothing, once SQLite is initialised; `OnceLock` keeps two threads
        // of this process from calling it at once, and every connection the process opens
        // goes through the store, which calls this first.
        #[allow(unsafe_code)]
        unsafe {
            sqlite::sqlite3_config(sqlite::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) == sqlite::SQLITE_OK
                && sqlite::sqlite3_config(sqlite::SQLITE_CONFIG_MALLOC, &methods as *const sqlite::sqlite3_mem_methods)
                    == sqlite::SQLITE_OK
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn sqlite_allocates_from_mimalloc_once_routed() {
        assert!(route_sqlite(), "SQLite refused the allocator");
        assert!(route_sqlite(), "a second call reports the first one's result");
        // SAFETY: a plain allocation and free through SQLite's public API; `sqlite3_malloc`
        // initialises SQLite, which from then on refuses configuration.
        unsafe {
            let p = sqlite::sqlite3_malloc(1000);
            assert!(!p.is_null());
            assert!(mi::mi_is_in_heap_region(p), "SQLite's block is not mimalloc's");
            assert!(sqlite::sqlite3_msize(p) >= 1000);
            // The statistics are off: nothing is counted.
            assert_eq!(sqlite::sqlite3_memory_used(), 0);
            sqlite::sqlite3_free(p);
            assert_eq!(sqlite::sqlite3_config(sqlite::SQLITE_CONFIG_MEMSTATUS, 1 as c_int), sqlite::SQLITE_MISUSE);
        }
    }
}
