//! The engine's one integration-test binary: the runner and the adoption of another tool's
//! database on real PostgreSQL and real SQLite, a fresh database per test (`support`), and the
//! writer's golden files.

mod adopt;
mod fidelity;
mod history_table;
mod lossless;
mod production;
mod rebuilds;
mod runner;
mod squash;
mod support;
mod writer_roundtrip;
