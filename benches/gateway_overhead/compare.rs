//! One comparison run: at every rate (then every streaming rate) the direct run, then each
//! proxy's (nginx, then the gateway) with its process's CPU and RSS metered, printed as they
//! end, then the summary. Knows the order of runs, not how a run loads or how it is reported.

use std::time::Duration;

use bytes::Bytes;

use crate::cpu;
use crate::load::{run, Plan, Target};
use crate::report::{self, print_added, print_run, rss, rss_kb, Case, Sample};

/// The streaming case's body: the same call as server-sent events with the usage chunk.
const STREAM_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the benchmark"}],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}"#;
/// What the gateway is called in the report, and the proxy it is compared with.
pub const SUBJECT: &str = "caracal";
pub const LIMIT: &str = "nginx";

/// `(name, pid)` of every process to meter during a run of one proxy: the proxy, the mock (in
/// this process when it has no pid of its own) and this generator.
fn metered<'a>(
    proxy: Option<(&'static str, &'a str)>,
    mock: Option<&'a str>,
) -> Vec<(&'static str, &'a str)> {
    let mut all: Vec<(&'static str, &str)> = proxy.into_iter().collect();
    match mock {
        Some(pid) => {
            all.push(("mock", pid));
            all.push(("generator", "self"));
        }
        None => all.push(("generator + in-process mock", "self")),
    }
    all
}

/// Every rate (then every streaming rate): direct, then each proxy, each proxy's added latency,
/// CPU and RSS, the gateway against the limit; finally the summary (only with the limit: a
/// caller that runs the gateway alone, as scripts/bench-kafka.sh does, compares elsewhere).
pub async fn bench(
    plan: &Plan,
    direct: &Target,
    proxies: &[(Target, Option<String>)],
    mock_pid: Option<&str>,
) -> anyhow::Result<()> {
    println!(
        "\n{:>7}  {:<8} {:>8} {:>8} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "rate/s",
        "target",
        "sent",
        "ok",
        "errors",
        "achieved/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "lag p99"
    );
    let mut cases = Vec::new();
    for &rate in &plan.rates {
        cases.push(measure(plan, "plain", rate, direct, proxies, mock_pid).await);
    }
    if !plan.stream_rates.is_empty() {
        println!("\nstreaming (server-sent events, latency to the last byte):");
        let streaming = Plan {
            body: Bytes::from_static(STREAM_BODY.as_bytes()),
            ..plan.clone()
        };
        for &rate in &plan.stream_rates {
            cases.push(measure(&streaming, "stream", rate, direct, proxies, mock_pid).await);
        }
    }
    if proxies.is_empty() {
        println!(
            "\nno proxy to compare (CARACAL_BENCH_GATEWAY_URL and CARACAL_BENCH_PROXY_URL unset)"
        );
    } else if proxies.iter().any(|(target, _)| target.name == LIMIT) {
        report::print_summary(&cases, SUBJECT, LIMIT);
    }
    Ok(())
}

/// One rate of one kind: the direct run, then every proxy's, each printed as it ends.
async fn measure(
    plan: &Plan,
    kind: &'static str,
    rate: f64,
    direct: &Target,
    proxies: &[(Target, Option<String>)],
    mock_pid: Option<&str>,
) -> Case {
    let base = run(plan, direct, rate).await;
    print_run(rate, direct.name, &base);
    let mut case = Case {
        kind,
        rate,
        direct: base,
        samples: Vec::new(),
    };
    for (target, pid) in proxies {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let pid = pid.as_deref();
        let meter = cpu::Meter::start(&metered(pid.map(|p| (target.name, p)), mock_pid));
        let through = run(plan, target, rate).await;
        print_run(rate, target.name, &through);
        // Over the whole run (warm-up included), per request of the run.
        let requests = through.scheduled as f64 + (plan.warmup.as_secs_f64() * rate).round();
        let cpu_us = meter
            .per_request_us(requests)
            .iter()
            .find(|(name, _)| *name == target.name)
            .map(|(_, us)| *us);
        case.samples.push(Sample {
            name: target.name,
            run: through,
            cpu_us,
            rss_kb: pid.and_then(rss_kb),
        });
        print_added(&case, target.name);
        if let Some(pid) = pid {
            println!("{:>7}  {} RSS: {}", "", target.name, rss(pid));
        }
        if let Some(line) = meter.report(requests) {
            println!("{:>7}  {line}", "");
        }
    }
    if proxies.len() > 1 {
        case.print_comparison(SUBJECT, LIMIT);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    case
}
