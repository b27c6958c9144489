//! an index per sort of a user's todos
//!
//! Revision `094d57262bca`, parent: `86298080d8d1`. Created 2026-12-01T07:36:27Z by `make-migrations`.
//! Edit freely: the downgrade is derived from these operations; call `.downgrade(vec![...])` to write it by hand.

use strata::prelude::*;

pub fn migration() -> Migration {
    Migration::new(
        "094d57262bca",
        &["86298080d8d1"],
        "an index per sort of a user's todos",
        "2026-12-01T07:36:27Z",
    )
    .atomic(false)
    .operations(vec![
        create_index(
            "todo",
            "ix_todo_user_id_created_at_id",
            &["user_id", "created_at", "id"],
        ),
        create_index(
            "todo",
            "ix_todo_user_id_end_time_id",
            &["user_id", "end_time", "id"],
        ),
        create_index(
            "todo",
            "ix_todo_user_id_importance_id",
            &["user_id", "importance", "id"],
        ),
        create_index(
            "todo",
            "ix_todo_user_id_item_id",
            &["user_id", "item", "id"],
        ),
        create_index(
            "todo",
            "ix_todo_user_id_start_time_id",
            &["user_id", "start_time", "id"],
        ),
        create_index(
            "todo",
            "ix_todo_user_id_updated_at_id",
            &["user_id", "updated_at", "id"],
        ),
        // Last: until its successor is built, the old index still serves the default sort.
        drop_index("todo", "ix_todo_user_id_created_at"),
    ])
}
