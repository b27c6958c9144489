//! Inverses that take more than one operation.
//!
//! Dropping a column also drops the indexes, uniques, foreign keys and checks that use it
//! (the databases do, and so does [`Operation::apply`]), so its inverse adds the column back
//! and then each of them, as they were before.

use crate::ops::{Irreversible, Operation};
use crate::schema::Schema;

impl Operation {
    /// The operations that undo this one, in the order to run them, read from the schema
    /// before it ran: [`Operation::reverse`], and for a dropped column also every index,
    /// unique, check and foreign key of its table that went with it.
    pub fn reverse_steps(&self, before: &Schema) -> Result<Vec<Operation>, Irreversible> {
        let first = self.reverse(before)?;
        let Operation::DropColumn { table, name } = self else {
            return Ok(vec![first]);
        };
        let Some(t) = before.table(table) else {
            return Ok(vec![first]);
        };
        let uses = |columns: &[String]| columns.iter().any(|c| c == name);
        let mut steps = vec![first];
        let table = || table.clone();
        steps.extend(
            (t.indexes.values())
                .filter(|i| uses(&i.columns))
                .map(|index| Operation::CreateIndex {
                    table: table(),
                    index: index.clone(),
                }),
        );
        steps.extend(
            (t.uniques.values())
                .filter(|u| uses(&u.columns))
                .map(|unique| Operation::AddUnique {
                    table: table(),
                    unique: unique.clone(),
                }),
        );
        steps.extend(
            (t.checks.values())
                .filter(|c| crate::checks::mentions_column(&c.expr, name))
                .map(|check| Operation::AddCheck {
                    table: table(),
                    check: check.clone(),
                }),
        );
        steps.extend(
            (t.foreign_keys.values())
                .filter(|fk| uses(&fk.columns))
                .map(|foreign_key| Operation::AddForeignKey {
                    table: table(),
                    foreign_key: foreign_key.clone(),
                }),
        );
        Ok(steps)
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::Operation;
    use crate::schema::{Check, Column, ColumnType, ForeignKey, Index, Schema, Table, Unique};

    fn schema() -> Schema {
        Schema::new()
            .with_table(
                Table::new("users")
                    .with_column(Column::new("id", ColumnType::BigInteger))
                    .with_primary_key(["id"]),
            )
            .with_table(
                Table::new("todo")
                    .with_column(Column::new("id", ColumnType::BigInteger))
                    .with_column(Column::new("owner_id", ColumnType::BigInteger))
                    .with_column(Column::new("rank", ColumnType::Integer))
                    .with_primary_key(["id"])
                    .with_index(Index {
                        name: "ix_todo_owner_id_rank".into(),
                        columns: vec!["owner_id".into(), "rank".into()],
                        unique: false,
                    })
                    .with_index(Index {
                        name: "ix_todo_id".into(),
                        columns: vec!["id".into()],
                        unique: false,
                    })
                    .with_unique(Unique {
                        name: "uq_todo_owner_id".into(),
                        columns: vec!["owner_id".into()],
                    })
                    .with_check(Check {
                        name: "ck_todo_owner_id".into(),
                        expr: "owner_id > 0".into(),
                    })
                    .with_check(Check {
                        name: "ck_todo_rank".into(),
                        expr: "rank >= 0".into(),
                    })
                    .with_foreign_key(ForeignKey {
                        name: "fk_todo_owner_id_users".into(),
                        columns: vec!["owner_id".into()],
                        ref_table: "users".into(),
                        ref_columns: vec!["id".into()],
                        on_delete: Default::default(),
                        on_update: Default::default(),
                    }),
            )
    }

    #[test]
    fn dropping_a_column_drops_what_uses_it_and_its_inverse_restores_all() {
        let before = schema();
        let drop = Operation::DropColumn {
            table: "todo".into(),
            name: "owner_id".into(),
        };
        let mut after = before.clone();
        drop.apply(&mut after).unwrap();
        let todo = after.table("todo").unwrap();
        assert_eq!(todo.checks.keys().collect::<Vec<_>>(), ["ck_todo_rank"]);
        assert_eq!(todo.indexes.keys().collect::<Vec<_>>(), ["ix_todo_id"]);
        assert!(todo.uniques.is_empty() && todo.foreign_keys.is_empty());

        let steps = drop.reverse_steps(&before).unwrap();
        let lines: Vec<String> = steps.iter().map(Operation::describe).collect();
        assert_eq!(
            lines,
            [
                "+ add column todo.owner_id BigInteger",
                "+ create index ix_todo_owner_id_rank on todo (owner_id, rank)",
                "+ add unique constraint uq_todo_owner_id on todo (owner_id)",
                "+ add check constraint ck_todo_owner_id on todo (owner_id > 0)",
                "+ add foreign key fk_todo_owner_id_users on todo (owner_id) -> users (id)",
            ]
        );
        let mut restored = after;
        for step in &steps {
            step.apply(&mut restored).unwrap();
        }
        assert!(crate::autodetect::same_shape(&restored, &before));
    }
}
