//! The connections the repository's statements run on: one round trip per statement.
//!
//! sqlx's pool pings every connection it takes back (`return_to_pool` in sqlx-core 0.8,
//! unconditionally), because a future dropped mid-statement can leave a connection
//! mid-protocol. That ping is a round trip and a transaction on the server, so a no-op job
//! of two statements cost four. Here the same safety comes from knowing how a statement
//! ended: a connection goes back to the idle list only when its statement ran to its end —
//! rows, or an error the server sent. One whose statement future was dropped (a caller's
//! timeout, a shutdown) or that failed on the wire is closed instead, and the server ends
//! what it was running within `client_connection_check_interval` ([`connect_options`]). A
//! connection that died while idle shows as a failed statement, which the runner's heartbeat
//! and closing-write retries take on a fresh connection.
//!
//! At most `max_connections` statements run at once; a connection is opened only when no
//! idle one is left, so open connections never exceed that number either.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgRow};
use sqlx::query::Query;
use sqlx::{ConnectOptions, PgPool, Postgres};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How often the server checks, while a statement runs, that its client is still there: a
/// statement whose caller gave up ends within this, not at `statement_timeout`.
pub const CLIENT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// `options` with what every connection of the repository sets at startup: the statement
/// timeout and the client check above.
pub(crate) fn connect_options(
    options: PgConnectOptions,
    statement_timeout: Duration,
) -> PgConnectOptions {
    let timeout_ms = statement_timeout.as_millis().to_string();
    let check_ms = CLIENT_CHECK_INTERVAL.as_millis().to_string();
    options.options([
        ("statement_timeout", timeout_ms.as_str()),
        ("client_connection_check_interval", check_ms.as_str()),
    ])
}

/// One statement with its arguments bound.
pub(crate) type Statement<'q> = Query<'q, Postgres, PgArguments>;

/// Connections for single statements; cheap to clone (one shared set).
#[derive(Clone)]
pub(crate) struct Connections {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("idle", &self.idle_count())
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

struct Shared {
    options: Arc<PgConnectOptions>,
    /// One permit per statement running; its number is the limit on open connections too.
    permits: Arc<Semaphore>,
    max: usize,
    /// Connections whose last statement ended cleanly, the most recently used last. A
    /// `std` mutex: held only to push or pop, never across an `.await`.
    idle: Mutex<VecDeque<Idle>>,
    acquire_timeout: Duration,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
}

struct Idle {
    conn: PgConnection,
    opened: Instant,
    since: Instant,
}

impl Connections {
    /// Connections to the server `pool` connects to, sized and timed like it.
    pub(crate) fn like(pool: &PgPool) -> Self {
        let options = pool.options();
        let max = usize::try_from(options.get_max_connections()).unwrap_or(usize::MAX);
        Self {
            shared: Arc::new(Shared {
                options: pool.connect_options(),
                permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
                max,
                idle: Mutex::new(VecDeque::new()),
                acquire_timeout: options.get_acquire_timeout(),
                idle_timeout: options.get_idle_timeout(),
                max_lifetime: options.get_max_lifetime(),
            }),
        }
    }

    /// A connection for one statement: an idle one, or a new one when none is idle. Waits at
    /// most the acquire timeout for a free slot and for the connection itself.
    pub(crate) async fn get(&self) -> Result<Checkout, sqlx::Error> {
        let deadline = tokio::time::Instant::now() + self.shared.acquire_timeout;
        let permit = tokio::time::timeout_at(deadline, self.shared.permits.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        if let Some(idle) = self.take_idle() {
            return Ok(Checkout {
                conn: idle.conn,
                opened: idle.opened,
                shared: self.shared.clone(),
                _permit: permit,
            });
        }
        let conn = tokio::time::timeout_at(deadline, self.shared.options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        Ok(Checkout {
            conn,
            opened: Instant::now(),
            shared: self.shared.clone(),
            _permit: permit,
        })
    }

    /// Runs `query` for at most one row.
    pub(crate) async fn fetch_optional(
        &self,
        query: Statement<'_>,
    ) -> Result<Option<PgRow>, sqlx::Error> {
        let mut conn = self.get().await?;
        let abandoned = Replacement::armed(&self.shared);
        let result = query.fetch_optional(&mut *conn).await;
        abandoned.disarm();
        conn.settle(result)
    }

    /// Runs `query` for exactly one row.
    pub(crate) async fn fetch_one(&self, query: Statement<'_>) -> Result<PgRow, sqlx::Error> {
        let mut conn = self.get().await?;
        let abandoned = Replacement::armed(&self.shared);
        let result = query.fetch_one(&mut *conn).await;
        abandoned.disarm();
        conn.settle(result)
    }

    /// Runs `query` for every row.
    pub(crate) async fn fetch_all(&self, query: Statement<'_>) -> Result<Vec<PgRow>, sqlx::Error> {
        let mut conn = self.get().await?;
        let abandoned = Replacement::armed(&self.shared);
        let result = query.fetch_all(&mut *conn).await;
        abandoned.disarm();
        conn.settle(result)
    }

    /// The most recently used idle connection still young enough; older ones are closed.
    fn take_idle(&self) -> Option<Idle> {
        let now = Instant::now();
        let mut idle = self.shared.lock_idle();
        // Least recently used first: whatever idled past the timeout is at the front.
        while let Some(oldest) = idle.front() {
            let stale = self
                .shared
                .idle_timeout
                .is_some_and(|t| now.duration_since(oldest.since) >= t);
            if !stale {
                break;
            }
            idle.pop_front(); // dropped: its socket closes
        }
        idle.pop_back()
    }

    /// Closes every idle connection and refuses new statements; statements running end
    /// first, and their connections are closed when they do.
    pub(crate) async fn close(&self) {
        self.shared.permits.close();
        let idle: Vec<Idle> = self.shared.lock_idle().drain(..).collect();
        for Idle { conn, .. } in idle {
            // Terminate politely so the server reports this session's statistics now.
            let _ = sqlx::Connection::close(conn).await;
        }
    }

    /// Connections idle now.
    pub(crate) fn idle_count(&self) -> usize {
        self.shared.lock_idle().len()
    }

    /// Statements running now.
    pub(crate) fn running(&self) -> usize {
        self.shared.max - self.shared.permits.available_permits().min(self.shared.max)
    }
}

impl Shared {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // Nothing can be left half-done under this lock (push and pop), so a poisoned one
        // is still consistent.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection lent for one statement. Hand the statement's result to [`Checkout::settle`];
/// dropped without it (the statement's future was dropped), the connection is closed.
pub(crate) struct Checkout {
    conn: PgConnection,
    opened: Instant,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Checkout {
    /// Ends the loan with the statement's `result`: the connection is kept for the next
    /// statement if the statement ran to its end — rows, or an error the server sent — and
    /// is not past its lifetime; otherwise it is closed. Returns `result`.
    pub(crate) fn settle<T>(self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        use sqlx::Error as E;
        // Ran to its end: rows, none, or an error the server sent, after which the
        // connection is between statements again.
        let clean = match &result {
            Ok(_) | Err(E::RowNotFound) => true,
            Err(E::Database(db)) => !session_ended(db.code().as_deref()),
            Err(_) => false,
        };
        if !clean {
            // The protocol state is unknown, or the server ended the session: this
            // connection is closed.
            let lost = match &result {
                Err(E::Database(_)) => true,
                other => matches!(other, Err(E::Io(_) | E::Tls(_) | E::Protocol(_))),
            };
            if lost {
                // The idle connections were opened to the same server and most likely
                // share this one's fate (a restart, a failover, a dropped network path):
                // closing them now saves the next statements from failing one by one.
                self.shared.lock_idle().clear();
            }
            return result;
        }
        let young = self
            .shared
            .max_lifetime
            .is_none_or(|lifetime| self.opened.elapsed() < lifetime);
        if young && !self.shared.permits.is_closed() {
            let mut idle = self.shared.lock_idle();
            if idle.len() < self.shared.max {
                idle.push_back(Idle {
                    conn: self.conn,
                    opened: self.opened,
                    since: Instant::now(),
                });
            }
        }
        result
    }
}

/// Armed while a statement runs. If the statement's future is dropped (its caller gave up),
/// its connection is closed, and this opens a replacement in the background, so the
/// caller's retry — a heartbeat on a short bound — finds an idle connection instead of
/// paying for a new one on its critical path.
struct Replacement {
    shared: Option<Arc<Shared>>,
}

impl Replacement {
    fn armed(shared: &Arc<Shared>) -> Self {
        Self {
            shared: Some(shared.clone()),
        }
    }

    /// The statement ran to its end: nothing to replace.
    fn disarm(mut self) {
        self.shared = None;
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            // The abandoned checkout still holds its slot until it is dropped, just after
            // this guard; waiting for a slot keeps the open connections within the limit.
            let Ok(Ok(permit)) = tokio::time::timeout(
                shared.acquire_timeout,
                shared.permits.clone().acquire_owned(),
            )
            .await
            else {
                return;
            };
            if !shared.lock_idle().is_empty() {
                return;
            }
            let Ok(Ok(conn)) =
                tokio::time::timeout(shared.acquire_timeout, shared.options.connect()).await
            else {
                return;
            };
            let mut idle = shared.lock_idle();
            if idle.len() < shared.max && !shared.permits.is_closed() {
                let now = Instant::now();
                idle.push_back(Idle {
                    conn,
                    opened: now,
                    since: now,
                });
            }
            drop(permit);
        });
    }
}

/// Whether an error with SQLSTATE `code` ends the session it was sent on: connection
/// exceptions (class 08) and the server going away (57P01 admin shutdown, 57P02 crash
/// shutdown, 57P03 cannot connect now) — not a cancelled statement (57014).
fn session_ended(code: Option<&str>) -> bool {
    code.is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
}

impl Deref for Checkout {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::session_ended;

    #[test]
    fn only_errors_that_end_the_session_close_the_connection() {
        assert!(
            session_ended(Some("57P01")),
            "pg_terminate_backend, shutdown"
        );
        assert!(session_ended(Some("08006")), "connection failure");
        assert!(!session_ended(Some("57014")), "a cancelled statement");
        assert!(!session_ended(Some("23505")), "a unique violation");
        assert!(!session_ended(None));
    }
}
