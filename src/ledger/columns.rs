//! A direct reader of a MeteringEvent's Avro binary datum into ledger columns: every field is
//! parsed in schema order (so a malformed datum is refused), the ones the ledger keeps are
//! returned. It exists for speed: verification decodes every row, and the generic Avro
//! decoder costs more than hashing. It must agree with `LedgerColumns::from_event` of the
//! full decode on every valid datum (tested); it never writes or changes a byte.

use std::borrow::Cow;

use uuid::Uuid;

use crate::core::events::Outcome;
use crate::core::money::Currency;
use crate::store::ledger::{AncestorsView, ColumnsView, LedgerColumns};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MeteringEvent datum: {what} at byte {at}")]
pub struct DatumError {
    pub what: &'static str,
    pub at: usize,
}

pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) at: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, what: &'static str) -> Result<T, DatumError> {
        Err(DatumError { what, at: self.at })
    }

    pub(super) fn long(&mut self) -> Result<i64, DatumError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.bytes.get(self.at) else {
                return self.fail("truncated varint");
            };
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        self.fail("varint longer than 10 bytes")
    }

    fn count(&mut self, what: &'static str) -> Result<usize, DatumError> {
        match usize::try_from(self.long()?) {
            Ok(n) if n <= self.bytes.len() - self.at => Ok(n),
            _ => self.fail(what),
        }
    }

    pub(super) fn bytes(&mut self) -> Result<&'a [u8], DatumError> {
        let len = self.count("string length out of range")?;
        let slice = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(slice)
    }

    fn string(&mut self) -> Result<&'a str, DatumError> {
        let at = self.at;
        std::str::from_utf8(self.bytes()?).map_err(|_| DatumError {
            what: "string is not UTF-8",
            at,
        })
    }

    fn uuid(&mut self) -> Result<Cow<'a, str>, DatumError> {
        let at = self.at;
        let text = self.string()?;
        if is_canonical_uuid(text) {
            return Ok(Cow::Borrowed(text));
        }
        Uuid::parse_str(text)
            .map(|id| Cow::Owned(id.to_string()))
            .map_err(|_| DatumError {
                what: "uuid field is not a UUID",
                at,
            })
    }

    pub(super) fn count_long(&mut self) -> Result<i64, DatumError> {
        let n = self.long()?;
        if n < 0 {
            return self.fail("negative count");
        }
        Ok(n)
    }

    pub(super) fn union_index(&mut self, branches: i64) -> Result<i64, DatumError> {
        let index = self.long()?;
        if !(0..branches).contains(&index) {
            return self.fail("union branch out of range");
        }
        Ok(index)
    }

    pub(super) fn enum_index(&mut self, symbols: usize) -> Result<usize, DatumError> {
        match usize::try_from(self.long()?) {
            Ok(i) if i < symbols => Ok(i),
            _ => self.fail("enum symbol out of range"),
        }
    }

    /// An array or map: calls `item` once per element, across blocks.
    pub(super) fn blocks(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), DatumError>,
    ) -> Result<(), DatumError> {
        loop {
            let mut n = self.long()?;
            if n == 0 {
                return Ok(());
            }
            if n < 0 {
                n = n.checked_neg().ok_or(DatumError {
                    what: "block count out of range",
                    at: self.at,
                })?;
                self.long()?; // the block's byte size
            }
            if usize::try_from(n).map_or(true, |n| n > self.bytes.len() - self.at) {
                return self.fail("block count out of range");
            }
            for _ in 0..n {
                item(self)?;
            }
        }
    }
}

/// Lowercase hex digits, by byte.
const LOWER_HEX: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(b as u8, b'0'..=b'9' | b'a'..=b'f');
        b += 1;
    }
    table
};

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lowercase hex: the form `Uuid` prints, kept as is.
fn is_canonical_uuid(text: &str) -> bool {
    is_canonical_uuid_bytes(text.as_bytes())
}

/// `is_canonical_uuid` of bytes (which are then ASCII).
pub(super) fn is_canonical_uuid_bytes(b: &[u8]) -> bool {
    b.len() == 36
        && b[8] == b'-'
        && b[13] == b'-'
        && b[18] == b'-'
        && b[23] == b'-'
        && [&b[..8], &b[9..13], &b[14..18], &b[19..23], &b[24..]]
            .iter()
            .all(|group| group.iter().all(|&c| LOWER_HEX[usize::from(c)]))
}

/// The ledger columns of a MeteringEvent datum, borrowing its strings (a UUID is copied only
/// when it is not in canonical form): verification compares these with a row's stored columns
/// without allocating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnsRef<'a> {
    pub event_id: Cow<'a, str>,
    pub occurred_at_micros: i64,
    pub request_id: Cow<'a, str>,
    pub agent_id: Cow<'a, str>,
    pub parent_id: Option<Cow<'a, str>>,
    pub root_agent_id: Cow<'a, str>,
    pub ancestor_ids: Vec<Cow<'a, str>>,
    pub provider: &'a str,
    pub resource: &'a str,
    pub operation: &'a str,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub calls: i64,
    pub cost_micros: i64,
    pub reserved_micros: i64,
    pub currency: Currency,
    pub estimated: bool,
    pub outcome: &'static str,
}

/// Equality of a stored column with its sealed (borrowed) value.
trait SameAs<T> {
    fn same_as(&self, sealed: &T) -> bool;
}

impl SameAs<i64> for i64 {
    fn same_as(&self, sealed: &i64) -> bool {
        self == sealed
    }
}

impl SameAs<bool> for bool {
    fn same_as(&self, sealed: &bool) -> bool {
        self == sealed
    }
}

impl SameAs<&str> for &str {
    fn same_as(&self, sealed: &&str) -> bool {
        self == sealed
    }
}

impl SameAs<Cow<'_, str>> for &str {
    fn same_as(&self, sealed: &Cow<'_, str>) -> bool {
        *self == sealed.as_ref()
    }
}

impl SameAs<Option<Cow<'_, str>>> for Option<&str> {
    fn same_as(&self, sealed: &Option<Cow<'_, str>>) -> bool {
        *self == sealed.as_deref()
    }
}

impl SameAs<Vec<Cow<'_, str>>> for AncestorsView<'_> {
    fn same_as(&self, sealed: &Vec<Cow<'_, str>>) -> bool {
        self.iter().eq(sealed.iter().map(|a| a.as_ref()))
    }
}

/// A stored value as a `LedgerColumns` field prints (`Debug`).
trait Shown {
    fn shown(&self) -> String;
}

impl<T: std::fmt::Debug> Shown for T {
    fn shown(&self) -> String {
        format!("{self:?}")
    }
}

/// The ancestor ids as a `Vec<String>` prints.
fn shown_ancestors(ancestors: &AncestorsView<'_>) -> String {
    format!("{:?}", ancestors.iter().collect::<Vec<_>>())
}

impl ColumnsRef<'_> {
    /// The stored columns these sealed ones decode to.
    pub fn to_columns(&self) -> LedgerColumns {
        LedgerColumns {
            event_id: self.event_id.clone().into_owned(),
            occurred_at_micros: self.occurred_at_micros,
            request_id: self.request_id.clone().into_owned(),
            agent_id: self.agent_id.clone().into_owned(),
            parent_id: self.parent_id.clone().map(Cow::into_owned),
            root_agent_id: self.root_agent_id.clone().into_owned(),
            ancestor_ids: self
                .ancestor_ids
                .iter()
                .map(|a| a.clone().into_owned())
                .collect(),
            provider: self.provider.to_owned(),
            resource: self.resource.to_owned(),
            operation: self.operation.to_owned(),
            input_tokens: self.input_tokens,
            cached_input_tokens: self.cached_input_tokens,
            output_tokens: self.output_tokens,
            calls: self.calls,
            cost_micros: self.cost_micros,
            reserved_micros: self.reserved_micros,
            currency: self.currency.to_string(),
            estimated: self.estimated,
            outcome: self.outcome.to_owned(),
        }
    }

    /// The name, stored value and sealed value of the first stored column that differs from
    /// these sealed ones (values in `Debug` form, as a `LedgerColumns` field prints).
    pub fn first_difference(
        &self,
        stored: &ColumnsView<'_>,
    ) -> Option<(&'static str, String, String)> {
        macro_rules! compare {
            ($($field:ident),+) => {
                $(if !stored.$field.same_as(&self.$field) {
                    return Some((
                        stringify!($field),
                        stored.$field.shown(),
                        format!("{:?}", self.$field),
                    ));
                })+
            };
        }
        compare!(
            event_id,
            occurred_at_micros,
            request_id,
            agent_id,
            parent_id,
            root_agent_id
        );
        if !stored.ancestor_ids.same_as(&self.ancestor_ids) {
            return Some((
                "ancestor_ids",
                shown_ancestors(&stored.ancestor_ids),
                format!("{:?}", self.ancestor_ids),
            ));
        }
        compare!(
            provider,
            resource,
            operation,
            input_tokens,
            cached_input_tokens,
            output_tokens,
            calls,
            cost_micros,
            reserved_micros
        );
        let currency = self.currency.as_str();
        if stored.currency != currency {
            return Some((
                "currency",
                format!("{:?}", stored.currency),
                format!("{currency:?}"),
            ));
        }
        compare!(estimated, outcome);
        None
    }
}

/// The ledger columns of a MeteringEvent datum (unframed Avro binary).
pub fn columns_of(datum: &[u8]) -> Result<LedgerColumns, DatumError> {
    columns_ref(datum).map(|c| c.to_columns())
}

/// The ledger columns of a MeteringEvent datum, borrowed from it.
pub fn columns_ref(datum: &[u8]) -> Result<ColumnsRef<'_>, DatumError> {
    let mut r = Reader {
        bytes: datum,
        at: 0,
    };
    let event_id = r.uuid()?;
    let occurred_at_micros = r.long()?;
    let request_id = r.uuid()?;
    if r.union_index(2)? == 1 {
        r.string()?; // correlation_id
    }
    let agent_id = r.uuid()?;
    let parent_id = match r.union_index(2)? {
        1 => Some(r.uuid()?),
        _ => None,
    };
    let root_agent_id = r.uuid()?;
    let mut ancestor_ids = Vec::new();
    r.blocks(|r| {
        ancestor_ids.push(r.uuid()?);
        Ok(())
    })?;
    r.enum_index(2)?; // source
    let provider = r.string()?;
    let resource = r.string()?;
    let operation = r.string()?;
    let input_tokens = r.count_long()?;
    let cached_input_tokens = r.count_long()?;
    r.count_long()?; // cache_write_input_tokens
    let output_tokens = r.count_long()?;
    let calls = r.count_long()?;
    let cost_micros = r.long()?;
    let reserved_micros = r.long()?;
    let currency_at = r.at;
    let currency = r.string()?;
    let currency = Currency::parse(currency).map_err(|_| DatumError {
        what: "unknown currency",
        at: currency_at,
    })?;
    let estimated = match r.bytes.get(r.at) {
        Some(0) => false,
        Some(1) => true,
        _ => return r.fail("boolean is not 0 or 1"),
    };
    r.at += 1;
    let outcome = Outcome::ALL[r.enum_index(Outcome::ALL.len())?].as_str();
    if r.union_index(2)? == 1 {
        let status = r.long()?;
        if u16::try_from(status).is_err() {
            return r.fail("upstream_status out of range");
        }
    }
    r.uuid()?; // reservation_id
    r.blocks(|r| r.uuid().map(|_| ()))?; // policy_ids
    r.long()?; // pricebook_version
    r.string()?; // instance
    r.count_long()?; // upstream_latency_micros
    r.blocks(|r| {
        r.string()?;
        r.string().map(|_| ())
    })?; // metadata
    if r.at != datum.len() {
        return r.fail("trailing bytes after the record");
    }
    Ok(ColumnsRef {
        event_id,
        occurred_at_micros,
        request_id,
        agent_id,
        parent_id,
        root_agent_id,
        ancestor_ids,
        provider,
        resource,
        operation,
        input_tokens,
        cached_input_tokens,
        output_tokens,
        calls,
        cost_micros,
        reserved_micros,
        currency,
        estimated,
        outcome,
    })
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::bus::avro;
    use crate::core::agent::AgentId;
    use crate::core::events::{MeteringEvent, Source, UnixMicros};
    use crate::core::money::Micros;
    use crate::core::policy::PolicyId;

    pub(crate) fn event(
        seed: u128,
        big: u64,
        metadata: BTreeMap<String, String>,
        some: bool,
    ) -> MeteringEvent {
        let id = |n: u128| Uuid::from_u128(seed.wrapping_mul(31).wrapping_add(n));
        MeteringEvent {
            event_id: id(1),
            occurred_at: UnixMicros(i64::try_from(big % (1 << 60)).unwrap() - (1 << 59)),
            request_id: id(2),
            correlation_id: some.then(|| "corr-é".to_owned()),
            agent_id: AgentId(id(3)),
            parent_id: some.then(|| AgentId(id(4))),
            root_agent_id: AgentId(id(5)),
            ancestor_ids: if some {
                vec![AgentId(id(4)), AgentId(id(5))]
            } else {
                vec![]
            },
            source: if some { Source::Gateway } else { Source::Mcp },
            provider: "anthropic".into(),
            resource: format!("model-{seed}"),
            operation: "messages".into(),
            input_tokens: big % 1_000_000_007,
            cached_input_tokens: big % 13,
            cache_write_input_tokens: big % 7,
            output_tokens: big % 999_983,
            calls: 1 + big % 3,
            cost_micros: Micros(i64::try_from(big % (1 << 62)).unwrap()),
            reserved_micros: Micros(-(i64::try_from(big % 1000).unwrap())),
            currency: Currency::parse(if some { "EUR" } else { "USD" }).unwrap(),
            estimated: some,
            outcome: Outcome::ALL[usize::try_from(big % 4).unwrap()],
            upstream_status: some.then(|| u16::try_from(big % 600).unwrap()),
            reservation_id: id(6),
            policy_ids: vec![PolicyId(id(7)); usize::try_from(big % 3).unwrap()],
            pricebook_version: 9,
            instance: "gw".into(),
            upstream_latency_micros: big % 5_000_000,
            metadata,
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_full_decoder(
            seed in any::<u128>(),
            big in any::<u64>(),
            some in any::<bool>(),
            metadata in proptest::collection::btree_map(".{0,8}", ".{0,8}", 0..4),
        ) {
            let event = event(seed, big, metadata, some);
            let datum = avro::encode_datum(&event).unwrap();
            let columns = LedgerColumns::from_event(&event);
            prop_assert_eq!(columns_of(&datum).unwrap(), columns.clone());
            let row = crate::store::ledger::StoredRow {
                partition: 0,
                seq: 0,
                source_offset: 0,
                columns,
                datum: datum.clone(),
            };
            prop_assert_eq!(columns_ref(&datum).unwrap().first_difference(&row.view().columns), None);
        }

        #[test]
        fn garbage_is_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = columns_of(&bytes);
        }
    }

    #[test]
    fn uuids_come_out_in_canonical_form_whatever_their_case() {
        assert!(is_canonical_uuid("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
        assert!(!is_canonical_uuid("0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B"));
        assert!(!is_canonical_uuid("0190a1b2c3d47e5f8a9b0c1d2e3f4a5b"));
        let mut r = Reader { bytes: b"\x48\x30\x31\x39\x30\x41\x31\x42\x32\x2d\x43\x33\x44\x34\x2d\x37\x45\x35\x46\x2d\x38\x41\x39\x42\x2d\x30\x43\x31\x44\x32\x45\x33\x46\x34\x41\x35\x42", at: 0 };
        assert_eq!(r.uuid().unwrap(), "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    }

    #[test]
    fn a_changed_column_is_named_with_its_stored_and_sealed_values() {
        let event = event(3, 987_654_321, BTreeMap::new(), true);
        let datum = avro::encode_datum(&event).unwrap();
        let sealed = LedgerColumns::from_event(&event);
        let row = |columns: LedgerColumns| crate::store::ledger::StoredRow {
            partition: 0,
            seq: 0,
            source_offset: 0,
            columns,
            datum: datum.clone(),
        };
        let decoded = columns_ref(&datum).unwrap();

        let mut stored = sealed.clone();
        stored.cost_micros += 1;
        stored.ancestor_ids.pop();
        let expected = Some((
            "ancestor_ids",
            format!("{:?}", stored.ancestor_ids),
            format!("{:?}", sealed.ancestor_ids),
        ));
        let altered = row(stored.clone());
        assert_eq!(decoded.first_difference(&altered.view().columns), expected);
        // The embedded store's joined form reads the same.
        let joined = format!(",{},", stored.ancestor_ids.join(","));
        let mut view = altered.view().columns;
        view.ancestor_ids = AncestorsView::Joined(&joined);
        assert_eq!(decoded.first_difference(&view), expected);

        let mut stored = sealed.clone();
        stored.currency = "GBP".into();
        assert_eq!(
            decoded.first_difference(&row(stored).view().columns),
            Some(("currency", "\"GBP\"".into(), "\"EUR\"".into()))
        );
        assert_eq!(decoded.first_difference(&row(sealed).view().columns), None);
    }

    #[test]
    fn a_truncated_or_padded_datum_is_refused() {
        let event = event(7, 123_456_789, BTreeMap::new(), true);
        let datum = avro::encode_datum(&event).unwrap();
        assert!(columns_of(&datum[..datum.len() - 1]).is_err());
        let mut padded = datum.clone();
        padded.push(0);
        assert_eq!(
            columns_of(&padded).unwrap_err().what,
            "trailing bytes after the record"
        );
    }
}
