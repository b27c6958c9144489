//! Building and running the HTTP server, and stopping it within a deadline.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::serve::ListenerExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{Environment, SecretKeySource, Settings};
use crate::db::{Database, DbError};
use crate::fixtures::{self, FixtureError};
use crate::http::{self, AppState, Lifecycle};
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
        source: io::Error,
    },
}

/// A bound, ready server; `port()` tells where it listens (useful with port 0).
pub struct Application {
    listener: TcpListener,
    port: u16,
    router: axum::Router,
    lifecycle: Lifecycle,
    db: Database,
    replicas: crate::db::Replicas,
    shutdown_timeout: Duration,
}

impl Application {
    /// Connects to the database, prepares an empty one, and binds the listener. Outside
    /// production, warns when the address is reachable from other machines.
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
        let local = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        if let Some(warning) = exposure_warning(&settings, local) {
            tracing::warn!(addr = %local, "{warning}");
        }
        let shutdown_timeout = settings.http.shutdown_timeout;
        let replicas = crate::db::Replicas::start(&settings.database, db.metrics());
        let state = AppState::new(settings, db.clone()).with_replicas(replicas.clone());
        Ok(Self {
            listener,
            port: local.port(),
            lifecycle: state.lifecycle.clone(),
            router: http::app(state),
            db,
            replicas,
            shutdown_timeout,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down in two steps. First it closes the
    /// listening socket (connections the kernel had already completed are still served) and
    /// answers every request it gets on the connections it has, each with `Connection: close`
    /// (`/health` answers 503 `shutting down`), until none has run for a quiet moment; then it
    /// closes the idle connections, waits for any still busy, and closes the pool. Requests
    /// still running after `APP_SHUTDOWN_TIMEOUT` (or at a second signal) are cut off: their
    /// connections close unanswered and their transactions roll back as they are dropped.
    /// Returns `Ok` either way; the log says how many requests were cut off.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        let Self {
            listener,
            port: _,
            router,
            lifecycle,
            db,
            replicas,
            shutdown_timeout,
        } = self;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "listening");
        let (connections, open) = watch::channel(());
        let acceptor = Acceptor::new(listener);
        let listener = LingeringListener {
            acceptor: acceptor.clone(),
            addr,
            open,
        };
        let quiet = lifecycle.clone();
        // When this resolves axum stops accepting and closes the idle connections: only
        // once the clients that were sending have had their `Connection: close` answers.
        // Each connection's peer address reaches handlers as `ConnectInfo<SocketAddr>` (the
        // login throttle counts failures per client address). axum provides that for its own
        // listeners and for any listener wrapped by `tap_io`, hence the empty tap.
        let listener = listener.tap_io(|_| {});
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, service).with_graceful_shutdown(async move {
            quiet.shutting_down().await;
            quiet_moment(&quiet).await;
        });
        let mut server = std::pin::pin!(server.into_future());
        tokio::select! {
            biased;
            () = shutdown_signal() => {
                acceptor.close();
                lifecycle.begin_shutdown();
            }
            served = &mut server => return served,
        }

        let started = Instant::now();
        let deadline = started + shutdown_timeout;
        tracing::info!(
            in_flight = lifecycle.in_flight(),
            timeout_secs = shutdown_timeout.as_secs_f64(),
            "shutting down: no new connections; answering the requests in flight for up to {:.1}s",
            shutdown_timeout.as_secs_f64()
        );
        let drained = tokio::select! {
            drained = tokio::time::timeout_at(deadline, &mut server) => {
                drained.map_err(|_| "APP_SHUTDOWN_TIMEOUT passed")
            }
            () = shutdown_signal() => Err("a second signal came"),
        };
        match drained {
            Ok(served) => {
                served?;
                // Connections finishing their close (see `LingeringStream`), then the pool:
                // PostgreSQL sessions end cleanly, SQLite checkpoints its WAL.
                let _ = tokio::time::timeout_at(deadline, connections.closed()).await;
                let _ = tokio::time::timeout_at(deadline, db.close()).await;
                let _ = tokio::time::timeout_at(deadline, replicas.close()).await;
                tracing::info!(
                    cut_off = 0,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "stopped: every request in flight was answered"
                );
            }
            Err(why) => {
                let cut_off = lifecycle.in_flight();
                tracing::warn!(
                    cut_off,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "stopped: cut off {cut_off} request(s) still in flight after {:.1}s \
                     ({why}); their transactions roll back",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(())
    }
}

/// How long no request must have run before a shutting-down server closes its idle
/// connections.
const QUIET: Duration = Duration::from_millis(250);

/// Resolves once no request has been in flight, and none has started, for [`QUIET`]. A client
/// busy on a keep-alive connection has by then had an answer with `Connection: close` and
/// left; closing an idle connection while its client is sending on it would lose that request
/// (HTTP/1.1 cannot tell the client whether it was read), so this waits for the connections
/// left to be those nobody uses.
async fn quiet_moment(lifecycle: &Lifecycle) {
    let mut since = (Instant::now(), lifecycle.started());
    loop {
        tokio::time::sleep(QUIET / 10).await;
        let started = lifecycle.started();
        if lifecycle.in_flight() > 0 || started != since.1 {
            since = (Instant::now(), started);
        } else if since.0.elapsed() >= QUIET {
            return;
        }
    }
}

/// One line on what listening beyond this machine means outside production, or `None`.
fn exposure_warning(settings: &Settings, addr: SocketAddr) -> Option<String> {
    if settings.environment == Environment::Production || addr.ip().is_loopback() {
        return None;
    }
    let key = match &settings.secret_key_source {
        SecretKeySource::Setting => "tokens are signed with SECRET_KEY".to_string(),
        SecretKeySource::LocalFile(path) => format!(
            "tokens are signed with the key kept for this machine in {}",
            path.display()
        ),
    };
    let migrations = if settings.environment == Environment::Development {
        "the schema is upgraded at start and "
    } else {
        ""
    };
    Some(format!(
        "listening on {addr}, reachable from other machines, with APP_ENV={env}, which is \
         meant for one machine: {migrations}{key}; to serve others set APP_ENV=production \
         and SECRET_KEY",
        env = settings.environment.as_str()
    ))
}

/// How long a closed connection keeps reading what the client still sends.
const LINGER: Duration = Duration::from_secs(2);

/// The listening socket, shared between axum's accept loop ([`LingeringListener`]) and
/// `run_until_stopped`, which closes it the moment a signal comes: before `/health` can say
/// the server is shutting down, no new connection is taken.
#[derive(Clone)]
struct Acceptor(Arc<Mutex<AcceptorState>>);

struct AcceptorState {
    /// `None` once closed.
    listener: Option<TcpListener>,
    /// Connections the kernel had completed when the socket closed, still to be served.
    queued: VecDeque<(TcpStream, SocketAddr)>,
    /// The accept loop, to wake when `close` queues connections.
    waiting: Option<Waker>,
}

impl Acceptor {
    fn new(listener: TcpListener) -> Self {
        Self(Arc::new(Mutex::new(AcceptorState {
            listener: Some(listener),
            queued: VecDeque::new(),
            waiting: None,
        })))
    }

    fn state(&self) -> MutexGuard<'_, AcceptorState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let mut state = self.state();
        if let Some(accepted) = state.queued.pop_front() {
            return Poll::Ready(Ok(accepted));
        }
        let polled = match &state.listener {
            Some(listener) => listener.poll_accept(cx),
            None => Poll::Pending,
        };
        if polled.is_pending() {
            state.waiting = Some(cx.waker().clone());
        }
        polled
    }

    /// Closes the listening socket, keeping the connections the kernel had already completed
    /// to be served: closing it with them queued would reset them, though their clients may
    /// have sent a request already.
    fn close(&self) {
        let mut state = self.state();
        let Some(listener) = state.listener.take() else {
            return;
        };
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(Ok(accepted)) = listener.poll_accept(&mut cx) {
            state.queued.push_back(accepted);
        }
        drop(listener);
        if let Some(waiting) = state.waiting.take() {
            waiting.wake();
        }
    }

    /// What is still queued, once nothing will accept it any more.
    fn take_queued(&self) -> VecDeque<(TcpStream, SocketAddr)> {
        std::mem::take(&mut self.state().queued)
    }
}

/// What `run_until_stopped` serves: the [`Acceptor`]'s connections, each ending with a
/// lingering close (see [`LingeringStream`]). Every connection holds a clone of `open`, so the
/// server can wait until all have closed.
struct LingeringListener {
    acceptor: Acceptor,
    addr: SocketAddr,
    open: watch::Receiver<()>,
}

impl axum::serve::Listener for LingeringListener {
    type Io = LingeringStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match std::future::poll_fn(|cx| self.acceptor.poll_accept(cx)).await {
                Ok((stream, addr)) => return (LingeringStream::new(stream, &self.open), addr),
                // As axum's own accept: the client went away before it was taken; next.
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                // Out of file descriptors, most likely: wait for some to close.
                Err(err) => {
                    tracing::error!(%err, "accept error");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

impl Drop for LingeringListener {
    /// Connections still queued get a lingering close rather than a reset.
    fn drop(&mut self) {
        self.acceptor.close();
        for (stream, _) in self.acceptor.take_queued() {
            drop(LingeringStream::new(stream, &self.open));
        }
    }
}

/// A connection that closes as RFC 9112 (9.6) asks: the write side first, then whatever the
/// client still sends is read and dropped, for up to [`LINGER`], until the client closes too.
/// Closing a socket that holds unread bytes (a request that crossed the close of an idle
/// keep-alive connection, or one read only in part when the shutdown started) makes the kernel
/// answer with a reset, which can also destroy a response the client has not read yet; the end
/// of the connection instead tells the client its request was not taken, so it can retry on a
/// new one.
struct LingeringStream {
    stream: Option<TcpStream>,
    open: watch::Receiver<()>,
}

impl LingeringStream {
    fn new(stream: TcpStream, open: &watch::Receiver<()>) -> Self {
        Self {
            stream: Some(stream),
            open: open.clone(),
        }
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(
            self.stream
                .as_mut()
                .expect("the stream is taken only when dropped"),
        )
    }
}

impl Drop for LingeringStream {
    fn drop(&mut self) {
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        // Without a runtime (it is shutting down) the socket just closes.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let open = self.open.clone();
        runtime.spawn(async move {
            let _open = open;
            // A no-op when hyper already shut the write side down.
            let _ = stream.shutdown().await;
            let _ = tokio::time::timeout(LINGER, async {
                let mut sink = [0u8; 4096];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        });
    }
}

impl AsyncRead for LingeringStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
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
        fixtures::load_all(db.conn(), settings.database.fixture_path.as_deref()).await?;
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (each call waits for a signal that comes after it).
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
