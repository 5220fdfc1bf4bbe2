//! Criterion benchmarks live in `benches/`. This library only carries what they share: the
//! global allocator they run with (mimalloc, as the `xtask` binary: Burn allocates fresh activation
//! buffers every iteration, which glibc's allocator returns to the kernel and page-faults back).
//!
//! Each benchmark binary opts in with `benches::use_mimalloc!();`.

pub use mimalloc;

/// Declares mimalloc as the binary's global allocator.
#[macro_export]
macro_rules! use_mimalloc {
    () => {
        #[global_allocator]
        static GLOBAL: $crate::mimalloc::MiMalloc = $crate::mimalloc::MiMalloc;
    };
}
