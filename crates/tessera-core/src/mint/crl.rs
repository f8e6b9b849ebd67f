//! The CRL of the mint CA (`GET /crl`, RFC 5280 §5): v2, signed by the mint CA, with
//! AuthorityKeyIdentifier and CRL Number, listing revoked serials until one CRL period after they
//! expire (RFC 5280 §3.3).
//! Built only when the revoked set changes or the cached one is half-way to its `nextUpdate`.

use std::sync::Mutex;

use bytes::Bytes;

use super::MintError;
use super::x509::{X509Minter, authority_key_id, extension};
use crate::der::{self, tag};

/// How long a CRL is valid (`nextUpdate` − `thisUpdate`), in seconds.
pub const CRL_VALIDITY_SECS: i64 = 600;
/// A cached CRL is rebuilt once it is this old, in seconds.
pub const CRL_REFRESH_SECS: i64 = CRL_VALIDITY_SECS / 2;

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    /// Lowercase hex serial (the credential id).
    pub serial_hex: String,
    /// Unix seconds of the revocation.
    pub revoked_at: i64,
}

#[derive(Debug)]
struct Cached {
    revision: u64,
    this_update: i64,
    number: u64,
    der: Bytes,
}

/// A CRL rebuilt on demand and cached between changes.
#[derive(Debug, Default)]
pub struct CrlCache {
    cached: Mutex<Option<Cached>>,
}

/// Parameters of [`CrlCache::current`].
#[derive(Clone, Copy)]
pub struct CrlParams<'a> {
    pub minter: &'a X509Minter,
    /// Unix seconds now.
    pub now: i64,
    /// Changes whenever the revoked set changes.
    pub revision: u64,
    /// Lists the serials to include; called only when the CRL is rebuilt.
    pub revoked: &'a dyn Fn() -> Vec<RevokedSerial>,
}

impl std::fmt::Debug for CrlParams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrlParams")
            .field("now", &self.now)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

impl CrlCache {
    /// Returns the DER CRL for `params`, rebuilding it when the revision changed or the cached
    /// one is older than [`CRL_REFRESH_SECS`]. Fails only when signing fails.
    pub fn current(&self, p: CrlParams<'_>) -> Result<Bytes, MintError> {
        let mut cached = self.cached.lock().map_err(|_| MintError::Sign)?;
        if let Some(c) = cached.as_ref()
            && c.revision == p.revision
            && p.now - c.this_update < CRL_REFRESH_SECS
        {
            return Ok(c.der.clone());
        }
        // CRL numbers only grow: at least the clock, and more than the previous one.
        let number = cached
            .as_ref()
            .map_or(0, |c| c.number + 1)
            .max(u64::try_from(p.now).unwrap_or_default());
        let der = Bytes::from(build(p.minter, p.now, number, &(p.revoked)())?);
        *cached = Some(Cached {
            revision: p.revision,
            this_update: p.now,
            number,
            der: der.clone(),
        });
        Ok(der)
    }
}

/// Builds and signs a CRL.
fn build(
    minter: &X509Minter,
    now: i64,
    number: u64,
    revoked: &[RevokedSerial],
) -> Result<Vec<u8>, MintError> {
    let time = |t| der::time(t).map_err(|e| MintError::Key(format!("time out of range: {e}")));
    let ca = minter.ca();
    let mut entries = Vec::new();
    for r in revoked {
        let serial = hex_bytes(&r.serial_hex).ok_or(MintError::Sign)?;
        entries.push(der::sequence(&[
            &der::unsigned_integer(&serial),
            &time(r.revoked_at)?,
        ]));
    }
    let crl_number = extension(&[2, 5, 29, 20], false, &der::small_integer(number));
    let extensions = der::explicit(
        0,
        &der::sequence(&[&authority_key_id(ca.key_id()), &crl_number]),
    );
    let this_update = time(now)?;
    let next_update = time(now + CRL_VALIDITY_SECS)?;
    let version = der::small_integer(1);
    let list;
    let mut parts: Vec<&[u8]> = vec![
        &version,
        ca.algorithm(),
        ca.subject(),
        &this_update,
        &next_update,
    ];
    if !entries.is_empty() {
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        list = der::constructed(tag::SEQUENCE, &refs);
        parts.push(&list);
    }
    parts.push(&extensions);
    ca.sign(&der::sequence(&parts))
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}
