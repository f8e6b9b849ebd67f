//! The wire: gRPC messages and services of `proto/tessera/v1`, generated at build time. Clients
//! are behind the `client` feature, servers behind `server`. Nothing else in Tessera below
//! `tessera-server` (or in `tessera-client`) sees these types. A message that carries a credential
//! has a hand-written `Debug` that prints its length, never the credential (`build.rs`).
//! [`spiffe_workload`] (feature `workload-api`) is the vendored SPIFFE Workload API, for the test
//! kit's Workload API server; Tessera's own services never serve it.

#![allow(missing_debug_implementations)]

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("tessera.v1");
}

pub use generated::*;

/// The SPIFFE Workload API (`proto/spiffe/workload/workload.proto`, service
/// `SpiffeWorkloadAPI`, no package), client and server. Messages that carry a private key or a
/// token print their SPIFFE ID and lengths only.
#[cfg(feature = "workload-api")]
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod spiffe_workload {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));

    /// Prints the SPIFFE ID, hint and sizes: never the private key.
    impl std::fmt::Debug for X509svid {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("X509svid")
                .field("spiffe_id", &self.spiffe_id)
                .field(
                    "x509_svid",
                    &format_args!("<{} bytes>", self.x509_svid.len()),
                )
                .field(
                    "x509_svid_key",
                    &format_args!("<redacted, {} bytes>", self.x509_svid_key.len()),
                )
                .field("bundle", &format_args!("<{} bytes>", self.bundle.len()))
                .field("hint", &self.hint)
                .finish()
        }
    }

    /// Prints the SPIFFE ID and hint: never the token.
    impl std::fmt::Debug for Jwtsvid {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Jwtsvid")
                .field("spiffe_id", &self.spiffe_id)
                .field(
                    "svid",
                    &format_args!("<redacted, {} bytes>", self.svid.len()),
                )
                .field("hint", &self.hint)
                .finish()
        }
    }
}

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

    #[cfg(feature = "workload-api")]
    #[test]
    fn the_debug_of_a_workload_api_svid_never_prints_its_key_or_token() {
        let svid = spiffe_workload::X509svid {
            spiffe_id: "spiffe://example.org/w".into(),
            x509_svid_key: b"PRIVATE-KEY-BYTES".to_vec(),
            ..Default::default()
        };
        let jwt = spiffe_workload::Jwtsvid {
            spiffe_id: "spiffe://example.org/w".into(),
            svid: "eyJhbGciOiJFUzI1NiJ9.e30.c2lnbmF0dXJl".into(),
            hint: String::new(),
        };
        let debug = format!("{svid:?} {jwt:?}");
        assert!(
            !debug.contains("PRIVATE") && !debug.contains("c2lnbmF0dXJl"),
            "{debug}"
        );
        assert!(debug.contains("<redacted, 17 bytes>"), "{debug}");
        assert!(debug.contains("spiffe://example.org/w"), "{debug}");
    }

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
