//! The CRI container log format (`pkg/kubelet/kuberuntime/logs`): what containerd writes into
//! `/var/log/pods/<ns>_<pod>_<uid>/<container>/<N>.log`, one record per line,
//!
//! ```text
//! 2016-10-06T00:17:09.669794202Z stdout P log content 1
//! 2016-10-06T00:17:09.669794203Z stderr F log content 2
//! ```
//!
//! a timestamp (RFC 3339 with up to nine fractional digits, `Z` or a numeric offset), the
//! stream, the tags (`P` for a partial line the runtime cut, `F` for a full one; `:`-separated,
//! only the first counts) and the content. [`parse_line`] parses one record with the kubelet's
//! checks and messages; [`Decoder`] turns records into log messages, joining a stream's partial
//! records with the record that completes them (the kubelet writes each fragment on its own,
//! so a joined line carries one timestamp instead of one per fragment; the bytes are the same),
//! and applies `sinceSeconds`/`sinceTime`, `timestamps` and `limitBytes` through [`LogWriter`].
//! [`tail_start`] finds where the last N lines of a file begin. Everything here is pure and
//! allocation-light: a follower runs it over every byte a container writes.

use std::fmt::Write as _;
use std::io::{self, Read, Seek, SeekFrom};

/// A record that is not in the CRI format, with the kubelet's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("timestamp is not found")]
    NoTimestamp,
    #[error("unexpected timestamp format {layout:?}: {value:?}: {reason}")]
    BadTimestamp {
        layout: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("stream type is not found")]
    NoStream,
    #[error("unexpected stream type {0:?}")]
    BadStream(String),
    #[error("log tag is not found")]
    NoTag,
}

/// The layout the kubelet parses timestamps with (`RFC3339NanoLenient`).
const TIME_LAYOUT_IN: &str = "2006-01-02T15:04:05.999999999Z07:00";

/// A joined line longer than this is written out as it stands (without its end of line), so
/// that a container writing one endless line cannot make a reader buffer all of it.
pub const MAX_JOINED: usize = 1 << 20;

/// The output stream of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A record's time: the instant (for `since`) and the local fields and offset it was written
/// with (for `timestamps`, which the kubelet prints in the record's own offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogTime {
    /// Seconds since the Unix epoch.
    pub unix: i64,
    pub nanos: u32,
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    /// Offset east of UTC, in minutes.
    offset_minutes: i16,
}

impl PartialOrd for LogTime {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for LogTime {
    /// By instant (two spellings of one instant are ordered by their offset, to stay total).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.unix, self.nanos, self.offset_minutes).cmp(&(
            other.unix,
            other.nanos,
            other.offset_minutes,
        ))
    }
}

/// An instant, for `since`: seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant {
    pub unix: i64,
    pub nanos: u32,
}

impl LogTime {
    pub fn instant(&self) -> Instant {
        Instant {
            unix: self.unix,
            nanos: self.nanos,
        }
    }

    /// Go's `RFC3339NanoFixed` (`2006-01-02T15:04:05.000000000Z07:00`) in the record's offset.
    pub fn write_fixed(&self, out: &mut Vec<u8>) {
        let mut s = String::with_capacity(35);
        let _ = write!(
            s,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.nanos
        );
        if self.offset_minutes == 0 {
            s.push('Z');
        } else {
            let sign = if self.offset_minutes < 0 { '-' } else { '+' };
            let m = self.offset_minutes.unsigned_abs();
            let _ = write!(s, "{sign}{:02}:{:02}", m / 60, m % 60);
        }
        out.extend_from_slice(s.as_bytes());
    }

    /// The fixed form as a string (tests, messages).
    pub fn to_fixed_string(&self) -> String {
        let mut v = Vec::new();
        self.write_fixed(&mut v);
        String::from_utf8(v).unwrap_or_default()
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days from 1970-01-01 to the civil date (proleptic Gregorian; Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 timestamp as Go's `time.Parse(RFC3339NanoLenient, s)` accepts it:
/// `YYYY-MM-DDThh:mm:ss`, an optional `.` with one to nine digits, then `Z` or `±hh:mm`; each
/// field in range (the day for its month, seconds up to 59).
pub fn parse_timestamp(s: &[u8]) -> Result<LogTime, &'static str> {
    if s.len() < 20 {
        return Err("too short");
    }
    let field = |r: std::ops::Range<usize>| digits(&s[r]).ok_or("expected digits");
    if s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' || s[16] != b':' {
        return Err("expected YYYY-MM-DDThh:mm:ss");
    }
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day < 1 || day > days_in_month(i64::from(year), month) {
        return Err("day out of range");
    }
    if hour > 23 {
        return Err("hour out of range");
    }
    if minute > 59 {
        return Err("minute out of range");
    }
    if second > 59 {
        return Err("second out of range");
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return Err("expected one to nine fractional digits");
        }
        nanos = digits(&rest[1..=n]).ok_or("expected digits")? * 10u32.pow(9 - n as u32);
        rest = &rest[1 + n..];
    }
    let offset_minutes: i16 = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2]).ok_or("expected a numeric offset")?;
            let m = digits(&[*m1, *m2]).ok_or("expected a numeric offset")?;
            if h > 23 || m > 59 {
                return Err("time zone offset out of range");
            }
            let v = (h * 60 + m) as i16;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return Err("expected Z or a numeric offset (±hh:mm) after the time"),
    };
    let days = days_from_civil(i64::from(year), month, day);
    let local = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Ok(LogTime {
        unix: local - i64::from(offset_minutes) * 60,
        nanos,
        year: year as u16,
        month: month as u8,
        day: day as u8,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        offset_minutes,
    })
}

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: LogTime,
    pub stream: Stream,
    /// The first tag is `P`: the runtime cut the line here and the rest follows.
    pub partial: bool,
    /// The content: with its end of line for a full record read whole, without one for a
    /// partial record.
    pub content: &'a [u8],
}

/// Parses one line of a CRI log file (with its `\n`, if it has one), as the kubelet's
/// `parseCRILog`: a partial record loses its trailing end of line; a full record keeps it.
pub fn parse_line(line: &[u8]) -> Result<Record<'_>, ParseError> {
    let sp = memchr::memchr(b' ', line).ok_or(ParseError::NoTimestamp)?;
    let time = parse_timestamp(&line[..sp]).map_err(|reason| ParseError::BadTimestamp {
        layout: TIME_LAYOUT_IN,
        value: String::from_utf8_lossy(&line[..sp.min(64)]).into_owned(),
        reason,
    })?;
    let rest = &line[sp + 1..];
    let sp = memchr::memchr(b' ', rest).ok_or(ParseError::NoStream)?;
    let stream = match &rest[..sp] {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        other => {
            return Err(ParseError::BadStream(
                String::from_utf8_lossy(&other[..other.len().min(64)]).into_owned(),
            ))
        }
    };
    let rest = &rest[sp + 1..];
    let sp = memchr::memchr(b' ', rest).ok_or(ParseError::NoTag)?;
    let tags = &rest[..sp];
    let first = tags.split(|&c| c == b':').next().unwrap_or_default();
    let partial = first == b"P";
    let mut content = &rest[sp + 1..];
    if partial {
        content = content.strip_suffix(b"\n").unwrap_or(content);
    }
    Ok(Record {
        time,
        stream,
        partial,
        content,
    })
}

/// Whether a complete line of a log file ends a log line (for counting lines from the end):
/// a record whose first tag is not `P`. Cheaper than [`parse_line`]: the timestamp is only
/// checked for its shape.
fn ends_a_line(line: &[u8]) -> bool {
    let mut fields = line.splitn(4, |&c| c == b' ');
    let (Some(ts), Some(stream), Some(tags), Some(_)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    ts.len() >= 20
        && matches!(stream, b"stdout" | b"stderr")
        && tags.split(|&c| c == b':').next() != Some(b"P")
}

/// Where the last `n` log lines of `file` begin, as the kubelet's `FindTailLineStartIndex` but
/// counting log lines rather than records (the fragments of a partial line count once): the
/// offset just after the record that ends the `n+1`-th line from the end, or 0 when the file
/// has `n` lines or fewer. An incomplete last record (no end of line yet) is not counted.
pub fn tail_start<R: Read + Seek>(file: &mut R, n: u64) -> io::Result<u64> {
    const BLOCK: u64 = 64 << 10;
    const MAX_TAIL_LINE: usize = 64 << 20;
    let size = file.seek(SeekFrom::End(0))?;
    let mut pos = size;
    // The bytes after `pos` not yet split into lines (the start of a line that crosses blocks).
    let mut carry: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; BLOCK as usize];
    let mut found = 0u64;
    // The end of the last complete line: an incomplete record after it is not a line.
    let mut seen_last_eol = false;
    while pos > 0 {
        let len = BLOCK.min(pos);
        pos -= len;
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut buf[..len as usize])?;
        let mut block = buf[..len as usize].to_vec();
        block.extend_from_slice(&carry);
        // `end`: one past the `\n` of the line being looked at, in `block`.
        let mut end = block.len();
        if !seen_last_eol {
            match memchr::memrchr(b'\n', &block) {
                Some(i) => {
                    seen_last_eol = true;
                    end = i + 1;
                }
                None => {
                    if block.len() > MAX_TAIL_LINE {
                        // No end of line in the last 64 MiB: nothing there is a line yet.
                        return Ok(size);
                    }
                    carry = block;
                    continue;
                }
            }
        }
        loop {
            let start = match memchr::memrchr(b'\n', &block[..end - 1]) {
                Some(i) => i + 1,
                None if pos == 0 => 0,
                None => break,
            };
            if ends_a_line(&block[start..end]) {
                found += 1;
                if found == n.saturating_add(1) {
                    return Ok(pos + end as u64);
                }
            }
            if start == 0 {
                break;
            }
            end = start;
        }
        block.truncate(end);
        if pos == 0 {
            break;
        }
        // The part before the first complete line of this block, kept for the next one.
        let first_eol = end;
        carry = block[..first_eol].to_vec();
        if carry.len() > MAX_TAIL_LINE {
            // A single record over 64 MiB: no CRI runtime writes one; count from here.
            return Ok(pos + first_eol as u64);
        }
    }
    Ok(0)
}

/// Applies `sinceSeconds`/`sinceTime`, `timestamps` and `limitBytes` to log messages, as the
/// kubelet's `logWriter`.
#[derive(Debug, Clone)]
pub struct LogWriter {
    since: Option<Instant>,
    timestamps: bool,
    /// Bytes still allowed (`limitBytes`), or `None`.
    remaining: Option<u64>,
}

/// Whether a reader should go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `limitBytes` is reached: nothing more is written.
    LimitReached,
}

impl LogWriter {
    pub fn new(since: Option<Instant>, timestamps: bool, limit_bytes: Option<u64>) -> Self {
        Self {
            since,
            timestamps,
            remaining: limit_bytes,
        }
    }

    pub fn done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Writes one message made of `parts` (a joined line's fragments) stamped `time` to `out`.
    pub fn write(&mut self, time: &LogTime, parts: &[&[u8]], out: &mut Vec<u8>) -> Flow {
        if self.done() {
            return Flow::LimitReached;
        }
        if self.since.is_some_and(|s| time.instant() < s) {
            return Flow::Continue;
        }
        let start = out.len();
        if self.timestamps {
            time.write_fixed(out);
            out.push(b' ');
        }
        for p in parts {
            out.extend_from_slice(p);
        }
        if let Some(rem) = self.remaining.as_mut() {
            let written = (out.len() - start) as u64;
            if written >= *rem {
                out.truncate(start + *rem as usize);
                *rem = 0;
                return Flow::LimitReached;
            }
            *rem -= written;
        }
        Flow::Continue
    }
}

/// A stream's partial line waiting for the record that completes it.
#[derive(Debug, Default)]
struct Pending {
    time: Option<LogTime>,
    buf: Vec<u8>,
}

/// Turns records into log messages: joins partial records per stream, skips malformed records
/// (counting them and keeping the first error for the reader to report, as the kubelet logs
/// each), and writes through a [`LogWriter`]. Unlike the kubelet, a malformed first record is
/// skipped too: the kubelet picks the file's format from the first line it reads and gives up
/// when that line is in none, so a `tailLines` that starts on a damaged record loses the whole
/// answer; only the CRI format is read here.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: [Pending; 2],
    /// Malformed records skipped so far.
    pub skipped: u64,
    /// The first malformed record's error and (the start of) the line.
    pub first_error: Option<(ParseError, String)>,
}

fn idx(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one line of the file (with its `\n`, or without one for an incomplete last line).
    pub fn feed(&mut self, line: &[u8], w: &mut LogWriter, out: &mut Vec<u8>) -> Flow {
        let rec = match parse_line(line) {
            Ok(r) => r,
            Err(e) => {
                self.skipped += 1;
                if self.first_error.is_none() {
                    let l = String::from_utf8_lossy(&line[..line.len().min(256)]).into_owned();
                    self.first_error = Some((e, l));
                }
                return Flow::Continue;
            }
        };
        let p = &mut self.pending[idx(rec.stream)];
        if rec.partial {
            if p.buf.is_empty() {
                p.time = Some(rec.time);
            }
            p.buf.extend_from_slice(rec.content);
            if p.buf.len() >= MAX_JOINED {
                let time = p.time.take().unwrap_or(rec.time);
                let flow = w.write(&time, &[&p.buf], out);
                p.buf.clear();
                return flow;
            }
            return Flow::Continue;
        }
        if p.buf.is_empty() {
            return w.write(&rec.time, &[rec.content], out);
        }
        let time = p.time.take().unwrap_or(rec.time);
        let flow = w.write(&time, &[&p.buf, rec.content], out);
        p.buf.clear();
        flow
    }

    /// Writes the partial lines still waiting (the end of what there is to read), the older
    /// first.
    pub fn finish(&mut self, w: &mut LogWriter, out: &mut Vec<u8>) -> Flow {
        let mut order: Vec<usize> = (0..2)
            .filter(|&i| !self.pending[i].buf.is_empty())
            .collect();
        order.sort_by_key(|&i| self.pending[i].time);
        for i in order {
            let p = &mut self.pending[i];
            let time = p.time.take();
            let buf = std::mem::take(&mut p.buf);
            if let Some(time) = time {
                if w.write(&time, &[&buf], out) == Flow::LimitReached {
                    return Flow::LimitReached;
                }
            }
        }
        Flow::Continue
    }

    /// Feeds every complete line of `data` and returns how many bytes it consumed (the rest
    /// is an incomplete line for the next call). Stops early at `limitBytes`.
    pub fn feed_lines(
        &mut self,
        data: &[u8],
        w: &mut LogWriter,
        out: &mut Vec<u8>,
    ) -> (usize, Flow) {
        let mut at = 0;
        while let Some(nl) = memchr::memchr(b'\n', &data[at..]) {
            let line = &data[at..at + nl + 1];
            at += nl + 1;
            if self.feed(line, w, out) == Flow::LimitReached {
                return (at, Flow::LimitReached);
            }
        }
        (at, Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> LogTime {
        parse_timestamp(s.as_bytes()).unwrap()
    }

    #[test]
    fn timestamps_parse_as_go_does_and_agree_with_jiff() {
        for s in [
            "2016-10-06T00:17:09.669794202Z",
            "2016-10-06T00:17:09Z",
            "2016-10-06T00:17:09.6Z",
            "2024-02-29T23:59:59.999999999+05:30",
            "1969-12-31T23:59:59.5-08:00",
            "2000-01-01T00:00:00.000000001+00:00",
            "0001-01-01T00:00:00Z",
            "9999-12-30T21:59:59.999999999Z",
        ] {
            let t = ts(s);
            let j: jiff::Timestamp = s.parse().unwrap();
            assert_eq!(
                (t.unix, t.nanos as i32),
                (j.as_second(), j.subsec_nanosecond()),
                "{s}"
            );
        }
        for (bad, why) in [
            ("2016-10-06 00:17:09Z", "expected YYYY-MM-DDThh:mm:ss"),
            ("2016-10-06T00:17:09", "too short"),
            ("2016-13-06T00:17:09Z", "month out of range"),
            ("2023-02-29T00:17:09Z", "day out of range"),
            ("2016-10-06T24:17:09Z", "hour out of range"),
            ("2016-10-06T00:60:09Z", "minute out of range"),
            ("2016-10-06T00:17:60Z", "second out of range"),
            (
                "2016-10-06T00:17:09.Z",
                "expected one to nine fractional digits",
            ),
            (
                "2016-10-06T00:17:09.1234567890Z",
                "expected one to nine fractional digits",
            ),
            (
                "2016-10-06T00:17:09+0100",
                "expected Z or a numeric offset (±hh:mm) after the time",
            ),
            (
                "2016-10-06T00:17:09z",
                "expected Z or a numeric offset (±hh:mm) after the time",
            ),
            ("2016-10-06T00:17:09+24:00", "time zone offset out of range"),
            ("2016-1a-06T00:17:09Z", "expected digits"),
        ] {
            assert_eq!(parse_timestamp(bad.as_bytes()), Err(why), "{bad}");
        }
    }

    #[test]
    fn fixed_format_keeps_the_records_offset_and_nine_digits() {
        assert_eq!(
            ts("2016-10-06T00:17:09.6Z").to_fixed_string(),
            "2016-10-06T00:17:09.600000000Z"
        );
        assert_eq!(
            ts("2016-10-06T00:17:09+02:00").to_fixed_string(),
            "2016-10-06T00:17:09.000000000+02:00"
        );
        assert_eq!(
            ts("2016-10-06T00:17:09.000000001-00:30").to_fixed_string(),
            "2016-10-06T00:17:09.000000001-00:30"
        );
        // Go prints a zero offset as Z.
        assert_eq!(
            ts("2016-10-06T00:17:09+00:00").to_fixed_string(),
            "2016-10-06T00:17:09.000000000Z"
        );
        assert!(ts("2016-10-06T02:17:09+02:00").instant() == ts("2016-10-06T00:17:09Z").instant());
    }

    #[test]
    fn records_parse_with_the_kubelets_rules_and_messages() {
        let r = parse_line(b"2016-10-06T00:17:09.669794202Z stdout P log content 1\n").unwrap();
        assert_eq!(
            (r.stream, r.partial, r.content),
            (Stream::Stdout, true, &b"log content 1"[..])
        );
        let r = parse_line(b"2016-10-06T00:17:09.669794203Z stderr F log content 2\n").unwrap();
        assert_eq!(
            (r.stream, r.partial, r.content),
            (Stream::Stderr, false, &b"log content 2\n"[..])
        );
        // Tags beyond the first are kept for forward compatibility; an empty line is content.
        let r = parse_line(b"2016-10-06T00:17:09Z stdout F:x:y \n").unwrap();
        assert_eq!((r.partial, r.content), (false, &b"\n"[..]));
        let r = parse_line(b"2016-10-06T00:17:09Z stdout P:x a b  c\n").unwrap();
        assert_eq!((r.partial, r.content), (true, &b"a b  c"[..]));
        for (line, msg) in [
            (&b"no-spaces-at-all\n"[..], "timestamp is not found".to_string()),
            (b"2016-10-06T00:17:09Z\n", "timestamp is not found".into()),
            (
                b"yesterday stdout F hi\n",
                "unexpected timestamp format \"2006-01-02T15:04:05.999999999Z07:00\": \"yesterday\": too short".into(),
            ),
            (b"2016-10-06T00:17:09Z stdout\n", "stream type is not found".into()),
            (b"2016-10-06T00:17:09Z stdin F hi\n", "unexpected stream type \"stdin\"".into()),
            (b"2016-10-06T00:17:09Z stdout F\n", "log tag is not found".into()),
        ] {
            assert_eq!(parse_line(line).unwrap_err().to_string(), msg);
        }
    }

    fn run(input: &str, w: &mut LogWriter) -> (String, Decoder) {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let (used, _) = d.feed_lines(input.as_bytes(), w, &mut out);
        if used < input.len() {
            d.feed(&input.as_bytes()[used..], w, &mut out);
        }
        d.finish(w, &mut out);
        (String::from_utf8(out).unwrap(), d)
    }

    fn all() -> LogWriter {
        LogWriter::new(None, false, None)
    }

    #[test]
    fn partial_records_join_per_stream_under_the_first_fragments_time() {
        let input = "2024-01-01T00:00:01Z stdout P hel\n\
                     2024-01-01T00:00:02Z stderr F oops\n\
                     2024-01-01T00:00:03Z stdout P lo \n\
                     2024-01-01T00:00:04Z stdout F world\n\
                     2024-01-01T00:00:05Z stdout F next\n";
        let (out, _) = run(input, &mut all());
        assert_eq!(out, "oops\nhello world\nnext\n");
        let (out, _) = run(input, &mut LogWriter::new(None, true, None));
        assert_eq!(
            out,
            "2024-01-01T00:00:02.000000000Z oops\n\
             2024-01-01T00:00:01.000000000Z hello world\n\
             2024-01-01T00:00:05.000000000Z next\n"
        );
        // A partial line with nothing after it is written as it stands at the end.
        let (out, _) = run("2024-01-01T00:00:01Z stdout P abc\n", &mut all());
        assert_eq!(out, "abc");
    }

    #[test]
    fn an_endless_line_is_written_in_pieces_of_max_joined() {
        let frag = "x".repeat(16 << 10);
        let mut input = String::new();
        for _ in 0..(MAX_JOINED / frag.len() + 3) {
            input.push_str(&format!("2024-01-01T00:00:01Z stdout P {frag}\n"));
        }
        input.push_str("2024-01-01T00:00:02Z stdout F end\n");
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut w = all();
        d.feed_lines(input.as_bytes(), &mut w, &mut out);
        // The first MAX_JOINED bytes went out before the line ended; nothing is lost.
        assert_eq!(out.len(), (MAX_JOINED / frag.len() + 3) * frag.len() + 4);
        assert!(d.pending[0].buf.is_empty());
    }

    #[test]
    fn malformed_records_are_skipped_and_the_first_kept_for_the_report() {
        let (out, d) = run(
            "garbage-first\n2024-01-01T00:00:01Z stdout F a\ngarbage\n2024-01-01T00:00:02Z stdin F b\n2024-01-01T00:00:03Z stdout F c\n",
            &mut all(),
        );
        assert_eq!(out, "a\nc\n");
        assert_eq!(d.skipped, 3);
        let (e, line) = d.first_error.unwrap();
        assert_eq!(
            (e, line.as_str()),
            (ParseError::NoTimestamp, "garbage-first\n")
        );
    }

    #[test]
    fn since_and_limit_bytes_apply_as_the_kubelets_writer() {
        let input = "2024-01-01T00:00:01Z stdout F one\n\
                     2024-01-01T00:00:02Z stdout F two\n\
                     2024-01-01T01:00:03+01:00 stdout F three\n";
        let since = ts("2024-01-01T00:00:02Z").instant();
        let (out, _) = run(input, &mut LogWriter::new(Some(since), false, None));
        assert_eq!(out, "two\nthree\n");
        let since = ts("2024-01-01T00:00:02.5Z").instant();
        let (out, _) = run(input, &mut LogWriter::new(Some(since), false, None));
        assert_eq!(out, "three\n");
        // The limit cuts inside a line and stops there, timestamps included in the count.
        let mut w = LogWriter::new(None, false, Some(6));
        let (out, _) = run(input, &mut w);
        assert_eq!(out, "one\ntw");
        assert!(w.done());
        let (out, _) = run(input, &mut LogWriter::new(None, true, Some(33)));
        assert_eq!(out, "2024-01-01T00:00:01.000000000Z on");
        let (out, _) = run(input, &mut LogWriter::new(None, false, Some(4)));
        assert_eq!(out, "one\n");
    }

    fn tail(data: &str, n: u64) -> String {
        let mut c = std::io::Cursor::new(data.as_bytes().to_vec());
        let at = tail_start(&mut c, n).unwrap() as usize;
        data[at..].to_string()
    }

    #[test]
    fn tail_counts_log_lines_from_the_end() {
        let data = "2024-01-01T00:00:01Z stdout F a\n\
                    2024-01-01T00:00:02Z stdout P b1\n\
                    2024-01-01T00:00:03Z stdout F b2\n\
                    2024-01-01T00:00:04Z stderr F c\n";
        assert_eq!(tail(data, 0), "");
        assert_eq!(tail(data, 1), "2024-01-01T00:00:04Z stderr F c\n");
        assert_eq!(
            tail(data, 2),
            "2024-01-01T00:00:02Z stdout P b1\n2024-01-01T00:00:03Z stdout F b2\n2024-01-01T00:00:04Z stderr F c\n"
        );
        assert_eq!(tail(data, 3), data);
        assert_eq!(tail(data, 100), data);
        // An incomplete last record is not a line, but what follows the start is read whole.
        let growing = format!("{data}2024-01-01T00:00:05Z stdout F d");
        assert_eq!(
            tail(&growing, 1),
            "2024-01-01T00:00:04Z stderr F c\n2024-01-01T00:00:05Z stdout F d"
        );
        assert_eq!(tail("", 5), "");
        assert_eq!(
            tail("2024-01-01T00:00:05Z stdout F d", 0),
            "2024-01-01T00:00:05Z stdout F d"
        );
    }

    #[test]
    fn tail_crosses_block_boundaries() {
        // Lines of varied length over several 64 KiB blocks, one of them longer than a block.
        let mut lines = Vec::new();
        for i in 0..3000 {
            let len = if i == 1500 { 100_000 } else { (i * 37) % 200 };
            lines.push(format!(
                "2024-01-01T00:00:01Z stdout F {}\n",
                "y".repeat(len)
            ));
        }
        let data: String = lines.concat();
        for n in [0u64, 1, 7, 1499, 1500, 1501, 2999, 3000, 5000] {
            let want: String = lines[lines.len().saturating_sub(n as usize)..].concat();
            assert_eq!(tail(&data, n).len(), want.len(), "n={n}");
            assert_eq!(tail(&data, n), want, "n={n}");
        }
    }
}
