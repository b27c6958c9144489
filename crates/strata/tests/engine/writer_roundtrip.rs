//! Proof that the writer's output is Rust that compiles back into the same migration, stays
//! current, and is what `rustfmt --edition 2024` would write.
//!
//! `tests/golden/sample_migration.rs` and `tests/golden/registry.rs` are written by
//! `render_migration` and `Registry`; the registry is compiled here as a module, and it
//! compiles the sample migration through its `#[path]` entry. After a deliberate change to
//! the writer, rewrite them with
//! `STRATA_BLESS=1 cargo test -p strata --test engine writer_roundtrip`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use strata::writer::{Registry, render_migration};
use strata::{
    Check, Column, ColumnType, DefaultValue, DialectSql, ForeignKey, ForeignKeyAction, Index,
    Migration, Operation, Table, Unique,
};

#[path = "../golden/registry.rs"]
mod registry;

const REVISION: &str = "5a7c0ffee123";
const PARENT: &str = "1a2b3c4d5e6f";
const MESSAGE: &str = "Roles, \"todo\" tweaks & C:\\paths\nSecond line of the message.";
const CREATED: &str = "2026-11-27T21:00:00Z";
const SAMPLE_FILE: &str = "sample_migration.rs";

fn s(text: &str) -> String {
    text.to_string()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|i| s(i)).collect()
}

fn column(name: &str, ty: ColumnType) -> Column {
    Column {
        name: s(name),
        ty,
        nullable: false,
        default: None,
        comment: None,
    }
}

fn fk(
    name: &str,
    columns: &[&str],
    ref_table: &str,
    ref_columns: &[&str],
    on_delete: ForeignKeyAction,
    on_update: ForeignKeyAction,
) -> ForeignKey {
    ForeignKey {
        name: s(name),
        columns: strings(columns),
        ref_table: s(ref_table),
        ref_columns: strings(ref_columns),
        on_delete,
        on_update,
    }
}

fn keyed<V>(items: Vec<(&str, V)>) -> BTreeMap<String, V> {
    items.into_iter().map(|(k, v)| (s(k), v)).collect()
}

/// Every operation but `Data`, built without the prelude, with every column type, every
/// kind of default, every foreign key action and strings that need escaping.
fn sample_operations() -> Vec<Operation> {
    use ColumnType::*;
    let role = Table {
        name: s("role"),
        columns: vec![
            column("id", Uuid),
            Column {
                default: Some(DefaultValue::Str(s("it's \"new\" \\ here"))),
                comment: Some(s("Unique, lowercase")),
                ..column("slug", String(Some(100)))
            },
            Column {
                nullable: true,
                ..column("label", String(None))
            },
            column("description", Text),
            Column {
                default: Some(DefaultValue::Bool(true)),
                ..column("active", Boolean)
            },
            Column {
                default: Some(DefaultValue::Int(-42)),
                ..column("rank", SmallInteger)
            },
            Column {
                default: Some(DefaultValue::Int(0)),
                ..column("version", Integer)
            },
            column("parent_id", Uuid),
            Column {
                nullable: true,
                ..column("budget", BigInteger)
            },
            column("weight", Real),
            column("score", Double),
            Column {
                default: Some(DefaultValue::Str(s(""))),
                ..column("price", Decimal(12, 2))
            },
            column("since", Date),
            column("alarm", Time),
            column("seen_at", Timestamp),
            Column {
                default: Some(DefaultValue::Expr(s("CURRENT_TIMESTAMP"))),
                comment: Some(s(
                    "When the role was created; set by the database, never by the application",
                )),
                ..column("created_at", TimestampTz)
            },
            column("settings", Json),
            Column {
                nullable: true,
                ..column("extra", JsonBinary)
            },
            column("avatar", Binary),
        ],
        primary_key: strings(&["id"]),
        foreign_keys: keyed(vec![(
            "fk_role_parent",
            fk(
                "fk_role_parent",
                &["parent_id"],
                "role",
                &["id"],
                ForeignKeyAction::Cascade,
                ForeignKeyAction::SetNull,
            ),
        )]),
        uniques: keyed(vec![(
            "uq_role_slug",
            Unique {
                name: s("uq_role_slug"),
                columns: strings(&["slug"]),
            },
        )]),
        checks: keyed(vec![(
            "ck_role_rank",
            Check {
                name: s("ck_role_rank"),
                expr: s("rank >= 0 AND label <> 'x'"),
            },
        )]),
        indexes: keyed(vec![
            (
                "ix_role_created_at",
                Index {
                    name: s("ix_role_created_at"),
                    columns: strings(&["created_at"]),
                    unique: false,
                },
            ),
            (
                "ux_role_slug_version",
                Index {
                    name: s("ux_role_slug_version"),
                    columns: strings(&["slug", "version"]),
                    unique: true,
                },
            ),
        ]),
        comment: Some(s("Roles a user can hold; see \"docs/roles.md\"")),
    };
    let user_role = Table {
        name: s("user_role"),
        columns: vec![column("user_id", Uuid), column("role_id", Uuid)],
        primary_key: strings(&["user_id", "role_id"]),
        foreign_keys: keyed(vec![
            (
                "fk_user_role_role",
                fk(
                    "fk_user_role_role",
                    &["role_id"],
                    "role",
                    &["id"],
                    ForeignKeyAction::Restrict,
                    ForeignKeyAction::NoAction,
                ),
            ),
            (
                "fk_user_role_user",
                fk(
                    "fk_user_role_user",
                    &["user_id"],
                    "users",
                    &["id"],
                    ForeignKeyAction::NoAction,
                    ForeignKeyAction::SetDefault,
                ),
            ),
        ]),
        ..Table::default()
    };
    let t = || s("todo");
    vec![
        Operation::CreateTable(role),
        Operation::CreateTable(user_role),
        Operation::CreateTable(Table {
            name: s("empty_table"),
            ..Table::default()
        }),
        Operation::AddColumn {
            table: t(),
            column: Column {
                nullable: true,
                ..column("alarm_time", TimestampTz)
            },
        },
        Operation::AlterColumn {
            table: t(),
            to: Column {
                default: Some(DefaultValue::Str(s(""))),
                comment: Some(s("What to do, in a few words")),
                ..column("title", String(Some(200)))
            },
        },
        Operation::RenameColumn {
            table: t(),
            from: s("title"),
            to: s("headline"),
        },
        Operation::DropColumn {
            table: t(),
            name: s("legacy"),
        },
        Operation::RenameTable {
            from: t(),
            to: s("task"),
        },
        Operation::CreateIndex {
            table: s("task"),
            index: Index {
                name: s("ix_task_alarm_time"),
                columns: strings(&["alarm_time"]),
                unique: false,
            },
        },
        Operation::CreateIndex {
            table: s("task"),
            index: Index {
                name: s("ux_task_owner_headline"),
                columns: strings(&["owner_id", "headline"]),
                unique: true,
            },
        },
        Operation::CreateIndex {
            table: s("task"),
            index: Index {
                name: s("ix_task_wide"),
                columns: strings(&[
                    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n",
                ]),
                unique: false,
            },
        },
        Operation::DropIndex {
            table: s("task"),
            name: s("ix_todo_old"),
        },
        Operation::AddForeignKey {
            table: s("task"),
            foreign_key: fk(
                "fk_task_owner",
                &["owner_id"],
                "users",
                &["id"],
                ForeignKeyAction::SetNull,
                ForeignKeyAction::Cascade,
            ),
        },
        Operation::DropForeignKey {
            table: s("task"),
            name: s("fk_todo_old"),
        },
        Operation::AddUnique {
            table: s("task"),
            unique: Unique {
                name: s("uq_task_owner_slug"),
                columns: strings(&["owner_id", "slug"]),
            },
        },
        Operation::DropUnique {
            table: s("task"),
            name: s("uq_todo_old"),
        },
        Operation::AddCheck {
            table: s("task"),
            check: Check {
                name: s("ck_task_headline"),
                expr: s("char_length(headline) > 0"),
            },
        },
        Operation::DropCheck {
            table: s("task"),
            name: s("ck_todo_old"),
        },
        Operation::RenameIndex {
            table: s("task"),
            from: s("ix_todo_headline"),
            to: s("ix_task_headline"),
        },
        Operation::RenameConstraint {
            table: s("task"),
            from: s("fk_todo_role_id_role"),
            to: s("fk_task_role_id_role"),
        },
        Operation::SetTableComment {
            table: s("task"),
            comment: Some(s("Things to do\nand \"why\" \\o/")),
        },
        Operation::SetTableComment {
            table: s("role"),
            comment: None,
        },
        Operation::RawSql {
            up: DialectSql::both("UPDATE task SET headline = 'none' WHERE headline = ''"),
            down: None,
        },
        Operation::RawSql {
            up: DialectSql {
                postgres: s("CREATE EXTENSION IF NOT EXISTS pg_trgm"),
                sqlite: s("SELECT 1"),
            },
            down: Some(DialectSql::both("SELECT 1")),
        },
        Operation::RawSql {
            up: DialectSql::both(
                "INSERT INTO role (id, slug, label)\nVALUES ('00000000-0000-0000-0000-000000000001', 'admin', 'Admin \"root\"')",
            ),
            down: Some(DialectSql::both("DELETE FROM role WHERE slug = 'admin'")),
        },
        Operation::DropTable {
            name: s("legacy_table"),
        },
    ]
}

fn expected_migration() -> Migration {
    Migration::new(REVISION, &[PARENT], MESSAGE, CREATED).operations(sample_operations())
}

fn golden_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file)
}

/// Compares `text` with a golden file, or rewrites the file when `STRATA_BLESS=1`.
fn check_golden(file: &str, text: &str) {
    let path = golden_path(file);
    if std::env::var("STRATA_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, text).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap();
    assert!(
        golden == text,
        "{} is not what the writer writes today; if the change is meant, run \
         `STRATA_BLESS=1 cargo test -p strata --test engine writer_roundtrip`.\n--- golden\n{golden}\n--- now\n{text}",
        path.display()
    );
}

#[test]
fn golden_migration_compiles_to_the_same_migration() {
    assert_eq!(registry::all(), vec![expected_migration()]);
}

#[test]
fn golden_migration_is_current() {
    let text = render_migration(REVISION, &[PARENT], MESSAGE, CREATED, &sample_operations())
        .expect("the sample has no data step");
    check_golden(SAMPLE_FILE, &text);
}

#[test]
fn golden_registry_is_current() {
    let text = Registry::new()
        .with(SAMPLE_FILE, REVISION)
        .unwrap()
        .render();
    check_golden("registry.rs", &text);
}

/// Runs `rustfmt --edition 2024 --check` on the files; `false` when rustfmt is missing.
fn rustfmt_check(files: &[PathBuf]) -> bool {
    let probe = Command::new("rustfmt").arg("--version").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("rustfmt not found; skipping the formatting check");
        return false;
    }
    let out = Command::new("rustfmt")
        .args(["--edition", "2024", "--check"])
        .args(files)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rustfmt would change the writer's output:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// rustfmt on stdin (it does not follow `mod` declarations there) must give the text back.
fn rustfmt_stdin_unchanged(text: &str) {
    use std::io::Write;
    let Ok(mut child) = Command::new("rustfmt")
        .args(["--edition", "2024"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("rustfmt not found; skipping the formatting check");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);
}

#[test]
fn golden_migration_is_rustfmt_stable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SAMPLE_FILE);
    let text =
        render_migration(REVISION, &[PARENT], MESSAGE, CREATED, &sample_operations()).unwrap();
    std::fs::write(&path, text).unwrap();
    rustfmt_check(&[path]);
}

#[test]
fn registry_is_rustfmt_stable() {
    let mut registry = Registry::new()
        .with("2026-11-27_a_000000000001.rs", "000000000001")
        .unwrap();
    rustfmt_stdin_unchanged(&registry.render());
    // Later entries sort before earlier ones by name: the blank lines keep rustfmt from
    // reordering them.
    for rev in ["ff0000000002", "0a0000000003", "000000000000"] {
        registry = registry
            .with(&format!("2026-11-28_b_{rev}.rs"), rev)
            .unwrap();
    }
    rustfmt_stdin_unchanged(&registry.render());
}

/// A small deterministic generator (xorshift64*), so that failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    /// A length: short, around the widths rustfmt decides on (60 columns for calls), around
    /// what a line can hold, or beyond.
    fn len(&mut self) -> usize {
        match self.below(10) {
            0..=3 => 1 + self.below(8),
            4..=6 => 8 + self.below(40),
            7..=8 => 40 + self.below(60),
            _ => 100 + self.below(40),
        }
    }

    fn name(&mut self) -> String {
        let len = self.len().min(63);
        (0..len)
            .map(|i| {
                if i > 0 && self.chance(15) {
                    '_'
                } else {
                    char::from(b'a' + self.below(26) as u8)
                }
            })
            .collect()
    }

    fn text(&mut self) -> String {
        let len = if self.chance(10) { 0 } else { self.len() };
        let chars = [
            'a', 'b', 'c', 'x', 'y', 'z', ' ', ' ', '\'', '"', '\\', '\n', '\t', '(', ')', 'é',
            '✓', '0', '9', '=', '>', '<', '{', '}',
        ];
        (0..len).map(|_| self.pick(&chars)).collect()
    }

    fn names(&mut self) -> Vec<String> {
        let n = match self.below(10) {
            0 => 0,
            1..=6 => 1 + self.below(3),
            _ => 4 + self.below(12),
        };
        (0..n)
            .map(|_| {
                if self.chance(60) {
                    self.name().chars().take(1 + self.below(6)).collect()
                } else {
                    self.name()
                }
            })
            .collect()
    }

    fn column_type(&mut self) -> ColumnType {
        use ColumnType::*;
        let plain = [
            Uuid,
            Text,
            Boolean,
            SmallInteger,
            Integer,
            BigInteger,
            Real,
            Double,
            Date,
            Time,
            Timestamp,
            TimestampTz,
            Json,
            JsonBinary,
            Binary,
        ];
        match self.below(18) {
            0 => String(Some(self.below(100_000) as u32)),
            1 => String(None),
            2 => Decimal(self.below(40) as u32, self.below(10) as u32),
            n => plain[n - 3].clone(),
        }
    }

    fn column(&mut self) -> Column {
        Column {
            name: self.name(),
            ty: self.column_type(),
            nullable: self.chance(40),
            default: match self.below(8) {
                0 => Some(DefaultValue::Bool(self.chance(50))),
                1 => Some(DefaultValue::Int(self.next() as i64 >> self.below(64))),
                2 => Some(DefaultValue::Str(self.text())),
                3 => Some(DefaultValue::Expr(self.text())),
                _ => None,
            },
            comment: self.chance(30).then(|| self.text()),
        }
    }

    fn action(&mut self) -> ForeignKeyAction {
        self.pick(&[
            ForeignKeyAction::NoAction,
            ForeignKeyAction::NoAction,
            ForeignKeyAction::Restrict,
            ForeignKeyAction::Cascade,
            ForeignKeyAction::SetNull,
            ForeignKeyAction::SetDefault,
        ])
    }

    fn foreign_key(&mut self) -> ForeignKey {
        ForeignKey {
            name: self.name(),
            columns: self.names(),
            ref_table: self.name(),
            ref_columns: self.names(),
            on_delete: self.action(),
            on_update: self.action(),
        }
    }

    fn index(&mut self) -> Index {
        Index {
            name: self.name(),
            columns: self.names(),
            unique: self.chance(30),
        }
    }

    fn table(&mut self) -> Table {
        let mut table = Table {
            name: self.name(),
            columns: (0..self.below(7)).map(|_| self.column()).collect(),
            primary_key: self.names(),
            comment: self.chance(30).then(|| self.text()),
            ..Table::default()
        };
        for _ in 0..self.below(3) {
            let fk = self.foreign_key();
            table.foreign_keys.insert(fk.name.clone(), fk);
        }
        for _ in 0..self.below(3) {
            let name = self.name();
            let unique = Unique {
                name: name.clone(),
                columns: self.names(),
            };
            table.uniques.insert(name, unique);
        }
        for _ in 0..self.below(3) {
            let name = self.name();
            let check = Check {
                name: name.clone(),
                expr: self.text(),
            };
            table.checks.insert(name, check);
        }
        for _ in 0..self.below(3) {
            let index = self.index();
            table.indexes.insert(index.name.clone(), index);
        }
        table
    }

    fn sql(&mut self) -> DialectSql {
        if self.chance(70) {
            DialectSql::both(self.text())
        } else {
            DialectSql {
                postgres: self.text(),
                sqlite: self.text(),
            }
        }
    }

    fn operation(&mut self) -> Operation {
        let table = self.name();
        match self.below(18) {
            0 | 1 => Operation::CreateTable(self.table()),
            2 => Operation::DropTable { name: table },
            3 => Operation::RenameTable {
                from: table,
                to: self.name(),
            },
            4 => Operation::AddColumn {
                table,
                column: self.column(),
            },
            5 => Operation::DropColumn {
                table,
                name: self.name(),
            },
            6 => Operation::AlterColumn {
                table,
                to: self.column(),
            },
            7 => Operation::RenameColumn {
                table,
                from: self.name(),
                to: self.name(),
            },
            8 => Operation::CreateIndex {
                table,
                index: self.index(),
            },
            9 => Operation::DropIndex {
                table,
                name: self.name(),
            },
            10 => Operation::AddForeignKey {
                table,
                foreign_key: self.foreign_key(),
            },
            11 => Operation::DropForeignKey {
                table,
                name: self.name(),
            },
            12 => Operation::AddUnique {
                table,
                unique: Unique {
                    name: self.name(),
                    columns: self.names(),
                },
            },
            13 => Operation::DropUnique {
                table,
                name: self.name(),
            },
            14 => Operation::AddCheck {
                table,
                check: Check {
                    name: self.name(),
                    expr: self.text(),
                },
            },
            15 => Operation::DropCheck {
                table,
                name: self.name(),
            },
            16 => Operation::SetTableComment {
                table,
                comment: self.chance(70).then(|| self.text()),
            },
            _ => Operation::RawSql {
                up: self.sql(),
                down: self.chance(50).then(|| self.sql()),
            },
        }
    }
}

/// Many random migrations, from tiny to long strings and lists, are all left alone by
/// rustfmt: the writer lays them out as rustfmt does.
#[test]
fn random_migrations_are_rustfmt_stable() {
    let cases: usize = std::env::var("STRATA_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(400);
    let seed: u64 = std::env::var("STRATA_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0x5eed_cafe_f00d);
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for case in 0..cases {
        let count = if rng.chance(10) {
            7 + rng.below(20)
        } else {
            rng.below(7)
        };
        let operations: Vec<Operation> = (0..count).map(|_| rng.operation()).collect();
        let parents: Vec<String> = (0..rng.below(3))
            .map(|_| format!("{:012x}", rng.next() & 0xffff_ffff_ffff))
            .collect();
        let parents: Vec<&str> = parents.iter().map(String::as_str).collect();
        let message = rng.text();
        let text = render_migration("0123456789ab", &parents, &message, CREATED, &operations)
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
        let path = dir.path().join(format!("case_{case:04}.rs"));
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    for chunk in files.chunks(100) {
        if !rustfmt_check(chunk) {
            return;
        }
    }
}
