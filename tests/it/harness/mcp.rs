//! MCP fixtures: the upstream MCP server written with the official SDK
//! (`tests/python/mcp_upstream.py`), an environment whose adapter fronts it as server `tools`
//! with priced tools, an agent allowed a few of them, and the SDK client script.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{free_port, request, wait_for, Env, Server};

/// The upstream's own credential, which only Caracal holds.
pub const UPSTREAM_TOKEN: &str = "srv-upstream-token";
pub const ADMIN: &str = "Bearer mcp-test-admin-token";
/// Per-call prices in micros, as set in the pricebook.
pub const SEARCH: i64 = 10_000;
pub const FETCH_PAGE: i64 = 50_000;
pub const SLOW_REPORT: i64 = 100_000;
pub const ECHO: i64 = 1_000;

pub fn python() -> String {
    std::env::var("CARACAL_PYTHON").unwrap_or_else(|_| {
        panic!("CARACAL_PYTHON is not set: run the suite with scripts/test.sh, which prepares .venv with the SDKs")
    })
}

fn script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The SDK upstream server on a free port; killed on drop.
pub struct Upstream {
    child: Child,
    pub port: u16,
}

impl Upstream {
    pub fn start() -> Upstream {
        let port = free_port();
        let child = Command::new(python())
            .args([
                &script("mcp_upstream.py"),
                &port.to_string(),
                UPSTREAM_TOKEN,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the upstream MCP server: {e}"));
        let upstream = Upstream { child, port };
        wait_for("the upstream MCP server", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        upstream
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// What the server saw (`/stats`).
    pub fn stats(&self) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}/stats", self.port);
        request("GET", &url, &[], None).json()
    }

    pub fn calls(&self, tool: &str) -> i64 {
        self.stats()["calls"][tool].as_i64().unwrap_or(0)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An environment whose adapter fronts `upstream` as server `tools` on a free port, with
/// `search`, `fetch_page`, `slow_report`, `echo` and `delete_all` priced per call.
pub fn mcp_env(upstream: &Upstream, env: Env) -> (Env, u16) {
    let port = free_port();
    let config = format!(
        "mcpAdapter:\n  port: {port}\n  servers:\n    - {{name: tools, url: \"{}\", credentialEnv: MCP_UPSTREAM_TOKEN}}\n",
        upstream.url()
    );
    std::fs::write(env.dir.path().join("caracal.yaml"), config).unwrap_or_else(|e| panic!("{e}"));
    let env = env
        .with("CARACAL_ADMIN__TOKEN", "mcp-test-admin-token")
        .with("MCP_UPSTREAM_TOKEN", UPSTREAM_TOKEN);
    (env, port)
}

/// Sets the tools' prices (once per store).
pub fn price_tools(env: &Env) {
    for (tool, price) in [
        ("search", "0.01"),
        ("fetch_page", "0.05"),
        ("slow_report", "0.10"),
        ("echo", "0.001"),
        ("delete_all", "1.00"),
    ] {
        let model = format!("tools/{tool}");
        env.cli(&[
            "pricebook",
            "set",
            "--provider",
            "mcp",
            "--model",
            &model,
            "--per-call",
            price,
        ])
        .ok();
    }
}

/// An agent with one daily policy of `limit`, allowed `allow` globs, and its key.
pub fn agent(env: &Env, name: &str, limit: &str, allow: &[&str]) -> (String, String) {
    let id = env
        .cli(&["agent", "create", "--name", name, "--output", "json"])
        .json()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id"))
        .to_owned();
    let mut args = vec![
        "policy",
        "create",
        "--agent-id",
        &id,
        "--limit",
        limit,
        "--time-window",
        "daily",
    ];
    for glob in allow {
        args.extend(["--allow", glob]);
    }
    env.cli(&args).ok();
    let key = env
        .cli(&["key", "create", "--agent-id", &id, "--output", "json"])
        .json()["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret"))
        .to_owned();
    (id, key)
}

/// The metering events the adapter published (admin API).
pub fn metering_events(server: &Server) -> Vec<serde_json::Value> {
    let url = server.admin_url("/v1/events/caracal.metering.events?limit=10000");
    let response = request("GET", &url, &[("Authorization", ADMIN)], None);
    assert_eq!(response.status, 200, "{}", response.body);
    response.json().as_array().cloned().unwrap_or_default()
}

/// `caracal_reservations_open` on the adapter's own `/metrics`.
pub fn reservations_open(port: u16) -> f64 {
    let metrics = request(
        "GET",
        &format!("http://127.0.0.1:{port}/metrics"),
        &[],
        None,
    )
    .body;
    metrics
        .lines()
        .find(|l| l.starts_with("caracal_reservations_open "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Runs `mcp_calls.py` with `args` and returns its JSON; fails with its stderr and the log.
pub fn sdk(args: &[&str], server: &Server) -> serde_json::Value {
    let output: Output = Command::new(python())
        .arg(script("mcp_calls.py"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the SDK script: {e}"));
    assert!(
        output.status.success(),
        "SDK script {args:?} failed:\n{}\nlog:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "SDK output is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}
