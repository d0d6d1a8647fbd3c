//! Container log files in the CRI format through the `/containerLogs` reader's parser
//! (`logs::cri`): a container writes what it likes into its log, and a damaged or truncated
//! file must not take the agent down. The first byte picks the options (timestamps, a
//! `limitBytes`, a `sinceTime`), the rest is the file.
//!
//! Checked: no panic; every line's parse either fails or gives a partial record without an end
//! of line; a parsed timestamp prints (`RFC3339NanoFixed`) to a string that parses back to the
//! same instant; the output never exceeds `limitBytes`, and without timestamps it is never
//! longer than the input; `tail_start` returns a line start within the file.

#![no_main]

use kubelet_rs::logs::cri::{
    parse_line, parse_timestamp, tail_start, Decoder, Flow, Instant, LogWriter,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, file)) = data.split_first() else {
        return;
    };
    for line in file.split_inclusive(|&b| b == b'\n') {
        if let Ok(r) = parse_line(line) {
            if r.partial {
                assert!(!r.content.ends_with(b"\n"), "{line:?}");
            }
            let printed = r.time.to_fixed_string();
            let back = parse_timestamp(printed.as_bytes()).expect(&printed);
            assert_eq!(back.instant(), r.time.instant(), "{printed}");
        }
    }
    let timestamps = sel & 1 != 0;
    let limit = (sel & 2 != 0).then_some(u64::from(sel >> 2) * 7 + 1);
    let since = (sel & 4 != 0).then_some(Instant {
        unix: 1_700_000_000,
        nanos: 0,
    });
    let mut w = LogWriter::new(since, timestamps, limit);
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let (used, flow) = d.feed_lines(file, &mut w, &mut out);
    if flow == Flow::Continue {
        if used < file.len() {
            d.feed(&file[used..], &mut w, &mut out);
        }
        d.finish(&mut w, &mut out);
    }
    if let Some(l) = limit {
        assert!(out.len() as u64 <= l, "{} > {l}", out.len());
    }
    if !timestamps {
        assert!(out.len() <= file.len(), "{} > {}", out.len(), file.len());
    }
    for n in [0u64, 1, 3, u64::from(sel)] {
        let at = tail_start(&mut std::io::Cursor::new(file), n).unwrap() as usize;
        assert!(at <= file.len());
        assert!(at == 0 || file[at - 1] == b'\n', "tail {n} starts mid-line at {at}");
    }
});
