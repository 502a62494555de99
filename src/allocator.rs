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

/// mimalloc's `mi_option_purge_delay` (a stable option of its public header:
/// `include/mimalloc.h`, `typedef enum mi_option_e`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to return freed pages to the operating system. Call once, at
/// the start of `main`; harmless when mimalloc is not the global allocator.
pub fn keep_freed_pages() {
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table; it takes no
    // pointers and is valid to call at any time, from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_delay_option_is_set_to_never() {
        keep_freed_pages();
        // SAFETY: reads an integer from mimalloc's option table.
        let value = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(value, -1);
    }
}
