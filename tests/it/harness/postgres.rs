//! A real PostgreSQL server per test (Debian's `postgresql`: `initdb` into a temp dir, a free
//! port, run as the `postgres` OS user when the tests run as root), a fresh database per
//! store, and a real PgBouncer in transaction mode in front of it. Everything is stopped on
//! drop. Missing binaries fail the test loudly: `scripts/test.sh` installs them; nothing skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use caracal::config::PostgresConfig;
use caracal::roles::Stores;
use caracal::store::postgres::{migrate, PgStore, PoolLimits};

use super::{free_port, wait_for, TempDir};

/// The OS user that runs the server when the tests run as root (initdb refuses root).
const SERVER_USER: &str = "postgres";
/// How many times a start is tried on a fresh port (another process may take the free port).
const START_ATTEMPTS: usize = 3;

/// The directory of `initdb`, `pg_ctl`, `psql`: the newest `/usr/lib/postgresql/*/bin`.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin: \
                 install Debian's postgresql package (scripts/test.sh does)"
            )
        })
    })
}

fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

/// A temporary directory the server's user can reach: under /tmp (world-traversable) rather
/// than `$TMPDIR`, which may sit inside root's private home.
pub fn server_dir() -> TempDir {
    let dir = if running_as_root() {
        TempDir::new_in(Path::new("/tmp"))
    } else {
        TempDir::new()
    };
    give_to_server_user(dir.path());
    dir
}

/// A command that runs `program` as the server's user when we are root (`setpriv` execs, so
/// the child's pid is the program's own and killing it kills the program).
fn as_server_user(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            SERVER_USER,
            "--regid",
            SERVER_USER,
            "--init-groups",
            "--",
        ])
        .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> String {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Gives `path` (recursively) to the server's user, when we are root.
pub fn give_to_server_user(path: &Path) {
    if running_as_root() {
        let mut cmd = Command::new("chown");
        cmd.arg("-R")
            .arg(format!("{SERVER_USER}:{SERVER_USER}"))
            .arg(path);
        run(cmd, "chown");
    }
}

/// How a server is set up before its first start.
#[derive(Default, Clone)]
pub struct PgOptions {
    /// `pg_hba.conf` lines after `local all all trust` (which the harness keeps for itself).
    /// Empty: initdb's trust-everything file.
    pub hba: Vec<String>,
    /// Lines appended to `postgresql.conf` (`ssl = on`, ...).
    pub settings: Vec<String>,
    /// `listen_addresses` (default `127.0.0.1`).
    pub listen: Option<String>,
}

/// A running PostgreSQL server; stopped (immediately) on drop.
pub struct PgServer {
    dir: TempDir,
    pub port: u16,
    listen: String,
}

impl PgServer {
    /// A server trusting every local connection.
    pub fn start() -> PgServer {
        PgServer::start_with(PgOptions::default())
    }

    pub fn start_with(options: PgOptions) -> PgServer {
        let dir = server_dir();
        let data = dir.path().join("data");
        let mut initdb = as_server_user(&bin_dir().join("initdb"));
        initdb
            .args(["--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8"])
            .arg("-D")
            .arg(&data);
        run(initdb, "initdb");
        let conf = data.join("postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf).unwrap_or_default();
        settings.push_str("\nfsync = off\nmax_connections = 60\n");
        for line in &options.settings {
            settings.push_str(line);
            settings.push('\n');
        }
        std::fs::write(&conf, settings).unwrap_or_else(|e| panic!("postgresql.conf: {e}"));
        if !options.hba.is_empty() {
            let mut hba = String::from("local all all trust\n");
            for line in &options.hba {
                hba.push_str(line);
                hba.push('\n');
            }
            std::fs::write(data.join("pg_hba.conf"), hba)
                .unwrap_or_else(|e| panic!("pg_hba.conf: {e}"));
        }
        give_to_server_user(dir.path());
        let listen = options.listen.unwrap_or_else(|| "127.0.0.1".into());
        let mut server = PgServer {
            dir,
            port: 0,
            listen,
        };
        for attempt in 1..=START_ATTEMPTS {
            server.port = free_port();
            if server.pg_ctl_start() {
                return server;
            }
            if attempt == START_ATTEMPTS {
                panic!(
                    "postgres did not start after {START_ATTEMPTS} attempts; log:\n{}",
                    server.log()
                );
            }
        }
        server
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn pg_ctl_start(&self) -> bool {
        let mut cmd = as_server_user(&bin_dir().join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("postgres.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses={}",
                self.port,
                self.dir.path().display(),
                self.listen
            ))
            .args(["-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.status().map(|s| s.success()).unwrap_or(false)
    }

    fn pg_ctl_stop(&self, mode: &str) {
        let mut cmd = as_server_user(&bin_dir().join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status();
    }

    /// Stops the server (fast shutdown: sessions are cut, nothing committed is lost).
    pub fn stop(&self) {
        self.pg_ctl_stop("fast");
    }

    /// Starts it again on the same port and data directory.
    pub fn start_again(&self) {
        assert!(
            self.pg_ctl_start(),
            "postgres did not restart; log:\n{}",
            self.log()
        );
    }

    /// Stops and starts the server (same port, same data).
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// Runs SQL as the superuser over the Unix socket; returns psql's unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut cmd = Command::new(bin_dir().join("psql"));
        cmd.arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-c", sql]);
        run(cmd, &format!("psql {sql:?}"))
    }

    /// Creates a database with a fresh name (owned by `owner`, or the superuser) and returns it.
    pub fn create_database(&self, owner: Option<&str>) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "caracal_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let owner = owner.map(|o| format!(" OWNER \"{o}\"")).unwrap_or_default();
        self.psql("postgres", &format!("CREATE DATABASE {name}{owner}"));
        name
    }

    /// `postgresql.*` for the superuser over TCP to `database`.
    pub fn config(&self, database: &str) -> PostgresConfig {
        PostgresConfig {
            host: Some("127.0.0.1".into()),
            port: self.port,
            database: database.into(),
            username: "postgres".into(),
            ..PostgresConfig::default()
        }
    }

    /// The seeds' `DB_*` variables for the superuser and `database`.
    pub fn env_vars(&self, database: &str) -> Vec<(String, String)> {
        vec![
            ("DB_HOST".into(), "127.0.0.1".into()),
            ("DB_PORT".into(), self.port.to_string()),
            ("DB_NAME".into(), database.into()),
            ("DB_USER".into(), "postgres".into()),
        ]
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.pg_ctl_stop("immediate");
    }
}

/// Migrates the database `config` names (with the library's runner) and opens a store on it.
pub async fn migrated_store(config: &PostgresConfig, connections_max: usize) -> PgStore {
    let mut client = migrate::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connect for migrations: {e}"));
    migrate::up(&mut client)
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    drop(client);
    PgStore::open(
        config,
        PoolLimits {
            connections_max,
            wait_timeout: Duration::from_secs(30),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("open store: {e}"))
}

/// A real PgBouncer in transaction mode in front of a server; killed on drop.
pub struct PgBouncer {
    child: Child,
    dir: TempDir,
    pub port: u16,
}

impl PgBouncer {
    /// Starts PgBouncer (`pool_mode = transaction`, trust auth, `server_pool_size` server
    /// connections per database/user pair, so clients really share server connections).
    pub fn start(server: &PgServer, server_pool_size: u32) -> PgBouncer {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!("pgbouncer not found: install Debian's pgbouncer package (scripts/test.sh does)")
            });
        let dir = server_dir();
        let port = free_port();
        let ini = dir.path().join("pgbouncer.ini");
        let userlist = dir.path().join("userlist.txt");
        std::fs::write(&userlist, "\"postgres\" \"\"\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host=127.0.0.1 port={server_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {userlist}\npool_mode = transaction\n\
                 default_pool_size = {server_pool_size}\nmax_client_conn = 200\n\
                 logfile = {log}\nignore_startup_parameters = extra_float_digits\n",
                server_port = server.port,
                userlist = userlist.display(),
                log = dir.path().join("pgbouncer.log").display(),
            ),
        )
        .unwrap_or_else(|e| panic!("pgbouncer.ini: {e}"));
        give_to_server_user(dir.path());
        let child = as_server_user(&binary)
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start pgbouncer: {e}"));
        let mut bouncer = PgBouncer { child, dir, port };
        wait_for("pgbouncer to listen", Duration::from_secs(20), || {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("pgbouncer exited with {status}; log:\n{}", bouncer.log());
            }
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        bouncer
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// `postgresql.*` for the superuser through the bouncer to `database`.
    pub fn config(&self, database: &str) -> PostgresConfig {
        PostgresConfig {
            host: Some("127.0.0.1".into()),
            port: self.port,
            database: database.into(),
            username: "postgres".into(),
            ..PostgresConfig::default()
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A store on a fresh database behind every store trait, with whatever keeps it alive
/// (dropped after the store).
pub struct StoreFixture {
    pub store: Stores,
    pub bouncer: Option<PgBouncer>,
    pub server: Option<PgServer>,
    pub dir: Option<TempDir>,
}

/// A migrated PgStore on a fresh database of its own server.
pub async fn postgres_fixture() -> StoreFixture {
    let server = PgServer::start();
    let database = server.create_database(None);
    let store = migrated_store(&server.config(&database), 8).await;
    StoreFixture {
        store: stores(Arc::new(store)),
        bouncer: None,
        server: Some(server),
        dir: None,
    }
}

/// A migrated PgStore reaching its database only through PgBouncer in transaction mode, with
/// fewer server connections than the store's pool (so transactions share connections).
pub async fn pgbouncer_fixture() -> StoreFixture {
    let server = PgServer::start();
    let database = server.create_database(None);
    let bouncer = PgBouncer::start(&server, 2);
    let store = migrated_store(&bouncer.config(&database), 8).await;
    StoreFixture {
        store: stores(Arc::new(store)),
        bouncer: Some(bouncer),
        server: Some(server),
        dir: None,
    }
}

/// The embedded store in a temp dir.
pub async fn sqlite_fixture() -> StoreFixture {
    let dir = TempDir::new();
    let path = dir.path().to_path_buf();
    let store =
        tokio::task::spawn_blocking(move || caracal::store::sqlite::SqliteStore::open(&path))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("open sqlite store: {e}"));
    StoreFixture {
        store: stores(Arc::new(store)),
        bouncer: None,
        server: None,
        dir: Some(dir),
    }
}

/// One store behind every store trait, as `serve` wires it.
fn stores<S>(store: Arc<S>) -> Stores
where
    S: caracal::store::Store
        + caracal::store::ledger::LedgerStore
        + caracal::store::leases::LeaseStore
        + caracal::store::audit::AuditStore
        + 'static,
{
    Stores {
        store: Arc::clone(&store) as _,
        ledger: Arc::clone(&store) as _,
        leases: Arc::clone(&store) as _,
        audit: store,
    }
}
