//! The init's own memory footprint.
//!
//! Owns: keeping the code and read-only data pages that never run out of
//! this process's resident set. Must not: touch any mapping but our own
//! executable's, or fail the start (it is advice; errors are ignored).

extern "C" {
    /// Start of the executable's first segment (the ELF header), from the
    /// linker (GNU ld and lld both define it).
    static __executable_start: u8;
    /// End of the executable's code, from the linker.
    static etext: u8;
}

/// Asks the kernel to map only the pages of our code we actually touch.
///
/// By default a fault on a file-backed page also maps its neighbours that
/// are in the page cache (fault-around, 64 KiB): the init runs a few
/// scattered functions of a 2.5 MB binary (the proxy, the status page and
/// the metrics are in it but never run in pure-init mode), so fault-around
/// made most of the binary resident. `MADV_RANDOM` turns that off for our
/// own text; what ran before `main` stays as it is.
pub fn map_only_code_that_runs() {
    // SAFETY: the two symbols are addresses the linker gives us, used only
    // as addresses; madvise(2) with MADV_RANDOM changes no content and
    // fails harmlessly on a bad range.
    unsafe {
        let start = std::ptr::addr_of!(__executable_start) as usize;
        let end = std::ptr::addr_of!(etext) as usize;
        let page = 4096;
        let first = start & !(page - 1);
        if end > first {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_RANDOM);
        }
    }
}
