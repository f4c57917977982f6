//! The decision log's record decoder: any bytes are a record or a `Corrupt` error, never a
//! panic; a record that decodes encodes back to one that decodes the same. An input whose
//! first byte is odd is sealed in a valid frame first, so that the protobuf body beneath the
//! checksum is fuzzed too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use verdict::frame;
use verdict::log::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let Some((&how, rest)) = data.split_first() else {
        return;
    };
    let framed = match how % 2 {
        0 => rest.to_vec(),
        _ => frame::seal(b"VD", rest),
    };
    if let Ok(record) = decode(&framed, None) {
        let again = decode(&encode(&record), None).expect("a re-encoded record decodes");
        assert_eq!(again, record);
    }
});
