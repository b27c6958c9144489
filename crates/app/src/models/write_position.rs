//! `write_position`: how far the primary's write-ahead log had come when each account's latest
//! write request finished, for read-your-writes with read replicas (`DATABASE_REPLICA_URLS`).
//!
//! A read of an account may go to a replica only once the replica has replayed this position,
//! so a write is visible to its author's next read through any instance. The row is read
//! together with the account on every authenticated request (on the primary), so choosing a
//! replica costs no extra round trip. Unused on SQLite, which has no replicas.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "write_position")]
pub struct Model {
    /// The account's id: one row per account that wrote, gone with the account.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `pg_current_wal_insert_lsn()` as bytes from `0/0`, taken after the write committed; it
    /// only grows.
    pub lsn: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    #[sea_orm(belongs_to, from = "id", to = "id", on_delete = "Cascade")]
    pub user: BelongsTo<super::user_account::Entity>,
}

// No `audited_behavior!`: rows are written only by one upsert statement, which sets every column.
impl ActiveModelBehavior for ActiveModel {}
