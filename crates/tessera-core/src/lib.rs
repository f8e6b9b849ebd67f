//! Tessera's core: what a credential is and how one is decided and made, with no wire types and
//! no storage. The flow runs one way:
//!
//! [`attest`] (evidence → who the caller is) → [`policy`] (who → which grant allows what) →
//! [`mint`] (sign) → the ledger (another crate) → [`revocation`] (which rules cover what).
//!
//! [`domain`] holds the types every stage shares and imports none of them; [`keys`],
//! [`spiffe_id`], [`status_list`], [`clock`], [`der`], [`csr`], [`request`] and [`http_client`] are leaves too.

pub mod attest;
pub mod clock;
pub mod csr;
pub mod der;
pub mod domain;
pub mod exchange;
pub mod http_client;
pub mod keys;
pub mod mint;
pub mod policy;
pub mod request;
pub mod revocation;
pub mod spiffe_id;
pub mod status_list;

#[cfg(test)]
mod test_jws;
#[cfg(test)]
mod test_pki;
