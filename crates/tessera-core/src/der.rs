//! A minimal DER writer for what the mint CA signs: certificates and CRLs. Every value is
//! written definite-length; callers build SEQUENCEs from already-encoded children.
//!
//! Hand-written because object identifiers under the `2.25` (UUID) arc need a 128-bit arc,
//! which rcgen's and yasna's `u64` components cannot express.

/// Universal tags used here.
pub mod tag {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const IA5_STRING: u8 = 0x16;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
}

/// Appends a length in DER form.
fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// Returns `tag || length || content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// Returns a SEQUENCE of already-encoded `children`.
pub fn sequence(children: &[&[u8]]) -> Vec<u8> {
    constructed(tag::SEQUENCE, children)
}

/// Returns a constructed value with `tag` around already-encoded `children`.
pub fn constructed(tag: u8, children: &[&[u8]]) -> Vec<u8> {
    let len = children.iter().map(|c| c.len()).sum();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    push_len(&mut out, len);
    for child in children {
        out.extend_from_slice(child);
    }
    out
}

/// Returns `[n] EXPLICIT` around an encoded value.
pub fn explicit(n: u8, inner: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, inner)
}

/// Returns a non-negative INTEGER from big-endian magnitude bytes (leading zeros trimmed, a zero
/// byte prepended when the top bit is set).
pub fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed = match magnitude.iter().position(|b| *b != 0) {
        Some(i) => &magnitude[i..],
        None => &[0u8][..],
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(tag::INTEGER, &content)
}

/// Returns a small INTEGER.
pub fn small_integer(value: u64) -> Vec<u8> {
    unsigned_integer(&value.to_be_bytes())
}

/// Returns an OBJECT IDENTIFIER; arcs may be up to 128 bits. The first two arcs must be a valid
/// pair (0..=2, and < 40 under 0 and 1).
pub fn oid(arcs: &[u128]) -> Vec<u8> {
    let mut content = Vec::new();
    let (first, rest) = match arcs {
        [a, b, rest @ ..] => (a * 40 + b, rest),
        [a] => (a * 40, &[][..]),
        [] => (0, &[][..]),
    };
    for arc in std::iter::once(&first).chain(rest) {
        push_base128(&mut content, *arc);
    }
    tlv(tag::OID, &content)
}

fn push_base128(out: &mut Vec<u8>, mut value: u128) {
    let mut groups = [0u8; 19];
    let mut n = 0;
    loop {
        groups[n] = (value & 0x7f) as u8;
        n += 1;
        value >>= 7;
        if value == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(groups[i] | if i > 0 { 0x80 } else { 0 });
    }
}

/// Returns a BIT STRING with no unused bits.
pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    tlv(tag::BIT_STRING, &content)
}

/// A unix time that no certificate can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unix time {0} cannot be written as an X.509 time")]
pub struct TimeOutOfRange(pub i64);

/// Returns a time as UTCTime for years 1950–2049 and GeneralizedTime otherwise (RFC 5280
/// §4.1.2.5). Fails when `unix` is outside what `time` can represent.
pub fn time(unix: i64) -> Result<Vec<u8>, TimeOutOfRange> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).map_err(|_| TimeOutOfRange(unix))?;
    let (y, mo, d, h, mi, s) = (
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    );
    if (1950..2050).contains(&y) {
        let text = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
        Ok(tlv(tag::UTC_TIME, text.as_bytes()))
    } else {
        let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z");
        Ok(tlv(tag::GENERALIZED_TIME, text.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_long_lengths_and_integers() {
        assert_eq!(tlv(tag::OCTET_STRING, &[7; 3]), vec![4, 3, 7, 7, 7]);
        let long = tlv(tag::OCTET_STRING, &[0; 300]);
        assert_eq!(&long[..4], &[4, 0x82, 0x01, 0x2c]);
        assert_eq!(unsigned_integer(&[0, 0, 0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(unsigned_integer(&[0, 0]), vec![2, 1, 0]);
        assert_eq!(small_integer(1), vec![2, 1, 1]);
    }

    #[test]
    fn encodes_oids_including_128_bit_arcs() {
        // 1.2.840.10045.4.3.2 (ecdsa-with-SHA256)
        assert_eq!(
            oid(&[1, 2, 840, 10045, 4, 3, 2]),
            vec![6, 8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2]
        );
        let uuid_arc = 0xf81d4fae_7dec_11d0_a765_00a0c91e6bf6_u128;
        let der = oid(&[2, 25, uuid_arc]);
        assert_eq!(der[2], 2 * 40 + 25);
        // Decode the base-128 groups of the third arc independently.
        let mut value: u128 = 0;
        for byte in &der[3..] {
            value = (value << 7) | u128::from(byte & 0x7f);
        }
        assert_eq!(value, uuid_arc);
        assert_eq!(
            der[der.len() - 1] & 0x80,
            0,
            "last group has no continuation bit"
        );
        assert!(der[3..der.len() - 1].iter().all(|b| b & 0x80 != 0));
    }

    #[test]
    fn picks_utctime_before_2050() {
        assert_eq!(time(0).unwrap(), tlv(tag::UTC_TIME, b"700101000000Z"));
        assert_eq!(time(2_556_144_000).unwrap()[0], tag::GENERALIZED_TIME); // 2051
    }
}
