//! Taking apart decoded `Value::Record`s field by field (ids, times, counts, enums, unions),
//! and the symbol tables of our Avro enums. Every conversion that can fail names its record
//! and field in the error. Knows no event; `records.rs` lists the fields of each, and
//! `writers.rs` writes them.

use std::collections::HashMap;

use apache_avro::types::Value;
use uuid::Uuid;

use super::AvroError;
use crate::core::events::{
    ChangeAction, DecisionKind, LifecycleAction, Outcome, Source, UnixMicros,
};
use crate::core::money::{Currency, Micros};
use crate::core::policy::{TimeWindow, WindowType};

/// A Rust enum written as an Avro enum: its values in symbol order (the order is the index on
/// the wire) and each value's symbol.
pub(super) trait Symbol: Copy + PartialEq + 'static {
    fn all() -> &'static [Self];
    fn symbol(self) -> &'static str;
}

macro_rules! symbol_from_core {
    ($($name:ident),+) => {$(
        impl Symbol for $name {
            fn all() -> &'static [Self] {
                $name::ALL
            }
            fn symbol(self) -> &'static str {
                self.as_str()
            }
        }
    )+};
}

symbol_from_core!(Source, Outcome, DecisionKind, LifecycleAction, ChangeAction);

impl Symbol for TimeWindow {
    fn all() -> &'static [Self] {
        &[
            TimeWindow::Hourly,
            TimeWindow::Daily,
            TimeWindow::Weekly,
            TimeWindow::Monthly,
            TimeWindow::Total,
        ]
    }
    fn symbol(self) -> &'static str {
        match self {
            TimeWindow::Hourly => "HOURLY",
            TimeWindow::Daily => "DAILY",
            TimeWindow::Weekly => "WEEKLY",
            TimeWindow::Monthly => "MONTHLY",
            TimeWindow::Total => "TOTAL",
        }
    }
}

impl Symbol for WindowType {
    fn all() -> &'static [Self] {
        &[WindowType::Calendar, WindowType::Rolling]
    }
    fn symbol(self) -> &'static str {
        match self {
            WindowType::Calendar => "CALENDAR",
            WindowType::Rolling => "ROLLING",
        }
    }
}

/// Takes the fields of one decoded record by name, converting and checking each.
pub(super) struct RecordReader {
    record: &'static str,
    fields: Vec<(String, Value)>,
}

impl RecordReader {
    pub(super) fn new(record: &'static str, value: Value) -> Result<RecordReader, AvroError> {
        match value {
            Value::Record(fields) => Ok(RecordReader { record, fields }),
            other => Err(AvroError::Mismatch {
                record,
                field: "(record)",
                detail: format!("expected a record, found {other:?}"),
            }),
        }
    }

    fn error(&self, field: &'static str, detail: String) -> AvroError {
        AvroError::Mismatch {
            record: self.record,
            field,
            detail,
        }
    }

    fn mismatch(&self, field: &'static str, expected: &str, found: &Value) -> AvroError {
        self.error(field, format!("expected {expected}, found {found:?}"))
    }

    pub(super) fn take(&mut self, field: &'static str) -> Result<Value, AvroError> {
        match self.fields.iter_mut().find(|(name, _)| name == field) {
            Some((_, value)) => Ok(std::mem::replace(value, Value::Null)),
            None => Err(self.error(field, "missing".into())),
        }
    }

    /// `["null", T]`: `None` for null, else the `T` value.
    pub(super) fn optional(&mut self, field: &'static str) -> Result<Option<Value>, AvroError> {
        Ok(match self.take(field)? {
            Value::Null => None,
            Value::Union(_, inner) if *inner == Value::Null => None,
            Value::Union(_, inner) => Some(*inner),
            other => Some(other),
        })
    }

    pub(super) fn as_uuid(&self, field: &'static str, value: Value) -> Result<Uuid, AvroError> {
        match value {
            Value::Uuid(id) => Ok(id),
            Value::String(text) => Uuid::parse_str(&text)
                .map_err(|e| self.error(field, format!("{text:?} is not a UUID: {e}"))),
            other => Err(self.mismatch(field, "a uuid", &other)),
        }
    }

    pub(super) fn uuid(&mut self, field: &'static str) -> Result<Uuid, AvroError> {
        let value = self.take(field)?;
        self.as_uuid(field, value)
    }

    pub(super) fn opt_uuid(&mut self, field: &'static str) -> Result<Option<Uuid>, AvroError> {
        self.optional(field)?
            .map(|v| self.as_uuid(field, v))
            .transpose()
    }

    pub(super) fn uuids(&mut self, field: &'static str) -> Result<Vec<Uuid>, AvroError> {
        self.array(field)?
            .into_iter()
            .map(|v| self.as_uuid(field, v))
            .collect()
    }

    pub(super) fn array(&mut self, field: &'static str) -> Result<Vec<Value>, AvroError> {
        match self.take(field)? {
            Value::Array(items) => Ok(items),
            other => Err(self.mismatch(field, "an array", &other)),
        }
    }

    pub(super) fn as_string(&self, field: &'static str, value: Value) -> Result<String, AvroError> {
        match value {
            Value::String(text) => Ok(text),
            other => Err(self.mismatch(field, "a string", &other)),
        }
    }

    pub(super) fn string(&mut self, field: &'static str) -> Result<String, AvroError> {
        let value = self.take(field)?;
        self.as_string(field, value)
    }

    pub(super) fn opt_string(&mut self, field: &'static str) -> Result<Option<String>, AvroError> {
        self.optional(field)?
            .map(|v| self.as_string(field, v))
            .transpose()
    }

    pub(super) fn strings(&mut self, field: &'static str) -> Result<Vec<String>, AvroError> {
        self.array(field)?
            .into_iter()
            .map(|v| self.as_string(field, v))
            .collect()
    }

    pub(super) fn string_map(
        &mut self,
        field: &'static str,
    ) -> Result<HashMap<String, Value>, AvroError> {
        match self.take(field)? {
            Value::Map(entries) => Ok(entries),
            other => Err(self.mismatch(field, "a map", &other)),
        }
    }

    pub(super) fn long(&mut self, field: &'static str) -> Result<i64, AvroError> {
        match self.take(field)? {
            Value::Long(n) => Ok(n),
            Value::Int(n) => Ok(i64::from(n)),
            other => Err(self.mismatch(field, "a long", &other)),
        }
    }

    pub(super) fn micros(&mut self, field: &'static str) -> Result<Micros, AvroError> {
        self.long(field).map(Micros)
    }

    pub(super) fn count(&mut self, field: &'static str) -> Result<u64, AvroError> {
        let n = self.long(field)?;
        u64::try_from(n).map_err(|_| self.error(field, format!("{n} is negative")))
    }

    pub(super) fn time(&mut self, field: &'static str) -> Result<UnixMicros, AvroError> {
        match self.take(field)? {
            Value::TimestampMicros(n) | Value::Long(n) => Ok(UnixMicros(n)),
            other => Err(self.mismatch(field, "a timestamp-micros", &other)),
        }
    }

    pub(super) fn currency(&mut self, field: &'static str) -> Result<Currency, AvroError> {
        let text = self.string(field)?;
        Currency::parse(&text).map_err(|e| self.error(field, e.to_string()))
    }

    pub(super) fn boolean(&mut self, field: &'static str) -> Result<bool, AvroError> {
        match self.take(field)? {
            Value::Boolean(b) => Ok(b),
            other => Err(self.mismatch(field, "a boolean", &other)),
        }
    }

    /// An enum value; the symbol decides, and it must sit at the index the writer used.
    pub(super) fn symbol<E: Symbol>(&mut self, field: &'static str) -> Result<E, AvroError> {
        match self.take(field)? {
            Value::Enum(index, symbol) => {
                let position = E::all().iter().position(|v| v.symbol() == symbol);
                match position.zip(E::all().get(index as usize)) {
                    Some((p, value)) if p == index as usize => Ok(*value),
                    _ => Err(self.error(field, format!("unknown symbol {symbol:?} at {index}"))),
                }
            }
            other => Err(self.mismatch(field, "an enum", &other)),
        }
    }
}
