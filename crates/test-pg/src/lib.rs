//! A fresh Postgres database for each test.
//!
//! Where the server comes from, in order:
//! 1. `DATABASE_URL` — any database on the server; the tests create their own next to it.
//! 2. With the `containers` feature only: a Docker engine (`DOCKER_HOST` or
//!    `/var/run/docker.sock`) — a `testcontainers` Postgres. Off by default, so the
//!    testcontainers crates cost nothing where `DATABASE_URL` or `initdb` is there;
//!    `cargo test --features test-pg/containers` turns it on.
//! 3. `initdb` and `pg_ctl` on `PATH` — a throwaway cluster in a temp dir, stopped and
//!    deleted when the test process exits.
//!
//! Otherwise [`fresh_database`] fails with a message saying how to provide one. Each call
//! creates a new database `vwtest_<uuid>` (migrated by the caller) and drops it when the
//! returned [`TestDb`] is dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failed test

pub mod wire;

use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, PgPool};

/// `url` with its database replaced by `name`, other parts (user, host, query) kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
use tokio::sync::OnceCell;

/// The server every test of this process shares.
static SERVER: OnceCell<Server> = OnceCell::const_new();

enum Server {
    /// Given by `DATABASE_URL`.
    External(String),
    /// A container; kept alive for the process's life.
    #[cfg(feature = "containers")]
    Container {
        url: String,
        _container: Box<
            testcontainers_modules::testcontainers::ContainerAsync<
                testcontainers_modules::postgres::Postgres,
            >,
        >,
    },
    /// A local cluster started with `pg_ctl`; a watchdog stops it when the process exits.
    Cluster(String),
}

impl Server {
    fn url(&self) -> &str {
        match self {
            Self::External(url) | Self::Cluster(url) => url,
            #[cfg(feature = "containers")]
            Self::Container { url, .. } => url,
        }
    }
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDb {
    /// A pool on it.
    pub pool: PgPool,
    /// Its URL, for code under test that connects by itself (a child worker process).
    pub url: String,
    name: String,
    admin: PgConnectOptions,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, where we cannot block on it; a short-lived
        // thread with its own runtime drops the database (FORCE ends our pool's sessions).
        let admin = self.admin.clone();
        let name = self.name.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let mut conn = admin.connect().await.ok()?;
                conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await
                    .ok()
            })
        });
        let _ = done.join();
    }
}

/// Creates an empty database for one test.
pub async fn fresh_database() -> Result<TestDb> {
    let server = SERVER.get_or_try_init(start_server).await?;
    let admin = PgConnectOptions::from_str(server.url())
        .with_context(|| format!("parsing the Postgres URL {}", server.url()))?;
    let name = format!("vwtest_{}", uuid::Uuid::new_v4().simple());
    let mut conn = admin
        .connect()
        .await
        .with_context(|| format!("connecting to {}", server.url()))?;
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .context("CREATE DATABASE for a test")?;
    let options = admin.clone().database(&name);
    let pool = PgPoolOptions::new()
        .max_connections(40)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.clone())
        .await?;
    let url = with_database(server.url(), &name);
    Ok(TestDb {
        pool,
        url,
        name,
        admin,
    })
}

async fn start_server() -> Result<Server> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.trim().is_empty()
    {
        return Ok(Server::External(url));
    }
    #[cfg(feature = "containers")]
    if docker_reachable() {
        match start_container().await {
            Ok(server) => return Ok(server),
            Err(e) => eprintln!(
                "test-pg: Docker answered but no container started ({e:#}); trying initdb"
            ),
        }
    }
    if which("initdb").is_some() && which("pg_ctl").is_some() {
        return start_cluster();
    }
    bail!(
        "no Postgres for the tests: set DATABASE_URL (e.g. \
         postgres://postgres@127.0.0.1:5432/postgres), or put initdb and pg_ctl (package \
         postgresql) on PATH{}",
        if cfg!(feature = "containers") {
            ", or run a Docker engine for testcontainers"
        } else {
            ", or run a Docker engine and build with `--features test-pg/containers`"
        }
    )
}

#[cfg(feature = "containers")]
fn docker_reachable() -> bool {
    std::env::var_os("DOCKER_HOST").is_some() || PathBuf::from("/var/run/docker.sock").exists()
}

#[cfg(feature = "containers")]
async fn start_container() -> Result<Server> {
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    let container = Postgres::default().start().await?;
    let port = container.get_host_port_ipv4(5432).await?;
    let host = container.get_host().await?;
    Ok(Server::Container {
        url: format!("postgres://postgres:postgres@{host}:{port}/postgres"),
        _container: Box::new(container),
    })
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// `initdb` and `pg_ctl` refuse to run as root; as root, run them as `postgres`.
fn as_cluster_owner(tool: &str) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if is_root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", tool]);
        cmd
    } else {
        Command::new(tool)
    }
}

fn start_cluster() -> Result<Server> {
    let cluster = Cluster::start()?;
    let url = cluster.url();
    // The watchdog started with it stops and deletes it once this test process is gone;
    // every test of the process shares it, so it is never dropped.
    std::mem::forget(cluster);
    Ok(Server::Cluster(url))
}

/// A throwaway local Postgres cluster: `initdb` in a temp dir, `pg_ctl start` on a free
/// port of 127.0.0.1, trust auth for `postgres`, `fsync=off`. Dropping it stops it and
/// deletes the directory; a watchdog does the same if this process dies first (even by
/// `kill -9`). As root, the tools run as the `postgres` user (they refuse root).
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Cluster {
    /// Creates and starts a cluster. Needs `initdb` and `pg_ctl` on `PATH`.
    pub fn start() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("vw-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        // The cluster owner must own the directory; chown is a no-op when we are that user.
        let _ = Command::new("chown").arg("postgres").arg(&dir).status();
        let data = dir.join("data");
        let port = free_port()?;
        let status = as_cluster_owner("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .status()
            .context("running initdb")?;
        if !status.success() {
            bail!("initdb failed ({status}); set DATABASE_URL to a Postgres server instead");
        }
        let cluster = Self { dir, data, port };
        cluster.pg_ctl(&["start"])?;
        // Stop and delete the cluster once this process is gone.
        let me = std::process::id();
        let pg_ctl = which("pg_ctl")
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let watchdog = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
             (runuser -u postgres -- {pg_ctl} -D {data} -m immediate stop || {pg_ctl} -D {data} -m immediate stop) >/dev/null 2>&1; \
             rm -rf {dir}",
            data = cluster.data.display(),
            dir = cluster.dir.display()
        );
        Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting the cluster watchdog")?;
        Ok(cluster)
    }

    /// The `postgres` database's URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `pg_ctl restart -m fast`: every session is ended, the server is back when it returns.
    pub fn restart_fast(&self) -> Result<()> {
        self.pg_ctl(&["-m", "fast", "restart"])
    }

    /// Runs `pg_ctl -w -D <data> -o <options> -l <log> <args>` as the cluster owner.
    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        let status = as_cluster_owner("pg_ctl")
            .args(["-w", "-D"])
            .arg(&self.data)
            .args(["-o", &opts, "-l"])
            .arg(&log)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .with_context(|| format!("running pg_ctl {}", args.join(" ")))?;
        if !status.success() {
            bail!(
                "pg_ctl {} failed ({status}); see {}",
                args.join(" "),
                log.display()
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_cluster_owner("pg_ctl")
            .args(["-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
