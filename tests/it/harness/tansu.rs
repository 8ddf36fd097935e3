//! A real Kafka-protocol broker per test: tansu (`scripts/test.sh` installs it and exports
//! `CARACAL_TANSU`) on a free port, its sqlite engine in a temporary folder, stopped and
//! started again on the same data for a broker restart. Topics are created through rskafka
//! (tansu creates none by itself); DeleteTopics is never sent (tansu would delete them all).
//! Its log is checked for `panicked` when it stops.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

/// The tansu binary: `$CARACAL_TANSU`, else the cached install of `scripts/test.sh`.
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
    root.join("bin/tansu")
}

pub struct Tansu {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
    /// Logs of the runs before a restart, checked at the end too.
    runs: usize,
}

impl Tansu {
    /// A broker with the seeds' five topics at their partition counts.
    pub fn start() -> Tansu {
        let mut broker = Tansu {
            child: None,
            port: super::free_port(),
            dir: TempDir::new(),
            runs: 0,
        };
        broker.launch();
        let topics: Vec<(&str, i32)> = caracal::core::events::TOPICS
            .iter()
            .map(|t| (t.name, t.partitions))
            .collect();
        broker.create_topics(&topics);
        broker
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
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

    fn launch(&mut self) {
        self.runs += 1;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log_path = self.dir.path().join(format!("tansu-{}.log", self.runs));
        let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("tansu log: {e}"));
        let err = log.try_clone().unwrap_or_else(|e| panic!("tansu log: {e}"));
        let child = Command::new(binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .env_remove("CLUSTER_ID")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start tansu at {} ({e}): run scripts/test.sh, which installs it",
                    binary().display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Creates each `(name, partitions)` topic with replication 1.
    pub fn create_topics(&self, topics: &[(&str, i32)]) {
        let address = self.address();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        runtime.block_on(async {
            let client = rskafka::client::ClientBuilder::new(vec![address])
                .build()
                .await
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

    fn panics(&self) -> Option<String> {
        (1..=self.runs)
            .map(|run| self.dir.path().join(format!("tansu-{run}.log")))
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .find(|log| log.contains("panicked"))
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
        if let Some(log) = self.panics() {
            if !std::thread::panicking() {
                panic!("tansu panicked:\n{log}");
            }
        }
    }
}
