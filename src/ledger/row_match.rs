//! The fast answer to "do a row's stored columns say exactly what its sealed bytes say?": one
//! pass over the Avro datum comparing each kept field's bytes with the stored column, no
//! decoding into values, no allocation. It only ever answers "certainly equal" (`true`) or
//! "not certain" (`false`); `verify::check_row` then runs the full decode
//! (`columns::columns_ref` + `first_difference`), which names the difference or finds none. So
//! this must never say `true` where the full check would report a failure (tested), and it
//! must not report anything itself.

use super::columns::{is_canonical_uuid_bytes, DatumError, Reader};
use crate::core::events::Outcome;
use crate::core::money::Currency;
use crate::store::ledger::ColumnsView;

/// Whether `stored` is certainly what `columns::columns_ref(datum)` decodes to.
pub fn stored_matches_sealed(datum: &[u8], stored: &ColumnsView<'_>) -> bool {
    let mut r = Reader {
        bytes: datum,
        at: 0,
    };
    matches(&mut r, stored).unwrap_or(false) && r.at == datum.len()
}

/// Returns `Ok(false)` from the enclosing function unless the condition holds.
macro_rules! ensure {
    ($cond:expr) => {
        if !$cond {
            return Ok(false);
        }
    };
}

impl Reader<'_> {
    /// The next field is a canonical UUID equal to `stored`.
    fn same_uuid(&mut self, stored: &str) -> Result<bool, DatumError> {
        let sealed = self.bytes()?;
        Ok(sealed == stored.as_bytes() && is_canonical_uuid_bytes(sealed))
    }

    /// The next field is a string equal to `stored` (so it is UTF-8 too).
    fn same_str(&mut self, stored: &str) -> Result<bool, DatumError> {
        Ok(self.bytes()? == stored.as_bytes())
    }

    /// The next field is a UUID the full decoder keeps as it is.
    fn canonical_uuid(&mut self) -> Result<bool, DatumError> {
        Ok(is_canonical_uuid_bytes(self.bytes()?))
    }

    /// The next field is a UTF-8 string.
    fn utf8(&mut self) -> Result<bool, DatumError> {
        Ok(std::str::from_utf8(self.bytes()?).is_ok())
    }

    /// The next field is an Avro array or map whose every element passes `item`.
    fn all_items(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<bool, DatumError>,
    ) -> Result<bool, DatumError> {
        let mut all = true;
        self.blocks(|r| {
            all = all && item(r)?;
            Ok(())
        })?;
        Ok(all)
    }
}

/// The fields in the schema order `columns::columns_ref` reads them.
fn matches(r: &mut Reader<'_>, stored: &ColumnsView<'_>) -> Result<bool, DatumError> {
    ensure!(r.same_uuid(stored.event_id)?);
    ensure!(r.long()? == stored.occurred_at_micros);
    ensure!(r.same_uuid(stored.request_id)?);
    if r.union_index(2)? == 1 {
        ensure!(r.utf8()?); // correlation_id
    }
    ensure!(r.same_uuid(stored.agent_id)?);
    match (r.union_index(2)?, stored.parent_id) {
        (0, None) => {}
        (1, Some(parent)) => ensure!(r.same_uuid(parent)?),
        _ => return Ok(false),
    }
    ensure!(r.same_uuid(stored.root_agent_id)?);
    let mut ancestors = stored.ancestor_ids.iter();
    ensure!(r.all_items(|r| match ancestors.next() {
        Some(stored) => r.same_uuid(stored),
        None => Ok(false),
    })?);
    ensure!(ancestors.next().is_none());
    r.enum_index(2)?; // source
    ensure!(r.same_str(stored.provider)?);
    ensure!(r.same_str(stored.resource)?);
    ensure!(r.same_str(stored.operation)?);
    ensure!(r.count_long()? == stored.input_tokens);
    ensure!(r.count_long()? == stored.cached_input_tokens);
    r.count_long()?; // cache_write_input_tokens
    ensure!(r.count_long()? == stored.output_tokens);
    ensure!(r.count_long()? == stored.calls);
    ensure!(r.long()? == stored.cost_micros);
    ensure!(r.long()? == stored.reserved_micros);
    ensure!(r.same_str(stored.currency)? && Currency::is_printed_form(stored.currency));
    let estimated = r.bytes.get(r.at).copied();
    r.at += 1;
    ensure!(estimated == Some(u8::from(stored.estimated)));
    ensure!(Outcome::ALL[r.enum_index(Outcome::ALL.len())?].as_str() == stored.outcome);
    if r.union_index(2)? == 1 {
        ensure!(u16::try_from(r.long()?).is_ok()); // upstream_status
    }
    ensure!(r.canonical_uuid()?); // reservation_id
    ensure!(r.all_items(Reader::canonical_uuid)?); // policy_ids
    r.long()?; // pricebook_version
    ensure!(r.utf8()?); // instance
    r.count_long()?; // upstream_latency_micros
    ensure!(r.all_items(|r| Ok(r.utf8()? && r.utf8()?))?); // metadata
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;
    use crate::ledger::columns::columns_ref;
    use crate::store::ledger::{AncestorsView, LedgerColumns, StoredRow};

    /// The full check's verdict: no failure.
    fn full_check_passes(datum: &[u8], stored: &ColumnsView<'_>) -> bool {
        columns_ref(datum).is_ok_and(|sealed| sealed.first_difference(stored).is_none())
    }

    fn sample() -> (Vec<u8>, LedgerColumns) {
        let event = crate::ledger::columns::tests::event(
            11,
            424_242,
            [("k".to_owned(), "v".to_owned())].into(),
            true,
        );
        let datum = crate::bus::avro::encode_datum(&event).unwrap();
        (datum, LedgerColumns::from_event(&event))
    }

    fn row(columns: LedgerColumns) -> StoredRow {
        StoredRow {
            partition: 0,
            seq: 0,
            source_offset: 0,
            columns,
            datum: vec![],
        }
    }

    #[test]
    fn an_unaltered_row_matches_in_either_ancestor_form() {
        let (datum, columns) = sample();
        let row = row(columns.clone());
        let stored = row.view().columns;
        assert!(stored_matches_sealed(&datum, &stored));
        let joined = format!(",{},", columns.ancestor_ids.join(","));
        let mut as_joined = stored;
        as_joined.ancestor_ids = AncestorsView::Joined(&joined);
        assert!(stored_matches_sealed(&datum, &as_joined));
    }

    #[test]
    fn every_altered_column_is_left_to_the_full_check() {
        let (datum, columns) = sample();
        let alterations: Vec<fn(&mut LedgerColumns)> = vec![
            |c| c.event_id.replace_range(0..1, "A"),
            |c| c.occurred_at_micros += 1,
            |c| c.request_id = c.agent_id.clone(),
            |c| c.agent_id.replace_range(0..1, "f"),
            |c| c.parent_id = None,
            |c| c.root_agent_id.push('0'),
            |c| {
                c.ancestor_ids.pop();
            },
            |c| c.ancestor_ids.push(c.agent_id.clone()),
            |c| c.provider.push('x'),
            |c| c.resource.clear(),
            |c| c.operation = "embeddings".into(),
            |c| c.input_tokens += 1,
            |c| c.cached_input_tokens -= 1,
            |c| c.output_tokens = 0,
            |c| c.calls += 1,
            |c| c.cost_micros -= 1,
            |c| c.reserved_micros += 1_000,
            |c| c.currency = "eur".into(),
            |c| c.currency = "GBP".into(),
            |c| c.estimated = !c.estimated,
            |c| c.outcome = "client_disconnected".into(),
        ];
        for (i, alter) in alterations.into_iter().enumerate() {
            let mut altered = columns.clone();
            alter(&mut altered);
            let row = row(altered);
            let stored = row.view().columns;
            assert!(!full_check_passes(&datum, &stored), "alteration {i}");
            assert!(!stored_matches_sealed(&datum, &stored), "alteration {i}");
        }
    }

    #[test]
    fn a_truncated_or_padded_datum_never_matches() {
        let (datum, columns) = sample();
        let row = row(columns);
        let stored = row.view().columns;
        assert!(!stored_matches_sealed(&datum[..datum.len() - 1], &stored));
        let mut padded = datum.clone();
        padded.push(0);
        assert!(!stored_matches_sealed(&padded, &stored));
    }

    proptest! {
        #[test]
        fn never_matches_where_the_full_check_fails(
            byte in any::<usize>(),
            value in any::<u8>(),
        ) {
            let (mut datum, columns) = sample();
            let at = byte % datum.len();
            datum[at] = value;
            let row = row(columns);
            let stored = row.view().columns;
            if stored_matches_sealed(&datum, &stored) {
                prop_assert!(full_check_passes(&datum, &stored));
            }
        }
    }
}
