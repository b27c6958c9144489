//! Building and running the HTTP server.

use tokio::net::TcpListener;

use crate::config::{Environment, Settings};
use crate::db::{Database, DbError};
use crate::fixtures::{self, FixtureError};
use crate::http::{self, AppState};
use crate::migrate::{self, Direction, Event, MigrateError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Fixtures(#[from] FixtureError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// A bound, ready server; `port()` tells where it listens (useful with port 0).
pub struct Application {
    listener: TcpListener,
    port: u16,
    router: axum::Router,
}

impl Application {
    /// Connects to the database, prepares an empty one, and binds the listener.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let db = Database::connect(&settings.database).await?;
        prepare_database(&db, &settings).await?;
        let addr = settings.http.addr();
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?
            .port();
        Ok(Self {
            listener,
            port,
            router: http::app(AppState::new(settings, db)),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or Ctrl-C, then lets requests in flight finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let addr = self.listener.local_addr()?;
        tracing::info!(%addr, "listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// In development, upgrades the database to head (logging each migration) and loads the
/// fixtures into a database that had no migration applied. Elsewhere changes nothing: an
/// operator upgrades deliberately, and `/health` answers 503 until the schema is at head.
async fn prepare_database(db: &Database, settings: &Settings) -> Result<(), StartupError> {
    if settings.environment != Environment::Development {
        let status = migrate::status(db, &settings.database).await?;
        if let Some(foreign) = status.foreign {
            // The Python service's database: serving it would fail on every request.
            return Err(MigrateError::NeedsAdoption(foreign).into());
        }
        if !status.at_head() {
            tracing::warn!(
                pending = status.pending.len(),
                "the schema is behind head; run `app database upgrade` (/health answers 503 until then)"
            );
        }
        return Ok(());
    }
    let was_empty = migrate::status(db, &settings.database)
        .await?
        .applied
        .is_empty();
    let done = migrate::run(
        db,
        &settings.database,
        Direction::Up,
        "head",
        &mut |event| {
            if let Event::Finished { migration, elapsed } = event {
                tracing::info!(
                    revision = %migration.revision,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "applied migration {}: {}", migration.revision, migration.message
                );
            }
        },
    )
    .await?;
    if was_empty && !done.is_empty() {
        fixtures::load_all(db.conn(), &settings.database.fixture_path).await?;
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
