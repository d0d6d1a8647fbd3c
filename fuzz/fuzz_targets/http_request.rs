//! Redirects and request heads: a probe URL from arbitrary host, port and path, a `Location`
//! header resolved against it (`Url::join`, what redirects follow), and the request head for the
//! result with arbitrary spec headers and User-Agent (`request_head`).
//!
//! Checked: no panic; the head is exactly one HTTP/1.1 request head (one `GET <target>` line
//! whose target has no space or control byte, then `Name: value` lines with token names and
//! values free of CR, LF and NUL, then one empty line), whatever the pod's spec or the server's
//! `Location` hold; and a resolved redirect has a path from `/` and, when absolute, a host.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/prober/http/wire.rs"]
mod wire;

use wire::{request_head, Scheme, Url};

fuzz_target!(|data: &[u8]| {
    // Fields separated by NUL: host, port, path, location, user agent, then header name/value
    // pairs.
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\0');
    let host = fields.next().unwrap_or_default();
    let port: u16 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(80);
    let path = fields.next().unwrap_or_default();
    let location = fields.next().unwrap_or_default();
    let user_agent = fields.next().unwrap_or_default();
    let rest: Vec<&str> = fields.collect();
    let headers: Vec<(String, String)> = rest
        .chunks(2)
        .map(|kv| (kv[0].to_string(), kv.get(1).unwrap_or(&"").to_string()))
        .collect();
    let scheme = if port.is_multiple_of(2) {
        Scheme::Http
    } else {
        Scheme::Https
    };
    let url = Url::new(scheme, host, port, path);
    let target = match url.join(location) {
        Some(next) => {
            // An absolute Location names a host; a relative one keeps the request's.
            assert!(!next.host.is_empty() || next.host == url.host, "{next:?}");
            assert!(next.path.starts_with('/'), "{next:?}");
            next
        }
        None => url,
    };
    let head = request_head(&target, &headers, user_agent);
    check_head(&head);
});

fn check_head(head: &[u8]) {
    let body = head
        .strip_suffix(b"\r\n\r\n")
        .expect("a head ends with an empty line");
    let mut lines = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        lines.push(&rest[..i]);
        rest = &rest[i + 2..];
    }
    lines.push(rest);
    for line in &lines {
        assert!(
            !line.contains(&b'\r') && !line.contains(&b'\n'),
            "a bare CR or LF: {line:?}"
        );
    }
    let target = lines[0]
        .strip_prefix(b"GET ")
        .and_then(|t| t.strip_suffix(b" HTTP/1.1"))
        .expect("GET <target> HTTP/1.1");
    assert!(target.starts_with(b"/"));
    assert!(target.iter().all(|&b| b.is_ascii_graphic()), "{target:?}");
    for line in &lines[1..] {
        assert!(!line.is_empty(), "one empty line, at the end only");
        let colon = line.iter().position(|&b| b == b':').expect("Name: value");
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        assert!(!name.is_empty());
        assert!(name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)));
        assert!(value.iter().all(|&b| b == b'\t' || !b.is_ascii_control()));
    }
}
