//! The process allocator: jemalloc (feature `jemalloc`, on by default) for every binary that links xo-server.
//!
//! Why: a pool's full load allocates and frees hundreds of MiB of short-lived records, notification frames and
//! serialisation buffers from several threads. glibc's malloc keeps most of that memory mapped afterwards (per-thread
//! arenas fragmented by the long-lived objects allocated in between: ≈ 160 MiB after a 10,000-VM sync), and is
//! slower at it. jemalloc, configured in `.cargo/config.toml` (`JEMALLOC_SYS_WITH_MALLOC_CONF`: a background purge
//! thread, dirty pages returned within 0.3 s), gives that memory back. `bench_server` measures both.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
