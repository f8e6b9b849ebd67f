//! Tessera's test kit: the dev PKI (`tessera dev certs` writes it to `certs-dev/`), and the
//! fixtures tests, examples and benchmarks share. DEV ONLY: nothing here is for production.

pub mod dev;
pub mod pki;
