//! The participant journal's entry decoder: any bytes are an entry or a "corrupt" error, never
//! a panic. Raw bytes, and bytes beneath a valid frame (see `raw_or_framed`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(framed) = verdict_fuzz::raw_or_framed(data, b"VJ") {
        let _ = verdict_sdk::participant::decode_journal_entry(&framed);
    }
});
