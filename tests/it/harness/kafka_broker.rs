//! A real tansu broker (a Kafka-protocol broker, DEPENDENCIES.md) per test for the topic
//! administration tests: its sqlite engine in a temp dir on a free port, optionally with SCRAM
//! users and `--authentication`, or behind Debian's `stunnel4` for TLS with client-certificate
//! checks (tansu has no TLS listener of its own); stopped on drop. `scripts/test.sh` installs both.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
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
    stunnel: Option<Child>,
    /// The port clients use (stunnel's with TLS).
    pub port: u16,
    /// tansu's own plaintext port.
    pub plain_port: u16,
    dir: TempDir,
}

impl KafkaBroker {
    /// A broker without authentication.
    pub fn start() -> KafkaBroker {
        let dir = TempDir::new();
        let port = super::free_port();
        let child = spawn(&dir, port, port, false);
        KafkaBroker {
            child: Some(child),
            stunnel: None,
            port,
            plain_port: port,
            dir,
        }
    }

    /// TLS only, through stunnel on `port` (server.crt/key of `certs`, as
    /// `certs::make_certificates` writes them), which requires a client certificate signed by
    /// `certs`' CA. tansu advertises stunnel's port, so every connection goes through TLS.
    pub fn start_tls(certs: &Path) -> KafkaBroker {
        let dir = TempDir::new();
        let (port, plain_port) = (super::free_port(), super::free_port());
        let child = spawn(&dir, plain_port, port, false);
        let file = |name: &str| certs.join(name).display().to_string();
        let conf = format!(
            "foreground = yes\npid =\ndebug = 4\n[kafka]\naccept = 127.0.0.1:{port}\n\
             connect = 127.0.0.1:{plain_port}\ncert = {}\nkey = {}\nCAfile = {}\n\
             verifyChain = yes\nrequireCert = yes\n",
            file("server.crt"),
            file("server.key"),
            file("ca.crt")
        );
        let conf_path = dir.path().join("stunnel.conf");
        std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("stunnel.conf: {e}"));
        let log = std::fs::File::create(dir.path().join("stunnel.log"))
            .unwrap_or_else(|e| panic!("stunnel log: {e}"));
        let stunnel = Command::new("stunnel4")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start stunnel4 (apt-get install stunnel4): {e}"));
        super::wait_for("stunnel to accept connections", START_DEADLINE, || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        KafkaBroker {
            child: Some(child),
            stunnel: Some(stunnel),
            port,
            plain_port,
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
        broker.child = Some(spawn(&broker.dir, broker.port, broker.port, true));
        broker
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// tansu's own plaintext `127.0.0.1:port` (the same as `address` without TLS).
    pub fn plain_address(&self) -> String {
        format!("127.0.0.1:{}", self.plain_port)
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        for mut child in [self.stunnel.take(), self.child.take()]
            .into_iter()
            .flatten()
        {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// The broker's log so far (tests check it for panics).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }
}

/// tansu listening on `port`, telling clients to connect to `advertised`.
fn spawn(dir: &TempDir, port: u16, advertised: u16, authentication: bool) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://127.0.0.1:{advertised}");
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
            &advertised,
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
