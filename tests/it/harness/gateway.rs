//! Gateway fixtures: the mock upstream binary, a gateway process wired to it with one route per
//! provider, and an agent tree with keys and policies made through the real CLI.

pub use super::mock::MockProcess as Mock;
use super::{request, Env, HttpResponse, Server};

/// A gateway in front of `mock`, routes `/openai` and `/anthropic`, plus the admin API.
pub struct Gateway {
    pub env: Env,
    pub server: Server,
    pub port: u16,
}

/// An environment whose config routes `/openai` and `/anthropic` to `mock`, with a test model
/// priced at 1.00 per 1M input tokens and 2.00 per 1M output tokens (so a call's cost in micros
/// is `input + 2 * output`). `settings` are extra `CARACAL_*` variables.
pub fn gateway_env(mock: &Mock, settings: &[(&str, &str)]) -> Env {
    let config = format!(
        "gateway:\n  routes:\n    - {{prefix: /openai, upstream: \"http://{0}\", provider: openai, credentialEnv: MOCK_OPENAI_KEY}}\n    - {{prefix: /anthropic, upstream: \"http://{0}\", provider: anthropic, credentialEnv: MOCK_ANTHROPIC_KEY}}\n",
        mock.addr
    );
    let mut env = Env::new()
        .with("CARACAL_ADMIN__TOKEN", "gateway-test-admin-token")
        .with("MOCK_OPENAI_KEY", "sk-provider-openai")
        .with("MOCK_ANTHROPIC_KEY", "sk-provider-anthropic");
    for (k, v) in settings {
        env = env.with(k, v);
    }
    std::fs::write(env.dir.path().join("caracal.yaml"), config).unwrap_or_else(|e| panic!("{e}"));
    for (provider, model) in [("openai", "mock-gpt"), ("anthropic", "mock-claude")] {
        env.cli(&[
            "pricebook",
            "set",
            "--provider",
            provider,
            "--model",
            model,
            "--input",
            "1.00",
            "--output-price",
            "2.00",
            "--max-output-tokens",
            "64",
        ])
        .ok();
    }
    env
}

impl Gateway {
    /// Starts `caracal serve --role gateway --role admin` on `env`.
    pub fn start(env: Env) -> Gateway {
        Gateway::start_roles(env, &["gateway", "admin"])
    }

    /// Starts `caracal serve` with these roles on `env`.
    pub fn start_roles(env: Env, roles: &[&str]) -> Gateway {
        let port = super::free_port();
        let env = env.with("CARACAL_GATEWAY__SERVICE__HTTPSPORT", &port.to_string());
        let args: Vec<&str> = roles.iter().flat_map(|r| ["--role", r]).collect();
        let server = env.serve(&args);
        Gateway { env, server, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every MeteringEvent on the log, read through the admin API (this process must run the
    /// admin role), oldest first per partition.
    pub fn metering_events(&self) -> Vec<serde_json::Value> {
        let url = self
            .server
            .admin_url("/v1/events/caracal.metering.events?limit=10000");
        let auth = [("Authorization", "Bearer gateway-test-admin-token")];
        let response = request("GET", &url, &auth, None);
        assert_eq!(response.status, 200, "{}", response.body);
        response.json().as_array().cloned().unwrap_or_default()
    }

    /// `caracal_reservations_open` on the telemetry listener, when exported.
    pub fn reservations_open(&self) -> Option<f64> {
        let metrics = request("GET", &self.server.telemetry_url("/metrics"), &[], None).body;
        metrics
            .lines()
            .find(|l| l.starts_with("caracal_reservations_open "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    pub fn post(&self, path: &str, key: &str, body: &str) -> HttpResponse {
        let auth = format!("Bearer {key}");
        request(
            "POST",
            &self.url(path),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(body),
        )
    }
}

/// A parent and a child agent, one key for the child, and one daily policy on each.
/// Prices `openai`/`model` at `per_call` (a decimal, e.g. "0.01") per call.
pub fn flat_price(env: &Env, model: &str, per_call: &str) {
    env.cli(&[
        "pricebook",
        "set",
        "--provider",
        "openai",
        "--model",
        model,
        "--per-call",
        per_call,
    ])
    .ok();
}

pub struct Tree {
    pub parent: String,
    pub child: String,
    pub key: String,
}

pub fn tree(env: &Env, parent_limit: &str, child_limit: &str) -> Tree {
    let id = |args: &[&str]| {
        env.cli(args).json()["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id"))
            .to_owned()
    };
    let parent = id(&["agent", "create", "--name", "team", "--output", "json"]);
    let child = id(&[
        "agent", "create", "--name", "bot", "--parent", &parent, "--output", "json",
    ]);
    env.cli(&[
        "policy",
        "create",
        "--agent-id",
        &parent,
        "--limit",
        parent_limit,
        "--time-window",
        "daily",
    ])
    .ok();
    env.cli(&[
        "policy",
        "create",
        "--agent-id",
        &child,
        "--limit",
        child_limit,
        "--time-window",
        "daily",
    ])
    .ok();
    let key = env
        .cli(&["key", "create", "--agent-id", &child, "--output", "json"])
        .json()["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret"))
        .to_owned();
    Tree { parent, child, key }
}
