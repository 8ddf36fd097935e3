//! The pricebook: what one token or one tool call costs, per (provider, resource), and the cost
//! of a measured usage. Unknown prices are an explicit `None`, never "free".
//! Pure data; loading and storing prices belongs to the store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::money::{Currency, Micros, MoneyError};

/// Provider name used for MCP tool prices; the resource is `server/tool`.
pub const MCP_PROVIDER: &str = "mcp";

/// Prices of one resource. Token prices are per one million tokens; `per_call` is charged
/// once per call (MCP tools, or a flat fee on top of tokens).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub currency: Currency,
    #[serde(default)]
    pub input_per_mtok: Micros,
    /// Price of input tokens served from the provider's prompt cache; when absent in a
    /// pricebook file it equals `input_per_mtok`.
    #[serde(default)]
    pub cached_input_per_mtok: Micros,
    #[serde(default)]
    pub output_per_mtok: Micros,
    /// Price of input tokens written to the provider's prompt cache (Anthropic
    /// `cache_creation_input_tokens`); when absent in a pricebook file it equals `input_per_mtok`.
    #[serde(default)]
    pub cache_write_per_mtok: Micros,
    #[serde(default)]
    pub per_call: Micros,
    /// Largest output a request may produce; the estimate when a request sets no max tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
}

/// Measured (or estimated) consumption of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens neither served from nor written to the prompt cache.
    pub input_tokens: u64,
    /// Input tokens served from the prompt cache (OpenAI `cached_tokens`, Anthropic
    /// `cache_read_input_tokens`).
    pub cached_input_tokens: u64,
    /// Input tokens written to the prompt cache (Anthropic `cache_creation_input_tokens`).
    #[serde(default)]
    pub cache_write_input_tokens: u64,
    pub output_tokens: u64,
    pub calls: u64,
}

impl Price {
    /// A price of zero for everything: used only when `gateway.unknownPrice: allow` lets an
    /// unpriced call through, so its tokens are still metered.
    pub fn free(currency: Currency) -> Price {
        Price {
            currency,
            input_per_mtok: Micros::ZERO,
            cached_input_per_mtok: Micros::ZERO,
            cache_write_per_mtok: Micros::ZERO,
            output_per_mtok: Micros::ZERO,
            per_call: Micros::ZERO,
            max_output_tokens: None,
        }
    }

    /// Cost of `usage`, rounded up to the next micro-unit once, over the exact sum.
    pub fn cost(&self, usage: &Usage) -> Result<Micros, MoneyError> {
        let terms = [
            (usage.input_tokens, self.input_per_mtok),
            (usage.cached_input_tokens, self.cached_input_per_mtok),
            (usage.cache_write_input_tokens, self.cache_write_per_mtok),
            (usage.output_tokens, self.output_per_mtok),
        ];
        let overflow = || MoneyError::ArithmeticOverflow;
        let mut token_part: i128 = 0;
        for (tokens, price) in terms {
            let term = i128::from(tokens)
                .checked_mul(i128::from(price.0))
                .ok_or_else(overflow)?;
            token_part = token_part.checked_add(term).ok_or_else(overflow)?;
        }
        let mut tokens_cost = token_part / 1_000_000;
        if token_part % 1_000_000 > 0 {
            tokens_cost += 1;
        }
        let calls_cost = i128::from(usage.calls) * i128::from(self.per_call.0);
        let total = tokens_cost.checked_add(calls_cost).ok_or_else(overflow)?;
        i64::try_from(total).map(Micros).map_err(|_| overflow())
    }
}

/// One row of the pricebook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceEntry {
    pub provider: String,
    /// Model name, or `server/tool` for MCP.
    pub resource: String,
    #[serde(flatten)]
    pub price: Price,
}

/// All prices at one version. Lookups are exact on (provider, resource); a model name with a
/// dated suffix (`gpt-4o-2024-08-06`) falls back to the longest priced prefix (`gpt-4o`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pricebook {
    pub version: i64,
    entries: BTreeMap<(String, String), Price>,
}

impl Pricebook {
    pub fn new(version: i64, entries: impl IntoIterator<Item = PriceEntry>) -> Pricebook {
        let entries = entries
            .into_iter()
            .map(|e| ((e.provider, e.resource), e.price))
            .collect();
        Pricebook { version, entries }
    }

    pub fn get(&self, provider: &str, resource: &str) -> Option<&Price> {
        let key = (provider.to_owned(), resource.to_owned());
        if let Some(price) = self.entries.get(&key) {
            return Some(price);
        }
        // Longest priced prefix that ends at a '-' boundary of the requested name.
        let mut cut = resource.len();
        while let Some(pos) = resource[..cut].rfind('-') {
            let key = (provider.to_owned(), resource[..pos].to_owned());
            if let Some(price) = self.entries.get(&key) {
                return Some(price);
            }
            cut = pos;
        }
        None
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn price() -> Price {
        Price {
            currency: Currency::USD,
            input_per_mtok: Micros(2_500_000),
            cached_input_per_mtok: Micros(1_250_000),
            output_per_mtok: Micros(10_000_000),
            cache_write_per_mtok: Micros(3_125_000),
            per_call: Micros(0),
            max_output_tokens: Some(16_384),
        }
    }

    #[test]
    fn cost_is_exact_then_rounded_up_once() {
        let usage = Usage {
            input_tokens: 1,
            cached_input_tokens: 1,
            output_tokens: 1,
            ..Usage::default()
        };
        // 2.5 + 1.25 + 10 = 13.75 micros → 14.
        assert_eq!(price().cost(&usage).unwrap(), Micros(14));
        let big = Usage {
            input_tokens: 1_000_000,
            output_tokens: 500_000,
            ..Usage::default()
        };
        assert_eq!(price().cost(&big).unwrap(), Micros(7_500_000));
    }

    #[test]
    fn cache_writes_are_charged_in_the_same_single_rounding() {
        // 2.5 + 1.25 + 3.125 + 10 = 16.875 micros → 17 (rounding each term up would give 19).
        let usage = Usage {
            input_tokens: 1,
            cached_input_tokens: 1,
            cache_write_input_tokens: 1,
            output_tokens: 1,
            calls: 0,
        };
        assert_eq!(price().cost(&usage).unwrap(), Micros(17));
        let writes = Usage {
            cache_write_input_tokens: 2_000_000,
            ..Usage::default()
        };
        assert_eq!(price().cost(&writes).unwrap(), Micros(6_250_000));
    }

    #[test]
    fn huge_usage_is_an_overflow_error_not_a_wrap() {
        let max = Price {
            input_per_mtok: Micros(i64::MAX),
            cached_input_per_mtok: Micros(i64::MAX),
            cache_write_per_mtok: Micros(i64::MAX),
            output_per_mtok: Micros(i64::MAX),
            ..price()
        };
        let usage = Usage {
            input_tokens: u64::MAX,
            cached_input_tokens: u64::MAX,
            cache_write_input_tokens: u64::MAX,
            output_tokens: u64::MAX,
            calls: u64::MAX,
        };
        assert_eq!(max.cost(&usage), Err(MoneyError::ArithmeticOverflow));
    }

    #[test]
    fn per_call_prices_add_per_call() {
        let tool = Price {
            per_call: Micros(5_000),
            ..price()
        };
        let usage = Usage {
            calls: 3,
            ..Usage::default()
        };
        assert_eq!(tool.cost(&usage).unwrap(), Micros(15_000));
    }

    #[test]
    fn dated_model_names_fall_back_to_their_family() {
        let book = Pricebook::new(
            1,
            [PriceEntry {
                provider: "openai".into(),
                resource: "gpt-4o".into(),
                price: price(),
            }],
        );
        assert!(book.get("openai", "gpt-4o-2024-08-06").is_some());
        assert!(book.get("openai", "gpt-4").is_none());
        assert!(book.get("anthropic", "gpt-4o").is_none());
    }
}
