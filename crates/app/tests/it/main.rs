//! The one integration-test binary: real PostgreSQL and real SQLite, a fresh database per test.

mod access;
mod adopt;
mod api;
mod backup;
mod cli;
mod config;
mod doctor;
mod entities;
mod fixtures;
mod health;
mod helpers;
mod input;
mod metrics;
mod migrations;
mod pool;
mod portable;
mod restart;
mod revocations;
mod roles;
mod shutdown;
mod tags;
mod todos;
mod user_cli;
mod users;
