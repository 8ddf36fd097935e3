//! A real `redis-server` per test (Debian's package): a free port, no persistence, stopped on
//! drop. `scripts/test.sh` installs it; without it the test fails saying so.

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

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
