//! Criterion benchmarks live in `benches/`; this library is empty on purpose (a bench-only crate needs a target).
