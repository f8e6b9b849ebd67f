//! The wire: gRPC messages and services of `proto/tessera/v1`, generated at build time. Clients
//! are behind the `client` feature, servers behind `server`. Nothing else in Tessera below
//! `tessera-server` (or in `tessera-client`) sees these types. A message that carries a credential
//! has a hand-written `Debug` that prints its length, never the credential (`build.rs`).

#![allow(missing_debug_implementations)]

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("tessera.v1");
}

pub use generated::*;

/// The encoded file descriptor set, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tessera_descriptor");

/// Prints the token as its length only: a bearer token in a log line is a credential given away.
impl std::fmt::Debug for MintJwtResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintJwtResponse")
            .field(
                "token",
                &format_args!("<redacted, {} bytes>", self.token.len()),
            )
            .field("credential_id", &self.credential_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debug_of_a_mint_jwt_response_never_prints_the_token() {
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ3In0.c2lnbmF0dXJl";
        let response = MintJwtResponse {
            token: token.to_owned(),
            credential_id: "cred-1".to_owned(),
            expires_at: 1_750_000_300,
        };
        for debug in [format!("{response:?}"), format!("{response:#?}")] {
            assert!(!debug.contains(token), "{debug}");
            assert!(!debug.contains("c2lnbmF0dXJl"), "{debug}");
            assert!(
                debug.contains("cred-1") && debug.contains("1750000300"),
                "{debug}"
            );
            assert!(
                debug.contains(&format!("<redacted, {} bytes>", token.len())),
                "{debug}"
            );
        }
    }
}
