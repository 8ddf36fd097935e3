//! A real tansu broker (a Kafka-protocol broker, DEPENDENCIES.md) per test for the topic
//! administration tests: its sqlite engine in a temp dir on a free port, optionally with SCRAM
//! users and `--authentication`, stopped on drop. `scripts/test.sh` installs tansu.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::TempDir;

/// How long tansu gets to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The tansu binary: `$CARACAL_TANSU`, else `$CARACAL_TOOLS_ROOT/bin/tansu`, else the cache.
pub fn tansu() -> PathBuf {
    if let Ok(path) = std::env::var("CARACAL_TANSU") {
        return PathBuf::from(path);
    }
    let root = std::env::var("CARACAL_TOOLS_ROOT").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/caracal/tools")
    });
    let path = PathBuf::from(root).join("bin/tansu");
    assert!(
        path.exists(),
        "tansu is not installed at {}: run scripts/test.sh, which installs it",
        path.display()
    );
    path
}

pub struct KafkaBroker {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
}

impl KafkaBroker {
    /// A broker without authentication.
    pub fn start() -> KafkaBroker {
        let dir = TempDir::new();
        let port = super::free_port();
        let child = spawn(&dir, port, false);
        KafkaBroker {
            child: Some(child),
            port,
            dir,
        }
    }

    /// A broker that requires SASL SCRAM, with `users` (name, password) known for SHA-512
    /// and SHA-256: created while it runs open, then restarted with `--authentication`.
    pub fn start_with_scram(users: &[(&str, &str)]) -> KafkaBroker {
        let mut broker = KafkaBroker::start();
        for (name, password) in users {
            for mechanism in ["scram512", "scram256"] {
                let status = Command::new(tansu())
                    .args(["user", "create", "--broker", &broker.url()])
                    .args(["--mechanism", mechanism, name, password])
                    .stdout(Stdio::null())
                    .status()
                    .unwrap_or_else(|e| panic!("tansu user create: {e}"));
                assert!(status.success(), "tansu user create {name} failed");
            }
        }
        broker.stop();
        broker.child = Some(spawn(&broker.dir, broker.port, true));
        broker
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// The broker's log so far (tests check it for panics).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }
}

fn spawn(dir: &TempDir, port: u16, authentication: bool) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("tansu.log"))
        .unwrap_or_else(|e| panic!("tansu log: {e}"));
    let err = log.try_clone().unwrap_or_else(|e| panic!("tansu log: {e}"));
    let mut cmd = Command::new(tansu());
    cmd.current_dir(dir.path())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    if authentication {
        cmd.arg("--authentication");
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start tansu: {e}"));
    super::wait_for("tansu to accept connections", START_DEADLINE, || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    child
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.stop();
        let log = self.log();
        if log.contains("panicked") && !std::thread::panicking() {
            panic!("tansu panicked:\n{log}");
        }
    }
}
