//! `/containerLogs` query strings through `PodLogOptions` decoding and validation
//! (`logs::options`): the query is whatever a client sends.
//!
//! Checked: no panic; accepted options are valid (`tailLines` ≥ 0, `limitBytes` ≥ 1,
//! `sinceSeconds` ≥ 1, never both `since` forms) and `since` computes for any `now`; a refusal
//! is a 400 or 422 whose body is the kubelet's JSON form (or the stream message) and names a
//! parameter.

#![no_main]

use kubelet_rs::logs::cri::Instant;
use kubelet_rs::logs::options::{OptionsError, PodLogOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    match PodLogOptions::from_query(&query) {
        Ok(o) => {
            assert!(o.tail_lines.is_none_or(|t| t >= 0));
            assert!(o.limit_bytes.is_none_or(|b| b >= 1));
            assert!(o.since_seconds.is_none_or(|s| s >= 1));
            assert!(o.since_seconds.is_none() || o.since_time.is_none());
            for unix in [i64::MIN, 0, i64::MAX] {
                let _ = o.since(Instant { unix, nanos: 0 });
            }
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 422), "{e}");
            let body = e.body();
            if !matches!(e, OptionsError::StreamUnsupported(_)) {
                let v: serde_json::Value = serde_json::from_str(&body).expect(&body);
                assert!(v["message"].is_string(), "{body}");
            }
            let names = [
                "tailLines", "limitBytes", "sinceSeconds", "sinceTime", "stream",
            ];
            assert!(names.iter().any(|n| body.contains(n)) || body.contains("stream"), "{body}");
        }
    }
});
