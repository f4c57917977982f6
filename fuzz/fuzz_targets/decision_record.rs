//! The decision log's record decoder: any bytes are a record or a `Corrupt` error, never a
//! panic; a record that decodes encodes back to one that decodes the same. Raw bytes, and
//! bytes beneath a valid frame (see `raw_or_framed`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use verdict::log::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let Some(framed) = verdict_fuzz::raw_or_framed(data, b"VD") else {
        return;
    };
    if let Ok(record) = decode(&framed, None) {
        let again = decode(&encode(&record), None).expect("a re-encoded record decodes");
        assert_eq!(again, record);
    }
});
