//! Pricebook operations: set one price, import a pricebook file, read prices back.
//! Prices arrive as exact decimal strings per one million tokens (or per call).

use serde::{Deserialize, Serialize};

use super::{invalid, Ops, OpsError};
use crate::core::money::{Currency, Micros};
use crate::core::pricebook_file::parse_pricebook_yaml;
use crate::core::pricing::{Price, PriceEntry};

/// Most entries one import may carry.
pub const IMPORT_ENTRIES_MAX: usize = 5_000;

/// `pricebook set` / `PUT /v1/prices`: one resource's prices as decimal strings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceInput {
    pub provider: String,
    /// Model name, or `server/tool` for provider `mcp`.
    #[serde(alias = "model")]
    pub resource: String,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub cached_input: Option<String>,
    #[serde(default)]
    pub cache_write: Option<String>,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub per_call: Option<String>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
}

/// A price as shown to users: exact decimals per one million tokens / per call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceView {
    pub provider: String,
    pub resource: String,
    pub currency: Currency,
    pub input: String,
    pub cached_input: String,
    pub cache_write: String,
    pub output: String,
    pub per_call: String,
    pub max_output_tokens: Option<u64>,
}

impl From<&PriceEntry> for PriceView {
    fn from(e: &PriceEntry) -> Self {
        PriceView {
            provider: e.provider.clone(),
            resource: e.resource.clone(),
            currency: e.price.currency,
            input: e.price.input_per_mtok.to_string(),
            cached_input: e.price.cached_input_per_mtok.to_string(),
            cache_write: e.price.cache_write_per_mtok.to_string(),
            output: e.price.output_per_mtok.to_string(),
            per_call: e.price.per_call.to_string(),
            max_output_tokens: e.price.max_output_tokens,
        }
    }
}

fn amount(field: &str, text: Option<&str>) -> Result<Option<Micros>, OpsError> {
    let Some(text) = text else { return Ok(None) };
    let value =
        Micros::parse(text.trim()).map_err(|e| OpsError::Invalid(format!("{field}: {e}")))?;
    if value.is_negative() {
        return Err(OpsError::Invalid(format!("{field} must not be negative")));
    }
    Ok(Some(value))
}

fn entry_from_input(input: &PriceInput) -> Result<PriceEntry, OpsError> {
    let provider = input.provider.trim().to_ascii_lowercase();
    let resource = input.resource.trim().to_owned();
    if provider.is_empty() || resource.is_empty() {
        return Err(OpsError::Invalid(
            "provider and model/resource are required".into(),
        ));
    }
    let input_price = amount("input", input.input.as_deref())?.unwrap_or_default();
    let price = Price {
        currency: Currency::parse(input.currency.as_deref().unwrap_or("USD")).map_err(invalid)?,
        input_per_mtok: input_price,
        cached_input_per_mtok: amount("cached_input", input.cached_input.as_deref())?
            .unwrap_or(input_price),
        cache_write_per_mtok: amount("cache_write", input.cache_write.as_deref())?
            .unwrap_or(input_price),
        output_per_mtok: amount("output", input.output.as_deref())?.unwrap_or_default(),
        per_call: amount("per_call", input.per_call.as_deref())?.unwrap_or_default(),
        max_output_tokens: input.max_output_tokens,
    };
    let priced = [price.input_per_mtok, price.output_per_mtok, price.per_call]
        .iter()
        .any(|m| m.get() > 0);
    if !priced {
        return Err(OpsError::Invalid(format!(
            "{provider}:{resource} has no price: give input/output per 1M tokens or per_call"
        )));
    }
    Ok(PriceEntry {
        provider,
        resource,
        price,
    })
}

impl Ops {
    pub async fn set_price(&self, input: PriceInput) -> Result<(i64, PriceView), OpsError> {
        let entry = entry_from_input(&input)?;
        let view = PriceView::from(&entry);
        let version = self.store.set_prices(vec![entry], super::now()).await?;
        Ok((version, view))
    }

    /// Imports a pricebook file (YAML, the format of `pricebook/default.yaml`) all or nothing.
    pub async fn import_prices(&self, yaml: &str) -> Result<(i64, usize), OpsError> {
        let entries = parse_pricebook_yaml(yaml).map_err(invalid)?;
        if entries.len() > IMPORT_ENTRIES_MAX {
            return Err(OpsError::Invalid(format!(
                "at most {IMPORT_ENTRIES_MAX} prices per import"
            )));
        }
        let count = entries.len();
        let version = self.store.set_prices(entries, super::now()).await?;
        Ok((version, count))
    }

    pub async fn list_prices(&self) -> Result<Vec<PriceView>, OpsError> {
        let entries = self.store.list_prices().await?;
        Ok(entries.iter().map(PriceView::from).collect())
    }

    pub async fn get_price(&self, provider: &str, resource: &str) -> Result<PriceView, OpsError> {
        let book = self.store.pricebook().await?;
        let price = book
            .get(provider, resource)
            .ok_or_else(|| OpsError::NotFound {
                kind: "price",
                id: format!("{provider}:{resource}"),
            })?;
        Ok(PriceView::from(&PriceEntry {
            provider: provider.to_owned(),
            resource: resource.to_owned(),
            price: price.clone(),
        }))
    }
}
