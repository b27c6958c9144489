//! What each pooled SQLite connection may keep in memory.
//!
//! A pool of 24 SQLite connections with SQLite's default page cache (2000 KiB each) and sqlx's
//! statement cache (100 statements each) may hold 50 MiB beside the service itself. The
//! operating system caches the database file anyway, so a small page cache per connection
//! costs a read a copy from that cache, not a disk read; a request sends a handful of distinct
//! statements, so 16 cached ones cover the hot ones. Under 32 clients each pooled SQLite
//! connection still weighed about 600 KiB (cache, statements, schema, lookaside, its thread),
//! which is why these are small. (Measured in bench/RESULTS.md, "Many writers of one user";
//! the allocator's arenas weighed more at first, see `crate::allocator`.)

use sqlx::sqlite::SqliteConnectOptions;

/// SQLite's page cache per connection, in KiB (SQLite's default is 2000).
const SQLITE_PAGE_CACHE_KIB: u32 = 64;

/// Prepared statements each SQLite connection keeps (sqlx's default is 100).
const SQLITE_STATEMENT_CACHE: usize = 16;

/// `options` with the page cache and statement cache bounded.
pub(super) fn sqlite(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        // A negative cache_size is a size in KiB rather than a number of pages.
        .pragma("cache_size", format!("-{SQLITE_PAGE_CACHE_KIB}"))
        .statement_cache_capacity(SQLITE_STATEMENT_CACHE)
}
