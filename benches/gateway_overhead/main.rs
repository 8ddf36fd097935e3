//! Open-loop load generator: a fixed request rate against the upstream directly, then through
//! a no-logic reverse proxy (nginx: the limit of one proxy hop here) and through the gateway,
//! in the same run, reporting p50/p99/p99.9 latency, the latency each adds, its CPU per request
//! and the gateway's ratio to the proxy. Latency runs from each request's scheduled send time
//! to the last byte of the answer, so a stalled server cannot hide its queue.

mod compare;
mod cpu;
mod load;
mod report;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use argh::FromArgs;
use bytes::Bytes;

use compare::{bench, LIMIT, SUBJECT};
use load::{run, Plan, Target};

/// Open-loop gateway overhead bench. Every option falls back to its CARACAL_BENCH_* variable.
/// Without --direct-url the mock upstream runs in-process. Also read: CARACAL_BENCH_GATEWAY_KEY
/// (sent as `Authorization: Bearer KEY` to the gateway), CARACAL_BENCH_GATEWAY_PID and
/// CARACAL_BENCH_PROXY_PID (their RSS and CPU are reported), CARACAL_BENCH_MOCK_PID (an
/// out-of-process mock's CPU is reported), CARACAL_BENCH_CLIENT_THREADS and
/// CARACAL_BENCH_MOCK_THREADS (tokio workers, 2).
#[derive(FromArgs)]
struct Args {
    /// comma-separated request rates per second (CARACAL_BENCH_RATES; 1000,5000,10000)
    #[argh(option)]
    rates: Option<String>,
    /// measured seconds per rate and target (CARACAL_BENCH_DURATION_S; 10)
    #[argh(option)]
    duration_s: Option<f64>,
    /// unmeasured warm-up seconds before each run (CARACAL_BENCH_WARMUP_S; 1)
    #[argh(option)]
    warmup_s: Option<f64>,
    /// keep-alive HTTP/1.1 connections per target (CARACAL_BENCH_CONNECTIONS; 32)
    #[argh(option)]
    connections: Option<usize>,
    /// full URL of the upstream call (CARACAL_BENCH_DIRECT_URL; in-process mock)
    #[argh(option)]
    direct_url: Option<String>,
    /// full URL of the same call through the gateway (CARACAL_BENCH_GATEWAY_URL; skipped)
    #[argh(option)]
    gateway_url: Option<String>,
    /// full URL of the same call through a no-logic reverse proxy, the limit
    /// (CARACAL_BENCH_PROXY_URL; skipped)
    #[argh(option)]
    proxy_url: Option<String>,
    /// comma-separated rates of the streaming case, latency to the last byte
    /// (CARACAL_BENCH_STREAM_RATES; none)
    #[argh(option)]
    stream_rates: Option<String>,
    /// JSON request body (CARACAL_BENCH_BODY; a short chat completion)
    #[argh(option)]
    body: Option<String>,
    /// per-request timeout in milliseconds (CARACAL_BENCH_TIMEOUT_MS; 10000)
    #[argh(option)]
    timeout_ms: Option<u64>,
}

const DEFAULT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the benchmark"}],"max_tokens":16}"#;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_parse<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>> {
    match env(name) {
        None => Ok(None),
        Some(v) => match v.trim().parse() {
            Ok(parsed) => Ok(Some(parsed)),
            Err(_) => bail!("{name}={v} is not a valid value"),
        },
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo test` runs this too, without `--bench` and with libtest's flags: smoke run only.
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            env_parse("CARACAL_BENCH_CLIENT_THREADS")?
                .unwrap_or(2)
                .max(1),
        )
        .enable_all()
        .build()?;
    if smoke {
        return smoke_test(&runtime);
    }
    let args = parse_args()?;
    let plan = plan(&args)?;
    // The in-process mock gets its own threads so it does not share the client's scheduler.
    let mock_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_parse("CARACAL_BENCH_MOCK_THREADS")?.unwrap_or(2).max(1))
        .enable_all()
        .thread_name("mock-upstream")
        .build()?;
    let direct_url = args
        .direct_url
        .clone()
        .or_else(|| env("CARACAL_BENCH_DIRECT_URL"));
    let (direct, mock) = direct_target(direct_url, &mock_runtime)?;
    let gateway = gateway_target(&args)?;
    let proxy = proxy_target(&args)?;
    println!(
        "gateway_overhead: open loop, {} keep-alive connections per target, {:.1} s per run \
         (+{:.1} s warm-up), {} B body",
        plan.connections,
        plan.duration.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        plan.body.len()
    );
    println!(
        "direct:  {}{}",
        direct.uri,
        if mock.is_some() {
            " (in-process mock)"
        } else {
            ""
        }
    );
    match &proxy {
        Some(p) => println!("{LIMIT}:   {}", p.uri),
        None => println!("{LIMIT}:   skipped (CARACAL_BENCH_PROXY_URL is unset)"),
    }
    match &gateway {
        Some(g) => println!("{SUBJECT}: {}", g.uri),
        None => println!("{SUBJECT}: skipped (CARACAL_BENCH_GATEWAY_URL is unset)"),
    }
    let mut proxies = Vec::new();
    if let Some(target) = proxy {
        proxies.push((target, env("CARACAL_BENCH_PROXY_PID")));
    }
    if let Some(target) = gateway {
        proxies.push((target, env("CARACAL_BENCH_GATEWAY_PID")));
    }
    let mock_pid = env("CARACAL_BENCH_MOCK_PID");
    runtime.block_on(bench(&plan, &direct, &proxies, mock_pid.as_deref()))?;
    drop(mock);
    Ok(())
}

/// The arguments less the `--bench` that `cargo bench` appends.
fn parse_args() -> anyhow::Result<Args> {
    let all: Vec<String> = std::env::args().collect();
    let command = all.first().map_or("gateway_overhead", String::as_str);
    let rest: Vec<&str> = all
        .iter()
        .skip(1)
        .map(String::as_str)
        .filter(|arg| *arg != "--bench")
        .collect();
    match Args::from_args(&[command], &rest) {
        Ok(args) => Ok(args),
        Err(exit) if exit.status.is_ok() => {
            println!("{}", exit.output);
            std::process::exit(0)
        }
        Err(exit) => bail!("{}", exit.output.trim()),
    }
}

/// A comma-separated list of positive rates.
fn rate_list(list: &str) -> anyhow::Result<Vec<f64>> {
    let rates = list
        .split(',')
        .filter(|r| !r.trim().is_empty())
        .map(|r| r.trim().parse::<f64>().context("rates must be numbers"))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    if rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        bail!("rates must be positive");
    }
    Ok(rates)
}

fn plan(args: &Args) -> anyhow::Result<Plan> {
    let rates = match args.rates.clone().or_else(|| env("CARACAL_BENCH_RATES")) {
        None => vec![1000.0, 5000.0, 10000.0],
        Some(list) => rate_list(&list)?,
    };
    let stream_rates = match args
        .stream_rates
        .clone()
        .or_else(|| env("CARACAL_BENCH_STREAM_RATES"))
    {
        None => Vec::new(),
        Some(list) => rate_list(&list)?,
    };
    let seconds = |arg: Option<f64>, var: &str, default: f64| -> anyhow::Result<Duration> {
        let s = arg.or(env_parse(var)?).unwrap_or(default);
        Duration::try_from_secs_f64(s).with_context(|| format!("{var} must be >= 0"))
    };
    let body = args.body.clone().or_else(|| env("CARACAL_BENCH_BODY"));
    Ok(Plan {
        rates,
        stream_rates,
        duration: seconds(args.duration_s, "CARACAL_BENCH_DURATION_S", 10.0)?,
        warmup: seconds(args.warmup_s, "CARACAL_BENCH_WARMUP_S", 1.0)?,
        connections: args
            .connections
            .or(env_parse("CARACAL_BENCH_CONNECTIONS")?)
            .unwrap_or(32)
            .max(1),
        body: Bytes::from(body.unwrap_or_else(|| DEFAULT_BODY.to_owned())),
        timeout: Duration::from_millis(
            args.timeout_ms
                .or(env_parse("CARACAL_BENCH_TIMEOUT_MS")?)
                .unwrap_or(10_000),
        ),
    })
}

/// The direct target: the given URL, or an in-process mock (kept alive by the returned handle).
fn direct_target(
    url: Option<String>,
    mock_runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<(Target, Option<caracal::mock::MockUpstream>)> {
    let authorization = "Bearer sk-bench-direct".to_owned();
    if let Some(url) = url {
        let uri = http_uri(&url).context("direct URL")?;
        return Ok((
            Target {
                name: "direct",
                uri,
                authorization,
            },
            None,
        ));
    }
    let mock = mock_runtime.block_on(caracal::mock::MockUpstream::start(
        ([127, 0, 0, 1], 0).into(),
        caracal::mock::MockConfig::default(),
    ))?;
    let uri = format!("{}/v1/chat/completions", mock.url()).parse()?;
    Ok((
        Target {
            name: "direct",
            uri,
            authorization,
        },
        Some(mock),
    ))
}

/// A plain-HTTP URL with a host (the bench speaks no TLS).
fn http_uri(url: &str) -> anyhow::Result<hyper::Uri> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        bail!("{url}: only http://HOST[:PORT]/PATH URLs are supported");
    }
    Ok(uri)
}

fn gateway_target(args: &Args) -> anyhow::Result<Option<Target>> {
    let Some(url) = args
        .gateway_url
        .clone()
        .or_else(|| env("CARACAL_BENCH_GATEWAY_URL"))
    else {
        return Ok(None);
    };
    let key = env("CARACAL_BENCH_GATEWAY_KEY").unwrap_or_default();
    Ok(Some(Target {
        name: SUBJECT,
        uri: http_uri(&url).context("gateway URL")?,
        authorization: format!("Bearer {key}"),
    }))
}

/// The no-logic reverse proxy in front of the same mock, sent what the direct target is sent.
fn proxy_target(args: &Args) -> anyhow::Result<Option<Target>> {
    let Some(url) = args
        .proxy_url
        .clone()
        .or_else(|| env("CARACAL_BENCH_PROXY_URL"))
    else {
        return Ok(None);
    };
    Ok(Some(Target {
        name: LIMIT,
        uri: http_uri(&url).context("proxy URL")?,
        authorization: "Bearer sk-bench-direct".to_owned(),
    }))
}

/// Under `cargo test` (no `--bench`): a quarter second at 200/s against the in-process mock,
/// reported in libtest's format, so the bench cannot rot unnoticed.
fn smoke_test(runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    println!("\nrunning 1 test");
    let started = Instant::now();
    let plan = Plan {
        rates: vec![200.0],
        stream_rates: Vec::new(),
        duration: Duration::from_millis(250),
        warmup: Duration::ZERO,
        connections: 4,
        body: Bytes::from_static(DEFAULT_BODY.as_bytes()),
        timeout: Duration::from_secs(10),
    };
    let outcome = direct_target(None, runtime)
        .map(|(direct, _mock)| runtime.block_on(run(&plan, &direct, 200.0)));
    let ok = match &outcome {
        Ok(run) => run.errors.total() == 0 && run.latencies_ns.len() as u64 == run.scheduled,
        Err(_) => false,
    };
    let verdict = if ok { "ok" } else { "FAILED" };
    println!("test gateway_overhead_smoke ... {verdict}\n");
    let (passed, failed) = if ok { (1, 0) } else { (0, 1) };
    println!(
        "test result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; \
         0 filtered out; finished in {:.2}s\n",
        started.elapsed().as_secs_f64()
    );
    match outcome {
        Ok(_) if ok => Ok(()),
        Ok(run) => bail!(
            "smoke run: {} of {} requests ok, {} errors",
            run.latencies_ns.len(),
            run.scheduled,
            run.errors.total()
        ),
        Err(e) => Err(e),
    }
}
