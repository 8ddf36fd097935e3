//! `caracal-mock-upstream`: the mock OpenAI/Anthropic upstream (`caracal::mock`) as a process,
//! for integration tests and benchmarks. Prints `listening on ADDR` first, then serves until
//! SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;

use argh::FromArgs;
use caracal::mock::{MockConfig, MockUpstream};

/// Mock OpenAI/Anthropic upstream with deterministic usage. Per-request headers override the
/// defaults: x-mock-output-tokens, x-mock-cached-tokens, x-mock-cache-write-tokens,
/// x-mock-latency-ms, x-mock-chunk-delay-ms, x-mock-status, x-mock-error-after-chunks.
#[derive(FromArgs)]
struct Args {
    /// address to listen on (port 0 picks a free port); default 127.0.0.1:0
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 0))")]
    listen: SocketAddr,
    /// output tokens of a call whose request sets no lower cap; default 16
    #[argh(option, default = "16")]
    output_tokens: u64,
    /// delay before response headers, in milliseconds; default 0
    #[argh(option, default = "0")]
    latency_ms: u64,
    /// delay between streamed chunks, in milliseconds; default 0
    #[argh(option, default = "0")]
    chunk_delay_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    let config = MockConfig {
        output_tokens: args.output_tokens,
        latency_ms: args.latency_ms,
        chunk_delay_ms: args.chunk_delay_ms,
    };
    let mock = MockUpstream::start(args.listen, config).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", mock.addr())?;
    stdout.flush()?;
    drop(stdout);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    mock.stop().await;
    Ok(())
}
