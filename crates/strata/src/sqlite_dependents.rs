//! Views, triggers and indexes that a SQLite table rebuild must carry across.
//!
//! A rebuild (create `_strata_new_<t>`, copy, drop `<t>`, rename) loses what the schema model
//! does not describe: triggers on the table go with `DROP TABLE`, partial and expression
//! indexes (and any index made by hand) too, and a view or trigger that mentions the table
//! makes the final `ALTER TABLE .. RENAME` fail, as SQLite re-reads every view and trigger
//! when it renames. These objects exist only in the live database (`sqlite_master`), so the
//! runner finds them at run time: [`save`] before the rebuild's statements drops them and
//! remembers their SQL, [`restore`] after them re-creates them, all inside the migration's
//! transaction. What cannot be re-created (a view or trigger that uses a column the
//! migration drops, an index on such a column) fails the migration, naming the object, and
//! the transaction rolls back.

use std::collections::BTreeSet;

use crate::render::quote_ident;
use crate::runner::Conn;

/// One side of the work around the rebuild of one table, planned offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependentsStep {
    pub table: String,
    pub phase: Phase,
    /// Columns the table has before the rebuild and not after it.
    pub dropped_columns: Vec<String>,
    /// Indexes the schema model knows on the table, before or after: the rebuild itself
    /// re-creates those that remain.
    pub model_indexes: Vec<String>,
}

/// Before the rebuild (find and drop) or after it (re-create).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Save,
    Restore,
}

impl DependentsStep {
    /// What `--sql` shows in place of this step: the objects are known only at run time.
    pub fn comment(&self) -> String {
        match self.phase {
            Phase::Save => format!(
                "-- At run time: views, triggers and indexes on table {} that the migrations do \
                 not describe are dropped here and re-created after the rebuild",
                self.table
            ),
            Phase::Restore => format!(
                "-- At run time: the views, triggers and indexes dropped before the rebuild of \
                 table {} are re-created here",
                self.table
            ),
        }
    }
}

/// A view, trigger or index as `sqlite_master` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependent {
    pub kind: String,
    pub name: String,
    pub sql: String,
}

/// Finds the objects of `step.table` the rebuild would lose or trip over, refuses those it
/// cannot keep, drops the views and triggers among them and returns them all, in creation
/// order, for [`restore`]. The error names the object.
pub async fn save(conn: &mut Conn, step: &DependentsStep) -> Result<Vec<Dependent>, String> {
    let rows = conn
        .fetch_text(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL \
             AND type IN ('view', 'trigger', 'index') ORDER BY rowid",
        )
        .await
        .map_err(|e| format!("cannot read sqlite_master: {e}"))?;
    let table = step.table.to_lowercase();
    let model_indexes: BTreeSet<String> = step
        .model_indexes
        .iter()
        .map(|n| n.to_lowercase())
        .collect();
    struct Row {
        kind: String,
        name: String,
        on: String,
        sql: String,
        words: BTreeSet<String>,
    }
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|r| {
            let mut cells = r.into_iter().map(Option::unwrap_or_default);
            let kind = cells.next().unwrap_or_default();
            let name = cells.next().unwrap_or_default();
            let on = cells.next().unwrap_or_default().to_lowercase();
            let sql = cells.next().unwrap_or_default();
            let words = identifiers(&sql);
            Row {
                kind,
                name,
                on,
                sql,
                words,
            }
        })
        .collect();
    // Objects on the table or mentioning it, then those mentioning a view already taken
    // (dropping a view breaks the views and triggers built on it in the same way).
    let mut names: BTreeSet<String> = BTreeSet::from([table.clone()]);
    let mut taken = vec![false; rows.len()];
    loop {
        let mut grew = false;
        for (i, row) in rows.iter().enumerate() {
            if taken[i] {
                continue;
            }
            let take = match row.kind.as_str() {
                "index" => row.on == table && !model_indexes.contains(&row.name.to_lowercase()),
                _ => row.on == table || names.iter().any(|n| row.words.contains(n)),
            };
            if take {
                taken[i] = true;
                grew = true;
                if row.kind == "view" {
                    names.insert(row.name.to_lowercase());
                }
            }
        }
        if !grew {
            break;
        }
    }
    let chosen: Vec<&Row> = rows
        .iter()
        .zip(&taken)
        .filter(|(_, t)| **t)
        .map(|(r, _)| r)
        .collect();
    // A trigger is not checked when it is created, so one using a dropped column would
    // only fail when it fires: refuse it now. Views and indexes are checked by `restore`.
    for row in chosen.iter().filter(|r| r.kind == "trigger") {
        if let Some(column) = step
            .dropped_columns
            .iter()
            .find(|c| row.words.contains(&c.to_lowercase()))
        {
            return Err(format!(
                "trigger {} uses column {}.{column}, which this migration drops; drop or \
                 change the trigger first",
                row.name, step.table
            ));
        }
    }
    for row in &chosen {
        let drop = match row.kind.as_str() {
            "view" => "VIEW",
            "trigger" => "TRIGGER",
            // Indexes go with the old table.
            _ => continue,
        };
        conn.execute(&format!("DROP {drop} IF EXISTS {}", quote_ident(&row.name)))
            .await
            .map_err(|e| format!("cannot drop {} {}: {e}", row.kind, row.name))?;
    }
    Ok(chosen
        .into_iter()
        .map(|r| Dependent {
            kind: r.kind.clone(),
            name: r.name.clone(),
            sql: r.sql.clone(),
        })
        .collect())
}

/// Re-creates what [`save`] took, in creation order, and checks that each view still reads
/// (SQLite accepts a view over a missing column and fails only when it is read).
pub async fn restore(
    conn: &mut Conn,
    step: &DependentsStep,
    saved: &[Dependent],
) -> Result<(), String> {
    let refuse = |d: &Dependent, e: sqlx::Error| {
        let error = crate::server_error::describe(&e);
        format!(
            "cannot keep {} {} across the rebuild of table {}: {error}; drop or change it first",
            d.kind, d.name, step.table
        )
    };
    for d in saved {
        conn.execute(&d.sql).await.map_err(|e| refuse(d, e))?;
        if d.kind == "view" {
            conn.execute(&format!("SELECT * FROM {} LIMIT 0", quote_ident(&d.name)))
                .await
                .map_err(|e| refuse(d, e))?;
        }
    }
    reindex_external_content(conn, &step.table).await
}

/// Rebuilds every FTS5 index whose external content is `table`: such an index refers to the
/// table's rows by rowid, and the copy gave the rows new rowids.
async fn reindex_external_content(conn: &mut Conn, table: &str) -> Result<(), String> {
    let rows = conn
        .fetch_text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' \
             AND sql LIKE 'CREATE VIRTUAL TABLE%'",
        )
        .await
        .map_err(|e| format!("cannot read sqlite_master: {e}"))?;
    for row in rows {
        let mut cells = row.into_iter().map(Option::unwrap_or_default);
        let (name, sql) = (
            cells.next().unwrap_or_default(),
            cells.next().unwrap_or_default(),
        );
        if fts5_content_table(&sql).is_some_and(|content| content.eq_ignore_ascii_case(table)) {
            let fts = quote_ident(&name);
            conn.execute(&format!("INSERT INTO {fts} ({fts}) VALUES ('rebuild')"))
                .await
                .map_err(|e| {
                    format!("cannot rebuild full-text index {name} after the rebuild of table {table}: {e}")
                })?;
        }
    }
    Ok(())
}

/// The `content=` table of a `CREATE VIRTUAL TABLE .. USING fts5(..)` statement, if it names
/// one (an empty value is a contentless table).
fn fts5_content_table(sql: &str) -> Option<String> {
    let lower = sql.to_lowercase();
    let args = &lower[lower.find("using fts5")?..];
    let mut rest = args;
    while let Some(at) = rest.find("content") {
        let before = rest[..at].chars().next_back();
        let after = rest[at + "content".len()..].trim_start();
        rest = &rest[at + "content".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(value) = after.strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        let name: String = match value.chars().next() {
            Some(q @ ('\'' | '"' | '`')) => value[1..].chars().take_while(|c| *c != q).collect(),
            Some('[') => value[1..].chars().take_while(|c| *c != ']').collect(),
            _ => value
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect(),
        };
        return (!name.is_empty()).then_some(name);
    }
    None
}

/// The identifiers of a statement, lowercased: bare words and `"quoted"`, `` `quoted` `` or
/// `[quoted]` names; string literals and comments are skipped.
fn identifiers(sql: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' | '`' | '[' => {
                let close = if c == '[' { ']' } else { c };
                let mut text = String::new();
                i += 1;
                while i < chars.len() {
                    if chars[i] == close {
                        // A doubled quote stands for itself.
                        if close != ']' && chars.get(i + 1) == Some(&close) {
                            text.push(close);
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    text.push(chars[i]);
                    i += 1;
                }
                i += 1;
                if c != '\'' {
                    out.insert(text.to_lowercase());
                }
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
                {
                    i += 1;
                }
                out.insert(chars[start..i].iter().collect::<String>().to_lowercase());
            }
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{fts5_content_table, identifiers};

    #[test]
    fn fts5_content_tables_are_read_from_the_statement() {
        let content = |sql: &str| fts5_content_table(sql);
        assert_eq!(
            content(
                "CREATE VIRTUAL TABLE t_fts USING fts5(item, content='Todo', \
                 content_rowid='rowid', tokenize='trigram')"
            )
            .as_deref(),
            Some("todo")
        );
        assert_eq!(
            content("CREATE VIRTUAL TABLE f USING fts5(a, content_rowid = 'x', content = \"b\")")
                .as_deref(),
            Some("b")
        );
        assert_eq!(
            content("CREATE VIRTUAL TABLE f USING fts5(a, content='')"),
            None
        );
        assert_eq!(content("CREATE VIRTUAL TABLE f USING fts5(content)"), None);
        assert_eq!(
            content("CREATE VIRTUAL TABLE r USING rtree(id, content)"),
            None
        );
    }

    #[test]
    fn identifiers_skip_strings_and_comments() {
        let words = identifiers(
            "CREATE VIEW \"Big \"\"V\"\"\" AS SELECT `a`, [b c], d_1 FROM t -- x y\n\
             WHERE e = 'f g' /* h */",
        );
        let expected = [
            "create",
            "view",
            "big \"v\"",
            "as",
            "select",
            "a",
            "b c",
            "d_1",
            "from",
            "t",
            "where",
            "e",
        ];
        assert_eq!(
            words,
            expected.iter().map(|s| s.to_string()).collect(),
            "{words:?}"
        );
    }
}
