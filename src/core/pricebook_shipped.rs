//! The default pricebook shipped with Caracal (`pricebook/default.yaml`: public list prices),
//! compiled in so a first run has prices, and the checks that keep that file honest.
//! Owns no parsing rules (those are `pricebook_file`'s) and no lookup rules (`pricing`'s).

use crate::core::pricebook_file::{parse_pricebook_yaml, PricebookFileError};
use crate::core::pricing::PriceEntry;

/// The shipped pricebook file, as text.
pub const DEFAULT_PRICEBOOK_YAML: &str = include_str!("../../pricebook/default.yaml");

/// The shipped pricebook's entries. Cannot fail for the file as shipped (a test parses it).
pub fn default_price_entries() -> Result<Vec<PriceEntry>, PricebookFileError> {
    parse_pricebook_yaml(DEFAULT_PRICEBOOK_YAML)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::core::money::{Currency, Micros};
    use crate::core::pricing::Pricebook;

    const SHIPPED: &str = DEFAULT_PRICEBOOK_YAML;

    #[test]
    fn the_shipped_pricebook_prices_every_entry() {
        let entries = parse_pricebook_yaml(SHIPPED).unwrap();
        assert!(entries.len() >= 40);
        for e in &entries {
            let (p, name) = (&e.price, format!("{}/{}", e.provider, e.resource));
            assert_eq!(p.currency, Currency::USD, "{name}");
            assert!(p.input_per_mtok > Micros::ZERO, "{name} has no input price");
            assert!(
                p.cached_input_per_mtok <= p.input_per_mtok,
                "{name}: cache reads cost more"
            );
            assert!(
                p.cache_write_per_mtok >= p.input_per_mtok,
                "{name}: cache writes cost less"
            );
            let max_output = p.max_output_tokens;
            if e.resource.starts_with("text-embedding") {
                assert_eq!(
                    (p.output_per_mtok, max_output),
                    (Micros::ZERO, Some(0)),
                    "{name}"
                );
            } else {
                assert!(
                    p.output_per_mtok >= p.input_per_mtok,
                    "{name}: output cheaper than input"
                );
                assert!(
                    max_output.is_some_and(|m| m >= 1024),
                    "{name} has no output cap"
                );
            }
            if e.provider == "anthropic" {
                // 5-minute cache writes cost 1.2x-1.25x input, cache hits 0.1x-0.12x.
                let (input, write, read) = (
                    p.input_per_mtok.0,
                    p.cache_write_per_mtok.0,
                    p.cached_input_per_mtok.0,
                );
                assert!(
                    write * 5 >= input * 6 && write * 4 <= input * 5,
                    "{name}: cache write"
                );
                assert!(
                    read * 10 >= input && read * 25 <= input * 3,
                    "{name}: cache read"
                );
            }
        }
        let book = Pricebook::new(1, entries);
        let required = [
            ("openai", "gpt-5"),
            ("openai", "gpt-5-mini"),
            ("openai", "gpt-5-nano"),
            ("openai", "gpt-4.1"),
            ("openai", "gpt-4.1-mini"),
            ("openai", "gpt-4.1-nano"),
            ("openai", "gpt-4o"),
            ("openai", "gpt-4o-mini"),
            ("openai", "o3"),
            ("openai", "o4-mini"),
            ("openai", "text-embedding-3-small"),
            ("openai", "text-embedding-3-large"),
            ("anthropic", "claude-opus-4-1"),
            ("anthropic", "claude-sonnet-4-5"),
            ("anthropic", "claude-haiku-4-5"),
            ("anthropic", "claude-3-5-haiku"),
        ];
        for (provider, model) in required {
            assert!(
                book.get(provider, model).is_some(),
                "{provider}/{model} is not priced"
            );
        }
    }

    #[test]
    fn dated_model_ids_find_the_right_shipped_price() {
        let book = Pricebook::new(1, parse_pricebook_yaml(SHIPPED).unwrap());
        let input = |provider: &str, model: &str| book.get(provider, model).unwrap().input_per_mtok;
        let cases = [
            ("openai", "gpt-4o-2024-08-06", "2.50"),
            ("openai", "gpt-4o-2024-05-13", "5.00"),
            ("openai", "gpt-4o-mini-2024-07-18", "0.15"),
            ("openai", "gpt-5-2025-08-07", "1.25"),
            ("openai", "gpt-5-pro-2025-10-06", "15.00"),
            ("openai", "o3-pro-2025-06-10", "20.00"),
            ("openai", "o3-mini-2025-01-31", "1.10"),
            ("openai", "gpt-4.1-nano-2025-04-14", "0.10"),
            ("anthropic", "claude-sonnet-4-5-20250929", "3.00"),
            ("anthropic", "claude-opus-4-1-20250805", "15.00"),
            ("anthropic", "claude-opus-4-20250514", "15.00"),
            ("anthropic", "claude-haiku-4-5-20251001", "1.00"),
            ("anthropic", "claude-3-5-haiku-20241022", "0.80"),
            ("anthropic", "claude-3-7-sonnet-latest", "3.00"),
        ];
        for (provider, model, expected) in cases {
            assert_eq!(
                input(provider, model),
                Micros::parse(expected).unwrap(),
                "{model}"
            );
        }
    }
}
