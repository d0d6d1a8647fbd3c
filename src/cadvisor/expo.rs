//! The Prometheus text exposition format (0.0.4), written the way the Go client library
//! (`expfmt`) writes it, straight into a reused byte buffer.
//!
//! Go-compatible details a diff against cAdvisor or the kubelet would show: values are
//! formatted like `strconv.FormatFloat(v, 'g', -1, 64)` (`1.395066363e+09`, `262144`, `7e-09`,
//! `+Inf`, `NaN`), timestamps are integer milliseconds, label values escape `\`, `"` and
//! newline, `HELP` text escapes `\` and newline, and labels are written in ascending name
//! order. A family with no samples is left out entirely ([`Family::finish`]).
//!
//! Nothing here allocates once the output buffer has grown to its working size.

use std::fmt::Write as _;

/// Content type of the text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type, as the `# TYPE` line spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A small stack buffer for `core::fmt` output (floats).
struct Stack {
    b: [u8; 48],
    n: usize,
}

impl std::fmt::Write for Stack {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.n + s.len();
        if end > self.b.len() {
            return Err(std::fmt::Error);
        }
        self.b[self.n..end].copy_from_slice(s.as_bytes());
        self.n = end;
        Ok(())
    }
}

/// Appends `v` in decimal.
pub fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut b = [0u8; 20];
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&b[i..]);
}

/// Appends `v` in decimal.
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// Appends `v` as Go's `strconv.FormatFloat(v, 'g', -1, 64)`: the shortest digits that
/// round-trip, in `%e` form when the decimal exponent is below -4 or at least 6.
pub fn write_go_float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    if v == 0.0 {
        out.extend_from_slice(if v.is_sign_negative() { b"-0" } else { b"0" });
        return;
    }
    if v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15 {
        // Integers below 2^53 are exact: their shortest digits are their own, without
        // trailing zeros. Below 10^6 they print as themselves.
        if v.abs() < 1e6 {
            write_i64(out, v as i64);
            return;
        }
        let mut b = [0u8; 20];
        let mut n = v.abs() as u64;
        let mut i = b.len();
        while n > 0 {
            i -= 1;
            b[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let all = &b[i..];
        let exp = all.len() - 1;
        let digits = &all[..all.iter().rposition(|&c| c != b'0').map_or(1, |p| p + 1)];
        if v < 0.0 {
            out.push(b'-');
        }
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.extend_from_slice(b"e+");
        if exp < 10 {
            out.push(b'0');
        }
        write_u64(out, exp as u64);
        return;
    }
    // Shortest round-trip digits and the decimal exponent, from core's formatter.
    let mut s = Stack { b: [0; 48], n: 0 };
    if write!(s, "{:e}", v).is_err() {
        out.extend_from_slice(b"NaN");
        return;
    }
    let text = &s.b[..s.n];
    let (neg, text) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    let epos = text.iter().position(|&c| c == b'e').unwrap_or(text.len());
    let mut digits = [0u8; 24];
    let mut nd = 0;
    for &c in &text[..epos] {
        if c.is_ascii_digit() && nd < digits.len() {
            digits[nd] = c;
            nd += 1;
        }
    }
    let exp: i32 = std::str::from_utf8(&text[(epos + 1).min(text.len())..])
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    if neg {
        out.push(b'-');
    }
    let digits = &digits[..nd.max(1)];
    if !(-4..6).contains(&exp) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        write_u64(out, u64::from(e));
        return;
    }
    // %f form: the decimal point sits after `dp` digits.
    let dp = exp + 1;
    if dp <= 0 {
        out.extend_from_slice(b"0.");
        for _ in 0..-dp {
            out.push(b'0');
        }
        out.extend_from_slice(digits);
    } else {
        let dp = dp as usize;
        if dp >= digits.len() {
            out.extend_from_slice(digits);
            for _ in digits.len()..dp {
                out.push(b'0');
            }
        } else {
            out.extend_from_slice(&digits[..dp]);
            out.push(b'.');
            out.extend_from_slice(&digits[dp..]);
        }
    }
}

/// The Go formatting of `v` as a string (tests, JSON-free callers).
pub fn go_float(v: f64) -> String {
    let mut b = Vec::new();
    write_go_float(&mut b, v);
    String::from_utf8(b).unwrap_or_default()
}

/// Appends a label value with `\`, `"` and newline escaped.
pub fn write_label_value(out: &mut Vec<u8>, v: &str) {
    for &c in v.as_bytes() {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(c),
        }
    }
}

fn write_help(out: &mut Vec<u8>, v: &str) {
    for &c in v.as_bytes() {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(c),
        }
    }
}

/// Turns any character a label name may not hold into `_` (cAdvisor's `sanitizeLabelName`).
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A label set written once and reused for many samples: `a="x",b="y"` (ascending names),
/// with the offsets of each pair so that extra labels can be merged in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSet {
    text: Vec<u8>,
    /// (name, start, end) of each `name="value"` pair in `text`.
    pairs: Vec<(String, usize, usize)>,
}

impl LabelSet {
    /// Builds a label set; `labels` must be sorted by name and free of duplicates.
    pub fn new<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> LabelSet {
        let mut s = LabelSet::default();
        for (k, v) in labels {
            if !s.text.is_empty() {
                s.text.push(b',');
            }
            let start = s.text.len();
            s.text.extend_from_slice(k.as_bytes());
            s.text.extend_from_slice(b"=\"");
            write_label_value(&mut s.text, v);
            s.text.push(b'"');
            s.pairs.push((k.to_string(), start, s.text.len()));
        }
        s
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The written pairs, `a="x",b="y"`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }
}

/// One family being written: its header goes out with the first sample; a family that gets
/// no sample leaves no trace.
pub struct Family<'a> {
    out: &'a mut Vec<u8>,
    name: &'static str,
    start: usize,
    samples: usize,
}

impl<'a> Family<'a> {
    /// Starts family `name` with its `# HELP` and `# TYPE` lines.
    pub fn begin(out: &'a mut Vec<u8>, name: &'static str, help: &str, kind: Kind) -> Self {
        let start = out.len();
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        write_help(out, help);
        out.extend_from_slice(b"\n# TYPE ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(kind.as_str().as_bytes());
        out.push(b'\n');
        Family {
            out,
            name,
            start,
            samples: 0,
        }
    }

    /// Writes one sample: `name{base+extra} value [timestamp_ms]`. `extra` must be sorted
    /// by name; it is merged with `base` so that all labels come out in ascending order.
    pub fn sample(
        &mut self,
        base: &LabelSet,
        extra: &[(&str, &str)],
        value: f64,
        ts_ms: Option<i64>,
    ) {
        self.sample_suffixed("", base, extra, value, ts_ms);
    }

    /// [`Family::sample`] for a series named `<family><suffix>` (`_bucket`, `_sum`, ...).
    pub fn sample_suffixed(
        &mut self,
        suffix: &str,
        base: &LabelSet,
        extra: &[(&str, &str)],
        value: f64,
        ts_ms: Option<i64>,
    ) {
        let out = &mut *self.out;
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(suffix.as_bytes());
        if !base.is_empty() || !extra.is_empty() {
            out.push(b'{');
            let mut first = true;
            let mut comma = |out: &mut Vec<u8>| {
                if !first {
                    out.push(b',');
                }
                first = false;
            };
            let mut e = extra.iter().peekable();
            for (name, start, end) in &base.pairs {
                while let Some((k, v)) = e.next_if(|(k, _)| *k < name.as_str()) {
                    comma(out);
                    write_pair(out, k, v);
                }
                comma(out);
                out.extend_from_slice(&base.text[*start..*end]);
            }
            for (k, v) in e {
                comma(out);
                write_pair(out, k, v);
            }
            out.push(b'}');
        }
        out.push(b' ');
        write_go_float(out, value);
        if let Some(ts) = ts_ms {
            out.push(b' ');
            write_i64(out, ts);
        }
        out.push(b'\n');
        self.samples += 1;
    }

    /// Ends the family; drops its header if it got no sample.
    pub fn finish(self) {
        if self.samples == 0 {
            self.out.truncate(self.start);
        }
    }
}

fn write_pair(out: &mut Vec<u8>, k: &str, v: &str) {
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b"=\"");
    write_label_value(out, v);
    out.push(b'"');
}

/// Nanoseconds since the epoch → milliseconds (the exposition's timestamp unit).
pub fn ms(ns: u64) -> i64 {
    (ns / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go() {
        // Values from cAdvisor's golden exposition files.
        for (v, want) in [
            (0.0, "0"),
            (1.0, "1"),
            (100000.0, "100000"),
            (262144.0, "262144"),
            (1e6, "1e+06"),
            (8388608.0, "8.388608e+06"),
            (1.395066363e9, "1.395066363e+09"),
            (3.3604804608e10, "3.3604804608e+10"),
            (2.168421613568e12, "2.168421613568e+12"),
            (7e-9, "7e-09"),
            (2e-9, "2e-09"),
            (1.724314, "1.724314"),
            (0.053643567, "0.053643567"),
            (479.424566378, "479.424566378"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-1.0, "-1"),
            (-2.5e7, "-2.5e+07"),
            (123456.789, "123456.789"),
            (1.8446744073709552e19, "1.8446744073709552e+19"),
            (9_007_199_254_740_991.0, "9.007199254740991e+15"),
            (67_108_864.0, "6.7108864e+07"),
            (1e15, "1e+15"),
            (-123_456_789.0, "-1.23456789e+08"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(go_float(v), want, "{v:e}");
        }
        // The integer path round-trips and matches core's shortest digits.
        for i in 0..2000u64 {
            let v = (i * 7_919 + 1) as f64 * 104_729.0 * (1u64 << (i % 20)) as f64;
            let s = go_float(v);
            assert_eq!(s.parse::<f64>().unwrap(), v, "{s} does not round-trip");
            let core = format!("{v:e}");
            let mantissa = core.split('e').next().unwrap().replace('.', "");
            assert_eq!(
                s.split('e').next().unwrap().replace('.', ""),
                mantissa,
                "{v}"
            );
        }
    }

    #[test]
    fn families_merge_labels_in_order_and_vanish_when_empty() {
        let mut out = Vec::new();
        let base = LabelSet::new([("container", "app"), ("id", "/a"), ("pod", "p\"q")]);
        let mut f = Family::begin(
            &mut out,
            "x_total",
            "Help with \\ and\nnewline.",
            Kind::Counter,
        );
        f.sample(&base, &[("cpu", "total")], 1.5, Some(1_395_066_363_000));
        f.sample(&base, &[("a", "1"), ("zz", "2")], 2.0, None);
        f.finish();
        let f = Family::begin(&mut out, "empty", "Never written.", Kind::Gauge);
        f.finish();
        let mut f = Family::begin(&mut out, "bare", "No labels.", Kind::Gauge);
        f.sample(&LabelSet::default(), &[], 0.0, None);
        f.finish();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# HELP x_total Help with \\\\ and\\nnewline.\n# TYPE x_total counter\n\
             x_total{container=\"app\",cpu=\"total\",id=\"/a\",pod=\"p\\\"q\"} 1.5 1395066363000\n\
             x_total{a=\"1\",container=\"app\",id=\"/a\",pod=\"p\\\"q\",zz=\"2\"} 2\n\
             # HELP bare No labels.\n# TYPE bare gauge\nbare 0\n"
        );
    }

    #[test]
    fn label_names_are_sanitized() {
        assert_eq!(
            sanitize_label_name("io.kubernetes.pod-name/x"),
            "io_kubernetes_pod_name_x"
        );
    }
}
