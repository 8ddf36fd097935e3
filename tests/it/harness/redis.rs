//! A real `redis-server` per test (Debian's package): a free port, no persistence, stopped on
//! drop; a three-primary Redis Cluster of them. `scripts/test.sh` installs it; without it the
//! test fails saying so.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

pub struct RedisServer {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = super::free_port();
        RedisServer::start_with(port, &["--port", &port.to_string()])
    }

    /// TLS only (the plain port closed), with `certs`' CA, server certificate and key (as
    /// `certs::make_certificates` writes them), and a password.
    pub fn start_tls(certs: &std::path::Path, password: &str) -> RedisServer {
        let port = super::free_port();
        let file = |name: &str| certs.join(name).display().to_string();
        let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
        let port_text = port.to_string();
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port_text,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            password,
        ];
        RedisServer::start_with(port, &args)
    }

    /// Stops the server (its data is gone: no persistence).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new, empty server on the same port.
    pub fn start_again(&mut self) {
        self.stop();
        let port = self.port;
        let again = RedisServer::start_with(port, &["--port", &port.to_string()]);
        *self = again;
    }

    fn start_with(port: u16, args: &[&str]) -> RedisServer {
        let dir = TempDir::new();
        let child = Command::new("redis-server")
            .args(args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): run scripts/test.sh, which installs it")
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

    /// The settings that point `caracal` at this server.
    pub fn settings(&self) -> [(&'static str, String); 2] {
        [
            ("CARACAL_REDIS__HOST", "127.0.0.1".to_owned()),
            ("CARACAL_REDIS__PORT", self.port.to_string()),
        ]
    }
}

/// Three primaries made into a Redis Cluster by `redis-cli --cluster create`, stopped on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let port = super::free_port();
                let port_text = port.to_string();
                let args = [
                    "--port",
                    &port_text,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ];
                RedisServer::start_with(port, &args)
            })
            .collect();
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
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): run scripts/test.sh"));
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        let ok = |node: &RedisServer| {
            let info = Command::new("redis-cli")
                .args(["-p", &node.port.to_string(), "cluster", "info"])
                .output()
                .unwrap_or_else(|e| panic!("redis-cli: {e}"));
            String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok")
        };
        super::wait_for("the cluster to be ok", Duration::from_secs(20), || {
            nodes.iter().all(ok).then_some(())
        });
        RedisCluster { nodes }
    }

    /// The settings that point `caracal` at this cluster (one node; the others are found).
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let mut settings: Vec<(&str, String)> = self.nodes[0].settings().into_iter().collect();
        settings.push(("CARACAL_REDIS__CLUSTER", "true".to_owned()));
        settings
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
