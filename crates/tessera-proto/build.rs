//! Compiles `proto/` at the workspace root with protox (pure Rust, no `protoc`) and
//! tonic-prost-build. Clients and servers are generated behind the crate's `client` and
//! `server` features, so a relying party compiles no server code. Messages that carry a
//! credential (`SECRET_MESSAGES`) get no derived `Debug`: `src/lib.rs` writes a redacting one.
//! The vendored SPIFFE Workload API (`proto/spiffe/workload`) is compiled on its own, so that
//! Tessera's reflection descriptor holds only Tessera's services; its code is behind the
//! `workload-api` feature (the test kit's Workload API server).
use std::path::{Path, PathBuf};

/// Messages holding a bearer credential; their `Debug` is hand-written in `src/lib.rs`.
const SECRET_MESSAGES: [&str; 1] = [".tessera.v1.MintJwtResponse"];
/// Workload API messages holding a private key or a bearer token: no derived `Debug`.
const WORKLOAD_API_SECRETS: [&str; 2] = [".X509SVID", ".JWTSVID"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tessera(&root, &out)?;
    workload_api(&root)?;
    Ok(())
}

/// Generates `tessera.v1` and its reflection descriptor.
fn tessera(root: &Path, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile([root.join("tessera/v1/broker.proto")], [root])?;
    std::fs::write(
        out.join("tessera_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .skip_debug(SECRET_MESSAGES)
        .client_mod_attribute("tessera.v1", "#[cfg(feature = \"client\")]")
        .server_mod_attribute("tessera.v1", "#[cfg(feature = \"server\")]")
        .compile_fds(fds)?;
    Ok(())
}

/// Generates the SPIFFE Workload API (no package: the file is `_.rs`).
fn workload_api(root: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile([root.join("spiffe/workload/workload.proto")], [root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .skip_debug(WORKLOAD_API_SECRETS)
        .compile_fds(fds)?;
    Ok(())
}
