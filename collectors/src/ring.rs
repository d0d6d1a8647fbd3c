//! A bounded, lock-free history of variable-length records: one writer, any number of readers.
//!
//! Records are runs of `u64` words laid out one after the other in a circular word buffer and
//! indexed by a circular array of slots. Each slot carries a sequence number used as a seqlock:
//! record `k` lives in slot `k % slots` and is valid while that slot's sequence reads `2k + 2`.
//! Before the writer overwrites the words of an old record (or reuses its slot) it sets that
//! record's sequence to the odd `2k + 1`, issues a release fence, then writes; a reader loads the
//! sequence (acquire), copies the words, issues an acquire fence and loads the sequence again,
//! and keeps the copy only if it did not change. Every word is an atomic, so a racing copy is
//! never undefined behaviour, only discarded: readers never block the writer and never return a
//! torn record. All atomics go through `crate::sync`, which `--cfg loom` swaps for loom's.
//!
//! Eviction follows cAdvisor's `timed_store`: a record goes when it is older than `max_age`
//! relative to the newest one, when the slots run out, or when the word space it used is needed.
//! Queries return records oldest first: the latest, the last N, or those in a time range
//! (inclusive) capped to the most recent N.

use crate::model::{Record, Timestamp};
use crate::sync::{fence, Arc, AtomicU64, Ordering};

struct Slot {
    seq: AtomicU64,
    /// `offset << 32 | len`, in words.
    meta: AtomicU64,
    ts: AtomicU64,
}

/// The shared half of a ring: what readers query. Obtain with [`Ring::new`].
pub struct Ring {
    slots: Box<[Slot]>,
    words: Box<[AtomicU64]>,
    /// Records published so far (the next record's number).
    head: AtomicU64,
    /// Records refused because they were larger than the word buffer.
    dropped: AtomicU64,
}

/// The single writer of a ring. Not `Clone`: holding it is the right to write.
pub struct RingWriter {
    ring: Arc<Ring>,
    next: u64,
    pos: usize,
    oldest: u64,
    max_age: u64,
    /// Writer-private copy of each slot's `(offset, len, ts)`.
    regions: Box<[(u32, u32, Timestamp)]>,
}

fn overlaps(a_off: usize, a_len: usize, b_off: usize, b_len: usize) -> bool {
    a_len != 0 && b_len != 0 && a_off < b_off + b_len && b_off < a_off + a_len
}

impl Ring {
    /// A ring of at most `slots` records sharing `words` words of storage; records older than
    /// `max_age` ns relative to the newest are evicted (`0`: no age limit).
    pub fn new(slots: usize, words: usize, max_age: u64) -> (RingWriter, Arc<Ring>) {
        let slots = slots.max(1);
        let words = words.clamp(1, u32::MAX as usize);
        let ring = Arc::new(Ring {
            slots: (0..slots)
                .map(|_| Slot {
                    seq: AtomicU64::new(0),
                    meta: AtomicU64::new(0),
                    ts: AtomicU64::new(0),
                })
                .collect(),
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            head: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let writer = RingWriter {
            ring: ring.clone(),
            next: 0,
            pos: 0,
            oldest: 0,
            max_age,
            regions: vec![(0, 0, 0); slots].into_boxed_slice(),
        };
        (writer, ring)
    }

    /// Record capacity.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Word capacity.
    pub fn word_count(&self) -> usize {
        self.words.len()
    }

    /// Bytes of memory this ring holds (slots, words and the writer's index).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Ring>()
            + self.slots.len()
                * (std::mem::size_of::<Slot>() + std::mem::size_of::<(u32, u32, Timestamp)>())
            + self.words.len() * std::mem::size_of::<AtomicU64>()
    }

    /// Records written so far, including ones since evicted.
    pub fn published(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Records refused for being larger than the whole word buffer.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Copies record `k` onto the end of `out` if it is still valid; returns its timestamp.
    /// On failure `out` is left as it was.
    fn read(&self, k: u64, out: &mut Vec<u64>) -> Option<Timestamp> {
        let slot = &self.slots[(k % self.slots.len() as u64) as usize];
        let expect = 2 * k + 2;
        if slot.seq.load(Ordering::Acquire) != expect {
            return None;
        }
        let meta = slot.meta.load(Ordering::Relaxed);
        let ts = slot.ts.load(Ordering::Relaxed);
        let (off, len) = ((meta >> 32) as usize, (meta & 0xffff_ffff) as usize);
        let base = out.len();
        if let Some(src) = self.words.get(off..off + len) {
            out.extend(src.iter().map(|w| w.load(Ordering::Relaxed)));
        }
        fence(Ordering::Acquire);
        if slot.seq.load(Ordering::Relaxed) != expect || off + len > self.words.len() {
            out.truncate(base);
            return None;
        }
        Some(ts)
    }

    /// Copies the newest record into `out` (cleared first); returns its timestamp.
    pub fn latest_words(&self, out: &mut Vec<u64>) -> Option<Timestamp> {
        // The newest record can only be lost to a race if the writer lapped us meanwhile;
        // retry a few times with the new head.
        for _ in 0..4 {
            out.clear();
            let h = self.published();
            if h == 0 {
                return None;
            }
            if let Some(ts) = self.read(h - 1, out) {
                return Some(ts);
            }
        }
        None
    }

    /// Walks records from newest to oldest calling `visit(ts, words)`; `visit` returns `false`
    /// to stop. Stops at the first record already evicted.
    pub fn walk_newest_first(&self, mut visit: impl FnMut(Timestamp, &[u64]) -> bool) {
        let h = self.published();
        let lowest = h.saturating_sub(self.slots.len() as u64);
        let mut buf = Vec::new();
        let mut k = h;
        while k > lowest {
            k -= 1;
            buf.clear();
            let Some(ts) = self.read(k, &mut buf) else {
                return;
            };
            if !visit(ts, &buf) {
                return;
            }
        }
    }

    /// The newest record, decoded.
    pub fn latest<R: Record>(&self) -> Option<R> {
        let mut buf = Vec::new();
        self.latest_words(&mut buf)?;
        R::decode(&buf)
    }

    /// Up to `n` most recent records, oldest first (`n < 0`: all of them).
    pub fn recent<R: Record>(&self, n: i64) -> Vec<R> {
        self.range(0, u64::MAX, n)
    }

    /// Records with `start <= ts <= end`, the `max` most recent of them (`max < 0`: no cap),
    /// oldest first: cAdvisor's `InTimeRange`.
    pub fn range<R: Record>(&self, start: Timestamp, end: Timestamp, max: i64) -> Vec<R> {
        let mut out = Vec::new();
        if max == 0 {
            return out;
        }
        self.walk_newest_first(|ts, words| {
            if ts > end {
                return true;
            }
            if ts < start {
                return false;
            }
            if let Some(r) = R::decode(words) {
                out.push(r);
            }
            max < 0 || (out.len() as i64) < max
        });
        out.reverse();
        out
    }
}

impl RingWriter {
    /// The shared ring this writer fills.
    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// Encodes and appends `r` using `scratch` as the word buffer (cleared first).
    pub fn push_record<R: Record>(&mut self, r: &R, scratch: &mut Vec<u64>) -> bool {
        scratch.clear();
        r.encode(scratch);
        self.push(r.timestamp(), scratch)
    }

    /// Appends one record. Returns `false` (and counts it as dropped) if it is larger than
    /// the whole word buffer. Never allocates.
    pub fn push(&mut self, ts: Timestamp, record: &[u64]) -> bool {
        let ring = &*self.ring;
        let cap = ring.words.len();
        let len = record.len();
        if len > cap {
            ring.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let nslots = ring.slots.len() as u64;
        let k = self.next;
        let old_pos = self.pos;
        let wrapped = old_pos + len > cap;
        let start = if wrapped { 0 } else { old_pos };
        let min_ts = ts.saturating_sub(self.max_age);
        // Evict, oldest first: out of slots, too old, in the tail we are skipping past on a
        // wrap, or in the way of the new record.
        while self.oldest < k {
            let (off, olen, ots) = self.regions[(self.oldest % nslots) as usize];
            let (off, olen) = (off as usize, olen as usize);
            let evict = k - self.oldest >= nslots
                || (self.max_age != 0 && ots < min_ts)
                || (wrapped && off >= old_pos)
                || overlaps(off, olen, start, len);
            if !evict {
                break;
            }
            let slot = &ring.slots[(self.oldest % nslots) as usize];
            slot.seq.store(2 * self.oldest + 1, Ordering::Relaxed);
            self.oldest += 1;
        }
        // Order the invalidations before any word of the new record.
        fence(Ordering::Release);
        for (dst, w) in ring.words[start..start + len].iter().zip(record) {
            dst.store(*w, Ordering::Relaxed);
        }
        let slot = &ring.slots[(k % nslots) as usize];
        slot.meta
            .store((start as u64) << 32 | len as u64, Ordering::Relaxed);
        slot.ts.store(ts, Ordering::Relaxed);
        slot.seq.store(2 * k + 2, Ordering::Release);
        self.regions[(k % nslots) as usize] = (start as u32, len as u32, ts);
        self.pos = start + len;
        self.next = k + 1;
        ring.head.store(k + 1, Ordering::Release);
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::model::ContainerStats;

    /// A record whose every word is `k`, of a length that varies with `k`.
    fn rec(k: u64) -> Vec<u64> {
        vec![k; 1 + (k % 4) as usize]
    }

    fn all_words(ring: &Ring) -> Vec<(u64, Vec<u64>)> {
        let mut v = Vec::new();
        ring.walk_newest_first(|ts, w| {
            v.push((ts, w.to_vec()));
            true
        });
        v.reverse();
        v
    }

    #[test]
    fn keeps_the_newest_records_within_slots_and_words() {
        let (mut w, ring) = Ring::new(4, 10, 0);
        for k in 1..=20 {
            assert!(w.push(k, &rec(k)));
            let got = all_words(&ring);
            assert_eq!(got.last().unwrap().0, k, "newest is always readable");
            assert!(got.len() <= 4);
            let words: usize = got.iter().map(|(_, w)| w.len()).sum();
            assert!(words <= 10);
            for (i, (ts, w)) in got.iter().enumerate() {
                assert_eq!(*w, rec(*ts), "record {ts} intact");
                if i > 0 {
                    assert_eq!(*ts, got[i - 1].0 + 1, "no holes");
                }
            }
        }
    }

    #[test]
    fn wraps_without_losing_the_newest_or_holes() {
        // Records of 3 words in a 7-word buffer: each wrap skips a 1-word tail.
        let (mut w, ring) = Ring::new(8, 7, 0);
        for k in 1..=10 {
            w.push(k, &[k, k, k]);
            let got = all_words(&ring);
            let ks: Vec<_> = got.iter().map(|(t, _)| *t).collect();
            let expect: Vec<_> = (k.saturating_sub(1).max(1)..=k).collect();
            assert_eq!(ks, expect, "two 3-word records fit in 7 words");
        }
    }

    #[test]
    fn oversized_records_are_refused() {
        let (mut w, ring) = Ring::new(4, 4, 0);
        assert!(!w.push(1, &[1; 5]));
        assert_eq!(ring.dropped(), 1);
        assert_eq!(ring.published(), 0);
        assert!(w.push(2, &[2; 4]));
        assert_eq!(all_words(&ring), vec![(2, vec![2; 4])]);
    }

    #[test]
    fn age_limit_evicts_like_timed_store() {
        let (mut w, ring) = Ring::new(100, 1000, 10);
        for ts in [1, 5, 11, 12, 20] {
            w.push(ts, &[ts]);
        }
        // Newest is 20: anything older than 10 is gone.
        let ts: Vec<_> = all_words(&ring).into_iter().map(|(t, _)| t).collect();
        assert_eq!(ts, vec![11, 12, 20]);
    }

    #[test]
    fn range_and_recent_follow_in_time_range_semantics() {
        let (mut w, ring) = Ring::new(16, 1000, 0);
        let mut scratch = Vec::new();
        for ts in 1..=10u64 {
            let s = ContainerStats {
                timestamp: ts * 10,
                process_count: Some(ts),
                ..Default::default()
            };
            w.push_record(&s, &mut scratch);
        }
        let ts = |v: Vec<ContainerStats>| v.into_iter().map(|s| s.timestamp).collect::<Vec<_>>();
        assert_eq!(ts(ring.recent(3)), vec![80, 90, 100]);
        assert_eq!(ts(ring.recent(-1)).len(), 10);
        assert!(ring.recent::<ContainerStats>(0).is_empty());
        // Inclusive bounds, capped to the most recent `max`.
        assert_eq!(ts(ring.range(30, 60, -1)), vec![30, 40, 50, 60]);
        assert_eq!(ts(ring.range(30, 60, 2)), vec![50, 60]);
        assert_eq!(ts(ring.range(101, 200, -1)), Vec::<u64>::new());
        assert_eq!(ts(ring.range(0, 5, -1)), Vec::<u64>::new());
        assert_eq!(
            ring.latest::<ContainerStats>().unwrap().process_count,
            Some(10)
        );
    }

    #[test]
    fn empty_ring_answers_nothing() {
        let (_w, ring) = Ring::new(4, 16, 0);
        assert!(ring.latest::<ContainerStats>().is_none());
        assert!(ring.recent::<ContainerStats>(-1).is_empty());
        assert!(ring.memory_bytes() >= 16 * 8);
    }

    /// The loom model below, run on real threads for many iterations: readers racing a
    /// writer that keeps lapping a tiny ring must never see a torn or mislabelled record.
    #[test]
    fn concurrent_readers_never_see_torn_records() {
        let (mut w, ring) = Ring::new(3, 9, 0);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let ring = ring.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut seen = 0u64;
                    let mut buf = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Some(ts) = ring.latest_words(&mut buf) {
                            assert_eq!(buf, rec(ts), "torn record {ts}");
                            seen += 1;
                        }
                        let mut prev = None;
                        ring.walk_newest_first(|ts, words| {
                            assert_eq!(words, &rec(ts)[..], "torn record {ts}");
                            if let Some(p) = prev {
                                assert_eq!(ts + 1, p, "records newest first, no holes");
                            }
                            prev = Some(ts);
                            true
                        });
                    }
                    seen
                })
            })
            .collect();
        for k in 1..=200_000u64 {
            w.push(k, &rec(k));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    fn rec(k: u64) -> Vec<u64> {
        vec![k; 1 + (k % 3) as usize]
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(f);
    }

    /// A reader of the latest record racing a writer that evicts, wraps and reuses slots.
    #[test]
    fn loom_latest_is_never_torn() {
        model(|| {
            let (mut w, ring) = Ring::new(2, 4, 0);
            let r = ring.clone();
            let t = loom::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(ts) = r.latest_words(&mut buf) {
                    assert_eq!(buf, rec(ts));
                }
            });
            for k in 1..=3 {
                assert!(w.push(k, &rec(k)));
            }
            t.join().unwrap();
            let mut buf = Vec::new();
            assert_eq!(ring.latest_words(&mut buf), Some(3));
            assert_eq!(buf, rec(3));
        });
    }

    /// A reader walking the history while the writer overwrites it: every record it returns
    /// is whole, and they come newest first without holes.
    #[test]
    fn loom_walk_is_never_torn() {
        model(|| {
            let (mut w, ring) = Ring::new(2, 4, 0);
            w.push(1, &rec(1));
            let r = ring.clone();
            let t = loom::thread::spawn(move || {
                let mut prev: Option<u64> = None;
                r.walk_newest_first(|ts, words| {
                    assert_eq!(words, &rec(ts)[..]);
                    if let Some(p) = prev {
                        assert_eq!(ts + 1, p);
                    }
                    prev = Some(ts);
                    true
                });
            });
            w.push(2, &rec(2));
            w.push(3, &rec(3));
            t.join().unwrap();
        });
    }
}
