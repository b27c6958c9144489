//! Building and running the HTTP server.

use tokio::net::TcpListener;

use crate::config::Settings;
use crate::db::{Database, DbError};
use crate::fixtures::{self, FixtureError};
use crate::http::{self, AppState};
use crate::models::schema::{self, Existing};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot prepare the schema: {0}")]
    Schema(#[source] sea_orm::DbErr),
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
        prepare_empty_database(&db, &settings).await?;
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

/// On a database with none of the tables, creates the schema from the entities and loads the
/// fixtures; a database with some tables is left alone (`/health` names what is missing).
async fn prepare_empty_database(db: &Database, settings: &Settings) -> Result<(), StartupError> {
    let missing = schema::missing_tables(db.conn())
        .await
        .map_err(|err| StartupError::Db(db.explain(err)))?;
    if missing.len() == crate::models::TABLES.len() {
        tracing::info!("empty database: creating the schema and loading fixtures");
        schema::create_all(db.conn(), Existing::Fail)
            .await
            .map_err(StartupError::Schema)?;
        fixtures::load_all(db.conn(), &settings.database.fixture_path).await?;
    } else if !missing.is_empty() {
        tracing::warn!(?missing, "the schema is incomplete; /health answers 503");
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
