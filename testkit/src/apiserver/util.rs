//! Small shared helpers: timestamps in the API's formats, random names and UIDs, and accessors
//! for the `metadata` of objects held as JSON values.

use jiff::Timestamp;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};

/// `metav1.Time` format: RFC 3339 in UTC with second precision.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `metav1.MicroTime` format: RFC 3339 in UTC with microseconds.
pub fn format_micro_time(t: Timestamp) -> String {
    let secs = t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    format!("{secs}.{:06}Z", t.subsec_microsecond().max(0))
}

pub fn now() -> Timestamp {
    Timestamp::now()
}

pub fn now_string() -> String {
    format_time(now())
}

pub fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse::<Timestamp>().ok()
}

/// Random bytes from the system generator. It does not fail on Linux; a failure would leave the
/// buffer as it was, which callers treat as any other value.
pub fn random_bytes(buf: &mut [u8]) {
    let _ = SystemRandom::new().fill(buf);
}

/// The alphabet of `utilrand.String` (no vowels, no confusable characters), used for
/// `generateName` suffixes and the `kube-api-access-xxxxx` volume name.
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn random_suffix(n: usize) -> String {
    let mut buf = vec![0u8; n];
    random_bytes(&mut buf);
    buf.iter()
        .map(|b| SUFFIX_ALPHABET[*b as usize % SUFFIX_ALPHABET.len()] as char)
        .collect()
}

/// Lower-case letters and digits, as bootstrap token ids and secrets use.
pub fn random_token_chars(n: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut buf = vec![0u8; n];
    random_bytes(&mut buf);
    buf.iter()
        .map(|b| A[*b as usize % A.len()] as char)
        .collect()
}

/// A version 4 UUID.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `duration.HumanDuration`, as the printers use for ages.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// `translateTimestampSince`: the age of a timestamp, or `<unknown>` when it is absent.
pub fn age(ts: Option<&str>) -> String {
    match ts.and_then(parse_time) {
        Some(t) => human_duration(now().as_second() - t.as_second()),
        None => "<unknown>".into(),
    }
}

// ---- metadata accessors -------------------------------------------------------------------

pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let o = obj.as_object_mut().expect("object");
    let m = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut().expect("metadata object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    meta(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name")
}

pub fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace")
}

pub fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid")
}

pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    meta(obj)
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
}

pub fn annotations(obj: &Value) -> Option<&Map<String, Value>> {
    meta(obj)
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn deletion_timestamp(obj: &Value) -> Option<&str> {
    meta(obj)
        .and_then(|m| m.get("deletionTimestamp"))
        .and_then(Value::as_str)
}

pub fn resource_version(obj: &Value) -> &str {
    meta_str(obj, "resourceVersion")
}

/// A string at a dotted path (`spec.nodeName`), or "" when absent.
pub fn str_at<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    value_at(obj, path).and_then(Value::as_str).unwrap_or("")
}

pub fn value_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = obj;
    for p in path {
        cur = cur.get(*p)?;
    }
    Some(cur)
}

/// The object at `path`, created (as empty objects) where missing.
pub fn object_at_mut<'a>(obj: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = obj;
    for p in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("object")
            .entry(*p)
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    cur.as_object_mut().expect("object")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_the_printers() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(100 * 86400), "100d");
        assert_eq!(human_duration(-5), "<invalid>");
    }

    #[test]
    fn times_format_as_the_api_does() {
        let t: Timestamp = "2024-05-01T10:11:12.345678901Z".parse().unwrap();
        assert_eq!(format_time(t), "2024-05-01T10:11:12Z");
        assert_eq!(format_micro_time(t), "2024-05-01T10:11:12.345678Z");
    }

    #[test]
    fn uids_are_v4() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
    }
}
