//! Writes migrations as Rust files a person can read and edit, and lists them in the
//! application's migration registry.
//!
//! A migration file is one function building a [`crate::Migration`] from the constructors of
//! [`crate::prelude`], one operation per element of its `vec![...]`. The text is laid out the
//! way `rustfmt --edition 2024` (default settings) lays it out, so that `cargo fmt` leaves a
//! freshly written file alone: [`layout`] reproduces rustfmt's choices for the few expression
//! shapes the writer emits (calls, builder chains, arrays, `vec!`). String literals that
//! would keep a line from fitting the 100 columns are moved, longest first, into `const`s
//! after the function, where rustfmt leaves them be.
//!
//! The registry is a Rust module (`mod.rs`) listing every migration twice, as a `#[path]`
//! module and in `all()`; [`Registry`] reads what it lists and adds entries before marker
//! comments, leaving the rest of the text as it is.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ops::{DialectSql, Operation};
use crate::schema::{Column, ColumnType, DefaultValue, ForeignKey, ForeignKeyAction, Table};

use layout::Expr;

/// What the writer cannot write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("data step {0:?} cannot be written as code; add `run_data(...)` to the file by hand")]
    DataStep(String),
    #[error("table {table}: {kind} {key:?} is stored under another name ({name:?})")]
    Inconsistent {
        table: String,
        kind: &'static str,
        key: String,
        name: String,
    },
    #[error("revision {0:?} is not usable in a module name (letters, digits and `_` only)")]
    InvalidRevision(String),
    #[error("revision {0} is already registered")]
    DuplicateRevision(String),
    #[error("the registry has no `{0}` marker comment; add it back where new entries go")]
    MissingMarker(&'static str),
    #[error("the registry has the `{0}` marker comment more than once")]
    RepeatedMarker(&'static str),
    #[error("line {line} of the registry cannot be read: {reason}")]
    MalformedRegistry { line: usize, reason: String },
    #[error("the migration could not be laid out as Rust code")]
    Layout,
}

/// A migration file ready to be written next to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    /// `YYYY-MM-DD_<slug>_<rev>.rs`.
    pub file_name: String,
    /// `m_<rev>`, the module name in the registry.
    pub module: String,
    /// The Rust source.
    pub source: String,
}

impl MigrationFile {
    /// Renders a migration file; `created` is RFC 3339 and its first ten characters are the
    /// date in the file name.
    pub fn new(
        revision: &str,
        parents: &[&str],
        message: &str,
        created: &str,
        operations: &[Operation],
    ) -> Result<Self, WriteError> {
        let date = created.get(..10).unwrap_or(created);
        Ok(MigrationFile {
            file_name: file_name(date, message, revision),
            module: format!("m_{revision}"),
            source: render_migration(revision, parents, message, created, operations)?,
        })
    }
}

/// A new revision id: 12 lowercase hex characters, random.
pub fn new_revision() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    // `RandomState` carries per-process random keys; the counter and the time keep two calls
    // apart even with the same keys.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(nanos);
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

/// File name `YYYY-MM-DD_<slug>_<rev>.rs`: the slug is the message lowercased, every run of
/// other characters than ASCII letters and digits turned into one `_`, trimmed of `_`, at
/// most 40 characters, and `empty` when nothing is left.
pub fn file_name(date: &str, message: &str, revision: &str) -> String {
    format!("{date}_{}_{revision}.rs", slug(message))
}

fn slug(message: &str) -> String {
    let mut slug = String::new();
    for c in message.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('_') {
            slug.push('_');
        }
    }
    slug.truncate(40);
    let slug = slug.trim_matches('_');
    if slug.is_empty() {
        "empty".to_string()
    } else {
        slug.to_string()
    }
}

/// Rust source of a migration file with these operations; `created` is RFC 3339.
///
/// Data steps are Rust functions and cannot be written back as code: they give
/// [`WriteError::DataStep`].
pub fn render_migration(
    revision: &str,
    parents: &[&str],
    message: &str,
    created: &str,
    operations: &[Operation],
) -> Result<String, WriteError> {
    render_migration_with(revision, parents, message, created, operations, true)
}

/// [`render_migration`] for a migration that may run outside a transaction: `atomic: false`
/// writes `.atomic(false)` (see [`crate::Migration::atomic`]).
pub fn render_migration_with(
    revision: &str,
    parents: &[&str],
    message: &str,
    created: &str,
    operations: &[Operation],
    atomic: bool,
) -> Result<String, WriteError> {
    let ops = operations
        .iter()
        .map(operation_expr)
        .collect::<Result<Vec<_>, _>>()?;
    let migration = Expr::call(
        "Migration::new",
        vec![
            Expr::str(revision, Role::Text),
            Expr::slice(parents.iter().map(|p| Expr::str(p, Role::Text))),
            Expr::str(message, Role::Message),
            Expr::str(created, Role::Text),
        ],
    );
    let migration = if atomic {
        migration
    } else {
        migration.method("atomic", vec![Expr::Atom("false".into())])
    };
    let migration = migration.method("operations", vec![Expr::VecMacro(ops)]);

    let (body, consts) = lay_out(&migration)?;
    let mut out = String::new();
    write_header(&mut out, revision, parents, message, created, operations);
    out.push_str("use strata::prelude::*;\n\npub fn migration() -> Migration {\n");
    out.push_str(&body);
    out.push_str("\n}\n");
    if !consts.items.is_empty() {
        out.push('\n');
        for (name, literal) in &consts.items {
            out.push_str(&const_item(name, literal));
        }
    }
    Ok(out)
}

/// The body of `migration()` as rustfmt lays it out, indented, with the consts its long
/// string literals moved into.
///
/// Literals move into consts until every line fits the maximum width. A literal wider than
/// 91 columns fits nowhere (operations start at column 8 and are followed by at least a
/// comma); the others move when a line they are on is too long, the longest on each line.
fn lay_out(migration: &Expr) -> Result<(String, Consts), WriteError> {
    let mut hoisted: Vec<String> = literals(migration, &[])
        .into_iter()
        .filter(|(_, literal)| literal.len() > layout::MAX_WIDTH - 9)
        .map(|(value, _)| value)
        .collect();
    loop {
        let mut consts = Consts::default();
        let body = hoist(migration, &hoisted, &mut consts);
        let text = layout::rewrite(&body, layout::Shape::indented(4), false)
            .map(|t| format!("    {t}"))
            .filter(|t| t.lines().all(|l| l.len() <= layout::MAX_WIDTH));
        if let Some(text) = text {
            return Ok((text, consts));
        }
        let mut left = literals(migration, &hoisted);
        left.sort_by_key(|(_, literal)| std::cmp::Reverse(literal.len()));
        let before = hoisted.len();
        for line in overlong_lines(&body) {
            let longest = left
                .iter()
                .find(|(_, literal)| line.contains(literal.as_str()));
            if let Some((value, _)) = longest
                && !hoisted.contains(value)
            {
                hoisted.push(value.clone());
            }
        }
        if hoisted.len() == before {
            let (value, _) = left.first().ok_or(WriteError::Layout)?;
            hoisted.push(value.clone());
        }
    }
}

/// The lines too long in layouts that let chains run over: the whole body, and each
/// operation at the deepest indentation rustfmt tries for the elements of `vec![...]`.
fn overlong_lines(body: &Expr) -> Vec<String> {
    let mut texts = vec![
        layout::rewrite(body, layout::Shape::indented(4), true)
            .map(|t| format!("    {t}"))
            .unwrap_or_default(),
    ];
    if let Expr::Method(_, _, args) = body
        && let [Expr::VecMacro(ops)] = args.as_slice()
    {
        let shape = layout::Shape::element(layout::DEEPEST_VEC_ELEMENT);
        for op in ops {
            let text = layout::rewrite(op, shape, true).unwrap_or_default();
            texts.push(format!("{}{text}", " ".repeat(layout::DEEPEST_VEC_ELEMENT)));
        }
    }
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| l.len() > layout::MAX_WIDTH)
        .map(str::to_string)
        .collect()
}

fn write_header(
    out: &mut String,
    revision: &str,
    parents: &[&str],
    message: &str,
    created: &str,
    operations: &[Operation],
) {
    let mut title: Vec<String> = message.lines().map(doc_line).collect();
    while title.last().is_some_and(String::is_empty) {
        title.pop();
    }
    while title.first().is_some_and(String::is_empty) {
        title.remove(0);
    }
    if title.is_empty() {
        title.push("(no message)".to_string());
    }
    for line in title {
        push_doc(out, &line);
    }
    push_doc(out, "");
    let parents = match parents {
        [] => "parent: none".to_string(),
        [one] => format!("parent: `{}`", doc_line(one)),
        many => format!(
            "parents: {} (a merge)",
            many.iter()
                .map(|p| format!("`{}`", doc_line(p)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    push_doc(
        out,
        &format!(
            "Revision `{}`, {parents}. Created {} by `make-migrations`.",
            doc_line(revision),
            doc_line(created)
        ),
    );
    push_doc(
        out,
        "Edit freely: the downgrade is derived from these operations; call \
         `.downgrade(vec![...])` to write it by hand.",
    );
    let irreversible = operations
        .iter()
        .any(|op| matches!(op, Operation::RawSql { down: None, .. }));
    if irreversible {
        push_doc(
            out,
            "Irreversible as written: `raw_sql` has no down step (use `raw_sql_reversible`).",
        );
    }
    out.push('\n');
}

fn push_doc(out: &mut String, line: &str) {
    out.push_str("//!");
    if !line.is_empty() {
        out.push(' ');
        out.push_str(line);
    }
    out.push('\n');
}

/// One line of text made safe for a doc comment: control characters become spaces, no
/// leading or trailing blanks (an indented line would be a code block, and a doctest), and
/// a leading code fence is escaped.
fn doc_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    if line.starts_with("```") || line.starts_with("~~~") {
        format!("\\{line}")
    } else {
        line.to_string()
    }
}

/// A Rust string literal for `value`. ASCII is escaped as `{:?}` escapes it; every other
/// character is written as `\u{..}`, which keeps the literal's width in columns equal to its
/// length in bytes, as the layout assumes.
pub(crate) fn string_literal(value: &str) -> String {
    let mut lit = String::with_capacity(value.len() + 2);
    lit.push('"');
    for c in value.chars() {
        match c {
            '"' => lit.push_str("\\\""),
            '\\' => lit.push_str("\\\\"),
            '\n' => lit.push_str("\\n"),
            '\r' => lit.push_str("\\r"),
            '\t' => lit.push_str("\\t"),
            '\0' => lit.push_str("\\0"),
            ' '..='~' => lit.push(c),
            other => lit.push_str(&format!("\\u{{{:x}}}", other as u32)),
        }
    }
    lit.push('"');
    lit
}

/// What a string is, for naming the const it moves into when it is too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Message,
    Name,
    Comment,
    Check,
    Default,
    Sql,
    Text,
}

impl Role {
    fn prefix(self) -> &'static str {
        match self {
            Role::Message => "MESSAGE",
            Role::Name => "NAME",
            Role::Comment => "COMMENT",
            Role::Check => "CHECK",
            Role::Default => "DEFAULT",
            Role::Sql => "SQL",
            Role::Text => "TEXT",
        }
    }
}

/// The consts long literals moved into, in order of first use.
#[derive(Default)]
struct Consts {
    /// (name, literal)
    items: Vec<(String, String)>,
}

impl Consts {
    fn name_for(&mut self, literal: &str, role: Role) -> String {
        if let Some((name, _)) = self.items.iter().find(|(_, l)| l == literal) {
            return name.clone();
        }
        let name = if role == Role::Message {
            role.prefix().to_string()
        } else {
            let n = self
                .items
                .iter()
                .filter(|(name, _)| {
                    name.rsplit_once('_')
                        .is_some_and(|(p, _)| p == role.prefix())
                })
                .count();
            format!("{}_{}", role.prefix(), n + 1)
        };
        self.items.push((name.clone(), literal.to_string()));
        name
    }
}

/// Replaces the strings in `hoisted` with the names of consts, and the others with literals.
fn hoist(expr: &Expr, hoisted: &[String], consts: &mut Consts) -> Expr {
    let all = |items: &[Expr], consts: &mut Consts| {
        items
            .iter()
            .map(|e| hoist(e, hoisted, consts))
            .collect::<Vec<_>>()
    };
    match expr {
        Expr::Str(value, role) => {
            let literal = string_literal(value);
            if hoisted.contains(value) {
                Expr::Atom(consts.name_for(&literal, *role))
            } else {
                Expr::Lit(literal)
            }
        }
        Expr::Lit(_) | Expr::Atom(_) => expr.clone(),
        Expr::Call(callee, args) => Expr::Call(callee.clone(), all(args, consts)),
        Expr::Method(receiver, name, args) => Expr::Method(
            Box::new(hoist(receiver, hoisted, consts)),
            name.clone(),
            all(args, consts),
        ),
        Expr::Ref(inner) => Expr::Ref(Box::new(hoist(inner, hoisted, consts))),
        Expr::Array(items) => Expr::Array(all(items, consts)),
        Expr::VecMacro(items) => Expr::VecMacro(all(items, consts)),
    }
}

/// The strings of `expr` not in `hoisted`, with their literals, in order.
fn literals(expr: &Expr, hoisted: &[String]) -> Vec<(String, String)> {
    fn walk(expr: &Expr, hoisted: &[String], out: &mut Vec<(String, String)>) {
        match expr {
            Expr::Str(value, _) => {
                if !hoisted.contains(value) {
                    out.push((value.clone(), string_literal(value)));
                }
            }
            Expr::Lit(_) | Expr::Atom(_) => {}
            Expr::Call(_, items) | Expr::Array(items) | Expr::VecMacro(items) => {
                items.iter().for_each(|e| walk(e, hoisted, out))
            }
            Expr::Method(receiver, _, args) => {
                walk(receiver, hoisted, out);
                args.iter().for_each(|e| walk(e, hoisted, out));
            }
            Expr::Ref(inner) => walk(inner, hoisted, out),
        }
    }
    let mut out = Vec::new();
    walk(expr, hoisted, &mut out);
    out
}

/// `const NAME: &str = "...";` as rustfmt writes it: on one line when it fits, else the
/// literal on the next line when it fits there, else on one line anyway.
fn const_item(name: &str, literal: &str) -> String {
    let head = format!("const {name}: &str =");
    let one_line = head.len() + 1 + literal.len() + 1;
    let next_line = 4 + literal.len() + 1;
    if one_line <= layout::MAX_WIDTH || next_line > layout::MAX_WIDTH {
        format!("{head} {literal};\n")
    } else {
        format!("{head}\n    {literal};\n")
    }
}

fn names(items: &[String]) -> Expr {
    Expr::slice(items.iter().map(|c| Expr::str(c, Role::Name)))
}

fn column_type_expr(ty: &ColumnType) -> Expr {
    let path = |variant: &str| Expr::Atom(format!("ColumnType::{variant}"));
    match ty {
        ColumnType::String(Some(n)) => Expr::call(
            "ColumnType::String",
            vec![Expr::call("Some", vec![Expr::Atom(n.to_string())])],
        ),
        ColumnType::String(None) => {
            Expr::call("ColumnType::String", vec![Expr::Atom("None".into())])
        }
        ColumnType::Decimal(p, s) => Expr::call(
            "ColumnType::Decimal",
            vec![Expr::Atom(p.to_string()), Expr::Atom(s.to_string())],
        ),
        ColumnType::Uuid => path("Uuid"),
        ColumnType::Text => path("Text"),
        ColumnType::Boolean => path("Boolean"),
        ColumnType::SmallInteger => path("SmallInteger"),
        ColumnType::Integer => path("Integer"),
        ColumnType::BigInteger => path("BigInteger"),
        ColumnType::Real => path("Real"),
        ColumnType::Double => path("Double"),
        ColumnType::Date => path("Date"),
        ColumnType::Time => path("Time"),
        ColumnType::Timestamp => path("Timestamp"),
        ColumnType::TimestampTz => path("TimestampTz"),
        ColumnType::Json => path("Json"),
        ColumnType::JsonBinary => path("JsonBinary"),
        ColumnType::Binary => path("Binary"),
    }
}

fn default_expr(value: &DefaultValue) -> Expr {
    match value {
        DefaultValue::Bool(b) => Expr::call("DefaultValue::Bool", vec![Expr::Atom(b.to_string())]),
        DefaultValue::Int(i) => Expr::call("DefaultValue::Int", vec![Expr::Atom(i.to_string())]),
        DefaultValue::Str(s) => Expr::call(
            "DefaultValue::Str",
            vec![Expr::str(s, Role::Default).method("into", vec![])],
        ),
        DefaultValue::Expr(e) => Expr::call(
            "DefaultValue::Expr",
            vec![Expr::str(e, Role::Default).method("into", vec![])],
        ),
    }
}

fn column_expr(column: &Column) -> Expr {
    let mut expr = Expr::call(
        "Column::new",
        vec![
            Expr::str(&column.name, Role::Name),
            column_type_expr(&column.ty),
        ],
    );
    if column.nullable {
        expr = expr.method("nullable", vec![]);
    }
    if let Some(default) = &column.default {
        expr = expr.method("default", vec![default_expr(default)]);
    }
    if let Some(comment) = &column.comment {
        expr = expr.method("comment", vec![Expr::str(comment, Role::Comment)]);
    }
    expr
}

fn action_expr(action: ForeignKeyAction) -> Expr {
    Expr::Atom(format!("ForeignKeyAction::{action:?}"))
}

fn foreign_key_expr(fk: &ForeignKey) -> Expr {
    let mut expr = Expr::call(
        "ForeignKey::new",
        vec![
            Expr::str(&fk.name, Role::Name),
            names(&fk.columns),
            Expr::str(&fk.ref_table, Role::Name),
            names(&fk.ref_columns),
        ],
    );
    if fk.on_delete != ForeignKeyAction::NoAction {
        expr = expr.method("on_delete", vec![action_expr(fk.on_delete)]);
    }
    if fk.on_update != ForeignKeyAction::NoAction {
        expr = expr.method("on_update", vec![action_expr(fk.on_update)]);
    }
    expr
}

fn dialect_sql_expr(sql: &DialectSql) -> Expr {
    if sql.postgres == sql.sqlite {
        Expr::call(
            "DialectSql::both",
            vec![Expr::str(&sql.postgres, Role::Sql)],
        )
    } else {
        Expr::call(
            "DialectSql::new",
            vec![
                Expr::str(&sql.postgres, Role::Sql),
                Expr::str(&sql.sqlite, Role::Sql),
            ],
        )
    }
}

/// Checks that every keyed part of the table is stored under its own name, since the
/// builders key them by name.
fn check_keys<V>(
    table: &Table,
    kind: &'static str,
    map: &std::collections::BTreeMap<String, V>,
    name: impl Fn(&V) -> &str,
) -> Result<(), WriteError> {
    for (key, value) in map {
        if key != name(value) {
            return Err(WriteError::Inconsistent {
                table: table.name.clone(),
                kind,
                key: key.clone(),
                name: name(value).to_string(),
            });
        }
    }
    Ok(())
}

fn table_expr(table: &Table) -> Result<Expr, WriteError> {
    check_keys(table, "unique constraint", &table.uniques, |u| &u.name)?;
    check_keys(table, "check constraint", &table.checks, |c| &c.name)?;
    check_keys(table, "foreign key", &table.foreign_keys, |f| &f.name)?;
    check_keys(table, "index", &table.indexes, |i| &i.name)?;
    let mut expr = Expr::call("Table::new", vec![Expr::str(&table.name, Role::Name)]);
    for column in &table.columns {
        expr = expr.method("with_column", vec![column_expr(column)]);
    }
    if !table.primary_key.is_empty() {
        let columns = table.primary_key.iter().map(|c| Expr::str(c, Role::Name));
        expr = expr.method("with_primary_key", vec![Expr::Array(columns.collect())]);
    }
    for unique in table.uniques.values() {
        let args = vec![Expr::str(&unique.name, Role::Name), names(&unique.columns)];
        expr = expr.method("with_unique", vec![Expr::call("Unique::new", args)]);
    }
    for check in table.checks.values() {
        let args = vec![
            Expr::str(&check.name, Role::Name),
            Expr::str(&check.expr, Role::Check),
        ];
        expr = expr.method("with_check", vec![Expr::call("Check::new", args)]);
    }
    for fk in table.foreign_keys.values() {
        expr = expr.method("with_foreign_key", vec![foreign_key_expr(fk)]);
    }
    for index in table.indexes.values() {
        let args = vec![Expr::str(&index.name, Role::Name), names(&index.columns)];
        let mut index_expr = Expr::call("Index::new", args);
        if index.unique {
            index_expr = index_expr.method("unique", vec![]);
        }
        expr = expr.method("with_index", vec![index_expr]);
    }
    if let Some(comment) = &table.comment {
        expr = expr.method("with_comment", vec![Expr::str(comment, Role::Comment)]);
    }
    Ok(expr)
}

fn operation_expr(op: &Operation) -> Result<Expr, WriteError> {
    let name = |s: &str| Expr::str(s, Role::Name);
    let call = |f: &str, args: Vec<Expr>| Expr::call(f, args);
    Ok(match op {
        Operation::CreateTable(table) => call("create_table", vec![table_expr(table)?]),
        Operation::DropTable { name: t } => call("drop_table", vec![name(t)]),
        Operation::RenameTable { from, to } => call("rename_table", vec![name(from), name(to)]),
        Operation::AddColumn { table, column } => {
            call("add_column", vec![name(table), column_expr(column)])
        }
        Operation::DropColumn { table, name: c } => call("drop_column", vec![name(table), name(c)]),
        Operation::AlterColumn { table, to } => {
            call("alter_column", vec![name(table), column_expr(to)])
        }
        Operation::RenameColumn { table, from, to } => {
            call("rename_column", vec![name(table), name(from), name(to)])
        }
        Operation::CreateIndex { table, index } => call(
            if index.unique {
                "create_unique_index"
            } else {
                "create_index"
            },
            vec![name(table), name(&index.name), names(&index.columns)],
        ),
        Operation::DropIndex { table, name: n } => call("drop_index", vec![name(table), name(n)]),
        Operation::AddForeignKey { table, foreign_key } => call(
            "add_foreign_key",
            vec![name(table), foreign_key_expr(foreign_key)],
        ),
        Operation::DropForeignKey { table, name: n } => {
            call("drop_foreign_key", vec![name(table), name(n)])
        }
        Operation::AddUnique { table, unique } => call(
            "add_unique",
            vec![name(table), name(&unique.name), names(&unique.columns)],
        ),
        Operation::DropUnique { table, name: n } => call("drop_unique", vec![name(table), name(n)]),
        Operation::AddCheck { table, check } => call(
            "add_check",
            vec![
                name(table),
                name(&check.name),
                Expr::str(&check.expr, Role::Check),
            ],
        ),
        Operation::DropCheck { table, name: n } => call("drop_check", vec![name(table), name(n)]),
        Operation::RenameIndex { table, from, to } => {
            call("rename_index", vec![name(table), name(from), name(to)])
        }
        Operation::RenameConstraint { table, from, to } => {
            call("rename_constraint", vec![name(table), name(from), name(to)])
        }
        Operation::SetTableComment { table, comment } => {
            let comment = match comment {
                Some(c) => call("Some", vec![Expr::str(c, Role::Comment)]),
                None => Expr::Atom("None".into()),
            };
            call("set_table_comment", vec![name(table), comment])
        }
        Operation::RawSql { up, down: None } => call("raw_sql", vec![dialect_sql_expr(up)]),
        Operation::RawSql {
            up,
            down: Some(down),
        } => call(
            "raw_sql_reversible",
            vec![dialect_sql_expr(up), dialect_sql_expr(down)],
        ),
        Operation::Data(step) => return Err(WriteError::DataStep(step.name.clone())),
    })
}

const MODULES_MARKER: &str = "// strata:modules";
const LIST_MARKER: &str = "// strata:list";

const NEW_REGISTRY: &str = "\
//! The migrations of this application, oldest first.
//!
//! Maintained by `make-migrations`: each migration file is listed twice below,
//! as a module and in `all()`. Keep the marker comments.

// strata:modules

/// Every migration, oldest first.
pub fn all() -> Vec<strata::Migration> {
    vec![
        // strata:list
    ]
}
";

/// One migration listed in a [`Registry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    /// The migration file, relative to the registry's directory: the value of the
    /// `#[path = "..."]` attribute on the module, or `m_<rev>.rs` when it has none (where
    /// rustc then looks for it).
    pub file_name: String,
    /// The revision, from the module name `m_<rev>`.
    pub revision: String,
}

/// The application's migration registry, the `mod.rs` that lists every migration twice: as a
/// `#[path]` module before the `// strata:modules` marker and as `m_<rev>::migration(),` in
/// `all()` before the `// strata:list` marker.
///
/// The text is kept as it was read: [`Registry::with`] inserts before the markers and leaves
/// every other byte alone, so hand edits (comments, attributes, a different doc) survive and
/// [`Registry::render`] of a parsed registry gives back the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// The source, exactly as read or last written.
    text: String,
    /// The declared modules, in the order of the text.
    entries: Vec<RegistryEntry>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry that lists no migration yet, the text `make-migrations` starts with.
    pub fn new() -> Registry {
        Registry {
            text: NEW_REGISTRY.to_string(),
            entries: Vec::new(),
        }
    }

    /// Reads a registry's source.
    ///
    /// Every `mod m_<rev>;` declaration (`pub` or not) is an entry, with the file named by the
    /// `#[path = "..."]` attribute above it. Both marker comments must be there, once each,
    /// since new entries go before them; a path attribute whose value is not a string literal
    /// and a module declared twice are refused as well.
    pub fn parse(text: &str) -> Result<Registry, WriteError> {
        let lines: Vec<&str> = text.lines().collect();
        // Checked here rather than when adding, so that a broken registry is reported before
        // any work is done on the migration it would list.
        marker_line(&lines, MODULES_MARKER)?;
        marker_line(&lines, LIST_MARKER)?;
        let mut entries: Vec<RegistryEntry> = Vec::new();
        // The path of an attribute waiting for the declaration it belongs to.
        let mut path: Option<String> = None;
        for (at, line) in lines.iter().enumerate() {
            let mut rest = line.trim();
            let attribute =
                path_attribute(rest).map_err(|reason| WriteError::MalformedRegistry {
                    line: at + 1,
                    reason,
                })?;
            if let Some((file, after)) = attribute {
                path = Some(file);
                rest = after.trim_start();
            }
            if let Some(revision) = migration_module(rest) {
                if entries.iter().any(|e| e.revision == revision) {
                    return Err(WriteError::DuplicateRevision(revision.to_string()));
                }
                let file_name = path.take().unwrap_or_else(|| format!("m_{revision}.rs"));
                entries.push(RegistryEntry {
                    file_name,
                    revision: revision.to_string(),
                });
            } else if !(rest.is_empty() || rest.starts_with("//") || rest.starts_with("#[")) {
                // Another item took the attribute: it does not name a migration's file.
                path = None;
            }
        }
        Ok(Registry {
            text: text.to_string(),
            entries,
        })
    }

    /// The listed migrations, in the order of the registry (oldest first when the writer
    /// made it).
    pub fn entries(&self) -> &[RegistryEntry] {
        &self.entries
    }

    /// The listed revisions, in the order of the registry.
    pub fn revisions(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.revision.as_str())
    }

    /// The listed migration files, in the order of the registry.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.file_name.as_str())
    }

    /// This registry with one more migration listed after the others.
    ///
    /// The module goes before the `// strata:modules` line (after a blank line when another
    /// module precedes it, which keeps rustfmt from sorting the modules by name) and the call
    /// before the `// strata:list` line, so the registry stays oldest first. Everything else
    /// is left as written, line endings included.
    pub fn with(&self, file_name: &str, revision: &str) -> Result<Registry, WriteError> {
        if revision.is_empty()
            || !revision
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(WriteError::InvalidRevision(revision.to_string()));
        }
        let text = &self.text;
        let module = format!("m_{revision}");
        // Anywhere in the text, not only among the entries: a module name that is already
        // used (in `all()`, by hand) would not compile a second time.
        if mentions_ident(text, &module) {
            return Err(WriteError::DuplicateRevision(revision.to_string()));
        }
        let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let modules_at = marker_line(&lines, MODULES_MARKER)?;
        let list_at = marker_line(&lines, LIST_MARKER)?;

        // The list first: inserting there does not move the modules marker when it comes
        // first, and the indexes are fixed up below when it does not.
        let list_indent = indentation(&lines[list_at]).to_string();
        let previous_item = (0..list_at).rev().find(|&i| {
            let line = lines[i].trim();
            !line.is_empty() && !line.starts_with("//")
        });
        if let Some(i) = previous_item {
            let line = lines[i].trim_end();
            if !line.ends_with(',') && !line.ends_with('[') && !line.ends_with('(') {
                lines[i] = format!("{line},");
            }
        }
        lines.insert(list_at, format!("{list_indent}{module}::migration(),"));
        let modules_at = if list_at < modules_at {
            modules_at + 1
        } else {
            modules_at
        };

        let modules_indent = indentation(&lines[modules_at]).to_string();
        let after_module = modules_at > 0 && {
            let previous = lines[modules_at - 1].trim();
            previous.ends_with(';') && previous.contains("mod ")
        };
        let mut entry = Vec::new();
        if after_module {
            entry.push(String::new());
        }
        entry.push(format!("{modules_indent}#[path = {file_name:?}]"));
        entry.push(format!("{modules_indent}mod {module};"));
        lines.splice(modules_at..modules_at, entry);

        let mut out = lines.join(newline);
        if text.ends_with('\n') {
            out.push_str(newline);
        }
        let mut entries = self.entries.clone();
        entries.push(RegistryEntry {
            file_name: file_name.to_string(),
            revision: revision.to_string(),
        });
        Ok(Registry { text: out, entries })
    }

    /// The registry's source, to write to `mod.rs`.
    pub fn render(&self) -> String {
        self.text.clone()
    }
}

fn indentation(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

fn marker_line<S: AsRef<str>>(lines: &[S], marker: &'static str) -> Result<usize, WriteError> {
    let mut found = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.as_ref().trim() == marker)
        .map(|(i, _)| i);
    let first = found.next().ok_or(WriteError::MissingMarker(marker))?;
    if found.next().is_some() {
        return Err(WriteError::RepeatedMarker(marker));
    }
    Ok(first)
}

/// True when `ident` appears in `text` as a whole identifier.
fn mentions_ident(text: &str, ident: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(ident).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + ident.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Reads a `#[path = "..."]` attribute at the start of `line` (trimmed): its path and the
/// rest of the line, `None` when the line does not start with one, or why it cannot be read.
fn path_attribute(line: &str) -> Result<Option<(String, &str)>, String> {
    let Some(value) = line
        .strip_prefix("#[path")
        .and_then(|rest| rest.trim_start().strip_prefix('='))
    else {
        return Ok(None);
    };
    let (path, after) = string_literal_prefix(value.trim_start())?;
    let after = after
        .trim_start()
        .strip_prefix(']')
        .ok_or("expected `]` after the path")?;
    Ok(Some((path, after)))
}

/// The revision of a `mod m_<rev>;` declaration (`pub` or not) at the start of `line`.
fn migration_module(line: &str) -> Option<&str> {
    let line = ["pub(crate) ", "pub(super) ", "pub "]
        .iter()
        .find_map(|vis| line.strip_prefix(vis))
        .unwrap_or(line);
    let name = line.strip_prefix("mod")?;
    if !name.starts_with(char::is_whitespace) {
        return None;
    }
    let name = name.trim_start().strip_prefix("m_")?;
    let end = name
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(name.len());
    let (revision, after) = name.split_at(end);
    (!revision.is_empty() && after.trim_start().starts_with(';')).then_some(revision)
}

/// Decodes the Rust string literal (plain or raw) that `text` starts with, returning its value
/// and what follows it. The writer writes paths with `{:?}`, whose escapes are a subset of
/// the ones decoded here; raw strings are accepted for registries edited by hand.
fn string_literal_prefix(text: &str) -> Result<(String, &str), String> {
    if let Some(raw) = text.strip_prefix('r') {
        let hashes = raw.len() - raw.trim_start_matches('#').len();
        let body = raw[hashes..]
            .strip_prefix('"')
            .ok_or_else(|| "the path is not a string literal".to_string())?;
        let close = format!("\"{}", "#".repeat(hashes));
        let end = body
            .find(&close)
            .ok_or_else(|| "the path's raw string is not closed on its line".to_string())?;
        return Ok((body[..end].to_string(), &body[end + close.len()..]));
    }
    let body = text
        .strip_prefix('"')
        .ok_or_else(|| "the path is not a string literal".to_string())?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[at + 1..])),
            '\\' => {
                let escaped = match chars.next().map(|(_, e)| e) {
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('t') => '\t',
                    Some('0') => '\0',
                    Some('\\') => '\\',
                    Some('"') => '"',
                    Some('\'') => '\'',
                    Some('x') => {
                        let digits: String = chars.by_ref().take(2).map(|(_, d)| d).collect();
                        u8::from_str_radix(&digits, 16)
                            .ok()
                            .filter(|b| b.is_ascii() && digits.len() == 2)
                            .map(char::from)
                            .ok_or_else(|| format!("bad escape `\\x{digits}` in the path"))?
                    }
                    Some('u') => {
                        let rest = &body[chars.offset()..];
                        let digits = rest
                            .strip_prefix('{')
                            .and_then(|r| r.split_once('}'))
                            .map(|(digits, _)| digits)
                            .ok_or_else(|| "bad escape `\\u` in the path".to_string())?;
                        let c = u32::from_str_radix(digits, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| format!("bad escape `\\u{{{digits}}}` in the path"))?;
                        // Skip the braces and the digits.
                        chars.nth(digits.len() + 1);
                        c
                    }
                    other => {
                        let shown = other.map(String::from).unwrap_or_default();
                        return Err(format!("bad escape `\\{shown}` in the path"));
                    }
                };
                value.push(escaped);
            }
            c => value.push(c),
        }
    }
    Err("the path's string is not closed on its line".to_string())
}

/// A reproduction of rustfmt's layout (style edition 2024, default configuration, block
/// indent) for the expressions the writer emits: string and other literals, paths, calls,
/// method chains, `&[...]` slices, arrays and `vec![...]`.
///
/// rustfmt decides line breaks bottom-up by trying layouts against a [`Shape`] (the columns
/// left for an expression) and falling back when a try does not fit; the functions below make
/// the same tries in the same order with the same widths (`fn_call_width`, `array_width`
/// and `chain_width` are 60, `max_width` 100, `short_array_element_width_threshold` 10), so
/// the text they produce is what `rustfmt` would print for it. They assume ASCII text, which
/// [`string_literal`] guarantees, so that widths are byte lengths.
mod layout {
    use std::cell::Cell;

    pub(super) const MAX_WIDTH: usize = 100;
    const TAB: usize = 4;
    const FN_CALL_WIDTH: usize = 60;
    const ARRAY_WIDTH: usize = 60;
    const CHAIN_WIDTH: usize = 60;
    const SHORT_ARRAY_ELEMENT_WIDTH: usize = 10;

    /// An expression as the writer emits it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) enum Expr {
        /// A string value not yet written as a literal (see `hoist`).
        Str(String, super::Role),
        /// A string literal, quotes and escapes included.
        Lit(String),
        /// A path, number or `true`/`false`.
        Atom(String),
        /// `callee(args)`.
        Call(String, Vec<Expr>),
        /// `receiver.name(args)`.
        Method(Box<Expr>, String, Vec<Expr>),
        /// `&inner`.
        Ref(Box<Expr>),
        /// `[items]`.
        Array(Vec<Expr>),
        /// `vec![items]`.
        VecMacro(Vec<Expr>),
    }

    impl Expr {
        pub(super) fn str(value: &str, role: super::Role) -> Expr {
            Expr::Str(value.to_string(), role)
        }

        pub(super) fn call(callee: &str, args: Vec<Expr>) -> Expr {
            Expr::Call(callee.to_string(), args)
        }

        /// `&[items]`.
        pub(super) fn slice(items: impl Iterator<Item = Expr>) -> Expr {
            Expr::Ref(Box::new(Expr::Array(items.collect())))
        }

        pub(super) fn method(self, name: &str, args: Vec<Expr>) -> Expr {
            Expr::Method(Box::new(self), name.to_string(), args)
        }

        /// rustfmt's `is_simple_expr`: literals, one-segment paths and references to them.
        fn is_simple(&self) -> bool {
            match self {
                Expr::Str(..) | Expr::Lit(_) => true,
                Expr::Atom(a) => !a.contains("::"),
                Expr::Ref(inner) => inner.is_simple(),
                _ => false,
            }
        }

        /// rustfmt's `can_be_overflowed_expr` under the default configuration.
        fn can_be_overflowed(&self, args_len: usize) -> bool {
            match self {
                Expr::Call(..) | Expr::Method(..) | Expr::Array(_) | Expr::VecMacro(_) => {
                    args_len == 1
                }
                Expr::Ref(inner) => inner.can_be_overflowed(args_len),
                _ => false,
            }
        }

        fn is_nested_call(&self) -> bool {
            match self {
                Expr::Call(..) | Expr::VecMacro(_) => true,
                Expr::Ref(inner) => inner.is_nested_call(),
                _ => false,
            }
        }

        fn is_method_call(&self) -> bool {
            match self {
                Expr::Method(..) => true,
                Expr::Ref(inner) => inner.is_method_call(),
                _ => false,
            }
        }

        /// rustfmt's `is_block_expr` for the root of a chain.
        fn is_block_like(&self, text: &str) -> bool {
            match self {
                Expr::Call(..) | Expr::Method(..) | Expr::Array(_) | Expr::VecMacro(_) => {
                    text.contains('\n')
                }
                _ => false,
            }
        }
    }

    /// The room an expression has: `width` columns from where it starts, on lines indented by
    /// `indent`; `offset` is how far right of the indent the first line starts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Shape {
        pub(super) width: usize,
        pub(super) indent: usize,
        pub(super) offset: usize,
    }

    impl Shape {
        /// A statement on its own line at `indent`.
        pub(super) fn indented(indent: usize) -> Shape {
            Shape {
                width: MAX_WIDTH.saturating_sub(indent),
                indent,
                offset: 0,
            }
        }

        /// An element of a list on its own line at `indent`, followed by a comma.
        pub(super) fn element(indent: usize) -> Shape {
            Shape {
                width: MAX_WIDTH.saturating_sub(indent + 1),
                indent,
                offset: 0,
            }
        }

        fn sub_width(self, width: usize) -> Option<Shape> {
            Some(Shape {
                width: self.width.checked_sub(width)?,
                ..self
            })
        }

        fn offset_left(self, width: usize) -> Option<Shape> {
            Shape {
                offset: self.offset + width,
                ..self
            }
            .sub_width(width)
        }

        fn block_indent(self, extra: usize) -> Shape {
            Shape {
                width: self.width,
                indent: self.indent + extra,
                offset: 0,
            }
        }

        fn with_max_width(self) -> Shape {
            Shape {
                width: MAX_WIDTH.saturating_sub(self.indent),
                ..self
            }
        }

        fn used_width(self) -> usize {
            self.indent + self.offset
        }

        fn rhs_overhead(self) -> usize {
            MAX_WIDTH.saturating_sub(self.used_width() + self.width)
        }
    }

    fn first_line_width(s: &str) -> usize {
        s.split('\n').next().unwrap_or("").len()
    }

    fn last_line_width(s: &str) -> usize {
        s.rsplit('\n').next().unwrap_or("").len()
    }

    fn newline_indent(indent: usize) -> String {
        format!("\n{}", " ".repeat(indent))
    }

    /// rustfmt's `last_line_extendable`: the last line holds only closing delimiters.
    fn last_line_extendable(s: &str) -> bool {
        for c in s.chars().rev() {
            match c {
                '(' | ')' | ']' | '}' | '?' | '>' => continue,
                '\n' => break,
                c if c.is_whitespace() => continue,
                _ => return false,
            }
        }
        true
    }

    /// rustfmt's `wrap_str`: the first line fits the shape, the others the maximum width.
    fn fits(s: &str, shape: Shape) -> bool {
        if first_line_width(s) > shape.width {
            return false;
        }
        if !s.contains('\n') {
            return true;
        }
        if s.split('\n').skip(1).any(|l| l.len() > MAX_WIDTH) {
            return false;
        }
        last_line_width(s) <= shape.used_width() + shape.width
    }

    /// Set while the last argument of a call is tried on the call's line with a chain in it:
    /// such a chain must then stay on one line (rustfmt's `force_one_line_chain`).
    struct Context {
        force_one_line_chain: Cell<bool>,
        /// Lets chains run past the maximum width instead of failing; not rustfmt's layout,
        /// only a way to see which lines are too long.
        lenient: bool,
        /// Set when the elements of a `vec![...]` could not be laid out in some shape tried.
        vec_failed: Cell<bool>,
    }

    /// The deepest indentation at which rustfmt tries the elements of the operations'
    /// `vec![...]`: `.operations(` on a line of its own (8), its argument (12), the elements
    /// (16).
    pub(super) const DEEPEST_VEC_ELEMENT: usize = 16;

    /// Lays out `expr` in `shape`; `None` when rustfmt could not either (with `lenient`,
    /// a layout whose chains may run past the maximum width).
    ///
    /// Also `None` when rustfmt could not lay out a `vec![...]` in one of the shapes it tries:
    /// it then falls back to the macro's text as written, which makes the result depend on
    /// the input rather than on the expression.
    pub(super) fn rewrite(expr: &Expr, shape: Shape, lenient: bool) -> Option<String> {
        let ctx = Context {
            force_one_line_chain: Cell::new(false),
            lenient,
            vec_failed: Cell::new(false),
        };
        let text = ctx.rewrite(expr, shape);
        if ctx.vec_failed.get() && !lenient {
            return None;
        }
        text
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Tactic {
        Horizontal,
        Vertical,
        Mixed,
    }

    /// rustfmt's `definitive_tactic` with a limited horizontal width.
    fn definitive_tactic(items: &[Option<String>], limit: usize, width: usize) -> Tactic {
        let limit = limit.min(width);
        let total: usize =
            items.iter().map(item_width).sum::<usize>() + 2 * items.len().saturating_sub(1);
        let multiline = items
            .iter()
            .any(|i| i.as_deref().unwrap_or("").contains('\n'));
        if total <= limit && !multiline {
            Tactic::Horizontal
        } else {
            Tactic::Vertical
        }
    }

    fn item_width(item: &Option<String>) -> usize {
        item.as_deref().map_or(0, str::len)
    }

    /// A list of arguments or elements between `open` and `close` after `ident` (rustfmt's
    /// `overflow::Context`).
    struct List<'a> {
        ident: &'a str,
        items: &'a [Expr],
        open: &'static str,
        close: &'static str,
        shape: Shape,
        item_max_width: usize,
        one_line_width: usize,
        one_line_shape: Shape,
        nested_shape: Shape,
    }

    impl Context {
        fn rewrite(&self, expr: &Expr, shape: Shape) -> Option<String> {
            match expr {
                Expr::Str(value, _) => Some(super::string_literal(value)),
                // Style edition 2024 keeps a one-line string literal whatever its width.
                Expr::Lit(lit) => Some(lit.clone()),
                Expr::Atom(atom) => (atom.len() <= shape.width).then(|| atom.clone()),
                Expr::Ref(inner) => {
                    let inner = self.rewrite(inner, shape.offset_left(1)?)?;
                    Some(format!("&{inner}"))
                }
                Expr::Call(callee, args) => {
                    if callee.len() > shape.width {
                        return None;
                    }
                    self.list(callee, args, "(", ")", shape, FN_CALL_WIDTH)
                }
                Expr::Array(items) => self.list("", items, "[", "]", shape, ARRAY_WIDTH),
                Expr::VecMacro(items) if items.is_empty() => Some("vec![]".to_string()),
                Expr::VecMacro(items) => {
                    let text = self.list("vec!", items, "[", "]", shape, ARRAY_WIDTH);
                    if text.is_none() {
                        self.vec_failed.set(true);
                    }
                    text
                }
                Expr::Method(..) => self.chain(expr, shape),
            }
        }

        fn list(
            &self,
            ident: &str,
            items: &[Expr],
            open: &'static str,
            close: &'static str,
            shape: Shape,
            item_max_width: usize,
        ) -> Option<String> {
            let one_line_shape = shape
                .offset_left(ident.len() + 1)
                .and_then(|s| s.sub_width(1))
                .unwrap_or(Shape { width: 0, ..shape });
            let nested_indent = shape.indent + TAB;
            let nested_shape = Shape {
                width: MAX_WIDTH.saturating_sub(nested_indent).saturating_sub(1),
                indent: nested_indent,
                offset: 0,
            };
            let list = List {
                ident,
                items,
                open,
                close,
                shape,
                item_max_width,
                one_line_width: shape.width.saturating_sub(ident.len() + 2),
                one_line_shape,
                nested_shape,
            };
            let mut rewrites: Vec<Option<String>> = items
                .iter()
                .map(|item| self.rewrite(item, nested_shape))
                .collect();
            let tactic = self.try_overflow_last_item(&list, &mut rewrites);
            let items_str = write_list(&rewrites, tactic, nested_shape)?;
            Some(wrap_items(&list, &items_str, tactic == Tactic::Horizontal))
        }

        /// Tries to put the last item on the line of the others, running over onto the next
        /// lines (rustfmt's `try_overflow_last_item`), and picks the list's tactic.
        fn try_overflow_last_item(
            &self,
            list: &List<'_>,
            rewrites: &mut [Option<String>],
        ) -> Tactic {
            let n = list.items.len();
            let combine_with_callee = n == 1 && list.ident.len() < TAB;
            let overflow_last =
                combine_with_callee || list.items.last().is_some_and(|l| l.can_be_overflowed(n));

            let mut placeholder = None;
            if overflow_last {
                let last = &list.items[n - 1];
                let old = self.force_one_line_chain.get();
                if !combine_with_callee && last.is_method_call() {
                    self.force_one_line_chain.set(true);
                }
                let shape = if n == 1 && !last.is_nested_call() {
                    Some(list.one_line_shape)
                } else {
                    let offset: usize = rewrites[..n - 1].iter().map(|r| 2 + item_width(r)).sum();
                    Shape {
                        width: list.item_max_width.min(list.one_line_shape.width),
                        ..list.one_line_shape
                    }
                    .offset_left(offset)
                };
                if let Some(full) = shape.and_then(|shape| self.rewrite(last, shape)) {
                    rewrites[n - 1] = Some(full.split('\n').next().unwrap_or("").to_string());
                    placeholder = Some(full);
                }
                self.force_one_line_chain.set(old);
            }

            let mut tactic = definitive_tactic(rewrites, list.item_max_width, list.one_line_width);
            match (overflow_last, tactic, placeholder) {
                (true, Tactic::Horizontal, Some(overflowed)) if n == 1 => {
                    rewrites[0] = Some(overflowed.clone());
                    if overflowed.matches('\n').count() == 1 {
                        let own_line = self.rewrite(&list.items[0], list.nested_shape);
                        if own_line.as_deref().is_some_and(|s| !s.contains('\n')) {
                            rewrites[0] = own_line;
                        }
                    }
                }
                (true, Tactic::Horizontal, Some(overflowed)) => {
                    rewrites[n - 1] = Some(overflowed);
                }
                _ if n > 0 => {
                    rewrites[n - 1] = self.rewrite(&list.items[n - 1], list.nested_shape);
                    let single = rewrites[0].as_deref().unwrap_or("");
                    if n == 1
                        && list.one_line_width != 0
                        && !single.contains('\n')
                        && single.len() <= list.one_line_width
                    {
                        tactic = Tactic::Horizontal;
                    } else {
                        tactic =
                            definitive_tactic(rewrites, list.item_max_width, list.one_line_width);
                        if tactic == Tactic::Vertical
                            && list.items.iter().all(Expr::is_simple)
                            && rewrites
                                .iter()
                                .all(|r| item_width(r) <= SHORT_ARRAY_ELEMENT_WIDTH)
                        {
                            tactic = Tactic::Mixed;
                        }
                    }
                }
                _ => {}
            }
            tactic
        }

        /// A chain of method calls (rustfmt's `ChainFormatterBlock`).
        fn chain(&self, expr: &Expr, shape: Shape) -> Option<String> {
            let mut children: Vec<(&str, &[Expr])> = Vec::new();
            let mut root = expr;
            while let Expr::Method(receiver, name, args) = root {
                children.push((name, args));
                root = receiver;
            }
            children.reverse();
            let child_count = children.len();
            let call = |(name, args): (&str, &[Expr]), shape: Shape| {
                self.list(&format!(".{name}"), args, "(", ")", shape, FN_CALL_WIDTH)
            };

            // The root, with the first children joined to it while it is shorter than a tab.
            let mut root_text = self.rewrite(root, shape)?;
            let mut root_ends_with_block = root.is_block_like(&root_text);
            let tab_width = TAB.saturating_sub(shape.offset);
            let mut next = 0;
            while root_text.len() <= tab_width && !root_text.contains('\n') {
                let child_shape = shape.offset_left(root_text.len())?;
                match call(children[next], child_shape) {
                    Some(text) => root_text.push_str(&text),
                    None => break,
                }
                root_ends_with_block = last_line_extendable(&root_text);
                next += 1;
                if next == children.len() {
                    break;
                }
            }
            if next == children.len() {
                return (self.lenient || fits(&root_text, shape)).then_some(root_text);
            }

            let child_shape = if root_ends_with_block {
                shape.block_indent(0)
            } else {
                shape.block_indent(TAB)
            }
            .with_max_width();
            let mut rewrites = vec![root_text];
            for &child in &children[next..children.len() - 1] {
                rewrites.push(call(child, child_shape)?);
            }

            // The last child, on the line of the others if that looks better.
            let last = children[children.len() - 1];
            let extendable = last_line_extendable(&rewrites[0]);
            let almost_total = if extendable {
                last_line_width(&rewrites[0])
            } else {
                rewrites.iter().map(|r| r.len()).sum()
            };
            let one_line_budget = if child_count == 1 {
                shape.width
            } else {
                shape.width.min(CHAIN_WIDTH)
            }
            .saturating_sub(almost_total);
            let all_in_one_line = rewrites.iter().all(|r| !r.contains('\n')) && one_line_budget > 0;
            let last_shape = if all_in_one_line {
                shape
            } else if extendable {
                child_shape
            } else {
                child_shape.sub_width(shape.rhs_overhead())?
            };

            let mut fits_single_line = false;
            let mut last_text = None;
            if (all_in_one_line || extendable)
                && let Some(one_line_shape) = last_shape.offset_left(almost_total)
                && let Some(overflowed) = call(last, one_line_shape)
            {
                let line_count = overflowed.lines().count();
                let could_fit = first_line_width(&overflowed) <= one_line_budget;
                if could_fit && line_count >= 5 {
                    last_text = Some(overflowed);
                    fits_single_line = all_in_one_line;
                } else {
                    let own_line_shape = child_shape.sub_width(shape.rhs_overhead())?;
                    match call(last, own_line_shape) {
                        Some(own_line) if !could_fit => last_text = Some(own_line),
                        Some(own_line) if own_line.lines().count() >= line_count => {
                            last_text = Some(overflowed);
                            fits_single_line = could_fit && all_in_one_line;
                        }
                        Some(own_line) => last_text = Some(own_line),
                        None => {
                            last_text = Some(overflowed);
                            fits_single_line = could_fit && all_in_one_line;
                        }
                    }
                }
            }
            // rustfmt evaluates this fallback even when it has a text already.
            let fallback = call(last, last_shape)?;
            rewrites.push(last_text.unwrap_or(fallback));

            let connector = if fits_single_line {
                String::new()
            } else if self.force_one_line_chain.get() {
                return None;
            } else {
                newline_indent(child_shape.indent)
            };
            let text = rewrites.join(&connector);
            (self.lenient || fits(&text, shape)).then_some(text)
        }
    }

    /// rustfmt's `write_list` for lists without comments; the trailing comma follows the
    /// default `trailing_comma = "Vertical"`.
    fn write_list(items: &[Option<String>], tactic: Tactic, shape: Shape) -> Option<String> {
        let items: Vec<&str> = items.iter().map(|i| i.as_deref()).collect::<Option<_>>()?;
        let indent = newline_indent(shape.indent);
        let mut out = String::new();
        match tactic {
            Tactic::Horizontal => out = items.join(", "),
            Tactic::Vertical => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&indent);
                    }
                    out.push_str(item);
                    out.push(',');
                }
            }
            Tactic::Mixed => {
                let mut trailing = false;
                let mut line_len = 0;
                for (i, item) in items.iter().enumerate() {
                    let last = i + 1 == items.len();
                    let separate = !last || trailing;
                    let width = item.len() + usize::from(separate);
                    if line_len > 0 && line_len + 1 + width > shape.width {
                        out.push_str(&indent);
                        line_len = 0;
                        trailing = true;
                    } else if line_len > 0 {
                        out.push(' ');
                        line_len += 1;
                    }
                    line_len += width;
                    out.push_str(item);
                    // The last item of a mixed list ending on its own line gets a comma too.
                    out.push(',');
                }
            }
        }
        Some(out)
    }

    /// rustfmt's `wrap_items`: the items between the delimiters, on the opening line or
    /// between lines of their own.
    fn wrap_items(list: &List<'_>, items: &str, horizontal: bool) -> String {
        let width = list.shape.width.saturating_sub(list.ident.len());
        let extend_width = if items.is_empty() {
            2
        } else {
            first_line_width(items) + 1
        };
        let mut out = format!("{}{}", list.ident, list.open);
        if horizontal && extend_width <= width {
            out.push_str(items);
        } else {
            if !items.is_empty() {
                out.push_str(&newline_indent(list.nested_shape.indent));
                out.push_str(items);
            }
            out.push_str(&newline_indent(list.shape.indent));
        }
        out.push_str(list.close);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[test]
    fn slugs_and_file_names() {
        assert_eq!(
            file_name("2026-11-27", "users and roles", "1a2b3c4d5e6f"),
            "2026-11-27_users_and_roles_1a2b3c4d5e6f.rs"
        );
        assert_eq!(
            slug("  Add  todo.alarm_time (UTC)!  "),
            "add_todo_alarm_time_utc"
        );
        assert_eq!(slug("__Über--größe__"), "ber_gr_e");
        assert_eq!(slug(""), "empty");
        assert_eq!(slug("!!! ??? ..."), "empty");
        assert_eq!(slug("a\nb\tc"), "a_b_c");
        let long = slug("the quick brown fox jumps over the lazy dog and keeps running");
        assert_eq!(long, "the_quick_brown_fox_jumps_over_the_lazy");
        assert!(long.len() <= 40);
        // Truncation never leaves a trailing underscore.
        assert_eq!(slug(&format!("{} b", "a".repeat(39))), "a".repeat(39));
    }

    #[test]
    fn revisions_are_random_hex() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let rev = new_revision();
            assert_eq!(rev.len(), 12, "{rev}");
            assert!(
                rev.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
                "{rev}"
            );
            assert!(seen.insert(rev), "duplicate revision");
        }
    }

    #[test]
    fn literals_escape_like_debug_and_stay_ascii() {
        for s in [
            "plain",
            "quote \" and \\ backslash",
            "line\nbreak\r\ttab\0nul",
            "it's",
        ] {
            assert_eq!(string_literal(s), format!("{s:?}"));
        }
        let all_ascii: String = (0u8..128).map(char::from).collect();
        assert_eq!(string_literal(&all_ascii), format!("{all_ascii:?}"));
        assert_eq!(string_literal("größe ✓"), "\"gr\\u{f6}\\u{df}e \\u{2713}\"");
    }

    #[test]
    fn data_steps_cannot_be_written() {
        fn up<'a>(_: &'a mut DataContext<'_>) -> DataFuture<'a> {
            Box::pin(async { Ok(()) })
        }
        let ops = [drop_table("a"), run_data(DataStep::new("fill", up))];
        let err = render_migration("1a2b3c4d5e6f", &[], "m", "2026-11-27T21:00:00Z", &ops);
        assert_eq!(err, Err(WriteError::DataStep("fill".into())));
    }

    #[test]
    fn inconsistent_keys_are_refused() {
        let mut table = Table::new("t").with_column(Column::new("a", ColumnType::Text));
        table
            .uniques
            .insert("uq_other".into(), Unique::new("uq_t_a", &["a"]));
        let err = render_migration("r", &[], "m", "c", &[create_table(table)]);
        assert!(
            matches!(err, Err(WriteError::Inconsistent { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn messages_and_sql_are_escaped() {
        let message = "say \"hi\"\\ now\nsecond line\tend";
        let sql = "UPDATE t SET a = 'x\\y' -- \"q\"\nWHERE b";
        let src = render_migration(
            "1a2b3c4d5e6f",
            &[],
            message,
            "2026-11-27T21:00:00Z",
            &[raw_sql(DialectSql::both(sql))],
        )
        .unwrap();
        assert!(
            src.starts_with("//! say \"hi\"\\ now\n//! second line end\n//!\n"),
            "{src}"
        );
        assert!(src.contains(&format!("{message:?}")), "{src}");
        assert!(src.contains(&format!("{sql:?}")), "{src}");
    }

    #[test]
    fn doc_lines_cannot_open_code_blocks() {
        let src = render_migration(
            "r",
            &[],
            "title\n    indented\n```rust\n",
            "2026-11-27T21:00:00Z",
            &[],
        )
        .unwrap();
        assert!(
            src.starts_with("//! title\n//! indented\n//! \\```rust\n//!\n"),
            "{src}"
        );
    }

    #[test]
    fn long_strings_move_into_consts() {
        let sql = format!("UPDATE todo SET title = '{}'", "x".repeat(80));
        let src = render_migration(
            "1a2b3c4d5e6f",
            &[],
            "short",
            "2026-11-27T21:00:00Z",
            &[raw_sql(DialectSql::both(&sql))],
        )
        .unwrap();
        assert!(src.contains("raw_sql(DialectSql::both(SQL_1))"), "{src}");
        assert!(
            src.contains(&format!("const SQL_1: &str = {sql:?};\n")),
            "{src}"
        );
    }

    const REGISTRY_ONE: &str = "\
//! The migrations of this application, oldest first.
//!
//! Maintained by `make-migrations`: each migration file is listed twice below,
//! as a module and in `all()`. Keep the marker comments.

#[path = \"2026-11-27_users_and_roles_1a2b3c4d5e6f.rs\"]
mod m_1a2b3c4d5e6f;
// strata:modules

/// Every migration, oldest first.
pub fn all() -> Vec<strata::Migration> {
    vec![
        m_1a2b3c4d5e6f::migration(),
        // strata:list
    ]
}
";

    /// What `make-migrations` does: reads the registry (or starts one), adds a migration,
    /// and writes it back.
    fn registered(
        existing: Option<&str>,
        file_name: &str,
        revision: &str,
    ) -> Result<String, WriteError> {
        let registry = match existing {
            Some(text) => Registry::parse(text)?,
            None => Registry::new(),
        };
        Ok(registry.with(file_name, revision)?.render())
    }

    #[test]
    fn register_starts_a_registry() {
        let text = registered(
            None,
            "2026-11-27_users_and_roles_1a2b3c4d5e6f.rs",
            "1a2b3c4d5e6f",
        )
        .unwrap();
        assert_eq!(text, REGISTRY_ONE);
    }

    #[test]
    fn register_appends_oldest_first() {
        let text = registered(
            Some(REGISTRY_ONE),
            "2026-11-28_todo_ff0000000000.rs",
            "ff0000000000",
        )
        .unwrap();
        let text = registered(
            Some(&text),
            "2026-11-29_more_000000000001.rs",
            "000000000001",
        )
        .unwrap();
        let expected = REGISTRY_ONE
            .replace(
                "mod m_1a2b3c4d5e6f;\n",
                "mod m_1a2b3c4d5e6f;\n\n#[path = \"2026-11-28_todo_ff0000000000.rs\"]\n\
                 mod m_ff0000000000;\n\n#[path = \"2026-11-29_more_000000000001.rs\"]\n\
                 mod m_000000000001;\n",
            )
            .replace(
                "        m_1a2b3c4d5e6f::migration(),\n",
                "        m_1a2b3c4d5e6f::migration(),\n        m_ff0000000000::migration(),\n        \
                 m_000000000001::migration(),\n",
            );
        assert_eq!(text, expected);
    }

    #[test]
    fn register_adds_a_missing_trailing_comma() {
        let edited = REGISTRY_ONE.replace("::migration(),", "::migration()");
        let text = registered(Some(&edited), "f.rs", "abc").unwrap();
        assert!(
            text.contains("m_1a2b3c4d5e6f::migration(),\n        m_abc::migration(),\n"),
            "{text}"
        );
    }

    #[test]
    fn register_refuses_duplicates_and_missing_markers() {
        assert_eq!(
            registered(Some(REGISTRY_ONE), "other.rs", "1a2b3c4d5e6f"),
            Err(WriteError::DuplicateRevision("1a2b3c4d5e6f".into()))
        );
        // A revision that merely contains a listed one is not a duplicate.
        assert!(registered(Some(REGISTRY_ONE), "x.rs", "1a2b3c4d5e6").is_ok());
        assert_eq!(
            registered(
                Some(&REGISTRY_ONE.replace("// strata:list", "")),
                "x.rs",
                "abc"
            ),
            Err(WriteError::MissingMarker(LIST_MARKER))
        );
        assert_eq!(
            registered(
                Some(&REGISTRY_ONE.replace("// strata:modules", "")),
                "x.rs",
                "abc"
            ),
            Err(WriteError::MissingMarker(MODULES_MARKER))
        );
        let twice = REGISTRY_ONE.replace("// strata:list", "// strata:list\n// strata:list");
        assert_eq!(
            registered(Some(&twice), "x.rs", "abc"),
            Err(WriteError::RepeatedMarker(LIST_MARKER))
        );
        assert_eq!(
            registered(Some(REGISTRY_ONE), "x.rs", "ab-c"),
            Err(WriteError::InvalidRevision("ab-c".into()))
        );
    }

    #[test]
    fn register_keeps_crlf_line_endings() {
        let crlf = REGISTRY_ONE.replace('\n', "\r\n");
        let text = registered(Some(&crlf), "x.rs", "abc").unwrap();
        assert!(!text.replace("\r\n", "").contains('\n'), "{text:?}");
        assert!(text.contains("mod m_abc;\r\n// strata:modules\r\n"));
    }

    /// A registry as a person may leave it: its own doc, a helper module, extra attributes,
    /// a raw-string path and a module without `#[path]`.
    const REGISTRY_EDITED: &str = "\
//! Our migrations. Do not reorder.

mod helpers;

#[path = \"2026-11-27_users_and_roles_1a2b3c4d5e6f.rs\"]
#[allow(clippy::all)]
mod m_1a2b3c4d5e6f;

// The second one was written by hand.
#[path = r\"2026-11-28_hand_written_ff0000000000.rs\"]
pub(crate) mod m_ff0000000000;

mod m_000000000001;
    // strata:modules

/// Every migration, oldest first.
pub fn all() -> Vec<strata::Migration> {
    vec![
        m_1a2b3c4d5e6f::migration(),
        m_ff0000000000::migration(),
        m_000000000001::migration(),
        // strata:list
    ]
}
";

    fn entry(file_name: &str, revision: &str) -> RegistryEntry {
        RegistryEntry {
            file_name: file_name.into(),
            revision: revision.into(),
        }
    }

    #[test]
    fn parse_then_render_gives_the_text_back() {
        for text in [
            REGISTRY_ONE.to_string(),
            REGISTRY_EDITED.to_string(),
            REGISTRY_EDITED.replace('\n', "\r\n"),
            REGISTRY_ONE.trim_end().to_string(),
            NEW_REGISTRY.to_string(),
        ] {
            assert_eq!(Registry::parse(&text).unwrap().render(), text);
        }
        assert_eq!(Registry::new().render(), NEW_REGISTRY);
    }

    #[test]
    fn revisions_and_files_are_listed_in_order() {
        let registry = Registry::parse(REGISTRY_EDITED).unwrap();
        assert_eq!(
            registry.revisions().collect::<Vec<_>>(),
            ["1a2b3c4d5e6f", "ff0000000000", "000000000001"]
        );
        assert_eq!(
            registry.files().collect::<Vec<_>>(),
            [
                "2026-11-27_users_and_roles_1a2b3c4d5e6f.rs",
                "2026-11-28_hand_written_ff0000000000.rs",
                // rustc's own choice for a module without `#[path]`.
                "m_000000000001.rs",
            ]
        );
        assert!(Registry::new().entries().is_empty());
        assert_eq!(Registry::default(), Registry::new());
    }

    #[test]
    fn a_path_attribute_on_another_item_is_not_a_migrations_file() {
        let text = REGISTRY_ONE.replace(
            "// strata:modules",
            "#[path = \"util.rs\"]\nmod util;\nmod m_abc;\n// strata:modules",
        );
        let registry = Registry::parse(&text).unwrap();
        assert_eq!(
            registry.entries(),
            [
                entry("2026-11-27_users_and_roles_1a2b3c4d5e6f.rs", "1a2b3c4d5e6f"),
                entry("m_abc.rs", "abc"),
            ]
        );
    }

    #[test]
    fn commented_out_and_similar_lines_are_not_entries() {
        let text = REGISTRY_ONE.replace(
            "// strata:modules",
            "// mod m_old;\nmod m_x { }\nmod m_;\nmodule m_y;\n// strata:modules",
        );
        let registry = Registry::parse(&text).unwrap();
        assert_eq!(registry.revisions().collect::<Vec<_>>(), ["1a2b3c4d5e6f"]);
    }

    #[test]
    fn a_malformed_registry_is_refused_clearly() {
        let missing = Registry::parse(&REGISTRY_ONE.replace("// strata:list", "")).unwrap_err();
        assert_eq!(missing, WriteError::MissingMarker(LIST_MARKER));
        assert_eq!(
            missing.to_string(),
            "the registry has no `// strata:list` marker comment; add it back where new \
             entries go"
        );
        assert_eq!(
            Registry::parse(&REGISTRY_ONE.replace("// strata:modules", "")),
            Err(WriteError::MissingMarker(MODULES_MARKER))
        );
        assert_eq!(
            Registry::parse("mod m_abc;\n"),
            Err(WriteError::MissingMarker(MODULES_MARKER))
        );
        let twice =
            REGISTRY_ONE.replace("// strata:modules", "// strata:modules\n// strata:modules");
        assert_eq!(
            Registry::parse(&twice),
            Err(WriteError::RepeatedMarker(MODULES_MARKER))
        );
        let declared_twice = REGISTRY_ONE.replace(
            "// strata:modules",
            "#[path = \"again.rs\"]\nmod m_1a2b3c4d5e6f;\n// strata:modules",
        );
        assert_eq!(
            Registry::parse(&declared_twice),
            Err(WriteError::DuplicateRevision("1a2b3c4d5e6f".into()))
        );
        let unquoted = REGISTRY_ONE
            .replace("#[path = \"", "#[path = ")
            .replace(".rs\"]", ".rs]");
        let err = Registry::parse(&unquoted).unwrap_err();
        assert_eq!(
            err,
            WriteError::MalformedRegistry {
                line: 6,
                reason: "the path is not a string literal".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "line 6 of the registry cannot be read: the path is not a string literal"
        );
        for (bad, reason) in [
            (
                "#[path = \"a.rs]",
                "the path's string is not closed on its line",
            ),
            ("#[path = \"a.rs\"", "expected `]` after the path"),
            ("#[path = \"a\\q.rs\"]", "bad escape `\\q` in the path"),
            (
                "#[path = \"a\\u{110000}.rs\"]",
                "bad escape `\\u{110000}` in the path",
            ),
            (
                "#[path = r#\"a.rs\"]",
                "the path's raw string is not closed on its line",
            ),
        ] {
            let text = format!("{bad}\nmod m_abc;\n{REGISTRY_ONE}");
            assert_eq!(
                Registry::parse(&text),
                Err(WriteError::MalformedRegistry {
                    line: 1,
                    reason: reason.into()
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn parsing_what_render_wrote_lists_the_same_entries() {
        let mut registry = Registry::new();
        // File names with characters `{:?}` escapes must come back as they went in.
        for (file, rev) in [
            ("2026-11-27_a_000000000001.rs", "000000000001"),
            ("quote\"back\\slash\ttab.rs", "ff0000000002"),
            ("caf\u{e9}_\u{200b}_\u{7f}.rs", "0a0000000003"),
        ] {
            registry = registry.with(file, rev).unwrap();
            let reread = Registry::parse(&registry.render()).unwrap();
            assert_eq!(reread, registry);
        }
        assert_eq!(
            registry.revisions().collect::<Vec<_>>(),
            ["000000000001", "ff0000000002", "0a0000000003"]
        );
        // Adding to a parsed registry writes what adding to the original did.
        let parsed = Registry::parse(&registry.render()).unwrap();
        assert_eq!(
            parsed.with("x.rs", "abc").unwrap(),
            registry.with("x.rs", "abc").unwrap()
        );
    }

    #[test]
    fn with_leaves_the_registry_it_was_called_on_alone() {
        let one = Registry::parse(REGISTRY_ONE).unwrap();
        let two = one.with("x.rs", "abc").unwrap();
        assert_eq!(one.render(), REGISTRY_ONE);
        assert_eq!(one.revisions().count(), 1);
        assert_eq!(two.entries().last(), Some(&entry("x.rs", "abc")));
        // A registry edited by hand keeps its edits and gets the entry before the markers.
        let edited = Registry::parse(REGISTRY_EDITED)
            .unwrap()
            .with("y.rs", "abd")
            .unwrap()
            .render();
        assert!(
            edited.contains("mod m_000000000001;\n\n    #[path = \"y.rs\"]\n    mod m_abd;\n    // strata:modules\n"),
            "{edited}"
        );
        assert!(edited.starts_with("//! Our migrations. Do not reorder.\n\nmod helpers;\n"));
    }
}
