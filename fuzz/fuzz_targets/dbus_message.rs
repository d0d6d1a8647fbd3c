//! The D-Bus client's reader (`kubelet_rs::nodeshutdown::dbus`): what arrives from the system
//! bus, split into messages by their announced length and decoded; a message that decodes must
//! encode and decode again. Seeds: messages a real dbus-daemon sent (`fuzz/corpus/dbus_message`).
#![no_main]

use std::collections::VecDeque;

use kubelet_rs::nodeshutdown::dbus::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(len)) = Message::wire_length(rest) {
        if rest.len() < len {
            break;
        }
        let (one, more) = rest.split_at(len);
        if let Ok(m) = Message::decode(one, &mut VecDeque::new()) {
            let again = m.encode(m.serial);
            let back = Message::decode(&again, &mut VecDeque::new())
                .expect("a decoded message re-encodes into one that decodes");
            assert_eq!(back.signature(), m.signature());
        }
        rest = more;
    }
});
