//! Strict `%XX` decoding, shared by the parsers of outside input that take it (the kubelet
//! API's `/logs/` paths, D-Bus server addresses): a `%` not followed by two hex digits is an
//! error, not passed through.

/// The bytes `s` spells with its `%XX` escapes decoded; `None` for a malformed escape.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}
