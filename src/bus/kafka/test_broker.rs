//! Test code only: a real tansu broker (Kafka protocol, sqlite engine) per test on a free
//! port in a temporary folder, for the bus conformance suite. `scripts/test.sh` installs tansu
//! and exports `CARACAL_TANSU`; without it the test fails saying so. Topics are created with
//! rskafka (tansu has no auto-creation); DeleteTopics is never sent (tansu deletes them all).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tansu binary: `$CARACAL_TANSU`, else the cached install `scripts/test.sh` makes.
pub(crate) fn tansu_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("CARACAL_TANSU") {
        return path.into();
    }
    let root = std::env::var_os("CARACAL_TOOLS_ROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            std::path::PathBuf::from(home).join(".cache/caracal/tools")
        });
    root.join("bin/tansu")
}

/// A running broker; killed (and its log checked for panics) on drop.
pub(crate) struct TestBroker {
    child: Child,
    pub address: String,
    dir: tempfile::TempDir,
}

impl TestBroker {
    pub fn start() -> TestBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("tansu.log")).unwrap();
        let binary = tansu_binary();
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start tansu at {} ({e}): run scripts/test.sh, which installs it",
                    binary.display()
                )
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
        TestBroker {
            child,
            address: format!("127.0.0.1:{port}"),
            dir,
        }
    }

    /// Creates `name` with `partitions` partitions (replication 1).
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let client = rskafka::client::ClientBuilder::new(vec![self.address.clone()])
            .build()
            .await
            .unwrap();
        let controller = client.controller_client().unwrap();
        controller
            .create_topic(name, partitions, 1, 5_000)
            .await
            .unwrap();
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default();
        if log.contains("panicked") && !std::thread::panicking() {
            panic!("tansu panicked:\n{log}");
        }
    }
}
