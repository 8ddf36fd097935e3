//! `caracal pricebook set|get|list|import`: what tokens and tool calls cost.

use std::path::PathBuf;

use argh::FromArgs;

use super::ops;
use super::output::{print_json, print_record, print_table, Output};
use crate::config::Config;
use crate::ops::PriceInput;

/// manage the pricebook
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pricebook")]
pub struct PricebookCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    Set(Set),
    Get(Get),
    List(List),
    Import(Import),
}

/// set the prices of one model or MCP tool (decimal amounts per 1M tokens / per call)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "set")]
struct Set {
    /// provider: openai, anthropic, mcp, ...
    #[argh(option)]
    provider: String,
    /// model name, or server/tool for provider mcp
    #[argh(option)]
    model: String,
    /// ISO 4217 currency (default USD)
    #[argh(option)]
    currency: Option<String>,
    /// price per 1M input tokens
    #[argh(option)]
    input: Option<String>,
    /// price per 1M cached input tokens (default: the input price)
    #[argh(option)]
    cached_input: Option<String>,
    /// price per 1M cache-write input tokens (default: the input price)
    #[argh(option)]
    cache_write: Option<String>,
    /// price per 1M output tokens
    #[argh(option)]
    output_price: Option<String>,
    /// price per call
    #[argh(option)]
    per_call: Option<String>,
    /// the model's output cap, used to estimate requests without max tokens
    #[argh(option)]
    max_output_tokens: Option<u64>,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// show the price that applies to a model (dated names fall back to their family)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "get")]
struct Get {
    /// provider
    #[argh(option)]
    provider: String,
    /// model name, or server/tool
    #[argh(option)]
    model: String,
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// list every price
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
struct List {
    /// table or json
    #[argh(option, default = "Output::Table")]
    output: Output,
}

/// import a pricebook YAML file (all or nothing)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "import")]
struct Import {
    /// the file (format of pricebook/default.yaml)
    #[argh(positional)]
    file: PathBuf,
}

pub async fn run(cmd: PricebookCmd, config: &Config) -> anyhow::Result<()> {
    let ops = ops(config).await?;
    match cmd.cmd {
        Sub::Set(c) => {
            let input = PriceInput {
                provider: c.provider,
                resource: c.model,
                currency: c.currency,
                input: c.input,
                cached_input: c.cached_input,
                cache_write: c.cache_write,
                output: c.output_price,
                per_call: c.per_call,
                max_output_tokens: c.max_output_tokens,
            };
            let (version, view) = ops.set_price(input).await?;
            eprintln!("pricebook version {version}");
            print_record(c.output, &view)
        }
        Sub::Get(c) => print_record(c.output, &ops.get_price(&c.provider, &c.model).await?),
        Sub::List(c) => {
            let prices = ops.list_prices().await?;
            if c.output == Output::Json {
                return print_json(&prices);
            }
            let rows: Vec<Vec<String>> = prices
                .iter()
                .map(|p| {
                    vec![
                        p.provider.clone(),
                        p.resource.clone(),
                        p.currency.to_string(),
                        p.input.clone(),
                        p.cached_input.clone(),
                        p.output.clone(),
                        p.per_call.clone(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "PROVIDER",
                    "MODEL",
                    "CUR",
                    "INPUT/1M",
                    "CACHED/1M",
                    "OUTPUT/1M",
                    "PER CALL",
                ],
                &rows,
            );
            Ok(())
        }
        Sub::Import(c) => {
            let text = std::fs::read_to_string(&c.file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", c.file.display()))?;
            let (version, count) = ops.import_prices(&text).await?;
            println!("imported {count} prices; pricebook version {version}");
            Ok(())
        }
    }
}
