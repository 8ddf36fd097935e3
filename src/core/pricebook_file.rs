//! The pricebook file format (YAML, amounts as exact decimal strings) to and from `PriceEntry`
//! values, with every rule a hand-written price list can break checked and named.
//! Parses text only: reading the file and storing a pricebook version belong to the callers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::money::{decimal_string, Currency, Micros};
use crate::core::pricing::{Price, PriceEntry, MCP_PROVIDER};

/// The only `version:` this code reads. It is the file format's version, not the version
/// of the prices (the store numbers pricebook versions when it loads one).
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricebookFileError {
    /// Not YAML, or a field of the wrong type or name; the message names the entry and field
    /// (`prices[3].cached_input: ...`) and the line.
    #[error("pricebook: {0}")]
    Syntax(String),
    #[error("pricebook: version {found} is not supported (expected {FORMAT_VERSION})")]
    Version { found: u32 },
    #[error("pricebook: prices[{index}] ({name}): `{field}` {reason}")]
    Entry {
        index: usize,
        name: String,
        field: &'static str,
        reason: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    prices: Vec<FileEntry>,
}

/// One entry as written. Token prices are per one million tokens.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource: Option<String>,
    currency: Currency,
    #[serde(
        default,
        with = "decimal_string::option",
        skip_serializing_if = "Option::is_none"
    )]
    input: Option<Micros>,
    #[serde(
        default,
        with = "decimal_string::option",
        skip_serializing_if = "Option::is_none"
    )]
    cached_input: Option<Micros>,
    #[serde(
        default,
        with = "decimal_string::option",
        skip_serializing_if = "Option::is_none"
    )]
    cache_write: Option<Micros>,
    #[serde(
        default,
        with = "decimal_string::option",
        skip_serializing_if = "Option::is_none"
    )]
    output: Option<Micros>,
    #[serde(
        default,
        with = "decimal_string::option",
        skip_serializing_if = "Option::is_none"
    )]
    per_call: Option<Micros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
}

/// Parses a pricebook file. Rules, each reported with the entry's index and field:
/// - `provider` is lower case (`openai`, `anthropic`, `mcp`, ...);
/// - a model entry names `model` and gives both `input` and `output` (write `"0"` for a price
///   that is really zero: nothing is free by omission); `cached_input` and `cache_write`
///   default to `input`, `per_call` to 0;
/// - an MCP entry (`provider: mcp`) names `resource: server/tool` and gives `per_call`;
/// - no amount is negative, and no (provider, model/resource) appears twice.
pub fn parse_pricebook_yaml(text: &str) -> Result<Vec<PriceEntry>, PricebookFileError> {
    let file: File =
        serde_yaml::from_str(text).map_err(|err| PricebookFileError::Syntax(err.to_string()))?;
    if file.version != FORMAT_VERSION {
        return Err(PricebookFileError::Version {
            found: file.version,
        });
    }
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut entries = Vec::with_capacity(file.prices.len());
    for (index, raw) in file.prices.into_iter().enumerate() {
        let entry = entry_from_file(index, raw)?;
        let key = (entry.provider.clone(), entry.resource.clone());
        if let Some(first) = seen.insert(key, index) {
            let field = if entry.provider == MCP_PROVIDER {
                "resource"
            } else {
                "model"
            };
            let reason = format!("is already priced by prices[{first}]");
            return Err(entry_error(index, &entry.resource, field, reason));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Writes entries in the file format, every amount explicit, so `parse_pricebook_yaml` reads
/// back exactly the same entries.
pub fn pricebook_to_yaml(entries: &[PriceEntry]) -> Result<String, PricebookFileError> {
    let prices = entries
        .iter()
        .map(|entry| {
            let price = &entry.price;
            let mcp = entry.provider == MCP_PROVIDER;
            FileEntry {
                provider: entry.provider.clone(),
                model: (!mcp).then(|| entry.resource.clone()),
                resource: mcp.then(|| entry.resource.clone()),
                currency: price.currency,
                input: (!mcp).then_some(price.input_per_mtok),
                cached_input: (!mcp).then_some(price.cached_input_per_mtok),
                cache_write: (!mcp).then_some(price.cache_write_per_mtok),
                output: (!mcp).then_some(price.output_per_mtok),
                per_call: Some(price.per_call),
                max_output_tokens: price.max_output_tokens,
            }
        })
        .collect();
    serde_yaml::to_string(&File {
        version: FORMAT_VERSION,
        prices,
    })
    .map_err(|err| PricebookFileError::Syntax(err.to_string()))
}

fn entry_from_file(index: usize, raw: FileEntry) -> Result<PriceEntry, PricebookFileError> {
    let shown = raw
        .model
        .as_deref()
        .or(raw.resource.as_deref())
        .unwrap_or("?")
        .to_owned();
    let fail = |field: &'static str, reason: &str| entry_error(index, &shown, field, reason);
    if raw.provider.is_empty()
        || !raw
            .provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(fail("provider", "must be a lower-case name such as openai"));
    }
    let mcp = raw.provider == MCP_PROVIDER;
    let resource = match (mcp, raw.model, raw.resource) {
        (false, Some(model), None) => model,
        (true, None, Some(resource)) => resource,
        (false, _, Some(_)) => {
            return Err(fail(
                "resource",
                "is for MCP tools; name a model with `model`",
            ))
        }
        (false, None, None) => return Err(fail("model", "is missing")),
        (true, Some(_), _) => {
            return Err(fail(
                "model",
                "is not for MCP tools; use `resource: server/tool`",
            ))
        }
        (true, None, None) => return Err(fail("resource", "is missing (`server/tool`)")),
    };
    if resource.is_empty() || resource.chars().any(char::is_whitespace) {
        return Err(fail(
            if mcp { "resource" } else { "model" },
            "must be a name without spaces",
        ));
    }
    if mcp
        && !resource
            .split_once('/')
            .is_some_and(|(s, t)| !s.is_empty() && !t.is_empty())
    {
        return Err(fail("resource", "must be `server/tool`"));
    }
    let amounts = [
        ("input", raw.input),
        ("cached_input", raw.cached_input),
        ("cache_write", raw.cache_write),
        ("output", raw.output),
        ("per_call", raw.per_call),
    ];
    for (field, amount) in amounts {
        if amount.is_some_and(Micros::is_negative) {
            return Err(fail(field, "must not be negative"));
        }
    }
    let price = if mcp {
        let per_call = raw.per_call.ok_or_else(|| fail("per_call", "is missing"))?;
        for (field, amount) in amounts {
            if field != "per_call" && amount.is_some() {
                return Err(fail(
                    field,
                    "does not apply to MCP tools (they are priced per_call)",
                ));
            }
        }
        Price {
            currency: raw.currency,
            input_per_mtok: Micros::ZERO,
            cached_input_per_mtok: Micros::ZERO,
            output_per_mtok: Micros::ZERO,
            cache_write_per_mtok: Micros::ZERO,
            per_call,
            max_output_tokens: None,
        }
    } else {
        let input = raw
            .input
            .ok_or_else(|| fail("input", "is missing (per 1M tokens)"))?;
        let output = raw
            .output
            .ok_or_else(|| fail("output", "is missing (per 1M tokens)"))?;
        Price {
            currency: raw.currency,
            input_per_mtok: input,
            cached_input_per_mtok: raw.cached_input.unwrap_or(input),
            output_per_mtok: output,
            cache_write_per_mtok: raw.cache_write.unwrap_or(input),
            per_call: raw.per_call.unwrap_or(Micros::ZERO),
            max_output_tokens: raw.max_output_tokens,
        }
    };
    Ok(PriceEntry {
        provider: raw.provider,
        resource,
        price,
    })
}

fn entry_error(
    index: usize,
    name: &str,
    field: &'static str,
    reason: impl Into<String>,
) -> PricebookFileError {
    PricebookFileError::Entry {
        index,
        name: name.to_owned(),
        field,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::core::pricing::Usage;

    const SHIPPED: &str = crate::core::pricebook_shipped::DEFAULT_PRICEBOOK_YAML;

    const EXAMPLE: &str = r#"
version: 1
prices:
  - provider: openai
    model: gpt-4o            # or `resource:` for MCP
    currency: USD
    input: "2.50"            # per 1M tokens
    cached_input: "1.25"
    output: "10.00"
    max_output_tokens: 16384
  - provider: anthropic
    model: claude-haiku-4-5
    currency: usd
    input: 1                 # plain YAML scalars are read as exact decimals too
    cache_write: 1.25
    output: "5"
  - provider: mcp
    resource: search/web_search
    currency: USD
    per_call: "0.005"
"#;

    fn entry_error(text: &str) -> (usize, &'static str, String) {
        match parse_pricebook_yaml(text) {
            Err(PricebookFileError::Entry {
                index,
                field,
                reason,
                ..
            }) => (index, field, reason),
            other => panic!("expected an entry error, got {other:?}"),
        }
    }

    fn one(entry: &str) -> String {
        format!("version: 1\nprices:\n  - {entry}\n")
    }

    #[test]
    fn parses_the_documented_example_with_defaults() {
        let entries = parse_pricebook_yaml(EXAMPLE).unwrap();
        assert_eq!(entries.len(), 3);
        let gpt = &entries[0];
        assert_eq!(
            (gpt.provider.as_str(), gpt.resource.as_str()),
            ("openai", "gpt-4o")
        );
        assert_eq!(gpt.price.input_per_mtok, Micros(2_500_000));
        assert_eq!(gpt.price.cached_input_per_mtok, Micros(1_250_000));
        assert_eq!(
            gpt.price.cache_write_per_mtok,
            Micros(2_500_000),
            "defaults to input"
        );
        assert_eq!(gpt.price.output_per_mtok, Micros(10_000_000));
        assert_eq!(gpt.price.per_call, Micros::ZERO);
        assert_eq!(gpt.price.max_output_tokens, Some(16_384));
        let haiku = &entries[1].price;
        assert_eq!(haiku.currency, Currency::USD);
        assert_eq!(
            haiku.cached_input_per_mtok,
            Micros(1_000_000),
            "defaults to input"
        );
        assert_eq!(haiku.cache_write_per_mtok, Micros(1_250_000));
        let tool = &entries[2];
        assert_eq!(
            (tool.provider.as_str(), tool.resource.as_str()),
            ("mcp", "search/web_search")
        );
        assert_eq!(tool.price.per_call, Micros(5_000));
        assert_eq!(tool.price.input_per_mtok, Micros::ZERO);
    }

    #[test]
    fn written_files_read_back_the_same_entries() {
        for text in [EXAMPLE, SHIPPED] {
            let entries = parse_pricebook_yaml(text).unwrap();
            let written = pricebook_to_yaml(&entries).unwrap();
            assert_eq!(parse_pricebook_yaml(&written).unwrap(), entries);
        }
    }

    #[test]
    fn syntax_errors_name_the_entry_and_field() {
        let cases = [
            (
                one(r#"{provider: openai, model: m, currency: USD, input: "1.0.0", output: "1"}"#),
                "prices[0].input",
            ),
            (
                one(
                    r#"{provider: openai, model: m, currency: USD, input: "1", output: "0.0000001"}"#,
                ),
                "prices[0].output",
            ),
            (
                one(
                    r#"{provider: openai, model: m, currency: USD, input: "1", output: "1", inptu: "1"}"#,
                ),
                "prices[0]",
            ),
            (
                one(r#"{provider: openai, model: m, currency: EUROS, input: "1", output: "1"}"#),
                "prices[0].currency",
            ),
            (
                one(
                    r#"{provider: openai, model: m, currency: USD, input: "1", output: "1", max_output_tokens: -5}"#,
                ),
                "prices[0].max_output_tokens",
            ),
            ("version: 1\nprices: {}\n".to_owned(), "prices"),
            ("prices: []\n".to_owned(), "version"),
        ];
        for (text, needle) in cases {
            match parse_pricebook_yaml(&text) {
                Err(PricebookFileError::Syntax(message)) => {
                    assert!(message.contains(needle), "{message:?} should name {needle}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn rule_errors_name_the_entry_index_and_field() {
        let base = r#"{provider: openai, model: a, currency: USD, input: "1", output: "1"}"#;
        let cases = [
            (
                r#"{provider: OpenAI, model: m, currency: USD, input: "1", output: "1"}"#,
                "provider",
            ),
            (
                r#"{provider: openai, currency: USD, input: "1", output: "1"}"#,
                "model",
            ),
            (
                r#"{provider: openai, model: m, currency: USD, output: "1"}"#,
                "input",
            ),
            (
                r#"{provider: openai, model: m, currency: USD, input: "1"}"#,
                "output",
            ),
            (
                r#"{provider: openai, model: m, currency: USD, input: "1", output: "-1"}"#,
                "output",
            ),
            (
                r#"{provider: openai, model: m, currency: USD, input: "1", cached_input: "-0.5", output: "1"}"#,
                "cached_input",
            ),
            (
                r#"{provider: openai, model: "a b", currency: USD, input: "1", output: "1"}"#,
                "model",
            ),
            (
                r#"{provider: openai, resource: x/y, currency: USD, input: "1", output: "1"}"#,
                "resource",
            ),
            (
                r#"{provider: mcp, model: x/y, currency: USD, per_call: "1"}"#,
                "model",
            ),
            (
                r#"{provider: mcp, resource: search, currency: USD, per_call: "1"}"#,
                "resource",
            ),
            (
                r#"{provider: mcp, resource: s/t, currency: USD}"#,
                "per_call",
            ),
            (
                r#"{provider: mcp, resource: s/t, currency: USD, per_call: "1", input: "1"}"#,
                "input",
            ),
            (
                r#"{provider: openai, model: a, currency: USD, input: "2", output: "2"}"#,
                "model",
            ),
        ];
        for (entry, field) in cases {
            let text = format!("version: 1\nprices:\n  - {base}\n  - {entry}\n");
            let (index, got, reason) = entry_error(&text);
            assert_eq!((index, got), (1, field), "{entry}: {reason}");
        }
        let duplicate = format!("version: 1\nprices:\n  - {base}\n  - {base}\n");
        assert!(entry_error(&duplicate).2.contains("prices[0]"));
    }

    #[test]
    fn an_unknown_format_version_is_refused() {
        assert_eq!(
            parse_pricebook_yaml("version: 2\nprices: []\n"),
            Err(PricebookFileError::Version { found: 2 })
        );
    }

    #[test]
    fn explicit_zero_prices_are_allowed() {
        let entries = parse_pricebook_yaml(&one(
            r#"{provider: ollama, model: llama3, currency: USD, input: "0", output: "0"}"#,
        ))
        .unwrap();
        assert_eq!(
            entries[0]
                .price
                .cost(&Usage {
                    input_tokens: 9,
                    ..Usage::default()
                })
                .unwrap(),
            Micros::ZERO
        );
    }
}
