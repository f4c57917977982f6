//! A versioned, checksummed frame around a stored value, so that a torn or corrupt value is
//! detected and reported, never misread.
//!
//! ```text
//! magic (2) | version (1) | reserved 0 (1) | body length u32 LE (4) | CRC-32 of body u32 LE (4) | body
//! ```

const VERSION: u8 = 1;
const HEADER_LEN: usize = 12;

/// Frames `body` under a two-byte `magic` that names what kind of value it is.
pub fn seal(magic: &[u8; 2], body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(magic);
    frame.extend_from_slice(&[VERSION, 0]);
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    frame.extend_from_slice(body);
    frame
}

/// The body of a frame sealed with `magic`, or what is wrong with it.
pub fn open<'a>(magic: &[u8; 2], frame: &'a [u8]) -> Result<&'a [u8], String> {
    if frame.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes is shorter than a record header",
            frame.len()
        ));
    }
    if &frame[0..2] != magic {
        return Err("wrong magic bytes".into());
    }
    if frame[2] != VERSION {
        return Err(format!("unknown record version {}", frame[2]));
    }
    if frame[3] != 0 {
        return Err("reserved header byte is not zero".into());
    }
    let len = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(frame[8..12].try_into().expect("4 bytes"));
    let body = &frame[HEADER_LEN..];
    if body.len() != len {
        return Err(format!(
            "torn record: header says {len} bytes, {} present",
            body.len()
        ));
    }
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_body_opens() {
        assert_eq!(open(b"XY", &seal(b"XY", b"hello")), Ok(&b"hello"[..]));
    }

    #[test]
    fn every_truncation_and_flipped_byte_is_detected() {
        let frame = seal(b"XY", b"some body bytes");
        for len in 0..frame.len() {
            assert!(open(b"XY", &frame[..len]).is_err(), "truncated to {len}");
        }
        for at in 0..frame.len() {
            let mut bad = frame.clone();
            bad[at] ^= 0x40;
            assert!(
                open(b"XY", &bad).is_err(),
                "flip at byte {at} went unnoticed"
            );
        }
    }

    #[test]
    fn another_kind_of_value_is_refused() {
        assert_eq!(
            open(b"XY", &seal(b"ZZ", b"x")),
            Err("wrong magic bytes".into())
        );
    }
}
