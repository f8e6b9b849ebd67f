//! The Token Status List format (draft-ietf-oauth-status-list), shared by the broker that
//! publishes lists and the relying parties that read them: list names, the `status_list`
//! claims of a Status List Token, and the compressed byte array (`bits: 1`; index `i` is bit
//! `i % 8`, least significant first, of byte `i / 8`; DEFLATE in the ZLIB format, base64url
//! without padding). 0 is VALID, 1 INVALID.

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// JWT `typ` of a Status List Token.
pub const TYP: &str = "statuslist+jwt";
/// Media type a Status List Token is served as.
pub const MEDIA_TYPE: &str = "application/statuslist+jwt";
/// Path under the issuer where lists are served: `<issuer>/statuslists/<list>`.
pub const PATH: &str = "/statuslists/";
/// Status value of a revoked credential.
pub const INVALID: u8 = 1;
/// Largest decompressed list a reader accepts (a list of 128 M entries), so that a hostile
/// list cannot exhaust memory.
pub const MAX_LIST_BYTES: usize = 16 << 20;

/// Returns the URI of list `list` published by `issuer` (the `sub` of its token and the `uri`
/// of the `status` claims pointing into it).
pub fn list_uri(issuer: &str, list: &ListName) -> String {
    format!("{issuer}{PATH}{list}")
}

/// Why a list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusListError {
    #[error("`{0}` is not a status list name (<window start>-<16 hex digits>)")]
    BadName(String),
    #[error("status_list.lst is not base64url")]
    NotBase64,
    #[error("status_list.lst does not inflate as zlib: {0}")]
    NotZlib(String),
    #[error("status_list.lst inflates to more than {MAX_LIST_BYTES} bytes")]
    TooLarge,
    #[error("status_list.bits is {0}; only 1, 2, 4 or 8 are defined")]
    BadBits(u8),
    #[error("index {idx} is beyond the list's {size} entries")]
    OutOfRange { idx: u64, size: u64 },
}

/// The name of one list: `<window start, unix seconds>-<16 lowercase hex digits>`. The window
/// start says which credentials it holds (issued in that window) and the random part makes
/// every list a process opens distinct, on every replica and across restarts, so an index is
/// never handed out twice.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListName {
    window_start: i64,
    origin: u64,
}

impl ListName {
    /// Returns the name of a list of the window starting at `window_start` (unix seconds),
    /// distinguished by `origin` (random).
    pub fn new(window_start: i64, origin: u64) -> Self {
        ListName {
            window_start,
            origin,
        }
    }

    /// Returns the start of the list's window, unix seconds.
    pub fn window_start(&self) -> i64 {
        self.window_start
    }
}

impl fmt::Display for ListName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:016x}", self.window_start, self.origin)
    }
}

impl FromStr for ListName {
    type Err = StatusListError;

    /// Parses `<digits>-<16 lowercase hex digits>`; fails with `BadName` otherwise.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StatusListError::BadName(s.chars().take(64).collect());
        let (start, origin) = s.split_once('-').ok_or_else(bad)?;
        let digits = |t: &str, hex: bool| {
            !t.is_empty()
                && t.bytes().all(|b| {
                    b.is_ascii_digit() || (hex && b.is_ascii_hexdigit() && b.is_ascii_lowercase())
                })
        };
        if !digits(start, false) || start.len() > 18 || origin.len() != 16 || !digits(origin, true)
        {
            return Err(bad());
        }
        Ok(ListName {
            window_start: start.parse().map_err(|_| bad())?,
            origin: u64::from_str_radix(origin, 16).map_err(|_| bad())?,
        })
    }
}

/// The `status_list` claim: `bits` per entry and the compressed byte array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedList {
    pub bits: u8,
    pub lst: String,
}

impl EncodedList {
    /// Compresses `bytes` (one bit per entry) at the highest zlib level.
    pub fn compress(bytes: &[u8]) -> Self {
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::with_capacity(256), flate2::Compression::best());
        // Writing into a Vec cannot fail.
        let compressed: Vec<u8> = encoder
            .write_all(bytes)
            .and_then(|()| encoder.finish())
            .unwrap_or_default();
        EncodedList {
            bits: 1,
            lst: URL_SAFE_NO_PAD.encode(compressed),
        }
    }

    /// Returns the decompressed list. Fails when `bits` is not 1, 2, 4 or 8, `lst` is not
    /// base64url zlib, or it inflates beyond [`MAX_LIST_BYTES`].
    pub fn decompress(&self) -> Result<DecodedList, StatusListError> {
        if !matches!(self.bits, 1 | 2 | 4 | 8) {
            return Err(StatusListError::BadBits(self.bits));
        }
        let compressed = URL_SAFE_NO_PAD
            .decode(self.lst.trim_end_matches('='))
            .map_err(|_| StatusListError::NotBase64)?;
        let mut bytes = Vec::new();
        flate2::read::ZlibDecoder::new(compressed.as_slice())
            .take(MAX_LIST_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| StatusListError::NotZlib(e.to_string()))?;
        if bytes.len() > MAX_LIST_BYTES {
            return Err(StatusListError::TooLarge);
        }
        Ok(DecodedList {
            bits: self.bits,
            bytes,
        })
    }
}

/// A decompressed list.
#[derive(Clone, PartialEq, Eq)]
pub struct DecodedList {
    bits: u8,
    bytes: Vec<u8>,
}

impl fmt::Debug for DecodedList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodedList")
            .field("bits", &self.bits)
            .field("entries", &self.len())
            .finish()
    }
}

impl DecodedList {
    /// Returns how many entries the list holds.
    pub fn len(&self) -> u64 {
        (self.bytes.len() as u64).saturating_mul(8) / u64::from(self.bits.max(1))
    }

    /// Returns true when the list holds no entry.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Returns the status at `idx`. Fails with `OutOfRange` past the end (the draft: no
    /// statement can be made, the token must be rejected).
    pub fn status(&self, idx: u64) -> Result<u8, StatusListError> {
        let bits = u64::from(self.bits.max(1));
        let per_byte = 8 / bits;
        let byte = usize::try_from(idx / per_byte)
            .ok()
            .and_then(|i| self.bytes.get(i))
            .ok_or(StatusListError::OutOfRange {
                idx,
                size: self.len(),
            })?;
        let shift = (idx % per_byte) * bits;
        let mask = ((1u16 << bits) - 1) as u8;
        Ok((byte >> shift) & mask)
    }
}

/// The claims of a Status List Token as Tessera signs them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusListClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The list's URI.
    pub sub: String,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Seconds a reader may cache the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    pub status_list: EncodedList,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_drafts_one_bit_example_decodes_to_its_statuses() {
        let list = EncodedList {
            bits: 1,
            lst: URL_SAFE_NO_PAD.encode(hex("78dadbb918000217015d")),
        }
        .decompress()
        .unwrap();
        let statuses: Vec<u8> = (0..16).map(|i| list.status(i).unwrap()).collect();
        assert_eq!(statuses, [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]);
        assert_eq!(
            list.status(16),
            Err(StatusListError::OutOfRange { idx: 16, size: 16 })
        );
    }

    #[test]
    fn the_drafts_two_bit_example_decodes_to_its_statuses() {
        let list = EncodedList {
            bits: 2,
            lst: URL_SAFE_NO_PAD.encode(hex("78da3be9f2130003df0207")),
        }
        .decompress()
        .unwrap();
        let statuses: Vec<u8> = (0..12).map(|i| list.status(i).unwrap()).collect();
        assert_eq!(statuses, [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]);
    }

    #[test]
    fn a_compressed_list_reads_back_bit_for_bit() {
        let mut bytes = vec![0u8; 1 << 12];
        for idx in [0usize, 7, 8, 9, 4095 * 8 + 7] {
            bytes[idx / 8] |= 1 << (idx % 8);
        }
        let list = EncodedList::compress(&bytes).decompress().unwrap();
        assert_eq!(list.len(), 1 << 15);
        let ones: Vec<u64> = (0..list.len())
            .filter(|i| list.status(*i).unwrap() == INVALID)
            .collect();
        assert_eq!(ones, [0, 7, 8, 9, 4095 * 8 + 7]);
    }

    #[test]
    fn hostile_lists_are_errors_not_panics() {
        let bad = |lst: &str, bits: u8| {
            EncodedList {
                bits,
                lst: lst.into(),
            }
            .decompress()
        };
        assert_eq!(bad("!!", 1), Err(StatusListError::NotBase64));
        assert!(matches!(bad("AAAA", 1), Err(StatusListError::NotZlib(_))));
        assert_eq!(bad("", 3), Err(StatusListError::BadBits(3)));
        let bomb = EncodedList::compress(&vec![0u8; MAX_LIST_BYTES + 1]);
        assert_eq!(bomb.decompress(), Err(StatusListError::TooLarge));
    }

    #[test]
    fn list_names_round_trip_and_refuse_anything_else() {
        let name = ListName::new(1_767_225_600, 0x00ab_cdef_0123_4567);
        assert_eq!(name.to_string(), "1767225600-00abcdef01234567");
        assert_eq!(name.to_string().parse::<ListName>().unwrap(), name);
        assert_eq!(name.window_start(), 1_767_225_600);
        for bad in [
            "",
            "1767225600",
            "1767225600-00ABCDEF01234567",
            "1767225600-00abcdef0123456",
            "-00abcdef01234567",
            "17x-00abcdef01234567",
            "1767225600-00abcdef01234567/../x",
            "99999999999999999999-00abcdef01234567",
        ] {
            assert!(bad.parse::<ListName>().is_err(), "{bad}");
        }
    }
}
