//! X.509-SVIDs (`standards.md` §2, DESIGN.md "What is minted"): only the CSR's public key is
//! taken; the leaf has exactly one URI SAN (the workload SPIFFE ID), basicConstraints cA=false,
//! critical keyUsage digitalSignature, EKU serverAuth + clientAuth, SKI and AKI, a random
//! positive 16-byte serial (126 random bits), `notBefore` backdated 60 s for clock skew and `notAfter` = expiry,
//! and the destination and purpose in a non-critical extension under [`crate::domain::BINDING_OID`].

use std::fmt;
use std::time::Duration;

use super::ca::{MintCa, key_identifier};
use super::{MintError, random_bytes};
use crate::csr::VerifiedCsr;
use crate::der::{self, tag};
use crate::domain::BINDING_UUID;
use crate::domain::id;
use crate::spiffe_id::SpiffeId;

/// How far `notBefore` is backdated for clock skew, in seconds.
pub const BACKDATE_SECS: i64 = 60;

/// Parameters of [`X509Minter::mint`].
#[derive(Debug, Clone, Copy)]
pub struct MintX509Params<'a> {
    pub workload: &'a SpiffeId,
    pub destination: &'a str,
    pub purpose: &'a str,
    pub csr: &'a VerifiedCsr,
    pub ttl: Duration,
    /// Issue time in unix milliseconds: the serial's high bits; `notBefore` (less the
    /// backdating) and `notAfter` count from its second.
    pub issued_ms: i64,
}

/// A signed X.509-SVID. Holds no secret.
#[derive(Clone)]
pub struct MintedX509 {
    /// DER certificates, leaf first, then the CA chain.
    pub chain: Vec<Vec<u8>>,
    /// Lowercase hex of the serial number: the credential id.
    pub serial_hex: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

impl fmt::Debug for MintedX509 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedX509")
            .field("serial_hex", &self.serial_hex)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Extension OIDs (RFC 5280 §4.2.1).
const BASIC_CONSTRAINTS: &[u128] = &[2, 5, 29, 19];
const KEY_USAGE: &[u128] = &[2, 5, 29, 15];
const EXT_KEY_USAGE: &[u128] = &[2, 5, 29, 37];
const SUBJECT_KEY_ID: &[u128] = &[2, 5, 29, 14];
const AUTHORITY_KEY_ID: &[u128] = &[2, 5, 29, 35];
const SUBJECT_ALT_NAME: &[u128] = &[2, 5, 29, 17];

/// Returns one `Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE, extnValue }`.
pub(crate) fn extension(oid: &[u128], critical: bool, value: &[u8]) -> Vec<u8> {
    let id = der::oid(oid);
    let octets = der::tlv(tag::OCTET_STRING, value);
    if critical {
        der::sequence(&[&id, &der::tlv(tag::BOOLEAN, &[0xff]), &octets])
    } else {
        der::sequence(&[&id, &octets])
    }
}

/// Returns the AuthorityKeyIdentifier extension naming `key_id`.
pub(crate) fn authority_key_id(key_id: &[u8]) -> Vec<u8> {
    extension(
        AUTHORITY_KEY_ID,
        false,
        &der::sequence(&[&der::tlv(0x80, key_id)]),
    )
}

/// Signs X.509-SVIDs with the mint CA.
#[derive(Debug)]
pub struct X509Minter {
    ca: MintCa,
    subject: Vec<u8>,
    fixed_extensions: Vec<u8>,
    binding_oid: Vec<u128>,
}

impl X509Minter {
    /// Prepares the parts every leaf shares.
    pub fn new(ca: MintCa) -> Self {
        let organization = der::sequence(&[
            &der::oid(&[2, 5, 4, 10]),
            &der::tlv(tag::UTF8_STRING, b"Tessera"),
        ]);
        let subject = der::sequence(&[&der::constructed(tag::SET, &[&organization])]);
        let eku = der::sequence(&[
            &der::oid(&[1, 3, 6, 1, 5, 5, 7, 3, 1]),
            &der::oid(&[1, 3, 6, 1, 5, 5, 7, 3, 2]),
        ]);
        let fixed_extensions = [
            extension(BASIC_CONSTRAINTS, true, &der::sequence(&[])),
            extension(KEY_USAGE, true, &der::tlv(tag::BIT_STRING, &[0x07, 0x80])),
            extension(EXT_KEY_USAGE, false, &eku),
            authority_key_id(ca.key_id()),
        ]
        .concat();
        X509Minter {
            ca,
            subject,
            fixed_extensions,
            binding_oid: vec![2, 25, BINDING_UUID],
        }
    }

    /// Returns the mint CA.
    pub fn ca(&self) -> &MintCa {
        &self.ca
    }

    /// Returns the latest expiry a leaf minted at `now` with `ttl` may have: capped by the
    /// signing CA's own `notAfter`.
    pub fn expiry(&self, now: i64, ttl: Duration) -> i64 {
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        now.saturating_add(ttl).min(self.ca.not_after())
    }

    /// Signs a leaf for `params`. Fails when the random generator or signer fails, or the times
    /// cannot be encoded.
    pub fn mint(&self, p: MintX509Params<'_>) -> Result<MintedX509, MintError> {
        let serial = id::x509_serial(p.issued_ms, &random_bytes::<{ id::SERIAL_RANDOM_BYTES }>()?);
        let serial_hex = id::hex(&serial);
        let now = p.issued_ms.div_euclid(1000);
        let expires_at = self.expiry(now, p.ttl);
        if expires_at <= now {
            return Err(MintError::CaExpired(self.ca.not_after()));
        }
        let not_before = now.saturating_sub(BACKDATE_SECS).max(self.ca.not_before());
        let time = |t| der::time(t).map_err(|e| MintError::Key(format!("time out of range: {e}")));
        let validity = der::sequence(&[&time(not_before)?, &time(expires_at)?]);
        let spki = p.csr.spki_der();
        let extensions = self.extensions(p, spki)?;
        let tbs = der::sequence(&[
            &der::explicit(0, &der::small_integer(2)),
            &der::unsigned_integer(&serial),
            self.ca.algorithm(),
            self.ca.subject(),
            &validity,
            &self.subject,
            spki,
            &der::explicit(3, &der::tlv(tag::SEQUENCE, &extensions)),
        ]);
        let leaf = self.ca.sign(&tbs)?;
        let mut chain = Vec::with_capacity(1 + self.ca.chain().len());
        chain.push(leaf);
        chain.extend(self.ca.chain().iter().map(|c| c.to_vec()));
        Ok(MintedX509 {
            chain,
            serial_hex,
            issued_at: now,
            expires_at,
        })
    }

    /// Returns the concatenated extensions of one leaf.
    fn extensions(&self, p: MintX509Params<'_>, spki: &[u8]) -> Result<Vec<u8>, MintError> {
        let public_bits = subject_public_key_bits(spki).ok_or(MintError::Sign)?;
        let ski = extension(
            SUBJECT_KEY_ID,
            false,
            &der::tlv(tag::OCTET_STRING, &key_identifier(public_bits)),
        );
        let san = extension(
            SUBJECT_ALT_NAME,
            false,
            &der::sequence(&[&der::tlv(0x86, p.workload.as_str().as_bytes())]),
        );
        let binding = der::sequence(&[
            &der::tlv(tag::UTF8_STRING, p.destination.as_bytes()),
            &der::tlv(tag::UTF8_STRING, p.purpose.as_bytes()),
        ]);
        let binding = extension(&self.binding_oid, false, &binding);
        Ok([self.fixed_extensions.as_slice(), &ski, &san, &binding].concat())
    }
}

/// Returns the subjectPublicKey bits of a DER SubjectPublicKeyInfo, or `None` if it does not
/// parse.
fn subject_public_key_bits(spki: &[u8]) -> Option<&[u8]> {
    use x509_parser::prelude::FromDer;
    let (_, parsed) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki).ok()?;
    let bits: &[u8] = &parsed.subject_public_key.data;
    // Re-borrow from the input so the lifetime is the caller's.
    let start = spki.len().checked_sub(bits.len())?;
    (spki.get(start..) == Some(bits)).then(|| &spki[start..])
}

#[cfg(test)]
#[path = "x509_tests.rs"]
mod tests;
