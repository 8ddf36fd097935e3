//! The mock OpenAI/Anthropic upstream (`caracal-mock-upstream`) as a process for integration
//! tests: started on a free port read from its `listening on ADDR` line, killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::request;

pub struct MockProcess {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl MockProcess {
    /// Starts the mock with extra flags (`--output-tokens`, `--latency-ms`, ...).
    pub fn start(args: &[&str]) -> MockProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_caracal-mock-upstream"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start caracal-mock-upstream: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading the mock's first line: {e}"));
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the mock: {line:?}"))
            .to_owned();
        MockProcess { child, addr }
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /_mock/stats`.
    pub fn stats(&self) -> serde_json::Value {
        request("GET", &self.url("/_mock/stats"), &[], None).json()
    }

    /// Requests the mock has served (its own `/_mock/*` endpoints excluded).
    pub fn requests(&self) -> u64 {
        let stats = self.stats();
        stats["requests"]
            .as_u64()
            .unwrap_or_else(|| panic!("stats without requests: {stats}"))
    }

    /// `POST /_mock/reset`.
    pub fn reset(&self) {
        assert_eq!(
            request("POST", &self.url("/_mock/reset"), &[], None).status,
            200
        );
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
