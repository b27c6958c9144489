//! Strict mode (`--strict`, DATABASE_MIGRATION_STRICT): lint findings fail `upgrade` before
//! anything is applied and fail `check` while such migrations are pending, one line per
//! finding and then one error line. The app's own chain has a finding: adding the CHECK on
//! `todo` validates every row under lock (PostgreSQL) and rebuilds the table (SQLite); on
//! PostgreSQL a second one, the raw SQL of the exclusion constraint on `todo`, which the lint
//! cannot read (it is empty on SQLite). The search indexes are raw SQL too, one more finding on
//! each database.

use crate::helpers::{Kind, TestDb, on_both_databases, one_line_failure, run_app, succeeded};

on_both_databases!(strict_mode_turns_lint_findings_into_failures);

/// How many tables named `todo` the database has.
async fn todo_tables(db: &TestDb, kind: Kind) -> i64 {
    let sql = match kind {
        Kind::Postgres => {
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'todo'"
        }
        Kind::Sqlite => "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'todo'",
    };
    let conn = db.connect(&[]).await;
    let n = crate::helpers::scalar_i64(&conn, sql).await;
    conn.close().await;
    n
}

/// How many findings the app's chain has on `kind` (see the module docs).
fn findings(kind: Kind) -> usize {
    match kind {
        Kind::Postgres => 3,
        Kind::Sqlite => 2,
    }
}

fn lint_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("lint"))
        .map(str::to_string)
        .collect()
}

async fn strict_mode_turns_lint_findings_into_failures(kind: Kind) {
    let db = TestDb::empty(kind).await;
    let cwd = tempfile::tempdir().unwrap();
    let base = [("APP_ENV", "testing"), ("DATABASE_URL", db.url.as_str())];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut vars: Vec<(&str, &str)> = base.to_vec();
        vars.extend_from_slice(extra);
        vars
    };

    // The flag, then the setting: refused before anything runs.
    for (args, vars) in [
        (vec!["database", "upgrade", "--strict"], with(&[])),
        (
            vec!["database", "upgrade"],
            with(&[("DATABASE_MIGRATION_STRICT", "true")]),
        ),
    ] {
        let out = run_app(cwd.path(), &args, &vars);
        let line = one_line_failure(&out, 1);
        assert!(
            line.starts_with(&format!(
                "error: strict mode (--strict or DATABASE_MIGRATION_STRICT): {} lint finding(s)",
                findings(kind)
            )) && line.ends_with("; nothing was applied"),
            "{line}"
        );
        let lints = lint_lines(&out);
        assert_eq!(lints.len(), findings(kind), "{lints:?}");
        assert!(
            lints[0].contains("add check todo.ck_todo_importance")
                || lints[0].contains("ck_todo_importance"),
            "{lints:?}"
        );
        if kind == Kind::Postgres {
            assert!(lints[1].contains("raw SQL"), "{lints:?}");
        }
        assert_eq!(todo_tables(&db, kind).await, 0, "nothing was applied");
    }

    // Up to the revision before the CHECK: `check --strict` fails on what is pending.
    succeeded(&run_app(
        cwd.path(),
        &["database", "upgrade", "363878e3d4c3"],
        &with(&[]),
    ));
    let out = run_app(cwd.path(), &["database", "check", "--strict"], &with(&[]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lint_lines(&out).len(),
        findings(kind),
        "{:?}",
        lint_lines(&out)
    );

    // Without strict mode the findings are warnings; at head nothing is pending.
    let out = run_app(cwd.path(), &["database", "upgrade"], &with(&[]));
    succeeded(&out);
    assert_eq!(lint_lines(&out).len(), findings(kind));
    succeeded(&run_app(
        cwd.path(),
        &["database", "check", "--strict"],
        &with(&[]),
    ));
    assert_eq!(todo_tables(&db, kind).await, 1);
}
