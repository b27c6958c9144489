//! The business rules: accounts, roles, todos and tags. Services take a connection and
//! typed input and return models or typed errors; they know nothing of HTTP.

pub mod accounts;
pub mod cursor;
pub mod paging;
pub mod passwords;
pub mod revocations;
pub mod roles;
pub mod search;
pub mod tags;
pub mod todo_overlap;
pub mod todo_pages;
pub mod todos;
pub mod tokens;
pub mod user_pages;
