#![no_main]
//! frame::decode on any bytes: never panics, and a header it accepts re-encodes to the same
//! eight bytes (decode(encode(h)) == h both ways).

use corral_core::__fuzz::frame::{self, HEADER_LEN, MAX_MESSAGE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = frame::decode(data) else { return };
    assert!(h.total as usize <= MAX_MESSAGE_LEN);
    let bytes = frame::encode(h.kind, h.flags, h.total);
    assert_eq!(bytes[..], data[..HEADER_LEN]);
    assert_eq!(frame::decode(&bytes), Ok(h));
});
