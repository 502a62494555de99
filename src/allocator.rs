//! allocator: how the binary's allocator (mimalloc, set in `main.rs` and the benches)
//! is tuned.
//!
//! Rows are built on timely workers and freed in bulk, a batch at a time, on the
//! loader's tokio threads. By default mimalloc hands pages freed that way back to the
//! operating system after a few milliseconds, and the next batch faults them in again:
//! `perf` showed a quarter of a worker's time in the kernel zeroing fresh pages. Keeping
//! freed pages instead costs nothing in steady state, since batches in flight are
//! bounded (`batch.max_in_flight`), and resident memory then stays at its peak rather
//! than shrinking between bursts.
//!
//! A fresh process still faults in every byte of that peak once (half a gigabyte for a
//! backlog of 300k events), a fault per 4 KiB page. Asking for transparent huge pages
//! (`madvise(MADV_HUGEPAGE)` on mimalloc's segments) makes that a fault per 2 MiB: a
//! third less kernel time in `tracktable run --once` (docs/decisions/0001).

/// mimalloc's `mi_option_purge_delay` (a stable option of its public header:
/// `include/mimalloc.h`, `typedef enum mi_option_e`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The environment variables through which mimalloc reads its large-page option; an
/// operator's setting wins over ours.
const LARGE_PAGES_ENV: [&str; 2] = ["MIMALLOC_ALLOW_LARGE_OS_PAGES", "MIMALLOC_LARGE_OS_PAGES"];

/// Tunes mimalloc for tracktable's batches. Call once, at the start of `main`;
/// harmless when mimalloc is not the global allocator.
pub fn tune() {
    keep_freed_pages();
    if LARGE_PAGES_ENV
        .iter()
        .all(|name| std::env::var_os(name).is_none())
    {
        use_huge_pages();
    }
}

/// Tells mimalloc never to return freed pages to the operating system.
pub fn keep_freed_pages() {
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table; it takes no
    // pointers and is valid to call at any time, from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Lets mimalloc ask for 2 MiB pages: explicit huge pages where the system reserved
/// some, else `madvise(MADV_HUGEPAGE)`, which transparent huge pages honour in their
/// default `madvise` mode. Where neither is available its segments stay 4 KiB pages.
pub fn use_huge_pages() {
    // SAFETY: as above, an integer in mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set(libmimalloc_sys::mi_option_large_os_pages, 1) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_delay_and_large_pages_options_are_set() {
        keep_freed_pages();
        use_huge_pages();
        // SAFETY: reads integers from mimalloc's option table.
        let (purge, large) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                libmimalloc_sys::mi_option_get(libmimalloc_sys::mi_option_large_os_pages),
            )
        };
        assert_eq!((purge, large), (-1, 1));
    }
}
