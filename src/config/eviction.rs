//! Eviction thresholds: the signals the kubelet knows and the `--eviction-hard`,
//! `--eviction-soft`, `--eviction-soft-grace-period` and `--eviction-minimum-reclaim` syntax
//! (`memory.available<100Mi,nodefs.available<10%` for thresholds, `memory.available=1m30s` for
//! grace periods and reclaims), or their map form in a KubeletConfiguration file.
//!
//! The rules are the kubelet's (`pkg/kubelet/eviction/helpers.go`): a threshold is a positive
//! quantity or a percentage between 0% and 100%; `0%` and `100%` disable the signal; every soft
//! threshold needs a grace period; a minimum reclaim is a non-negative quantity or a positive
//! percentage.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::duration::{parse_go_duration, DurationError};
use crate::resource::{parse_quantity, Quantity, QuantityError};

/// A resource signal that eviction thresholds are expressed over: the eviction manager's own
/// [`Signal`](managers::eviction::api::Signal), named here as the configuration knows it.
pub use managers::eviction::api::Signal as EvictionSignal;

/// The signal `name` spells, as the kubelet spells it (`memory.available`).
fn parse_signal(name: &str) -> Result<EvictionSignal, EvictionError> {
    EvictionSignal::ALL
        .into_iter()
        .find(|sig| sig.as_str() == name)
        .ok_or_else(|| EvictionError::UnknownSignal {
            signal: name.to_string(),
        })
}

/// The value of a threshold: an absolute amount or a share of capacity.
#[derive(Debug, Clone, PartialEq)]
pub enum ThresholdValue {
    /// An amount in the signal's unit (bytes, inodes, PIDs).
    Quantity(Quantity),
    /// A fraction of capacity, `0.0..=1.0` (`10%` is `0.1`).
    Percentage(f64),
}

impl fmt::Display for ThresholdValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Quantity(q) => write!(f, "{q}"),
            Self::Percentage(p) => write!(f, "{}%", p * 100.0),
        }
    }
}

/// Thresholds by signal. A signal that is absent (or was given as `0%` / `100%`) is off.
pub type EvictionThresholds = BTreeMap<EvictionSignal, ThresholdValue>;

/// The kubelet's default hard thresholds.
pub const DEFAULT_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%";

/// Why an eviction setting was rejected. Each variant names the signal or the statement.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvictionError {
    /// A signal name the kubelet does not know.
    #[error(
        "unsupported eviction signal {signal:?}; supported signals: {}",
        supported_signals()
    )]
    UnknownSignal { signal: String },
    /// A statement without the expected separator.
    #[error("malformed pair {statement:?}: expected {expected}")]
    Malformed {
        statement: String,
        expected: &'static str,
    },
    /// A signal given twice in the same setting.
    #[error("eviction signal {signal} is given more than once")]
    Duplicate { signal: EvictionSignal },
    /// A percentage that does not parse or is out of range.
    #[error("eviction percentage threshold {signal} {value:?}: {reason}")]
    Percentage {
        signal: EvictionSignal,
        value: String,
        reason: String,
    },
    /// A quantity that does not parse.
    #[error("eviction threshold {signal}: {source}")]
    Quantity {
        signal: EvictionSignal,
        source: QuantityError,
    },
    /// A threshold of zero or less.
    #[error("eviction threshold {signal} must be positive: {value}")]
    NotPositive {
        signal: EvictionSignal,
        value: String,
    },
    /// A negative minimum reclaim.
    #[error("negative minimum reclaim defined for signal {signal}: {value}")]
    NegativeReclaim {
        signal: EvictionSignal,
        value: String,
    },
    /// A grace period that is not a duration.
    #[error("eviction grace period for {signal}: {source}")]
    GracePeriod {
        signal: EvictionSignal,
        source: DurationError,
    },
    /// A soft threshold without a grace period.
    #[error(
        "grace period must be specified for the soft eviction threshold {signal} \
         (set it with evictionSoftGracePeriod / --eviction-soft-grace-period, e.g. {signal}=1m30s)"
    )]
    MissingGracePeriod { signal: EvictionSignal },
}

fn supported_signals() -> String {
    EvictionSignal::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Splits `a<b,c<d` (thresholds, `sep = '<'`) or `a=b,c=d` (grace periods, reclaims,
/// `sep = '='`) into pairs, trimming spaces and skipping empty items, as the kubelet's map flags
/// do. An empty string yields no pairs.
pub fn split_pairs(s: &str, sep: char) -> Result<Vec<(String, String)>, EvictionError> {
    let expected = if sep == '<' {
        "signal<value, e.g. memory.available<100Mi"
    } else {
        "key=value"
    };
    s.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            item.split_once(sep)
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| EvictionError::Malformed {
                    statement: item.to_string(),
                    expected,
                })
        })
        .collect()
}

fn parse_percentage(signal: EvictionSignal, value: &str) -> Result<f64, EvictionError> {
    let err = |reason: &str| EvictionError::Percentage {
        signal,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let number = value.strip_suffix('%').unwrap_or(value);
    let p: f64 = number
        .parse()
        .map_err(|_| err("expected a number followed by %, e.g. 10%"))?;
    if !p.is_finite() {
        return Err(err("expected a number followed by %, e.g. 10%"));
    }
    Ok(p / 100.0)
}

/// Parses thresholds (`signal → "100Mi" | "10%"`). `0%` and `100%` switch the signal off.
pub fn parse_thresholds<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<EvictionThresholds, EvictionError> {
    let mut out = EvictionThresholds::new();
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in pairs {
        let signal = parse_signal(name)?;
        if !seen.insert(signal) {
            return Err(EvictionError::Duplicate { signal });
        }
        if value.ends_with('%') {
            if value == "0%" || value == "100%" {
                continue;
            }
            let p = parse_percentage(signal, value)?;
            if p < 0.0 {
                return Err(EvictionError::Percentage {
                    signal,
                    value: value.to_string(),
                    reason: "must be >= 0%".to_string(),
                });
            }
            if p > 1.0 {
                return Err(EvictionError::Percentage {
                    signal,
                    value: value.to_string(),
                    reason: "must be <= 100%".to_string(),
                });
            }
            out.insert(signal, ThresholdValue::Percentage(p));
            continue;
        }
        let q =
            parse_quantity(value).map_err(|source| EvictionError::Quantity { signal, source })?;
        if q.is_zero() || q.is_negative() {
            return Err(EvictionError::NotPositive {
                signal,
                value: value.to_string(),
            });
        }
        out.insert(signal, ThresholdValue::Quantity(q));
    }
    Ok(out)
}

/// Parses grace periods (`signal → "1m30s"`).
pub fn parse_grace_periods<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<BTreeMap<EvictionSignal, Duration>, EvictionError> {
    let mut out = BTreeMap::new();
    for (name, value) in pairs {
        let signal = parse_signal(name)?;
        let d = parse_go_duration(value)
            .map_err(|source| EvictionError::GracePeriod { signal, source })?;
        if out.insert(signal, d).is_some() {
            return Err(EvictionError::Duplicate { signal });
        }
    }
    Ok(out)
}

/// Parses minimum reclaims (`signal → "500Mi" | "5%"`).
pub fn parse_minimum_reclaims<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<EvictionThresholds, EvictionError> {
    let mut out = EvictionThresholds::new();
    for (name, value) in pairs {
        let signal = parse_signal(name)?;
        let v = if value.ends_with('%') {
            let p = parse_percentage(signal, value)?;
            if p <= 0.0 {
                return Err(EvictionError::Percentage {
                    signal,
                    value: value.to_string(),
                    reason: "minimum reclaim must be positive".to_string(),
                });
            }
            ThresholdValue::Percentage(p)
        } else {
            let q = parse_quantity(value)
                .map_err(|source| EvictionError::Quantity { signal, source })?;
            if q.is_negative() {
                return Err(EvictionError::NegativeReclaim {
                    signal,
                    value: value.to_string(),
                });
            }
            ThresholdValue::Quantity(q)
        };
        if out.insert(signal, v).is_some() {
            return Err(EvictionError::Duplicate { signal });
        }
    }
    Ok(out)
}

/// Checks that every soft threshold has a grace period.
pub fn check_soft_grace_periods(
    soft: &EvictionThresholds,
    grace: &BTreeMap<EvictionSignal, Duration>,
) -> Result<(), EvictionError> {
    match soft.keys().find(|s| !grace.contains_key(s)) {
        Some(&signal) => Err(EvictionError::MissingGracePeriod { signal }),
        None => Ok(()),
    }
}

/// The default hard thresholds, parsed.
pub fn default_eviction_hard() -> EvictionThresholds {
    // The constant is known to parse; an empty map would only disable the defaults.
    split_pairs(DEFAULT_EVICTION_HARD, '<')
        .and_then(|pairs| parse_thresholds(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds(s: &str) -> Result<EvictionThresholds, EvictionError> {
        let pairs = split_pairs(s, '<')?;
        parse_thresholds(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    #[test]
    fn parses_the_flag_syntax() {
        let t = thresholds(DEFAULT_EVICTION_HARD).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(
            t[&EvictionSignal::MemoryAvailable],
            ThresholdValue::Quantity(parse_quantity("100Mi").unwrap())
        );
        assert_eq!(
            t[&EvictionSignal::NodeFsAvailable],
            ThresholdValue::Percentage(0.1)
        );
        assert_eq!(t, default_eviction_hard());
        let t = thresholds(" pid.available < 1k , allocatableMemory.available<1Gi,").unwrap();
        assert_eq!(t.len(), 2);
        assert!(thresholds("").unwrap().is_empty());
    }

    #[test]
    fn zero_and_hundred_percent_disable() {
        let t =
            thresholds("memory.available<0%,nodefs.available<100%,imagefs.available<2.5%").unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(
            t[&EvictionSignal::ImageFsAvailable],
            ThresholdValue::Percentage(0.025)
        );
    }

    #[test]
    fn rejects_bad_thresholds_with_the_signal_named() {
        let cases = [
            (
                "memory.free<1Gi",
                "unsupported eviction signal \"memory.free\"",
            ),
            (
                "memory.available=1Gi",
                "malformed pair \"memory.available=1Gi\"",
            ),
            (
                "memory.available<12Q",
                "eviction threshold memory.available: invalid quantity \"12Q\"",
            ),
            (
                "memory.available<0",
                "eviction threshold memory.available must be positive: 0",
            ),
            (
                "nodefs.available<150%",
                "eviction percentage threshold nodefs.available \"150%\": must be <= 100%",
            ),
            ("nodefs.available<-5%", "must be >= 0%"),
            ("nodefs.available<x%", "expected a number followed by %"),
            (
                "memory.available<1Gi,memory.available<2Gi",
                "given more than once",
            ),
        ];
        for (input, expect) in cases {
            let err = thresholds(input).expect_err(input).to_string();
            assert!(err.contains(expect), "{input}: {err}");
        }
    }

    #[test]
    fn grace_periods_and_reclaims() {
        let g = parse_grace_periods([("memory.available", "1m30s")]).unwrap();
        assert_eq!(g[&EvictionSignal::MemoryAvailable], Duration::from_secs(90));
        let err = parse_grace_periods([("memory.available", "90")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("memory.available") && err.contains("missing unit"),
            "{err}"
        );
        let soft = thresholds("memory.available<1Gi,nodefs.available<20%").unwrap();
        let err = check_soft_grace_periods(&soft, &g).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "grace period must be specified for the soft eviction threshold nodefs.available"
            ),
            "{err}"
        );
        let r = parse_minimum_reclaims([("imagefs.available", "2Gi"), ("nodefs.available", "5%")])
            .unwrap();
        assert_eq!(r.len(), 2);
        assert!(parse_minimum_reclaims([("imagefs.available", "-1")]).is_err());
        assert!(parse_minimum_reclaims([("imagefs.available", "0%")]).is_err());
        assert!(parse_minimum_reclaims([("imagefs.available", "0")]).is_ok());
    }
}
