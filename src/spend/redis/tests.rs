//! The `SpendCache` conformance suite on a real Redis (Debian's `redis-server`, one per test on
//! a free port, no persistence), plus what only Redis has: the eviction-policy refusal, a server
//! that goes away and comes back, and holds shared by two caches (two gateway replicas).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{RedisLimits, RedisSpend, RedisTarget};
use crate::spend::conformance::{self, Harness};
use crate::spend::{SpendCache, SpendError, SpendRecord};

/// A `redis-server` of this test, stopped on drop.
pub(crate) struct RedisServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub(crate) fn start(extra: &[&str]) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        RedisServer::spawn(port, extra)
    }

    /// `redis-server` on `port` with `extra` arguments, once it accepts connections.
    fn spawn(port: u16, extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let port_text = port.to_string();
        let mut args = vec![
            "--port",
            &port_text,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        args.extend_from_slice(extra);
        let child = Command::new("redis-server")
            .args(&args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it (apt-get install redis-server; scripts/test.sh does)")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        RedisServer {
            child,
            port,
            _dir: dir,
        }
    }

    pub(crate) fn target(&self) -> RedisTarget {
        RedisTarget {
            url: None,
            host: "127.0.0.1".into(),
            port: self.port,
            password: None,
            cluster: false,
            tls: None,
        }
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) struct RedisHarness {
    server: RedisServer,
}

/// The limits of a test: no grace after a new epoch (one process, nothing to wait for).
pub(super) fn limits() -> RedisLimits {
    RedisLimits {
        rebuild_grace_ms: 0,
        ..RedisLimits::default()
    }
}

pub(super) fn nothing() -> Arc<dyn SpendRecord> {
    Arc::new(conformance::NothingRecorded)
}

async fn open(server: &RedisServer) -> RedisSpend {
    RedisSpend::open(&server.target(), limits(), nothing())
        .await
        .unwrap()
}

#[async_trait]
impl Harness for RedisHarness {
    async fn open() -> (Self, Arc<dyn SpendCache>) {
        let server = RedisServer::start(&[]);
        let spend = open(&server).await;
        (RedisHarness { server }, Arc::new(spend))
    }

    async fn restart(&self, cache: Arc<dyn SpendCache>) -> Arc<dyn SpendCache> {
        drop(cache);
        Arc::new(open(&self.server).await)
    }
}

crate::spend_conformance!(conformance_on_redis, super::RedisHarness);

/// Three primaries made into a Redis Cluster by `redis-cli --cluster create`.
pub(crate) struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub(crate) fn start() -> RedisCluster {
        let cluster = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ];
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start(&cluster)).collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): install redis-tools"));
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not become ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    pub(crate) fn target(&self) -> RedisTarget {
        RedisTarget {
            cluster: true,
            ..self.nodes[0].target()
        }
    }
}

pub(crate) struct ClusterHarness {
    cluster: RedisCluster,
}

#[async_trait]
impl Harness for ClusterHarness {
    async fn open() -> (Self, Arc<dyn SpendCache>) {
        let cluster = RedisCluster::start();
        let spend = RedisSpend::open(&cluster.target(), limits(), nothing())
            .await
            .unwrap();
        (ClusterHarness { cluster }, Arc::new(spend))
    }

    async fn restart(&self, cache: Arc<dyn SpendCache>) -> Arc<dyn SpendCache> {
        drop(cache);
        let target = self.cluster.target();
        Arc::new(
            RedisSpend::open(&target, limits(), nothing())
                .await
                .unwrap(),
        )
    }
}

crate::spend_conformance!(conformance_on_redis_cluster, super::ClusterHarness);

#[tokio::test]
async fn a_redis_that_may_evict_keys_is_refused_with_what_to_set() {
    let server = RedisServer::start(&["--maxmemory-policy", "allkeys-lru"]);
    match RedisSpend::open(&server.target(), limits(), nothing()).await {
        Err(SpendError::Invalid(message)) => {
            assert!(message.contains("allkeys-lru"), "{message}");
            assert!(message.contains("noeviction"), "{message}");
        }
        Err(other) => panic!("expected a refusal naming the policy, got {other}"),
        Ok(_) => panic!("allkeys-lru must be refused"),
    }
}

#[tokio::test]
async fn a_redis_that_goes_away_fails_calls_within_the_deadline_and_serves_again_when_back() {
    let mut server = RedisServer::start(&[]);
    let limits = RedisLimits {
        command_timeout_ms: 300,
        ..limits()
    };
    let spend = RedisSpend::open(&server.target(), limits, nothing())
        .await
        .unwrap();
    let now = conformance::utc("2026-03-10T12:00:00Z");
    let policies = [conformance::daily(10, 2, 1_000)];
    conformance::reserved(
        &spend,
        conformance::request(&conformance::child(2), &policies, 10, now),
    )
    .await;
    let port = server.port;
    server.stop();
    let started = Instant::now();
    let refused = spend
        .reserve(conformance::request(
            &conformance::child(2),
            &policies,
            10,
            now,
        ))
        .await;
    assert!(
        matches!(refused, Err(SpendError::Unavailable(_))),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let _back = RedisServer::restart_on(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if spend.ping().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the cache did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A Redis that came back empty holds nothing: the hold made before is gone with it.
    assert!(
        conformance::is_allowed(
            &spend,
            conformance::request(&conformance::child(2), &policies, 10, now)
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_caches_on_one_redis_share_one_budget_exactly() {
    let server = RedisServer::start(&[]);
    let (a, b) = (Arc::new(open(&server).await), Arc::new(open(&server).await));
    let now = conformance::utc("2026-03-10T12:00:00Z");
    let policies = vec![
        conformance::daily(12, 2, 50_000),
        conformance::daily(11, 1, 70_000),
    ];
    let mut tasks = Vec::new();
    for i in 0..400 {
        let spend: Arc<RedisSpend> = if i % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        let policies = policies.clone();
        tasks.push(tokio::spawn(async move {
            let req = conformance::request(&conformance::child(2), &policies, 1_000, now);
            conformance::is_allowed(spend.as_ref(), req).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.unwrap());
    }
    assert_eq!(won, 50);
    assert_eq!(
        conformance::usage(a.as_ref(), &policies, now).await,
        vec![(0, 50_000), (0, 50_000)]
    );
}

impl RedisServer {
    /// A new, empty server on a port a stopped one used.
    fn restart_on(port: u16) -> RedisServer {
        RedisServer::spawn(port, &[])
    }
}
