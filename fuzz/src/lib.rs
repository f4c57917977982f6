//! What the fuzz targets share.

/// The bytes a frame decoder is given: the input past its first byte, as it is when that byte
/// is even, or sealed in a valid frame with `magic` when it is odd — so that the body beneath
/// the checksum is fuzzed too. `None` for an empty input.
pub fn raw_or_framed(data: &[u8], magic: &[u8; 2]) -> Option<Vec<u8>> {
    let (&how, rest) = data.split_first()?;
    Some(match how % 2 {
        0 => rest.to_vec(),
        _ => verdict_sdk::frame::seal(magic, rest),
    })
}
