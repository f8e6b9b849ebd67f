//! Credential ids (DESIGN.md "Credential ids and revocation cut-offs"): time-ordered, so an id
//! tells its issue millisecond to anyone holding it — the broker comparing it with a rule's
//! cut-off, a relying party that only has the token — and ids issued together sort together
//! (ledger inserts land in one place of the key space instead of all over it).
//!
//! - JWT `jti`: base64url (no padding) of 6 bytes of issue time in unix milliseconds, big
//!   endian, then [`JTI_RANDOM_BYTES`] random bytes: 30 characters.
//! - X.509 serial: the same 6 bytes of milliseconds in the high bits, then
//!   [`SERIAL_RANDOM_BYTES`] random bytes: 17 octets, positive (the top bit of a 48-bit
//!   millisecond count is 0 until the year 6429), written as 34 lowercase hex digits.
//!
//! Ids minted before this format (16 random bytes: 22 base64url characters, or 32 hex digits)
//! have no time in them; they compare by the issue second the ledger recorded. A decoded time
//! only counts when it falls in the recorded issue second, so a random old id can never be
//! mistaken for a time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Random bytes after the time in a JWT id (128 bits).
pub const JTI_RANDOM_BYTES: usize = 16;
/// Random bytes after the time in an X.509 serial (88 bits; DESIGN.md asks for at least 64).
pub const SERIAL_RANDOM_BYTES: usize = 11;
/// Bytes of issue time at the front of every id.
const TIME_BYTES: usize = 6;
/// Length of a time-ordered JWT id.
const JTI_LEN: usize = 30;
/// Length of a time-ordered serial in hex.
const SERIAL_HEX_LEN: usize = 2 * (TIME_BYTES + SERIAL_RANDOM_BYTES);
/// The largest millisecond count that fits the 48-bit field with its top bit clear.
const MAX_MS: i64 = (1 << 47) - 1;

/// Returns the 6 big-endian bytes of `issued_ms`, clamped to the field's range.
fn time_bytes(issued_ms: i64) -> [u8; TIME_BYTES] {
    let ms = issued_ms.clamp(0, MAX_MS).to_be_bytes();
    let mut out = [0u8; TIME_BYTES];
    out.copy_from_slice(&ms[2..]);
    out
}

/// Returns the milliseconds of the first 6 bytes of `bytes`.
fn time_of(bytes: &[u8]) -> Option<i64> {
    let head = bytes.get(..TIME_BYTES)?;
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(head);
    Some(i64::from_be_bytes(ms))
}

/// Returns the JWT id for a credential issued at `issued_ms` with `random` bytes.
pub fn jwt_id(issued_ms: i64, random: &[u8; JTI_RANDOM_BYTES]) -> String {
    let mut raw = [0u8; TIME_BYTES + JTI_RANDOM_BYTES];
    raw[..TIME_BYTES].copy_from_slice(&time_bytes(issued_ms));
    raw[TIME_BYTES..].copy_from_slice(random);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Returns the serial (DER integer content, positive) of a certificate issued at `issued_ms`.
pub fn x509_serial(
    issued_ms: i64,
    random: &[u8; SERIAL_RANDOM_BYTES],
) -> [u8; TIME_BYTES + SERIAL_RANDOM_BYTES] {
    let mut raw = [0u8; TIME_BYTES + SERIAL_RANDOM_BYTES];
    raw[..TIME_BYTES].copy_from_slice(&time_bytes(issued_ms));
    raw[TIME_BYTES..].copy_from_slice(random);
    raw
}

/// Returns `bytes` as lowercase hex (how serials are written as credential ids).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Returns the issue time written in a time-ordered id, or `None` for any other string
/// (an id of the older, purely random format, or not an id at all).
pub fn embedded_ms(credential_id: &str) -> Option<i64> {
    match credential_id.len() {
        JTI_LEN => time_of(&URL_SAFE_NO_PAD.decode(credential_id).ok()?),
        SERIAL_HEX_LEN => {
            let mut head = [0u8; TIME_BYTES];
            for (i, byte) in head.iter_mut().enumerate() {
                let pair = credential_id.get(2 * i..2 * i + 2)?;
                if !pair.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
                    return None;
                }
                *byte = u8::from_str_radix(pair, 16).ok()?;
            }
            time_of(&head)
        }
        _ => None,
    }
}

/// Returns the issue time in milliseconds of a credential whose ledger record says it was
/// issued in second `issued_at`: the time in its id when the id carries one that falls in that
/// second, else the start of that second (ids of the older format).
pub fn issued_ms(credential_id: &str, issued_at: i64) -> i64 {
    embedded_ms(credential_id)
        .filter(|ms| ms.div_euclid(1000) == issued_at)
        .unwrap_or_else(|| issued_at.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: i64 = 1_798_765_432_109;

    #[test]
    fn a_jwt_id_carries_its_issue_millisecond_and_128_random_bits() {
        let id = jwt_id(AT, &[0xab; JTI_RANDOM_BYTES]);
        assert_eq!(id.len(), 30);
        assert_eq!(embedded_ms(&id), Some(AT));
        assert_eq!(issued_ms(&id, AT / 1000), AT);
        let raw = URL_SAFE_NO_PAD.decode(&id).unwrap();
        assert_eq!(&raw[6..], &[0xab; 16]);
    }

    #[test]
    fn a_serial_is_positive_with_the_millisecond_in_its_high_bits() {
        let serial = x509_serial(AT, &[0xff; SERIAL_RANDOM_BYTES]);
        assert_eq!(serial.len(), 17);
        assert!(serial[0] < 0x80, "positive without a leading zero");
        let id = hex(&serial);
        assert_eq!(id.len(), 34);
        assert_eq!(embedded_ms(&id), Some(AT));
        assert_eq!(issued_ms(&id, AT / 1000), AT);
    }

    #[test]
    fn ids_issued_later_sort_after_in_their_bytes() {
        let earlier = x509_serial(AT, &[0xff; SERIAL_RANDOM_BYTES]);
        let later = x509_serial(AT + 1, &[0x00; SERIAL_RANDOM_BYTES]);
        assert!(earlier < later);
        assert!(hex(&earlier) < hex(&later));
    }

    #[test]
    fn old_random_ids_compare_by_their_recorded_issue_second() {
        let old_jti = URL_SAFE_NO_PAD.encode([7u8; 16]);
        assert_eq!(embedded_ms(&old_jti), None);
        assert_eq!(issued_ms(&old_jti, 1_700_000_000), 1_700_000_000_000);
        let old_serial = hex(&[0x41; 16]);
        assert_eq!(issued_ms(&old_serial, 1_700_000_000), 1_700_000_000_000);
    }

    #[test]
    fn a_time_outside_the_recorded_second_is_not_trusted() {
        let id = jwt_id(AT, &[1; JTI_RANDOM_BYTES]);
        assert_eq!(issued_ms(&id, AT / 1000 + 5), (AT / 1000 + 5) * 1000);
    }

    #[test]
    fn strings_that_are_not_ids_have_no_time() {
        assert_eq!(embedded_ms(""), None);
        assert_eq!(embedded_ms(&"Z".repeat(34)), None);
        assert_eq!(embedded_ms(&"A".repeat(34)), None);
        assert_eq!(embedded_ms(&"!".repeat(30)), None);
        assert_eq!(embedded_ms("ü".repeat(17).as_str()), None);
    }
}
