//! Test harness: runs the real `caracal` binary (as a server or as a CLI command) on free
//! ports with a temporary data dir, waits for readiness by polling, and kills it on drop.

#![allow(dead_code)]

pub mod certs;
pub mod events;
pub mod gateway;
pub mod mcp;
pub mod mock;
pub mod postgres;
pub mod redis;
pub mod tansu;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How many times `serve` picks new ports when one was taken before `caracal` bound it.
const PORT_ATTEMPTS: usize = 3;
/// How long a server gets to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// Poll interval while waiting for a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// The Python of the venv `scripts/test.sh` prepares with the official clients.
pub fn python() -> String {
    std::env::var("CARACAL_PYTHON").unwrap_or_else(|_| {
        panic!("CARACAL_PYTHON is not set: run the suite with scripts/test.sh, which prepares .venv with the SDKs")
    })
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_caracal")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Polls `check` until it returns Some or the deadline passes.
pub fn wait_for<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A temporary directory that is removed on drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new() -> TempDir {
        TempDir(tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")))
    }
    /// A temporary directory under `parent`.
    pub fn new_in(parent: &Path) -> TempDir {
        TempDir(tempfile::tempdir_in(parent).unwrap_or_else(|e| panic!("tempdir: {e}")))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// The result of one CLI invocation.
pub struct CliRun {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.status, 0,
            "command failed: stderr={} stdout={}",
            self.stderr, self.stdout
        );
        &self.stdout
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Asserts a user error: non-zero exit, exactly one line on stderr, no panic or backtrace.
    pub fn user_error(&self) -> &str {
        assert_ne!(
            self.status, 0,
            "expected failure, got success: {}",
            self.stdout
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one stderr line, got: {:?}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        assert!(
            !self.stderr.contains("RUST_BACKTRACE"),
            "backtrace hint: {}",
            self.stderr
        );
        lines[0]
    }
}

/// A Caracal environment: a data dir and (optionally) a config file and env overrides, shared
/// by CLI invocations and servers started from it.
pub struct Env {
    pub dir: TempDir,
    pub vars: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Env {
        let dir = TempDir::new();
        let data = dir.path().join("data");
        Env {
            vars: vec![("CARACAL_DATADIR".into(), data.display().to_string())],
            dir,
        }
    }

    /// Another process's environment on the same data dir and config (a second replica on the
    /// same host): its own working dir, the same `caracal.yaml` and variables.
    pub fn sibling(&self) -> Env {
        let dir = TempDir::new();
        let config = self.dir.path().join("caracal.yaml");
        if config.exists() {
            std::fs::copy(&config, dir.path().join("caracal.yaml"))
                .unwrap_or_else(|e| panic!("copy caracal.yaml: {e}"));
        }
        Env {
            vars: self.vars.clone(),
            dir,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.vars
            .iter()
            .find(|(k, _)| k == "CARACAL_DATADIR")
            .map_or_else(|| self.dir.path().join("data"), |(_, v)| PathBuf::from(v))
    }

    pub fn with(mut self, key: &str, value: &str) -> Env {
        self.vars.push((key.into(), value.into()));
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(binary());
        cmd.current_dir(self.dir.path());
        cmd.env_clear();
        for key in ["PATH", "HOME", "USER"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        cmd.env("RUST_LOG", "warn");
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `caracal <args>` to completion.
    pub fn cli(&self, args: &[&str]) -> CliRun {
        let output: Output = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run caracal: {e}"));
        CliRun {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs `caracal <args>`, which must exit within `deadline` (a command expected to refuse
    /// to start, which would otherwise run forever); killed and failed if it does not.
    pub fn cli_within(&self, args: &[&str], deadline: Duration) -> CliRun {
        let mut child = self.cli_child(args);
        let exited = {
            let child = &mut child;
            let start = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break true;
                }
                if start.elapsed() > deadline {
                    break false;
                }
                std::thread::sleep(POLL_INTERVAL);
            }
        };
        if !exited {
            let _ = child.kill();
            let run = CliRun::wait(child);
            panic!(
                "caracal {args:?} still ran after {deadline:?}; stderr: {}",
                run.stderr
            );
        }
        CliRun::wait(child)
    }

    /// Starts `caracal <args>` without waiting; stdout and stderr are piped.
    pub fn cli_child(&self, args: &[&str]) -> Child {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run caracal: {e}"))
    }

    /// Starts `caracal serve <args>` on free ports and waits until `/ready` answers 200. A port
    /// that was free when picked can be taken by another test's process before `caracal` binds
    /// it: then `caracal` exits saying so, and it is started again on other ports.
    pub fn serve(&self, args: &[&str]) -> Server {
        for _ in 1..PORT_ATTEMPTS {
            if let Some(server) = self.try_serve(args) {
                return server;
            }
        }
        self.try_serve(args)
            .unwrap_or_else(|| panic!("caracal found its ports taken {PORT_ATTEMPTS} times"))
    }

    /// `serve`, or `None` when a port was taken before `caracal` could bind it.
    fn try_serve(&self, args: &[&str]) -> Option<Server> {
        let admin_port = free_port();
        let telemetry_port = free_port();
        let log = self.dir.path().join(format!("serve-{admin_port}.log"));
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("log file: {e}"));
        let err_file = log_file
            .try_clone()
            .unwrap_or_else(|e| panic!("log file: {e}"));
        let mut cmd = self.command();
        cmd.env("RUST_LOG", "info")
            .env("CARACAL_ADMIN__PORT", admin_port.to_string())
            .env("CARACAL_TELEMETRY__PORT", telemetry_port.to_string())
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start caracal: {e}"));
        let mut server = Server {
            child,
            admin_port,
            telemetry_port,
            log,
        };
        server.wait_ready().then_some(server)
    }
}

impl CliRun {
    /// Waits for a child started by [`Env::cli_child`].
    pub fn wait(child: Child) -> CliRun {
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for caracal: {e}"));
        CliRun {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A running `caracal serve`; killed on drop.
pub struct Server {
    child: Child,
    pub admin_port: u16,
    pub telemetry_port: u16,
    pub log: PathBuf,
}

impl Server {
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn telemetry_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.telemetry_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until this process listens on its telemetry port (its log says so: a `/ready`
    /// from another process that took the port would mislead) and `/ready` answers 200.
    /// `false` when it exited because one of its ports was taken.
    fn wait_ready(&mut self) -> bool {
        let url = self.telemetry_url("/ready");
        let listening = format!(":{}", self.telemetry_port);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log();
                if log.contains("cannot listen on") && log.contains("in use") {
                    return false;
                }
                panic!("caracal exited early with {status}; log:\n{log}");
            }
            let ours = self
                .log()
                .lines()
                .any(|l| l.contains("telemetry listening") && l.contains(&listening));
            if ours && blocking_get(&url).is_ok_and(|status| status == 200) {
                return true;
            }
            if start.elapsed() > READY_DEADLINE {
                panic!(
                    "caracal not ready after {READY_DEADLINE:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Kills the process with SIGKILL (no chance to flush anything) and waits for it.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> i32 {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let child = &mut self.child;
        wait_for(
            "caracal to exit after SIGTERM",
            Duration::from_secs(20),
            || {
                child
                    .try_wait()
                    .ok()
                    .flatten()
                    .map(|s| s.code().unwrap_or(-1))
            },
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP/1.1 GET returning the status code (for readiness polling).
fn blocking_get(url: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    stream.read_to_string(&mut buf)?;
    buf.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed response"))
}

/// A response read by `request`.
pub struct HttpResponse {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// A minimal blocking HTTP/1.1 client for plain-HTTP admin and telemetry endpoints.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream =
        std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("{e}"));
    let body = body.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .unwrap_or_else(|e| panic!("write: {e}"));
    stream
        .write_all(body.as_bytes())
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .unwrap_or_else(|e| panic!("read: {e}"));
    let (headers, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("malformed response: {raw}"));
    HttpResponse {
        status,
        headers: headers.to_owned(),
        body: body.to_owned(),
    }
}
