//! check todo importance
//!
//! Revision `0228a2248923`, parent: `363878e3d4c3`. Created 2026-11-27T21:39:37Z by `app database make-migrations`.
//! Edit freely: the downgrade is derived from these operations; call `.downgrade(vec![...])` to write it by hand.

use strata::prelude::*;

pub fn migration() -> Migration {
    Migration::new(
        "0228a2248923",
        &["363878e3d4c3"],
        "check todo importance",
        "2026-11-27T21:39:37Z",
    )
    .operations(vec![add_check(
        "todo",
        "ck_todo_importance",
        "importance IN ('none', 'low', 'medium', 'high')",
    )])
}
