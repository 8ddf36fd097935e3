//! A real PostgreSQL server per test: `initdb` into a temp dir and `pg_ctl start` on a free
//! port (as the `postgres` OS user when the tests run as root, as Postgres refuses root).
//! TCP connections need a password (scram-sha-256); the harness itself talks over the Unix
//! socket. Stopped on drop. Missing binaries fail the test loudly: install `postgresql`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The superuser's password over TCP.
pub const SUPERUSER_PASSWORD: &str = "harness-superuser-pw";

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap_or_else(|e| {
            panic!("PostgreSQL is not installed (/usr/lib/postgresql: {e}); `apt-get install -y postgresql`, or run scripts/test.sh")
        })
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no initdb under /usr/lib/postgresql/*/bin"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn checked(what: &str, output: std::io::Result<Output>) -> Output {
    let output = output.unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let port = super::free_port();
        let pg = Postgres { dir, bin, port };
        if is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(pg.dir.path(), std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("{e}"));
            checked(
                "chown",
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(pg.dir.path())
                    .output(),
            );
        }
        let data = pg.data();
        checked(
            "initdb",
            pg.as_owner("initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                ])
                .output(),
        );
        pg.pg_ctl_start();
        pg.psql(
            "postgres",
            &format!("ALTER USER postgres PASSWORD '{SUPERUSER_PASSWORD}'"),
        );
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A command running `program` from the Postgres bin dir as the data dir's owner.
    fn as_owner(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.port,
            self.socket_dir().display()
        );
        checked(
            "pg_ctl start",
            self.as_owner("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-o", &options, "-l"])
                .arg(self.dir.path().join("postgres.log"))
                .args(["-w", "start"])
                .output(),
        );
    }

    /// Runs `sql` in `database` as the superuser over the Unix socket; returns stdout.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = checked(
            "psql",
            self.as_owner("psql")
                .arg("-h")
                .arg(self.socket_dir())
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    database,
                ])
                .args(["-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql])
                .output(),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `DB_*` variables for a Caracal process connecting to `database` as the superuser.
    pub fn env_vars(&self, database: &str) -> Vec<(String, String)> {
        vec![
            ("DB_HOST".into(), "127.0.0.1".into()),
            ("DB_PORT".into(), self.port.to_string()),
            ("DB_NAME".into(), database.into()),
            ("DB_USER".into(), "postgres".into()),
            ("DB_PASSWORD".into(), SUPERUSER_PASSWORD.into()),
        ]
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
