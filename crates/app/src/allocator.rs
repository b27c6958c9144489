//! How the C allocator (glibc's malloc, which Rust's default allocator calls) may grow.
//!
//! glibc gives each thread that allocates under contention an arena of its own, up to eight per
//! core, and memory freed in one arena serves only that arena's threads; it also raises its
//! mmap threshold as large blocks are freed, so later large buffers come from the heap and
//! stay there. The runtime's workers and each SQLite connection's worker thread then each hold
//! freed memory apart: under 32 concurrent clients the server's peak memory was 73 MiB on
//! SQLite and 43 MiB on PostgreSQL; with two arenas and fixed thresholds (tried first as
//! `MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072`,
//! bench/writers.py) PostgreSQL stayed at 37 MiB.

/// The arenas glibc may make; with two, threads that allocate together wait on each other
/// rarely enough (the service spends its time waiting on the database, not in malloc).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;

/// Blocks this large or larger are mapped on their own and given back when freed; a fixed
/// value also stops glibc from raising it (up to 32 MiB) as large blocks are freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Free memory this large at the top of the heap is given back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 128 * 1024;

/// Bounds the allocator's arenas and thresholds. Call first thing in `main`, before any
/// thread starts; glibc's own `MALLOC_*` variables, when set, win.
pub fn bound_growth() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, parameter, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, ARENAS),
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
        ),
        (
            "MALLOC_TRIM_THRESHOLD_",
            libc::M_TRIM_THRESHOLD,
            TRIM_THRESHOLD,
        ),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only sets an allocator parameter; no other thread allocates
            // yet, and a refused value (return 0) leaves glibc's default in place.
            unsafe {
                libc::mallopt(parameter, value);
            }
        }
    }
}
