//! Minting: signs credentials. It never decides access and never stores.

mod ca;
pub mod crl;
mod jwt;
mod x509;

pub use self::ca::{MintCa, key_identifier};
pub use self::crl::{CrlCache, CrlParams, RevokedSerial};
pub use self::jwt::{JwtMinter, MintJwtParams, MintedJwt, StatusClaim};
pub use self::x509::{MintX509Params, MintedX509, X509Minter};

/// Why minting failed: only key problems, found at start-up, or a failing signer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    #[error("signing key: {0}")]
    Key(String),
    #[error("signing failed")]
    Sign,
    #[error("the system random generator failed")]
    Random,
    #[error(
        "the mint CA certificate expired at {0}; renew the active mint CA ([signing] ca_cert or mint_cas)"
    )]
    CaExpired(i64),
}

/// Returns `n` random bytes from the operating system's generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], MintError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| MintError::Random)?;
    Ok(out)
}

/// Returns `N` random bytes as lowercase hex.
pub fn random_hex<const N: usize>() -> Result<String, MintError> {
    Ok(crate::domain::id::hex(&random_bytes::<N>()?))
}
