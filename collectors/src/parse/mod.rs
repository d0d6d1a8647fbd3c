//! Pure parsers over the bytes of kernel files: no I/O, no allocation beyond the output
//! vectors the caller passes in (which keep their capacity between passes).
//!
//! `cgroup` covers cgroup v1 and v2 interface files and PSI; `procfs` covers `/proc/stat`,
//! `/proc/meminfo`, `/proc/diskstats`, `/proc/net/dev` and `cgroup.procs`-style pid lists.
//! Malformed lines are skipped, never a panic: the kernel's formats grow new keys over time.

pub mod cgroup;
pub mod procfs;

/// Splits `buf` into lines (without the `\n`).
pub(crate) fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    buf.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

/// Splits a line into fields separated by runs of spaces or tabs.
pub(crate) fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ' || b == b'\t')
        .filter(|f| !f.is_empty())
}

/// Parses an unsigned decimal integer; `None` on anything else (sign, overflow, empty).
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Parses a signed decimal integer (cgroup v1 writes `-1` for "no limit" in some files).
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.split_first() {
        Some((b'-', rest)) => parse_u64(rest)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        _ => parse_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

/// Trims ASCII whitespace at both ends.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &s[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"42"), Some(42));
        assert_eq!(parse_i64(b"-"), None);
    }

    #[test]
    fn trimming_and_splitting() {
        assert_eq!(trim(b"  12\n"), b"12");
        assert_eq!(trim(b" \n"), b"");
        assert_eq!(
            fields(b" a \tb  c").collect::<Vec<_>>(),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert_eq!(lines(b"x\n\ny\n").count(), 2);
    }
}
