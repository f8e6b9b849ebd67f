//! Compiles `proto/` at the workspace root with protox (pure Rust, no `protoc`) and
//! tonic-prost-build. Clients and servers are generated behind the crate's `client` and
//! `server` features, so a relying party compiles no server code. Messages that carry a
//! credential (`SECRET_MESSAGES`) get no derived `Debug`: `src/lib.rs` writes a redacting one.
use std::path::PathBuf;

/// Messages holding a bearer credential; their `Debug` is hand-written in `src/lib.rs`.
const SECRET_MESSAGES: [&str; 1] = [".tessera.v1.MintJwtResponse"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let protos = [root.join("tessera/v1/broker.proto")];
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(protos, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
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
