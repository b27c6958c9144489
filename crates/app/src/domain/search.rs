//! Case-insensitive substring search that an index serves, on both databases.
//!
//! The meaning is PostgreSQL's `lower(column) LIKE '%term%'` with every character of the term
//! taken literally (`%`, `_` and `\` too). Migration `3168f13bb5b8` makes the indexes:
//!
//! - PostgreSQL runs exactly that condition; trigram GIN indexes on `lower(column)` serve it
//!   for terms of three characters or more (the planner may still prefer to walk the user's
//!   own rows when the term is frequent).
//! - SQLite's `lower()` and `LIKE` fold ASCII letters only, so SQLite asks FTS5 tables with
//!   the `trigram` tokenizer, which fold case for the letters of every script: a term of three
//!   characters or more is one quoted phrase (a substring match on the folded text) against
//!   `todo_item_fts` or `user_account_search_fts`. The trigram index cannot serve one or two
//!   characters, so such a term scans the rows in reach (a user's todos through their index),
//!   matching each spelling of the term whose letters fold to the same lowercase.
//!
//! Both fold case one character at a time, as Unicode's simple case mapping does: common text
//! in any script ("ÉCOLE" finds "école") gives the same results on both databases; a letter
//! whose lowercase is two characters (the Turkish `İ`) may not.

use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

/// The escape character of LIKE patterns; not a backslash, whose quoting differs by dialect.
const LIKE_ESCAPE: char = '!';

/// The shortest term the trigram indexes serve.
const INDEXED_LENGTH: usize = 3;

/// Matches in the whole SQLite FTS5 index from which a term counts as frequent. The index
/// holds every user's rows, and an `IN (.. MATCH ..)` reads all its matches: for a frequent
/// term, reading the user's own rows is cheaper (a page stops after `limit` of them).
const FREQUENT: i64 = 2000;

/// What a search looks in: the columns and, on SQLite, the FTS5 table over them.
#[derive(Debug, Clone, Copy)]
pub struct Searched {
    /// The table the rows come from.
    pub table: &'static str,
    /// Its searched columns; a row matches when one of them does.
    pub columns: &'static [&'static str],
    /// The FTS5 table (SQLite) whose rowids are the table's.
    pub fts: &'static str,
}

/// `todo.item`.
pub const TODO_ITEM: Searched = Searched {
    table: "todo",
    columns: &["item"],
    fts: "todo_item_fts",
};

/// `user_account.email` and `user_account.name`.
pub const ACCOUNT_EMAIL_OR_NAME: Searched = Searched {
    table: "user_account",
    columns: &["email", "name"],
    fts: "user_account_search_fts",
};

/// [`contains`], choosing on SQLite between the FTS5 index and a scan of the rows in reach
/// (see [`FREQUENT`]): one bounded count on the index first. A frequent term scans with
/// SQLite's `LIKE`, whose case folding is right for an ASCII term only; a frequent non-ASCII
/// term still goes through the index.
pub async fn condition(
    db: &impl ConnectionTrait,
    searched: Searched,
    term: &str,
) -> Result<Condition, DbErr> {
    let backend = db.get_database_backend();
    if backend == DbBackend::Sqlite && term.is_ascii() && term.len() >= INDEXED_LENGTH {
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM \"{fts}\" WHERE \"{fts}\" MATCH ? LIMIT {FREQUENT})",
            fts = searched.fts
        );
        let statement = Statement::from_sql_and_values(backend, sql, [fts_phrase(term).into()]);
        let matches = match db.query_one_raw(statement).await? {
            Some(row) => row.try_get_by_index::<i64>(0)?,
            None => 0,
        };
        if matches >= FREQUENT {
            let pattern = like_pattern(term);
            let mut any = Condition::any();
            for column in searched.columns {
                any = any.add(
                    Expr::col((Alias::new(searched.table), Alias::new(*column)))
                        .like(LikeExpr::new(pattern.clone()).escape(LIKE_ESCAPE)),
                );
            }
            return Ok(any);
        }
    }
    Ok(contains(backend, searched, term))
}

/// The condition "one of the columns of `searched` contains `term`, ignoring case", for the
/// database `backend`, through the FTS5 index on SQLite. An empty term matches every row.
pub fn contains(backend: DbBackend, searched: Searched, term: &str) -> Condition {
    if term.is_empty() {
        return Condition::all();
    }
    let mut any = Condition::any();
    match backend {
        DbBackend::Sqlite if term.chars().count() >= INDEXED_LENGTH => {
            return any.add(Expr::cust_with_values(
                format!(
                    "\"{table}\".rowid IN (SELECT rowid FROM \"{fts}\" WHERE \"{fts}\" MATCH ?)",
                    table = searched.table,
                    fts = searched.fts
                ),
                [fts_phrase(term)],
            ));
        }
        DbBackend::Sqlite => {
            for column in searched.columns {
                for spelling in spellings(term) {
                    any = any.add(Expr::cust_with_values(
                        format!("instr(\"{}\".\"{column}\", ?) > 0", searched.table),
                        [spelling],
                    ));
                }
            }
        }
        _ => {
            let pattern = like_pattern(term);
            for column in searched.columns {
                any = any.add(
                    Expr::expr(Func::lower(Expr::col((
                        Alias::new(searched.table),
                        Alias::new(*column),
                    ))))
                    .like(LikeExpr::new(pattern.clone()).escape(LIKE_ESCAPE)),
                );
            }
        }
    }
    any
}

/// `%term%`, lowercased, with the wildcards and the escape character of `term` escaped.
///
/// Lowercased one character at a time, as PostgreSQL's `lower()` does the column: Rust's
/// `str::to_lowercase` gives a final capital sigma its own form (`ς`), which `lower()` never
/// writes, so "ΣΊΣ" would find nothing.
pub fn like_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars().flat_map(char::to_lowercase) {
        if matches!(c, '%' | '_') || c == LIKE_ESCAPE {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// `term` as one FTS5 phrase: in double quotes, where every character but `"` (doubled) is
/// literal. The trigram tokenizer folds its case as it folds the indexed text.
fn fts_phrase(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// Every spelling of a short `term` whose characters lowercase to those of the term's
/// lowercase form: "ab" gives "ab", "aB", "Ab" and "AB". Each character has at most a few,
/// and the term is short, so the list stays small.
fn spellings(term: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for c in term.chars() {
        let forms = case_forms(c);
        out = out
            .iter()
            .flat_map(|prefix| {
                forms.iter().map(move |form| {
                    let mut next = prefix.clone();
                    next.push(*form);
                    next
                })
            })
            .collect();
    }
    out
}

/// `c` in lower case and the upper and title case letters that lowercase to it.
fn case_forms(c: char) -> Vec<char> {
    let lower = single(c.to_lowercase()).unwrap_or(c);
    let mut forms = vec![lower];
    for candidate in [Some(c), single(lower.to_uppercase())]
        .into_iter()
        .flatten()
    {
        let folds_back = single(candidate.to_lowercase()) == Some(lower);
        if folds_back && !forms.contains(&candidate) {
            forms.push(candidate);
        }
    }
    forms
}

/// The one character of a case mapping; `None` when it gives several.
fn single(mut chars: impl Iterator<Item = char>) -> Option<char> {
    let first = chars.next()?;
    chars.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("Milk"), "%milk%");
        assert_eq!(like_pattern("50%_off!"), "%50!%!_off!!%");
        assert_eq!(like_pattern("ÉCOLE"), "%école%");
        assert_eq!(like_pattern("ΣΊΣ"), "%σίσ%");
    }

    #[test]
    fn fts_phrases_quote_everything() {
        assert_eq!(fts_phrase("milk"), "\"milk\"");
        assert_eq!(fts_phrase("say \"hi\" AND x*"), "\"say \"\"hi\"\" AND x*\"");
    }

    #[test]
    fn short_terms_are_spelled_every_way() {
        let mut got = spellings("aB");
        got.sort();
        assert_eq!(got, ["AB", "Ab", "aB", "ab"]);
        let mut got = spellings("É%");
        got.sort();
        assert_eq!(got, ["É%", "é%"]);
        assert_eq!(spellings("_\\"), ["_\\"]);
    }
}
