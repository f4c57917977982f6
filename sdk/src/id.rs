//! Transaction ids: 128-bit UUIDs, time-ordered so that id order is begin order.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// A global transaction id. Never reused: presumed abort answers for an id from its absence in
/// the log, so a reused id could be answered for the wrong transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnId(Uuid);

impl TxnId {
    /// Wraps the 16 bytes of an id (as stored in the log).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        TxnId(Uuid::from_bytes(bytes))
    }

    /// Wraps a UUID chosen by the driver (which owns randomness and the clock).
    pub fn from_uuid(uuid: Uuid) -> Self {
        TxnId(uuid)
    }

    /// The 16 bytes of the id, big-endian, so that byte order is id order.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.into_bytes()
    }

    /// When the transaction began, in milliseconds since the Unix epoch: the first 48 bits of
    /// a version-7 UUID (0 for an id of another version).
    pub fn begun_unix_ms(self) -> u64 {
        if self.0.get_version_num() != 7 {
            return 0;
        }
        let bytes = self.to_bytes();
        bytes[..6]
            .iter()
            .fold(0, |ms, &byte| (ms << 8) | u64::from(byte))
    }
}

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The reason a string is not a transaction id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedId(pub String);

impl fmt::Display for MalformedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "txn_id {:?} is not a Verdict transaction id: expected a UUID such as \
             \"0192f1a2-7c3e-7abc-8def-0123456789ab\", as returned by Begin",
            self.0
        )
    }
}

impl FromStr for TxnId {
    type Err = MalformedId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shown: String = s.chars().take(64).collect();
        Uuid::try_parse(s)
            .map(TxnId)
            .map_err(|_| MalformedId(shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_bytes_round_trip() {
        let id = TxnId::from_bytes([7; 16]);
        assert_eq!(id.to_string().parse::<TxnId>(), Ok(id));
        let v7: TxnId = "01a23508-cd7a-776a-8973-2ef3bdfb38d5".parse().unwrap();
        assert_eq!(v7.begun_unix_ms(), 0x01a2_3508_cd7a);
        assert_eq!(id.begun_unix_ms(), 0, "not a version-7 id");
        assert_eq!(TxnId::from_bytes(id.to_bytes()), id);
    }

    #[test]
    fn malformed_text_is_rejected_with_the_expected_form() {
        let err = "not-an-id".parse::<TxnId>().unwrap_err();
        assert!(err.to_string().contains("\"not-an-id\""));
        assert!(err.to_string().contains("UUID"));
    }
}
