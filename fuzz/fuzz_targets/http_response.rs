//! The prober's HTTP response reader on arbitrary bytes (status lines and heads, 1xx answers,
//! `Content-Length`, chunked bodies with their sizes, extensions and trailers), fed in
//! arbitrary pieces as a socket would deliver them.
//!
//! Checked: no panic; the kept body never exceeds `MAX_BODY`; the reader's buffer stays
//! bounded; a complete response has no body error; and the result does not depend on how the
//! bytes were split (the same input read whole gives the same answer).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/prober/http/wire.rs"]
mod wire;

use wire::{Response, ResponseReader, Step, WireError, MAX_BODY, MAX_CHUNK_LINE, MAX_HEAD};

/// Reads `wire` in pieces whose sizes come from `sizes` (cycled), then the end of the stream.
fn read(wire: &[u8], sizes: &[u8]) -> Result<Response, WireError> {
    let mut r = ResponseReader::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = match sizes.get(i % sizes.len().max(1)) {
            Some(&s) => usize::from(s).max(1),
            None => rest.len(),
        };
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        i += 1;
        r.buffer().extend_from_slice(piece);
        let step = r.process(false)?;
        assert!(
            r.buffer().len() <= MAX_HEAD + MAX_CHUNK_LINE + 2 + 255,
            "the reader holds {} bytes",
            r.buffer().len()
        );
        if step == Step::Done {
            return Ok(r.finish());
        }
    }
    assert_eq!(
        r.process(true)?,
        Step::Done,
        "the end of the stream ends the response"
    );
    Ok(r.finish())
}

fuzz_target!(|data: &[u8]| {
    // The first byte says how many of the next bytes are piece sizes.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (sizes, wire) = rest.split_at(usize::from(n % 16).min(rest.len()));
    let split = read(wire, sizes);
    let whole = read(wire, &[]);
    assert_eq!(
        split, whole,
        "the answer depends on how the bytes were split"
    );
    if let Ok(r) = whole {
        assert!(r.body.len() <= MAX_BODY);
        assert!(!(r.complete && r.body_error.is_some()));
    }
});
