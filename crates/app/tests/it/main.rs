//! The one integration-test binary: real PostgreSQL and real SQLite, a fresh database per test.

mod api;
mod cli;
mod config;
mod entities;
mod fixtures;
mod health;
mod helpers;
mod migrations;
mod pool;
