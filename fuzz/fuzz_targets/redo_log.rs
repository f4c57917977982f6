//! The redo log's file decoder, as recovery reads a file after a crash: any bytes (torn,
//! stale, garbage) give the frames before the first bad one, never a panic. An input whose
//! first byte is odd becomes the ops of one intact frame, so that the op decoder beneath the
//! checksum is fuzzed too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&how, rest)) = data.split_first() else {
        return;
    };
    verdict_sdk::durable::decode_redo_file(rest, how % 2 == 1);
});
