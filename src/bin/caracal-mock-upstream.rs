//! `caracal-mock-upstream`: the mock OpenAI / Anthropic server of the tests and benchmarks.
//! Prints `listening on ADDR` as its first stdout line, then serves until killed.

use std::net::SocketAddr;
use std::time::Duration;

use argh::FromArgs;

/// Mock OpenAI / Anthropic upstream for Caracal's tests and benchmarks.
#[derive(FromArgs)]
struct Args {
    /// address to listen on (port 0 picks a free one)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 0))")]
    listen: SocketAddr,
    /// delay before response headers, in milliseconds
    #[argh(option, default = "0")]
    latency_ms: u64,
    /// delay between SSE chunks, in milliseconds
    #[argh(option, default = "0")]
    chunk_delay_ms: u64,
    /// output tokens per response (capped by the request's max tokens)
    #[argh(option, default = "16")]
    output_tokens: u64,
}

fn main() -> anyhow::Result<()> {
    let args: Args = argh::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let settings = caracal::mock::MockSettings {
            latency: Duration::from_millis(args.latency_ms),
            chunk_delay: Duration::from_millis(args.chunk_delay_ms),
            output_tokens: args.output_tokens,
        };
        let (addr, _stop) = caracal::mock::spawn(args.listen, settings).await?;
        println!("listening on {addr}");
        std::future::pending::<()>().await;
        Ok(())
    })
}
