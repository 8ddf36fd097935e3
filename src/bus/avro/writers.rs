//! Writing one record's fields, in schema order, to either of two sinks: `DatumWriter` writes
//! the Avro binary datum itself (every event published: no intermediate values, no allocation
//! but the output) and `ValueWriter` builds an apache-avro `Value::Record` (to check against the
//! schema and against apache-avro's own writer in tests). `records.rs` lists each record's
//! fields once for both, so the two cannot drift apart.
//! The datum bytes are Merkle leaves: they must stay exactly what the reference writer
//! (`tests/reference.rs`, the production writer before this one) makes of the same `Value` (one
//! block per array or map, then the end marker; map keys in ascending byte order), which the
//! tests check for every event shape.

use std::collections::BTreeMap;

use apache_avro::types::Value;
use uuid::Uuid;

use super::fields::Symbol;
use super::AvroError;
use crate::core::events::UnixMicros;
use crate::core::money::{Currency, Micros};

/// A sink for the fields of one record. The first failed conversion is kept and returned by
/// `finish`; the fields after it are still written (and the output thrown away).
pub(super) trait FieldWriter: Sized {
    type Output;

    fn new(record: &'static str) -> Self;
    /// Records a field that cannot be written, unless an earlier one already failed.
    fn fail(&mut self, field: &'static str, detail: String);
    fn uuid(&mut self, field: &'static str, id: Uuid);
    fn opt_uuid(&mut self, field: &'static str, id: Option<Uuid>);
    fn uuids<I: ExactSizeIterator<Item = Uuid>>(&mut self, field: &'static str, ids: I);
    fn time(&mut self, field: &'static str, at: UnixMicros);
    fn string(&mut self, field: &'static str, text: &str);
    fn opt_string(&mut self, field: &'static str, text: Option<&str>);
    fn strings(&mut self, field: &'static str, items: &[String]);
    fn string_map(&mut self, field: &'static str, entries: &BTreeMap<String, String>);
    fn long(&mut self, field: &'static str, n: i64);
    /// `["null", "int"]`.
    fn opt_int(&mut self, field: &'static str, n: Option<i32>);
    fn boolean(&mut self, field: &'static str, b: bool);
    /// The enum value at `index` of the field's symbol list.
    fn enum_index(&mut self, field: &'static str, index: u32, symbol: &'static str);
    /// An array of records named `record`, each written by `write`.
    fn records<T>(
        &mut self,
        field: &'static str,
        record: &'static str,
        items: &[T],
        write: impl Fn(&T, &mut Self),
    );
    /// `["null", record]`, the record written by `write`.
    fn opt_record<T>(
        &mut self,
        field: &'static str,
        record: &'static str,
        item: Option<&T>,
        write: impl Fn(&T, &mut Self),
    );
    fn finish(self) -> Result<Self::Output, AvroError>;

    fn micros(&mut self, field: &'static str, amount: Micros) {
        self.long(field, amount.0);
    }

    fn currency(&mut self, field: &'static str, currency: Currency) {
        self.string(field, currency.as_str());
    }

    /// A non-negative count; above `i64::MAX` it cannot be an Avro long.
    fn count(&mut self, field: &'static str, n: u64) {
        match i64::try_from(n) {
            Ok(n) => self.long(field, n),
            Err(_) => self.fail(field, format!("{n} does not fit an Avro long")),
        }
    }

    fn symbol<E: Symbol>(&mut self, field: &'static str, value: E) {
        let index = E::all().iter().position(|v| *v == value);
        match index.and_then(|i| u32::try_from(i).ok()) {
            Some(i) => self.enum_index(field, i, value.symbol()),
            None => self.fail(
                field,
                format!("{} is missing from the symbol table", value.symbol()),
            ),
        }
    }
}

/// The record being written and the first field that could not be, shared by both writers.
struct Progress {
    record: &'static str,
    error: Option<AvroError>,
}

impl Progress {
    fn new(record: &'static str) -> Progress {
        Progress {
            record,
            error: None,
        }
    }

    fn fail(&mut self, field: &'static str, detail: String) {
        let record = self.record;
        self.error.get_or_insert(AvroError::Mismatch {
            record,
            field,
            detail,
        });
    }

    /// `output`, unless a field failed.
    fn finish<T>(self, output: T) -> Result<T, AvroError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(output),
        }
    }
}

/// Writes the Avro binary datum of one record straight into a byte buffer.
pub(super) struct DatumWriter {
    progress: Progress,
    out: Vec<u8>,
}

/// Bytes reserved up front for a datum: our events are 150–400 bytes.
const DATUM_CAPACITY: usize = 512;

impl DatumWriter {
    /// A writer whose output starts with `prefix` (a framing header) before the datum.
    pub(super) fn after(record: &'static str, prefix: &[u8]) -> DatumWriter {
        let mut out = Vec::with_capacity(prefix.len() + DATUM_CAPACITY);
        out.extend_from_slice(prefix);
        DatumWriter {
            progress: Progress::new(record),
            out,
        }
    }

    fn put_len(&mut self, field: &'static str, len: usize) {
        match i64::try_from(len) {
            Ok(len) => self.put_long(len),
            Err(_) => self.fail(field, format!("length {len} does not fit an Avro long")),
        }
    }

    fn put_bytes(&mut self, field: &'static str, bytes: &[u8]) {
        self.put_len(field, bytes.len());
        self.out.extend_from_slice(bytes);
    }

    fn put_uuid(&mut self, field: &'static str, id: Uuid) {
        let mut text = Uuid::encode_buffer();
        let text = id.hyphenated().encode_lower(&mut text);
        self.put_bytes(field, text.as_bytes());
    }

    /// Zig-zag, then base-128 varint, least significant group first.
    fn put_long(&mut self, n: i64) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            self.out.push((z & 0x7f) as u8 | 0x80);
            z >>= 7;
        }
        self.out.push(z as u8);
    }

    /// `["null", T]`: the branch index, then the value written by `write` if there is one.
    fn union<T>(&mut self, value: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match value {
            None => self.put_long(0),
            Some(value) => {
                self.put_long(1);
                write(self, value);
            }
        }
    }

    /// One block of `len` items written by `item`, then the end marker; an empty array or map
    /// is the end marker alone.
    fn block<T>(
        &mut self,
        field: &'static str,
        items: impl ExactSizeIterator<Item = T>,
        mut item: impl FnMut(&mut Self, T),
    ) {
        if items.len() > 0 {
            self.put_len(field, items.len());
            for each in items {
                item(self, each);
            }
        }
        self.out.push(0);
    }
}

impl FieldWriter for DatumWriter {
    type Output = Vec<u8>;

    fn new(record: &'static str) -> DatumWriter {
        DatumWriter::after(record, &[])
    }

    fn fail(&mut self, field: &'static str, detail: String) {
        self.progress.fail(field, detail);
    }

    fn uuid(&mut self, field: &'static str, id: Uuid) {
        self.put_uuid(field, id);
    }

    fn opt_uuid(&mut self, field: &'static str, id: Option<Uuid>) {
        self.union(id, |w, id| w.put_uuid(field, id));
    }

    fn uuids<I: ExactSizeIterator<Item = Uuid>>(&mut self, field: &'static str, ids: I) {
        self.block(field, ids, |w, id| w.put_uuid(field, id));
    }

    fn time(&mut self, _field: &'static str, at: UnixMicros) {
        self.put_long(at.0);
    }

    fn string(&mut self, field: &'static str, text: &str) {
        self.put_bytes(field, text.as_bytes());
    }

    fn opt_string(&mut self, field: &'static str, text: Option<&str>) {
        self.union(text, |w, text| w.put_bytes(field, text.as_bytes()));
    }

    fn strings(&mut self, field: &'static str, items: &[String]) {
        self.block(field, items.iter(), |w, s| w.put_bytes(field, s.as_bytes()));
    }

    fn string_map(&mut self, field: &'static str, entries: &BTreeMap<String, String>) {
        // A BTreeMap of Strings iterates in ascending byte order of its keys.
        self.block(field, entries.iter(), |w, (key, value)| {
            w.put_bytes(field, key.as_bytes());
            w.put_bytes(field, value.as_bytes());
        });
    }

    fn long(&mut self, _field: &'static str, n: i64) {
        self.put_long(n);
    }

    fn opt_int(&mut self, _field: &'static str, n: Option<i32>) {
        self.union(n, |w, n| w.put_long(i64::from(n)));
    }

    fn boolean(&mut self, _field: &'static str, b: bool) {
        self.out.push(u8::from(b));
    }

    fn enum_index(&mut self, _field: &'static str, index: u32, _symbol: &'static str) {
        self.put_long(i64::from(index));
    }

    fn records<T>(
        &mut self,
        field: &'static str,
        record: &'static str,
        items: &[T],
        write: impl Fn(&T, &mut Self),
    ) {
        let outer = std::mem::replace(&mut self.progress.record, record);
        self.block(field, items.iter(), |w, item| write(item, w));
        self.progress.record = outer;
    }

    fn opt_record<T>(
        &mut self,
        _field: &'static str,
        record: &'static str,
        item: Option<&T>,
        write: impl Fn(&T, &mut Self),
    ) {
        self.union(item, |w, item| {
            let outer = std::mem::replace(&mut w.progress.record, record);
            write(item, w);
            w.progress.record = outer;
        });
    }

    fn finish(self) -> Result<Vec<u8>, AvroError> {
        self.progress.finish(self.out)
    }
}

fn null() -> Value {
    Value::Union(0, Box::new(Value::Null))
}

/// `["null", T]` with `T` at index 1.
fn some(value: Value) -> Value {
    Value::Union(1, Box::new(value))
}

/// Builds a `Value::Record` in schema field order.
pub(super) struct ValueWriter {
    progress: Progress,
    fields: Vec<(String, Value)>,
}

impl ValueWriter {
    fn put(&mut self, field: &'static str, value: Value) {
        self.fields.push((field.to_owned(), value));
    }

    fn put_result(&mut self, field: &'static str, value: Result<Value, AvroError>) {
        match value {
            Ok(value) => self.put(field, value),
            Err(e) => {
                self.progress.error.get_or_insert(e);
            }
        }
    }

    fn record<T>(
        record: &'static str,
        item: &T,
        write: &impl Fn(&T, &mut Self),
    ) -> Result<Value, AvroError> {
        let mut w = ValueWriter::new(record);
        write(item, &mut w);
        w.finish()
    }
}

impl FieldWriter for ValueWriter {
    type Output = Value;

    fn new(record: &'static str) -> ValueWriter {
        ValueWriter {
            progress: Progress::new(record),
            fields: Vec::with_capacity(32),
        }
    }

    fn fail(&mut self, field: &'static str, detail: String) {
        self.progress.fail(field, detail);
    }

    fn uuid(&mut self, field: &'static str, id: Uuid) {
        self.put(field, Value::Uuid(id));
    }

    fn opt_uuid(&mut self, field: &'static str, id: Option<Uuid>) {
        self.put(field, id.map_or_else(null, |id| some(Value::Uuid(id))));
    }

    fn uuids<I: ExactSizeIterator<Item = Uuid>>(&mut self, field: &'static str, ids: I) {
        self.put(field, Value::Array(ids.map(Value::Uuid).collect()));
    }

    fn time(&mut self, field: &'static str, at: UnixMicros) {
        self.put(field, Value::TimestampMicros(at.0));
    }

    fn string(&mut self, field: &'static str, text: &str) {
        self.put(field, Value::String(text.to_owned()));
    }

    fn opt_string(&mut self, field: &'static str, text: Option<&str>) {
        let value = text.map_or_else(null, |t| some(Value::String(t.to_owned())));
        self.put(field, value);
    }

    fn strings(&mut self, field: &'static str, items: &[String]) {
        let items = items.iter().map(|s| Value::String(s.clone()));
        self.put(field, Value::Array(items.collect()));
    }

    fn string_map(&mut self, field: &'static str, entries: &BTreeMap<String, String>) {
        let entries = entries
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())));
        self.put(field, Value::Map(entries.collect()));
    }

    fn long(&mut self, field: &'static str, n: i64) {
        self.put(field, Value::Long(n));
    }

    fn opt_int(&mut self, field: &'static str, n: Option<i32>) {
        self.put(field, n.map_or_else(null, |n| some(Value::Int(n))));
    }

    fn boolean(&mut self, field: &'static str, b: bool) {
        self.put(field, Value::Boolean(b));
    }

    fn enum_index(&mut self, field: &'static str, index: u32, symbol: &'static str) {
        self.put(field, Value::Enum(index, symbol.to_owned()));
    }

    fn records<T>(
        &mut self,
        field: &'static str,
        record: &'static str,
        items: &[T],
        write: impl Fn(&T, &mut Self),
    ) {
        let values: Result<Vec<Value>, AvroError> = items
            .iter()
            .map(|item| ValueWriter::record(record, item, &write))
            .collect();
        self.put_result(field, values.map(Value::Array));
    }

    fn opt_record<T>(
        &mut self,
        field: &'static str,
        record: &'static str,
        item: Option<&T>,
        write: impl Fn(&T, &mut Self),
    ) {
        let value = match item {
            None => Ok(null()),
            Some(item) => ValueWriter::record(record, item, &write).map(some),
        };
        self.put_result(field, value);
    }

    fn finish(self) -> Result<Value, AvroError> {
        self.progress.finish(Value::Record(self.fields))
    }
}
