//! `app`: a Todo service with a database toolkit for PostgreSQL and SQLite.
//!
//! Data flows one way: CLI or HTTP -> domain -> SeaORM -> sqlx pool -> database. Settings are
//! read once by [`config`] and passed down; errors are typed per layer and turned into HTTP
//! problem JSON or a one-line CLI message at the edge.

pub mod allocator;
pub mod backup;
pub mod cli;
pub mod config;
pub mod db;
pub mod doctor;
pub mod domain;
pub mod fixtures;
pub mod http;
pub mod legacy;
pub mod metrics;
pub mod migrate;
pub mod migrations;
pub mod models;
pub mod portable;
pub mod squash;
pub mod startup;
pub mod telemetry;
