//! `PodLogOptions` from a `/containerLogs` query string, decoded and validated as the kubelet
//! does (`legacyscheme.ParameterCodec.DecodeParameters` into a v1 `PodLogOptions`, then
//! `ValidatePodLogOptions`): the first value of a repeated parameter counts; a boolean is false
//! when absent, `false` or `0` and true otherwise (an empty value included); integers are
//! base-10 `int64`; `sinceTime` is RFC 3339; unknown parameters are ignored; the old `tail`
//! parameter stands for `tailLines` (`tail=all`: every line).
//!
//! A value that does not decode is a 400 and a value out of range a 422, as the kubelet
//! answers; unlike the kubelet's bare `Unable to decode query.` / `Invalid request.`, the
//! message names the parameter and what was wrong. `stream` other than `All` needs the
//! `PodLogsQuerySplitStreams` feature gate (alpha, off), so it is refused with the kubelet's
//! 400.

use super::cri::{parse_timestamp, Instant, LogTime};

/// The options of one log request (a v1 `PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLogOptions {
    /// The `container` parameter (the kubelet's path names the container; this is ignored).
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<LogTime>,
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
    pub stream: Option<String>,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// A value that is not of the parameter's type (400).
    #[error("Unable to decode query: {param}={value:?}: {reason}")]
    Decode {
        param: &'static str,
        value: String,
        reason: &'static str,
    },
    /// Values out of range (422), one message per field as `field.Error` prints them.
    #[error("Invalid request: {}", .0.join(", "))]
    Invalid(Vec<String>),
    /// `stream` other than `All` without the `PodLogsQuerySplitStreams` gate (400).
    #[error("unable to return the given log stream: {0:?}. Please enable PodLogsQuerySplitStreams feature gate in kubelet")]
    StreamUnsupported(String),
}

impl OptionsError {
    /// The kubelet's status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            OptionsError::Decode { .. } | OptionsError::StreamUnsupported(_) => 400,
            OptionsError::Invalid(_) => 422,
        }
    }

    /// The response body: the kubelet's `{"message": ...}` form for decoding and validation
    /// errors, the plain message for the stream.
    pub fn body(&self) -> String {
        match self {
            OptionsError::StreamUnsupported(_) => self.to_string(),
            _ => format!(
                "{{\"message\": {}}}",
                serde_json::to_string(&self.to_string()).unwrap_or_default()
            ),
        }
    }
}

/// The values `stream` may take.
const LOG_STREAMS: [&str; 3] = ["All", "Stderr", "Stdout"];

fn parse_bool(v: &str) -> bool {
    !(v == "0" || v.eq_ignore_ascii_case("false"))
}

fn parse_int(param: &'static str, v: &str) -> Result<i64, OptionsError> {
    v.parse::<i64>().map_err(|e| OptionsError::Decode {
        param,
        value: v.chars().take(64).collect(),
        reason: match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "out of range for a 64-bit integer"
            }
            _ => "not a base-10 integer",
        },
    })
}

impl PodLogOptions {
    /// Decodes and validates a raw (percent-encoded) query string.
    pub fn from_query(query: &str) -> Result<Self, OptionsError> {
        let opts = Self::decode(query)?;
        opts.validate()?;
        if let Some(s) = opts.stream.as_deref().filter(|s| *s != "All") {
            return Err(OptionsError::StreamUnsupported(s.to_string()));
        }
        Ok(opts)
    }

    /// Decoding only: each parameter into its type.
    pub fn decode(query: &str) -> Result<Self, OptionsError> {
        let mut first: std::collections::HashMap<String, String> = Default::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            first
                .entry(k.into_owned())
                .or_insert_with(|| v.into_owned());
        }
        // The old `tail` parameter (`all`: no limit) stands for `tailLines`.
        if let Some(tail) = first.remove("tail").filter(|t| !t.is_empty()) {
            if tail == "all" {
                first.remove("tailLines");
            } else {
                first.insert("tailLines".into(), tail);
            }
        }
        let get = |k: &str| first.get(k).map(String::as_str);
        let int = |k: &'static str| get(k).map(|v| parse_int(k, v)).transpose();
        let since_time = match get("sinceTime").filter(|v| !v.is_empty() && *v != "null") {
            None => None,
            Some(v) => {
                Some(
                    parse_timestamp(v.as_bytes()).map_err(|reason| OptionsError::Decode {
                        param: "sinceTime",
                        value: v.chars().take(64).collect(),
                        reason,
                    })?,
                )
            }
        };
        Ok(Self {
            container: get("container").map(str::to_string),
            follow: get("follow").is_some_and(parse_bool),
            previous: get("previous").is_some_and(parse_bool),
            since_seconds: int("sinceSeconds")?,
            since_time,
            timestamps: get("timestamps").is_some_and(parse_bool),
            tail_lines: int("tailLines")?,
            limit_bytes: int("limitBytes")?,
            stream: get("stream").map(str::to_string),
        })
    }

    /// `ValidatePodLogOptions`, with `field.Error`'s messages.
    pub fn validate(&self) -> Result<(), OptionsError> {
        let mut errs = Vec::new();
        if let Some(t) = self.tail_lines.filter(|t| *t < 0) {
            errs.push(format!(
                "tailLines: Invalid value: {t}: must be greater than or equal to 0"
            ));
        }
        if let Some(b) = self.limit_bytes.filter(|b| *b < 1) {
            errs.push(format!(
                "limitBytes: Invalid value: {b}: must be greater than 0"
            ));
        }
        match (self.since_seconds, &self.since_time) {
            (Some(_), Some(_)) => errs.push(
                "sinceSeconds, sinceTime: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
                    .into(),
            ),
            (Some(s), None) if s < 1 => {
                errs.push(format!("sinceSeconds: Invalid value: {s}: must be greater than 0"))
            }
            _ => {}
        }
        if let Some(s) = self.stream.as_deref().filter(|s| !LOG_STREAMS.contains(s)) {
            errs.push(format!(
                "stream: Unsupported value: {s:?}: supported values: \"All\", \"Stderr\", \"Stdout\""
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(OptionsError::Invalid(errs))
        }
    }

    /// The earliest record time to write, as the kubelet's `NewLogOptions`: `now` minus
    /// `sinceSeconds`, or `sinceTime` when that is later.
    pub fn since(&self, now: Instant) -> Option<Instant> {
        let by_seconds = self.since_seconds.map(|s| Instant {
            unix: now.unix.saturating_sub(s),
            nanos: now.nanos,
        });
        let by_time = self.since_time.map(|t| t.instant());
        match (by_seconds, by_time) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// `tailLines` as a count (validated non-negative).
    pub fn tail(&self) -> Option<u64> {
        self.tail_lines.map(|t| t.max(0) as u64)
    }

    /// `limitBytes` as a count (validated positive).
    pub fn limit(&self) -> Option<u64> {
        self.limit_bytes.map(|b| b.max(0) as u64)
    }
}

/// The current time as an [`Instant`].
pub fn now() -> Instant {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Instant {
        unix: d.as_secs() as i64,
        nanos: d.subsec_nanos(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_decodes() {
        let o = PodLogOptions::from_query(
            "container=c&follow=true&previous=1&sinceSeconds=30&timestamps=TRUE&tailLines=%2B5&limitBytes=100&stream=All&pretty=x",
        )
        .unwrap();
        assert_eq!(
            o,
            PodLogOptions {
                container: Some("c".into()),
                follow: true,
                previous: true,
                since_seconds: Some(30),
                since_time: None,
                timestamps: true,
                tail_lines: Some(5),
                limit_bytes: Some(100),
                stream: Some("All".into()),
            }
        );
        let o = PodLogOptions::from_query("sinceTime=2024-01-01T00%3A00%3A00.5%2B01%3A00").unwrap();
        assert_eq!(
            o.since_time.unwrap().to_fixed_string(),
            "2024-01-01T00:00:00.500000000+01:00"
        );
        assert_eq!(
            PodLogOptions::from_query("").unwrap(),
            PodLogOptions::default()
        );
    }

    #[test]
    fn booleans_follow_the_api_machinerys_rules() {
        for (q, want) in [
            ("follow", true),
            ("follow=", true),
            ("follow=yes", true),
            ("follow=0", false),
            ("follow=False", false),
            ("follow=false&follow=true", false),
            ("nofollow=1", false),
        ] {
            assert_eq!(PodLogOptions::from_query(q).unwrap().follow, want, "{q}");
        }
    }

    #[test]
    fn tail_is_the_old_name_of_tail_lines() {
        assert_eq!(PodLogOptions::from_query("tail=3").unwrap().tail(), Some(3));
        assert_eq!(
            PodLogOptions::from_query("tail=all&tailLines=3")
                .unwrap()
                .tail(),
            None
        );
        assert_eq!(
            PodLogOptions::from_query("tail=2&tailLines=3")
                .unwrap()
                .tail(),
            Some(2)
        );
        assert!(matches!(
            PodLogOptions::from_query("tail=x"),
            Err(OptionsError::Decode {
                param: "tailLines",
                ..
            })
        ));
    }

    #[test]
    fn undecodable_values_are_400_naming_the_parameter() {
        for (q, param) in [
            ("tailLines=abc", "tailLines"),
            ("tailLines=", "tailLines"),
            ("limitBytes=1.5", "limitBytes"),
            ("sinceSeconds=99999999999999999999", "sinceSeconds"),
            ("sinceTime=yesterday", "sinceTime"),
            ("sinceTime=2024-01-01", "sinceTime"),
        ] {
            let e = PodLogOptions::from_query(q).unwrap_err();
            assert_eq!(e.status(), 400, "{q}");
            assert!(
                matches!(&e, OptionsError::Decode { param: p, .. } if *p == param),
                "{q}: {e}"
            );
            assert!(
                e.body()
                    .starts_with("{\"message\": \"Unable to decode query: "),
                "{}",
                e.body()
            );
            assert!(e.to_string().contains(param), "{e}");
        }
        let e = PodLogOptions::from_query("tailLines=abc").unwrap_err();
        assert_eq!(
            e.body(),
            r#"{"message": "Unable to decode query: tailLines=\"abc\": not a base-10 integer"}"#
        );
    }

    #[test]
    fn out_of_range_values_are_422_with_the_validation_messages() {
        for (q, msg) in [
            ("tailLines=-1", "tailLines: Invalid value: -1: must be greater than or equal to 0"),
            ("limitBytes=0", "limitBytes: Invalid value: 0: must be greater than 0"),
            ("sinceSeconds=0", "sinceSeconds: Invalid value: 0: must be greater than 0"),
            (
                "sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z",
                "sinceSeconds, sinceTime: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
            ),
            (
                "stream=Both",
                "stream: Unsupported value: \"Both\": supported values: \"All\", \"Stderr\", \"Stdout\"",
            ),
        ] {
            let e = PodLogOptions::from_query(q).unwrap_err();
            assert_eq!(e.status(), 422, "{q}");
            assert_eq!(e, OptionsError::Invalid(vec![msg.to_string()]), "{q}");
        }
        let e = PodLogOptions::from_query("tailLines=-1&limitBytes=-2").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid request: tailLines: Invalid value: -1: must be greater than or equal to 0, limitBytes: Invalid value: -2: must be greater than 0"
        );
    }

    #[test]
    fn split_streams_need_the_feature_gate() {
        let e = PodLogOptions::from_query("stream=Stdout").unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.body(),
            "unable to return the given log stream: \"Stdout\". Please enable PodLogsQuerySplitStreams feature gate in kubelet"
        );
    }

    #[test]
    fn since_is_the_later_of_seconds_and_time() {
        let now = Instant {
            unix: 1_000_000,
            nanos: 7,
        };
        let o = PodLogOptions::from_query("sinceSeconds=10").unwrap();
        assert_eq!(
            o.since(now),
            Some(Instant {
                unix: 999_990,
                nanos: 7
            })
        );
        let o = PodLogOptions::from_query(&format!("sinceSeconds={}", i64::MAX)).unwrap();
        assert_eq!(o.since(now).unwrap().unix, 1_000_000 - i64::MAX);
        assert_eq!(PodLogOptions::default().since(now), None);
    }
}
