//! Go durations (`time.ParseDuration`), the format of every duration flag and
//! KubeletConfiguration field: a sequence of decimal numbers with a unit each, such as `20s`,
//! `1m30s`, `100ms`, `1.5h`, `2h45m`. Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`. A bare `0`
//! is zero. Parsing is strict: no spaces, no missing unit, no unknown unit, nothing past the
//! ±292-year range Go allows. Negative durations are refused, since no setting here has a use
//! for one.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Why a duration string was rejected. Each variant names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a duration at all (`"fast"`, `""`, `"1.s"` is fine but `".s"` is not).
    #[error("invalid duration {input:?}: expected a Go duration such as \"20s\", \"1m30s\" or \"100ms\"")]
    Invalid { input: String },
    /// A number without a unit (`"10"`).
    #[error(
        "missing unit in duration {input:?}: expected one of ns, us, ms, s, m, h (e.g. \"10s\")"
    )]
    MissingUnit { input: String },
    /// A unit Go does not know (`"1d"`).
    #[error("unknown unit {unit:?} in duration {input:?}: expected one of ns, us, ms, s, m, h")]
    UnknownUnit { unit: String, input: String },
    /// A negative duration.
    #[error("invalid duration {input:?}: must not be negative")]
    Negative { input: String },
}

const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration string.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid {
        input: input.to_string(),
    };
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part.
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let int_digits = &s[..int_len];
        s = &s[int_len..];
        // Fraction.
        let mut frac_digits = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(|c| c.is_ascii_digit()).count();
            frac_digits = &rest[..frac_len];
            s = &rest[frac_len..];
            if int_digits.is_empty() && frac_digits.is_empty() {
                return Err(invalid());
            }
        } else if int_digits.is_empty() {
            return Err(invalid());
        }
        // Unit: everything up to the next digit or point.
        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(DurationError::MissingUnit {
                input: input.to_string(),
            });
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_string(),
                    input: input.to_string(),
                })
            }
        };
        let int: u128 = if int_digits.is_empty() {
            0
        } else {
            // Anything longer cannot be in range.
            if int_digits.trim_start_matches('0').len() > 20 {
                return Err(invalid());
            }
            int_digits.parse().map_err(|_| invalid())?
        };
        let mut value = int.checked_mul(unit_nanos).ok_or_else(invalid)?;
        if !frac_digits.is_empty() {
            // Go keeps as many fraction digits as fit and truncates the rest.
            let mut frac: u128 = 0;
            let mut scale: u128 = 1;
            for c in frac_digits.bytes().take(30) {
                frac = frac * 10 + u128::from(c - b'0');
                scale *= 10;
            }
            value += frac * unit_nanos / scale;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > MAX_NANOS {
            return Err(invalid());
        }
    }
    if negative && total != 0 {
        return Err(DurationError::Negative {
            input: input.to_string(),
        });
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Formats a duration as Go's `Duration.String()` does: `1h0m0s`, `1m30s`, `20s`, `1.5s`,
/// `100ms`, `0s`.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    fn fixed(value: u128, scale: u128) -> String {
        let int = value / scale;
        let frac = value % scale;
        if frac == 0 {
            return int.to_string();
        }
        let width = scale.ilog10() as usize;
        let digits = format!("{frac:0width$}");
        format!("{int}.{}", digits.trim_end_matches('0'))
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", fixed(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", fixed(nanos, 1_000_000));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let seconds = fixed(nanos % 60_000_000_000, 1_000_000_000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{seconds}s"));
    out
}

/// A duration in a configuration file: a Go duration string (`metav1.Duration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Go duration string such as \"20s\", \"1m30s\" or \"100ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                parse_go_duration(v).map(GoDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(V)
    }
}

impl serde::Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_go_duration(self.0))
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_go_duration(self.0))
    }
}

/// A clap value parser for duration flags.
pub fn duration_flag(s: &str) -> Result<Duration, DurationError> {
    parse_go_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        parse_go_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(d("20s"), Duration::from_secs(20));
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("100ms"), Duration::from_millis(100));
        assert_eq!(d("1h"), Duration::from_secs(3600));
        assert_eq!(d("1.5h"), Duration::from_secs(5400));
        assert_eq!(d("2h45m"), Duration::from_secs(9900));
        assert_eq!(d(".5s"), Duration::from_millis(500));
        assert_eq!(d("1.s"), Duration::from_secs(1));
        assert_eq!(d("10us"), Duration::from_micros(10));
        assert_eq!(d("10µs"), Duration::from_micros(10));
        assert_eq!(d("7ns"), Duration::from_nanos(7));
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("+0"), Duration::ZERO);
        assert_eq!(d("-0s"), Duration::ZERO);
        assert_eq!(d("0s"), Duration::ZERO);
        assert_eq!(d("1h1m1s1ms"), Duration::from_millis(3_661_001));
        assert_eq!(
            d("0.0000000015s"),
            Duration::from_nanos(1),
            "truncated like Go"
        );
        assert_eq!(d("2562047h"), Duration::from_secs(2_562_047 * 3600));
    }

    #[test]
    fn rejects_malformed_durations() {
        let cases = [
            ("", "invalid duration \"\""),
            ("10", "missing unit in duration \"10\""),
            ("1d", "unknown unit \"d\" in duration \"1d\""),
            ("1 s", "unknown unit \" s\" in duration \"1 s\""),
            ("s", "invalid duration \"s\""),
            (".s", "invalid duration \".s\""),
            ("-5s", "invalid duration \"-5s\": must not be negative"),
            ("1h-5m", "unknown unit \"h-\" in duration \"1h-5m\""),
            ("3000000h", "invalid duration \"3000000h\""),
            ("99999999999999999999999s", "invalid duration"),
            ("fast", "invalid duration \"fast\""),
        ];
        for (input, expect) in cases {
            let err = parse_go_duration(input).expect_err(input).to_string();
            assert!(err.starts_with(expect), "{input:?}: {err}");
        }
    }

    #[test]
    fn formats_like_go() {
        let f = |s: &str| format_go_duration(d(s));
        assert_eq!(f("0s"), "0s");
        assert_eq!(f("20s"), "20s");
        assert_eq!(f("90s"), "1m30s");
        assert_eq!(f("1h"), "1h0m0s");
        assert_eq!(f("1.5s"), "1.5s");
        assert_eq!(f("100ms"), "100ms");
        assert_eq!(f("1500us"), "1.5ms");
        assert_eq!(f("7ns"), "7ns");
        assert_eq!(f("2m"), "2m0s");
    }

    #[test]
    fn deserializes_strings_only() {
        let v: GoDuration = serde_json::from_str("\"1m\"").unwrap();
        assert_eq!(v.0, Duration::from_secs(60));
        let err = serde_json::from_str::<GoDuration>("20")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a Go duration string"), "{err}");
        let err = serde_json::from_str::<GoDuration>("\"20\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing unit"), "{err}");
    }
}
