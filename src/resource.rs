//! Kubernetes resource quantities (`resource.Quantity`): parsing and the integer views the agent
//! needs.
//!
//! The grammar and semantics follow apimachinery's `resource.ParseQuantity`:
//!
//! ```text
//! quantity        ::= <signedNumber><suffix>
//! signedNumber    ::= [+-] <digits> [ "." <digits> ] | [+-] "." <digits>
//! suffix          ::= <binarySI> | <decimalExponent> | <decimalSI>
//! binarySI        ::= Ki | Mi | Gi | Ti | Pi | Ei
//! decimalSI       ::= n | u | m | "" | k | M | G | T | P | E
//! decimalExponent ::= "e" <signedNumber> | "E" <signedNumber>
//! ```
//!
//! A parsed [`Quantity`] keeps its amount exactly, in nano-units, rounded *up* (away from zero)
//! to the nearest nano-unit as apimachinery does ("if you asked for some resource, you get some").
//! Magnitudes above `2^63 - 1` units are capped there, as apimachinery caps decimal-SI and
//! binary-SI amounts (it leaves decimal-exponent amounts uncapped, but their `Value()` is then
//! meaningless; we cap them too). [`Quantity::value`] and [`Quantity::milli_value`] round up like
//! Go's `Value()` and `MilliValue()`.
//!
//! One deliberate strictness: apimachinery accepts a number with no digit at all (`"."`, `"+"`,
//! `"Mi"` all read as zero); we reject them, since in a manifest or a flag they are always typos.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

/// The regular expression apimachinery quotes when a quantity is malformed.
pub const QUANTITY_REGEX: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// Longest quantity string we accept; longer ones are rejected rather than computed with.
const MAX_INPUT_LEN: usize = 1024;

const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// The largest magnitude, in nano-units: `(2^63 - 1)` units.
const MAX_NANOS: i128 = (i64::MAX as i128) * NANOS_PER_UNIT;

/// Why a quantity string was rejected. Each variant names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string does not match [`QUANTITY_REGEX`].
    #[error("invalid quantity {input:?}: quantities must match the regular expression '{QUANTITY_REGEX}'")]
    Format { input: String },
    /// The numeric part cannot be used (for example it is absurdly long).
    #[error("invalid quantity {input:?}: unable to parse numeric part of quantity")]
    Numeric { input: String },
    /// The suffix is none of the known SI, binary or exponent suffixes.
    #[error("invalid quantity {input:?}: unable to parse quantity's suffix")]
    Suffix { input: String },
}

impl QuantityError {
    /// The input that was rejected.
    pub fn input(&self) -> &str {
        match self {
            Self::Format { input } | Self::Numeric { input } | Self::Suffix { input } => input,
        }
    }

    /// The reason alone, worded as the API server words it (used in field errors such as
    /// `spec.containers[0].resources.limits[memory]: Invalid value: "12Q": <reason>`).
    pub fn reason(&self) -> String {
        match self {
            Self::Format { .. } => {
                format!("quantities must match the regular expression '{QUANTITY_REGEX}'")
            }
            Self::Numeric { .. } => "unable to parse numeric part of quantity".to_string(),
            Self::Suffix { .. } => "unable to parse quantity's suffix".to_string(),
        }
    }
}

/// How a quantity was written: it decides nothing about the amount, only how it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantityFormat {
    /// `100Mi`, `1Gi`: powers of 1024.
    BinarySI,
    /// `500m`, `2`, `1k`, `5G`: powers of 1000.
    DecimalSI,
    /// `1e3`, `2E-3`.
    DecimalExponent,
}

/// A parsed resource quantity. Equality and ordering compare amounts, not spelling
/// (`1Ki == 1024`).
#[derive(Debug, Clone)]
pub struct Quantity {
    /// The amount in nano-units (10^-9), rounded up away from zero, capped at ±(2^63-1) units.
    nanos: i128,
    format: QuantityFormat,
    /// The text it was parsed from.
    text: String,
}

/// Parses a quantity string (`"100Mi"`, `"250m"`, `"1.5"`, `"2e3"`).
pub fn parse_quantity(s: &str) -> Result<Quantity, QuantityError> {
    Quantity::parse(s)
}

/// Parses the quantity carried by a k8s-openapi object (a resource list entry, for example).
pub fn parse_k8s_quantity(q: &K8sQuantity) -> Result<Quantity, QuantityError> {
    Quantity::parse(&q.0)
}

impl Quantity {
    /// Parses a quantity string; see the module documentation for the grammar.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let format_err = || QuantityError::Format {
            input: s.to_string(),
        };
        if s.is_empty() {
            return Err(format_err());
        }
        if s.len() > MAX_INPUT_LEN {
            return Err(QuantityError::Numeric {
                input: s.to_string(),
            });
        }
        let parts = split(s).ok_or_else(format_err)?;
        let (format, scale) = interpret_suffix(parts.suffix).ok_or(QuantityError::Suffix {
            input: s.to_string(),
        })?;

        // The amount is digits × 10^-frac_len × 10^dec_exp × 2^bin_exp; in nano-units the
        // decimal exponent grows by 9.
        let (dec_exp, bin_exp) = match scale {
            Scale::Decimal(e) => (e, 0u32),
            Scale::Binary(e) => (0, e),
        };
        let mut digits = String::with_capacity(parts.int.len() + parts.frac.len());
        digits.push_str(parts.int);
        digits.push_str(parts.frac.trim_end_matches('0'));
        let frac_len = parts.frac.trim_end_matches('0').len() as i64;
        let digits = digits.trim_start_matches('0');
        let magnitude = if digits.is_empty() {
            0
        } else {
            nanos_of(digits, 9 + dec_exp - frac_len, bin_exp)
        };
        let nanos = if parts.negative {
            -magnitude
        } else {
            magnitude
        };
        Ok(Self {
            nanos,
            format,
            text: s.to_string(),
        })
    }

    /// A quantity of `n` whole units, written in decimal SI.
    pub fn from_units(n: i64) -> Self {
        Self {
            nanos: i128::from(n) * NANOS_PER_UNIT,
            format: QuantityFormat::DecimalSI,
            text: n.to_string(),
        }
    }

    /// A quantity of `n` milli-units (`250m`).
    pub fn from_millis(n: i64) -> Self {
        Self {
            nanos: i128::from(n) * 1_000_000,
            format: QuantityFormat::DecimalSI,
            text: format!("{n}m"),
        }
    }

    /// The amount in whole units, rounded up away from zero (Go's `Quantity.Value()`): `1.2` → 2,
    /// `100Mi` → 104857600, `250m` → 1.
    pub fn value(&self) -> i64 {
        saturate(div_away_from_zero(self.nanos, NANOS_PER_UNIT))
    }

    /// The amount in thousandths, rounded up away from zero (Go's `MilliValue()`): `250m` → 250,
    /// `1` → 1000, `1n` → 1. Saturates at `i64::MAX` for amounts beyond ~9.2e15 units.
    pub fn milli_value(&self) -> i64 {
        saturate(div_away_from_zero(self.nanos, 1_000_000))
    }

    /// The exact amount in nano-units (10^-9).
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The amount as a float, for ratios and percentages.
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANOS_PER_UNIT as f64
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// How the quantity was written.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// The text the quantity was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&K8sQuantity> for Quantity {
    type Error = QuantityError;
    fn try_from(q: &K8sQuantity) -> Result<Self, Self::Error> {
        Self::parse(&q.0)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// The pieces of a syntactically valid quantity string.
struct Parts<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
    suffix: &'a str,
}

/// Splits `s` into sign, integer digits, fraction digits and suffix, following the grammar in
/// [`QUANTITY_REGEX`]; `None` when it does not match (or has no digit at all).
fn split(s: &str) -> Option<Parts<'_>> {
    let b = s.as_bytes();
    let mut pos = 0;
    let negative = match b.first() {
        Some(b'-') => {
            pos = 1;
            true
        }
        Some(b'+') => {
            pos = 1;
            false
        }
        _ => false,
    };
    let int_start = pos;
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let int = &s[int_start..pos];
    let mut frac = "";
    if pos < b.len() && b[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        frac = &s[frac_start..pos];
    }
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    // Suffix: letters from the suffix alphabet, an optional sign, then digits, then the end.
    let suffix_start = pos;
    while pos < b.len() && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < b.len() && (b[pos] == b'+' || b[pos] == b'-') {
        pos += 1;
    }
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos != b.len() {
        return None;
    }
    Some(Parts {
        negative,
        int,
        frac,
        suffix: &s[suffix_start..],
    })
}

enum Scale {
    /// Multiply by 10^e.
    Decimal(i64),
    /// Multiply by 2^e.
    Binary(u32),
}

fn interpret_suffix(suffix: &str) -> Option<(QuantityFormat, Scale)> {
    use QuantityFormat::*;
    let decimal = |e| Some((DecimalSI, Scale::Decimal(e)));
    let binary = |e| Some((BinarySI, Scale::Binary(e)));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let rest = suffix.strip_prefix(['e', 'E'])?;
            // Go reads the exponent with ParseInt(…, 10, 64): a sign and digits only.
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            // Exponents this large only saturate; clamp to keep the arithmetic bounded.
            let e: i64 = rest.parse().unwrap_or(if rest.starts_with('-') {
                i64::MIN / 4
            } else {
                i64::MAX / 4
            });
            Some((
                DecimalExponent,
                Scale::Decimal(e.clamp(i64::MIN / 4, i64::MAX / 4)),
            ))
        }
    }
}

/// `ceil(digits × 10^dec_exp × 2^bin_exp)` for a non-empty digit string without leading zeros,
/// capped at [`MAX_NANOS`].
fn nanos_of(digits: &str, dec_exp: i64, bin_exp: u32) -> i128 {
    // Anything with more than 28 integer digits in nano-units is beyond the cap.
    const CAP_DIGITS: i64 = 29;
    let len = digits.len() as i64;
    if len + dec_exp > CAP_DIGITS + 1 {
        return MAX_NANOS;
    }
    let mut n = BigUint::from_decimal(digits);
    let mut remainder_nonzero = false;
    if dec_exp >= 0 {
        for _ in 0..dec_exp {
            n.mul_small(10);
        }
    }
    let mut left = bin_exp;
    while left > 0 {
        let step = left.min(31);
        n.mul_small(1 << step);
        left -= step;
    }
    if dec_exp < 0 {
        let mut div = -dec_exp;
        if div > len + 20 {
            // digits × 2^bin_exp < 10^(len + 19) here, so the result is in (0, 1): round up.
            return 1;
        }
        while div > 0 {
            let step = div.min(9) as u32;
            if n.div_small(10u32.pow(step)) != 0 {
                remainder_nonzero = true;
            }
            div -= i64::from(step);
        }
    }
    let value = n.to_i128().unwrap_or(MAX_NANOS);
    let value = if remainder_nonzero { value + 1 } else { value };
    value.min(MAX_NANOS)
}

/// `n / d` rounded away from zero.
fn div_away_from_zero(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if n > 0 {
        q + 1
    } else {
        q - 1
    }
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Just enough arbitrary-precision arithmetic to evaluate a quantity exactly.
struct BigUint {
    /// Base 2^32, least significant first.
    limbs: Vec<u32>,
}

impl BigUint {
    fn from_decimal(digits: &str) -> Self {
        let mut n = Self { limbs: Vec::new() };
        for chunk in digits.as_bytes().chunks(9) {
            let mut v = 0u32;
            for &c in chunk {
                v = v * 10 + u32::from(c - b'0');
            }
            n.mul_small(10u32.pow(chunk.len() as u32));
            n.add_small(v);
        }
        n
    }

    fn mul_small(&mut self, m: u32) {
        let mut carry = 0u64;
        for limb in &mut self.limbs {
            let v = u64::from(*limb) * u64::from(m) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.limbs.push(carry as u32);
        }
    }

    fn add_small(&mut self, a: u32) {
        let mut carry = u64::from(a);
        for limb in &mut self.limbs {
            if carry == 0 {
                return;
            }
            let v = u64::from(*limb) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.limbs.push(carry as u32);
        }
    }

    /// Divides in place; returns the remainder.
    fn div_small(&mut self, d: u32) -> u32 {
        let mut rem = 0u64;
        for limb in self.limbs.iter_mut().rev() {
            let v = (rem << 32) | u64::from(*limb);
            *limb = (v / u64::from(d)) as u32;
            rem = v % u64::from(d);
        }
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
        rem as u32
    }

    fn to_i128(&self) -> Option<i128> {
        let significant = self
            .limbs
            .iter()
            .rposition(|&l| l != 0)
            .map_or(0, |i| i + 1);
        if significant > 4 {
            return None;
        }
        let mut v: u128 = 0;
        for &limb in self.limbs[..significant].iter().rev() {
            v = (v << 32) | u128::from(limb);
        }
        i128::try_from(v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        parse_quantity(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn decimal_si_suffixes() {
        assert_eq!(q("1").value(), 1);
        assert_eq!(q("1k").value(), 1_000);
        assert_eq!(q("1M").value(), 1_000_000);
        assert_eq!(q("1G").value(), 1_000_000_000);
        assert_eq!(q("1T").value(), 1_000_000_000_000);
        assert_eq!(q("1P").value(), 1_000_000_000_000_000);
        assert_eq!(q("1E").value(), 1_000_000_000_000_000_000);
        assert_eq!(q("500m").milli_value(), 500);
        assert_eq!(q("500m").value(), 1);
        assert_eq!(q("1500u").milli_value(), 2);
        assert_eq!(q("1500u").nanos(), 1_500_000);
        assert_eq!(q("7n").nanos(), 7);
        assert_eq!(q("7n").milli_value(), 1);
        assert_eq!(q("0").value(), 0);
        assert_eq!(q("0Mi").value(), 0);
        assert_eq!(q("000.000").value(), 0);
    }

    #[test]
    fn binary_si_suffixes() {
        assert_eq!(q("1Ki").value(), 1 << 10);
        assert_eq!(q("100Mi").value(), 100 << 20);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("1Ti").value(), 1 << 40);
        assert_eq!(q("1Pi").value(), 1 << 50);
        assert_eq!(q("1Ei").value(), 1 << 60);
        assert_eq!(q("1.5Gi").value(), 3 << 29);
        assert_eq!(q("0.5Ki").value(), 512);
        assert_eq!(q("1Ki").format(), QuantityFormat::BinarySI);
    }

    #[test]
    fn exponents() {
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1E3").value(), 1000);
        assert_eq!(q("1e+3").value(), 1000);
        assert_eq!(q("12e-3").milli_value(), 12);
        assert_eq!(q("1.5e1").value(), 15);
        assert_eq!(q("1e3").format(), QuantityFormat::DecimalExponent);
        assert_eq!(q("1e-30").nanos(), 1, "rounded up to one nano-unit");
        assert_eq!(q("1e1000").value(), i64::MAX, "capped");
    }

    #[test]
    fn rounding_is_up_and_away_from_zero() {
        assert_eq!(q("1.2").value(), 2);
        assert_eq!(q("0.1").value(), 1);
        assert_eq!(q("-1.2").value(), -2);
        assert_eq!(q("0.0001").milli_value(), 1);
        assert_eq!(q("1.0001m").milli_value(), 2);
        assert_eq!(q("0.1n").nanos(), 1);
        assert_eq!(q("-0.1n").nanos(), -1);
        assert_eq!(q("1.00000000001").nanos(), 1_000_000_001);
        assert_eq!(q("0.0000000001Ki").nanos(), 103, "ceil(0.1024)");
    }

    #[test]
    fn signs_and_decimal_points() {
        assert_eq!(q("+5").value(), 5);
        assert_eq!(q("-5Mi").value(), -5 << 20);
        assert!(q("-5Mi").is_negative());
        assert_eq!(q(".5").milli_value(), 500);
        assert_eq!(
            q("1.").value(),
            1,
            "apimachinery accepts a bare trailing point"
        );
        assert_eq!(q("1.G").value(), 1_000_000_000);
    }

    #[test]
    fn large_values_are_capped() {
        assert_eq!(q("9223372036854775807").value(), i64::MAX);
        assert_eq!(q("9223372036854775808").value(), i64::MAX);
        assert_eq!(q("100Ei").value(), i64::MAX);
        assert_eq!(q("-100Ei").value(), -i64::MAX);
        assert_eq!(q("8Ei").value(), i64::MAX);
        assert_eq!(q("7Ei").value(), 7 << 60);
        assert_eq!(
            q("1000000000000000000000000000000000000000000000").value(),
            i64::MAX
        );
        assert_eq!(q("1E").milli_value(), i64::MAX, "milli saturates");
        assert_eq!(
            q("0.000000000000000000000000000000000000000000000000001").nanos(),
            1
        );
        assert_eq!(
            q("1.2345678901234567890123456789012345678901234567890Gi").value(),
            1_325_607_179
        );
    }

    #[test]
    fn equality_compares_amounts() {
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1k"), q("1e3"));
        assert_eq!(q("0.5"), q("500m"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("100Mi").to_string(), "100Mi");
    }

    #[test]
    fn malformed_quantities_are_rejected_with_the_input_named() {
        for bad in [
            "", " 1", "1 ", "12Q", "1.2.3", "abc", "Mi", ".", "+", "-", "1Mi2", "--1", "1e", "1e+",
            "1ki", "1KiB", "1Mb", "0x10", "1,5",
        ] {
            let err = parse_quantity(bad).expect_err(bad);
            assert_eq!(err.input(), bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(matches!(
            parse_quantity("12Q"),
            Err(QuantityError::Format { .. })
        ));
        assert!(matches!(
            parse_quantity("1Mi2"),
            Err(QuantityError::Suffix { .. })
        ));
        assert!(matches!(
            parse_quantity("1ki"),
            Err(QuantityError::Suffix { .. })
        ));
        assert_eq!(
            parse_quantity("12Q").unwrap_err().reason(),
            "quantities must match the regular expression \
             '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        let long = "1".repeat(MAX_INPUT_LEN + 1);
        assert!(matches!(
            parse_quantity(&long),
            Err(QuantityError::Numeric { .. })
        ));
    }

    #[test]
    fn reads_k8s_openapi_quantities() {
        let k = K8sQuantity("250m".to_string());
        assert_eq!(parse_k8s_quantity(&k).unwrap().milli_value(), 250);
        assert_eq!(Quantity::try_from(&k).unwrap(), Quantity::from_millis(250));
        assert_eq!("2".parse::<Quantity>().unwrap(), Quantity::from_units(2));
    }
}
