//! Money as integer micro-units (1e-6) of an ISO 4217 currency: exact decimal parse and format,
//! checked arithmetic, and rate-times-quantity with rounding up. Never a float, anywhere.
//! Owns no I/O; every other module that touches an amount goes through these types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Micro-units in one unit of a currency (1 USD = 1_000_000 micros).
pub const MICROS_PER_UNIT: i64 = 1_000_000;
/// Decimal places an amount may carry.
pub const DECIMALS_MAX: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("malformed amount {0:?}: expected a decimal such as 1000.00")]
    Malformed(String),
    #[error("amount {0:?} has more than 6 decimal places")]
    TooPrecise(String),
    #[error("amount {0:?} is too large")]
    Overflow(String),
    #[error("arithmetic overflow on money")]
    ArithmeticOverflow,
    #[error("unknown currency {0:?}: expected an ISO 4217 code such as USD")]
    UnknownCurrency(String),
}

/// An amount in micro-units. Signed so that differences (remaining budget) can be expressed;
/// limits and costs are validated non-negative where they are created.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micros(pub i64);

impl Micros {
    pub const ZERO: Micros = Micros(0);

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Micros) -> Result<Micros, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(Micros)
            .ok_or(MoneyError::ArithmeticOverflow)
    }

    pub fn checked_sub(self, other: Micros) -> Result<Micros, MoneyError> {
        self.0
            .checked_sub(other.0)
            .map(Micros)
            .ok_or(MoneyError::ArithmeticOverflow)
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// `quantity * price_per_million / 1_000_000`, rounded up (towards +infinity): the cost of
    /// `quantity` tokens at a price given per one million tokens.
    pub fn per_million(quantity: u64, price_per_million: Micros) -> Result<Micros, MoneyError> {
        let product = i128::from(quantity) * i128::from(price_per_million.0);
        let cost = div_ceil_i128(product, 1_000_000);
        i64::try_from(cost)
            .map(Micros)
            .map_err(|_| MoneyError::ArithmeticOverflow)
    }

    /// Parses an exact decimal ("1000.00", "0.000001", "-3", "+2.5"). Rejects more than six
    /// decimals, exponents, blanks, and anything that does not fit an i64 of micro-units.
    pub fn parse(text: &str) -> Result<Micros, MoneyError> {
        let malformed = || MoneyError::Malformed(text.to_owned());
        let (negative, digits) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (whole, frac, has_point) = match digits.split_once('.') {
            Some((w, f)) => (w, f, true),
            None => (digits, "", false),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || (has_point && frac.is_empty())
            || !all_digits(whole)
            || !all_digits(frac)
        {
            return Err(malformed());
        }
        if frac.len() > DECIMALS_MAX {
            return Err(MoneyError::TooPrecise(text.to_owned()));
        }
        let overflow = || MoneyError::Overflow(text.to_owned());
        let mut units: i64 = 0;
        for b in whole.bytes() {
            units = units
                .checked_mul(10)
                .and_then(|u| u.checked_add(i64::from(b - b'0')))
                .ok_or_else(overflow)?;
        }
        let mut fraction: i64 = 0;
        for i in 0..DECIMALS_MAX {
            let digit = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
            fraction = fraction * 10 + digit;
        }
        let magnitude = units
            .checked_mul(MICROS_PER_UNIT)
            .and_then(|m| m.checked_add(fraction))
            .ok_or_else(overflow)?;
        Ok(Micros(if negative { -magnitude } else { magnitude }))
    }
}

/// Formats with at least two decimals and no more than needed: 100_000 → "0.10",
/// 1 → "0.000001", 1_000_000_000 → "1000.00". `Micros::parse` reads it back exactly.
impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        let per_unit = MICROS_PER_UNIT.unsigned_abs();
        let (units, fraction) = (magnitude / per_unit, magnitude % per_unit);
        let mut frac = format!("{fraction:06}");
        while frac.len() > 2 && frac.ends_with('0') {
            frac.pop();
        }
        write!(f, "{sign}{units}.{frac}")
    }
}

impl FromStr for Micros {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Micros::parse(s)
    }
}

fn div_ceil_i128(numerator: i128, denominator: i128) -> i128 {
    let q = numerator / denominator;
    if numerator % denominator > 0 {
        q + 1
    } else {
        q
    }
}

/// Serde helper for files people write (pricebooks): `Micros` as an exact decimal string,
/// `"2.50"`, through `Micros::parse` and `Display`, so no amount ever passes through a float.
/// Use as `#[serde(with = "crate::core::money::decimal_string")]`, or `::option` for
/// `Option<Micros>`.
pub mod decimal_string {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;

    use super::Micros;

    pub fn serialize<S: Serializer>(amount: &Micros, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(amount)
    }

    /// Errors are raised inside the format's deserializer, so formats that track paths
    /// (serde_yaml: `prices[3].input: ...`) name the field.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Micros, D::Error> {
        d.deserialize_str(DecimalVisitor)
    }

    struct DecimalVisitor;

    impl Visitor<'_> for DecimalVisitor {
        type Value = Micros;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an exact decimal amount as a string, such as \"2.50\"")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Micros, E> {
            Micros::parse(text).map_err(E::custom)
        }
    }

    /// The same for an optional amount; absent or null is `None`.
    pub mod option {
        use std::fmt;

        use serde::de::{Deserializer, Visitor};
        use serde::Serializer;

        use super::Micros;

        pub fn serialize<S: Serializer>(amount: &Option<Micros>, s: S) -> Result<S::Ok, S::Error> {
            match amount {
                Some(amount) => s.collect_str(amount),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Micros>, D::Error> {
            d.deserialize_option(OptionVisitor)
        }

        struct OptionVisitor;

        impl<'de> Visitor<'de> for OptionVisitor {
            type Value = Option<Micros>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an exact decimal amount as a string, or null")
            }

            fn visit_none<E>(self) -> Result<Option<Micros>, E> {
                Ok(None)
            }

            fn visit_unit<E>(self) -> Result<Option<Micros>, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<Micros>, D::Error> {
                super::deserialize(d).map(Some)
            }
        }
    }
}

/// ISO 4217 codes accepted for budgets and prices. A short, explicit list: a typo such as
/// "USDD" or "EUROS" is an error, not a new currency.
const KNOWN_CURRENCIES: &[&str] = &[
    "USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "NZD", "CNY", "HKD", "SGD", "INR", "KRW",
    "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "BRL", "MXN", "ZAR", "ILS", "AED", "SAR", "TRY",
    "TWD", "THB", "IDR", "MYR", "PHP", "VND",
];

/// An ISO 4217 currency code from the accepted list, always upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn parse(text: &str) -> Result<Currency, MoneyError> {
        let upper = text.trim().to_ascii_uppercase();
        if !KNOWN_CURRENCIES.contains(&upper.as_str()) {
            return Err(MoneyError::UnknownCurrency(text.to_owned()));
        }
        let bytes = upper.as_bytes();
        Ok(Currency([bytes[0], bytes[1], bytes[2]]))
    }

    /// Whether `text` is a currency code exactly as `as_str` prints one (no parsing needed).
    pub fn is_printed_form(text: &str) -> bool {
        KNOWN_CURRENCIES.contains(&text)
    }

    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII codes of KNOWN_CURRENCIES.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(CurrencyVisitor)
    }
}

/// Parses inside the format's deserializer, so path-tracking formats name the field.
struct CurrencyVisitor;

impl serde::de::Visitor<'_> for CurrencyVisitor {
    type Value = Currency;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ISO 4217 currency code such as USD")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Currency, E> {
        Currency::parse(text).map_err(E::custom)
    }
}

/// An amount together with its currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub micros: Micros,
    pub currency: Currency,
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.micros, self.currency)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_seed_examples_exactly() {
        assert_eq!(Micros::parse("1000.00").unwrap(), Micros(1_000_000_000));
        assert_eq!(Micros::parse("0.000001").unwrap(), Micros(1));
        assert_eq!(Micros::parse("0.10").unwrap(), Micros(100_000));
        assert_eq!(Micros::parse("7").unwrap(), Micros(7_000_000));
        assert_eq!(Micros::parse("-1.5").unwrap(), Micros(-1_500_000));
    }

    #[test]
    fn rejects_what_is_not_an_exact_decimal() {
        for bad in [
            "", ".", "-", "1.2.3", "1e3", "abc", " 1", "1,00", "0x10", "--1", "1.", ".5",
        ] {
            assert!(Micros::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(matches!(
            Micros::parse("0.0000001"),
            Err(MoneyError::TooPrecise(_))
        ));
        assert!(matches!(
            Micros::parse("99999999999999999"),
            Err(MoneyError::Overflow(_))
        ));
    }

    #[test]
    fn formats_with_two_to_six_decimals() {
        assert_eq!(Micros(100_000).to_string(), "0.10");
        assert_eq!(Micros(1).to_string(), "0.000001");
        assert_eq!(Micros(1_000_000_000).to_string(), "1000.00");
        assert_eq!(Micros(-2_500_000).to_string(), "-2.50");
        assert_eq!(Micros(i64::MIN).to_string(), "-9223372036854.775808");
    }

    #[test]
    fn cost_per_million_rounds_up() {
        // 3 tokens at $2.50 / 1M tokens = 7.5 micros → 8.
        assert_eq!(
            Micros::per_million(3, Micros(2_500_000)).unwrap(),
            Micros(8)
        );
        assert_eq!(
            Micros::per_million(1_000_000, Micros(2_500_000)).unwrap(),
            Micros(2_500_000)
        );
        assert_eq!(
            Micros::per_million(0, Micros(2_500_000)).unwrap(),
            Micros(0)
        );
        assert!(Micros::per_million(u64::MAX, Micros(i64::MAX)).is_err());
    }

    #[test]
    fn currencies_are_checked() {
        assert_eq!(Currency::parse("usd").unwrap(), Currency::USD);
        assert!(Currency::parse("XYZ").is_err());
        assert!(Currency::parse("US").is_err());
    }

    #[test]
    fn decimal_string_helper_round_trips_through_json_exactly() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Row {
            #[serde(with = "decimal_string")]
            amount: Micros,
            #[serde(default, with = "decimal_string::option")]
            extra: Option<Micros>,
        }
        let row = Row {
            amount: Micros(2_500_000),
            extra: Some(Micros(1)),
        };
        let text = serde_json::to_string(&row).unwrap();
        assert_eq!(text, r#"{"amount":"2.50","extra":"0.000001"}"#);
        assert_eq!(serde_json::from_str::<Row>(&text).unwrap(), row);
        let bare: Row = serde_json::from_str(r#"{"amount":"0.10"}"#).unwrap();
        assert_eq!(
            bare,
            Row {
                amount: Micros(100_000),
                extra: None
            }
        );
        assert!(serde_json::from_str::<Row>(r#"{"amount":"1e3"}"#).is_err());
        assert!(serde_json::from_str::<Row>(r#"{"amount":2.5}"#).is_err());
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(m in any::<i64>()) {
            prop_assert_eq!(Micros::parse(&Micros(m).to_string()).unwrap(), Micros(m));
        }

        #[test]
        fn parse_matches_integer_arithmetic(units in 0i64..9_000_000_000_000, frac in 0i64..1_000_000) {
            let text = format!("{units}.{frac:06}");
            prop_assert_eq!(Micros::parse(&text).unwrap(), Micros(units * 1_000_000 + frac));
        }

        #[test]
        fn per_million_never_undercharges(q in 0u64..10_000_000_000, p in 0i64..1_000_000_000) {
            let cost = Micros::per_million(q, Micros(p)).unwrap().0 as i128;
            let exact = q as i128 * p as i128;
            prop_assert!(cost * 1_000_000 >= exact);
            prop_assert!((cost - 1) * 1_000_000 < exact || cost == 0);
        }
    }
}
