//! Fuzz the monitor's wire decoder: any datagram either fails to decode or
//! decodes to a message that re-encodes to a datagram of the same length
//! that decodes to the same message.
#![no_main]

use crashmon_protocol::{MAX_MESSAGE_LEN, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = crashmon_protocol::decode_header(data);
    if let Ok(msg) = decode(data) {
        let mut out = vec![0u8; MAX_MESSAGE_LEN];
        let n = encode(&msg, &mut out).expect("a decoded message encodes");
        assert_eq!(n, data.len());
        assert_eq!(decode(&out[..n]).expect("re-decodes"), msg);
    }
});
