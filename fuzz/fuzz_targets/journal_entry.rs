//! The participant journal's entry decoder: any bytes are an entry or a "corrupt" error, never
//! a panic. An input whose first byte is odd is sealed in a valid frame first, so that the
//! protobuf body beneath the checksum is fuzzed too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use verdict_sdk::frame;

fuzz_target!(|data: &[u8]| {
    let Some((&how, rest)) = data.split_first() else {
        return;
    };
    let framed = match how % 2 {
        0 => rest.to_vec(),
        _ => frame::seal(b"VJ", rest),
    };
    let _ = verdict_sdk::participant::decode_journal_entry(&framed);
});
