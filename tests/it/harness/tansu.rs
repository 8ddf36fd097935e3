//! A real Kafka-protocol broker per test: tansu (`scripts/test.sh` installs it and exports
//! `CARACAL_TANSU`) on a free port, its sqlite engine in a temporary folder. Empty, or with the
//! seeds' five topics (created through rskafka: tansu creates none by itself; DeleteTopics is
//! never sent, tansu would delete them all), or with SCRAM users and `--authentication`, or
//! behind Debian's `stunnel4` for TLS with client-certificate checks (tansu has no TLS
//! listener). Killed and started again on the same data for a broker restart. Its logs are
//! checked for `panicked` when it stops.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::TempDir;

/// How long tansu (or stunnel) gets to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The tansu binary: `$CARACAL_TANSU`, else `$CARACAL_TOOLS_ROOT/bin/tansu`, else the cache
/// `scripts/test.sh` installs into.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CARACAL_TANSU") {
        return path.into();
    }
    let root = std::env::var_os("CARACAL_TOOLS_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| panic!("HOME is not set"));
            PathBuf::from(home).join(".cache/caracal/tools")
        });
    let path = root.join("bin/tansu");
    assert!(
        path.exists(),
        "tansu is not installed at {}: run scripts/test.sh, which installs it",
        path.display()
    );
    path
}

pub struct Tansu {
    child: Option<Child>,
    stunnel: Option<Child>,
    /// The port clients use (stunnel's with TLS).
    pub port: u16,
    /// tansu's own plaintext port (the same as `port` without TLS).
    pub plain_port: u16,
    dir: TempDir,
    /// How many times tansu was launched (one log file per run).
    runs: usize,
    /// The certificates directory when stunnel fronts tansu.
    tls: Option<PathBuf>,
    authentication: bool,
}

impl Tansu {
    /// A broker with the seeds' five topics at their partition counts.
    pub fn start() -> Tansu {
        let broker = Tansu::empty();
        let topics: Vec<(&str, i32)> = caracal::core::events::TOPICS
            .iter()
            .map(|t| (t.name, t.partitions))
            .collect();
        broker.create_topics(&topics);
        broker
    }

    /// A broker without topics or authentication.
    pub fn empty() -> Tansu {
        let port = super::free_port();
        let mut broker = Tansu::unlaunched(port, port);
        broker.launch();
        broker
    }

    /// TLS only, through stunnel on `port` (server.crt/key of `certs`, as
    /// `certs::make_certificates` writes them), which requires a client certificate signed by
    /// `certs`' CA. tansu advertises stunnel's port, so every connection goes through TLS.
    pub fn start_tls(certs: &Path) -> Tansu {
        let mut broker = Tansu::unlaunched(super::free_port(), super::free_port());
        broker.launch();
        let file = |name: &str| certs.join(name).display().to_string();
        let conf = format!(
            "foreground = yes\npid =\ndebug = 4\n[kafka]\naccept = 127.0.0.1:{}\n\
             connect = 127.0.0.1:{}\ncert = {}\nkey = {}\nCAfile = {}\n\
             verifyChain = yes\nrequireCert = yes\n",
            broker.port,
            broker.plain_port,
            file("server.crt"),
            file("server.key"),
            file("ca.crt")
        );
        let conf_path = broker.dir.path().join("stunnel.conf");
        std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("stunnel.conf: {e}"));
        let log = std::fs::File::create(broker.dir.path().join("stunnel.log"))
            .unwrap_or_else(|e| panic!("stunnel log: {e}"));
        let stunnel = Command::new("stunnel4")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start stunnel4 (apt-get install stunnel4): {e}"));
        broker.stunnel = Some(stunnel);
        broker.tls = Some(certs.to_path_buf());
        let port = broker.port;
        super::wait_for("stunnel to accept connections", START_DEADLINE, || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        broker
    }

    /// A broker that requires SASL SCRAM, with `users` (name, password) known for SHA-512
    /// and SHA-256: created while it runs open, then restarted with `--authentication`.
    /// With `topics`, the seeds' five topics are created before authentication is required.
    pub fn start_with_scram(users: &[(&str, &str)], topics: bool) -> Tansu {
        let mut broker = match topics {
            true => Tansu::start(),
            false => Tansu::empty(),
        };
        let url = format!("tcp://{}", broker.address());
        for (name, password) in users {
            for mechanism in ["scram512", "scram256"] {
                let status = Command::new(binary())
                    .args(["user", "create", "--broker", &url])
                    .args(["--mechanism", mechanism, name, password])
                    .stdout(Stdio::null())
                    .status()
                    .unwrap_or_else(|e| panic!("tansu user create: {e}"));
                assert!(status.success(), "tansu user create {name} failed");
            }
        }
        broker.terminate();
        broker.authentication = true;
        broker.launch();
        broker
    }

    fn unlaunched(port: u16, plain_port: u16) -> Tansu {
        Tansu {
            child: None,
            stunnel: None,
            port,
            plain_port,
            dir: TempDir::new(),
            runs: 0,
            authentication: false,
            tls: None,
        }
    }

    /// `127.0.0.1:port`: where clients connect.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// tansu's own plaintext `127.0.0.1:port` (the same as `address` without TLS).
    pub fn plain_address(&self) -> String {
        format!("127.0.0.1:{}", self.plain_port)
    }

    /// `CARACAL_*` settings pointing Caracal at this broker: lz4 (tansu's sqlite engine cannot
    /// read snappy batches back), short fetch waits and broker checks so tests stay quick.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CARACAL_KAFKA__BROKERS", self.address()),
            ("CARACAL_KAFKA__COMPRESSION", "lz4".into()),
            ("CARACAL_KAFKA__CONSUMER__FETCHMAXWAITMS", "100".into()),
            (
                "CARACAL_KAFKA__PRODUCER__BROKERCHECKINTERVALMS",
                "200".into(),
            ),
            ("CARACAL_KAFKA__PRODUCER__REQUESTTIMEOUTMS", "2000".into()),
        ]
    }

    /// tansu on `plain_port`, advertising `port`, logging to its own file for this run.
    fn launch(&mut self) {
        self.runs += 1;
        let listener = format!("tcp://127.0.0.1:{}", self.plain_port);
        let advertised = format!("tcp://127.0.0.1:{}", self.port);
        let log_path = self.dir.path().join(format!("tansu-{}.log", self.runs));
        let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("tansu log: {e}"));
        let err = log.try_clone().unwrap_or_else(|e| panic!("tansu log: {e}"));
        let mut command = Command::new(binary());
        command
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .env_remove("CLUSTER_ID")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        if self.authentication {
            command.arg("--authentication");
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tansu at {}: {e}", binary().display()));
        self.child = Some(child);
        let port = self.plain_port;
        super::wait_for("tansu to accept connections", START_DEADLINE, || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// Creates each `(name, partitions)` topic with replication 1, through TLS (with the
    /// client certificate) when stunnel fronts tansu: tansu advertises stunnel's port, so a
    /// plaintext client would follow the metadata there and retry forever. Gives up after
    /// [`START_DEADLINE`] rather than hang.
    pub fn create_topics(&self, topics: &[(&str, i32)]) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut builder = rskafka::client::ClientBuilder::new(vec![self.address()]).backoff_config(
            rskafka::BackoffConfig {
                max_backoff: Duration::from_secs(1),
                deadline: Some(START_DEADLINE),
                ..Default::default()
            },
        );
        if let Some(certs) = &self.tls {
            builder = builder.tls_config(std::sync::Arc::new(super::certs::client_tls(certs)));
        }
        runtime.block_on(async {
            let client = tokio::time::timeout(START_DEADLINE * 2, builder.build())
                .await
                .unwrap_or_else(|_| panic!("tansu client: no answer within {START_DEADLINE:?}"))
                .unwrap_or_else(|e| panic!("tansu client: {e}"));
            let controller = client.controller_client().unwrap_or_else(|e| panic!("{e}"));
            for (name, partitions) in topics {
                controller
                    .create_topic(*name, *partitions, 1, 5_000)
                    .await
                    .unwrap_or_else(|e| panic!("create topic {name}: {e}"));
            }
        });
    }

    /// Kills the broker (SIGKILL: acknowledged data survives on sqlite).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The broker again, on the same port and data.
    pub fn start_again(&mut self) {
        self.stop();
        self.launch();
    }

    /// Stops tansu with SIGTERM (it shuts down cleanly in 1–2 s).
    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// The broker's logs of every run so far.
    pub fn log(&self) -> String {
        (1..=self.runs)
            .map(|run| self.dir.path().join(format!("tansu-{run}.log")))
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut stunnel) = self.stunnel.take() {
            let _ = stunnel.kill();
            let _ = stunnel.wait();
        }
        self.stop();
        let log = self.log();
        if log.contains("panicked") && !std::thread::panicking() {
            panic!("tansu panicked:\n{log}");
        }
    }
}
