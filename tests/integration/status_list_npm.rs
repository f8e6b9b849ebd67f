//! Reads status lists with an independent implementation: the npm package
//! `@sd-jwt/jwt-status-list`, through `tests/interop/status-list/decode.mjs` run by `node`.
//! When the package is not installed yet, `npm ci` installs it from the committed lockfile
//! first (once, under a lock shared by every test process).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The test-only npm project.
fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/status-list")
}

/// Installs the npm project's dependencies unless they are there. Panics if `npm ci` fails.
fn ensure_installed() {
    let dir = interop_dir();
    let installed = || {
        dir.join("node_modules/@sd-jwt/jwt-status-list/package.json")
            .exists()
    };
    if installed() {
        return;
    }
    let lock_path = std::env::temp_dir().join("tessera-status-list-npm.lock");
    let lock = std::fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    if !installed() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .expect("npm is needed to run the status list interop tests");
        assert!(
            out.status.success(),
            "npm ci failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    lock.unlock().unwrap();
}

/// Decodes `list_jwt` with the npm package: returns its header and claims (without `lst`),
/// `signature_valid` against `jwks` (Node's WebCrypto; null without a JWKS), `size`, `ones`
/// (how many entries are 1), `statuses` at each of `idx`, and the `status_list` reference of
/// each of `tokens`. Panics if node fails.
pub fn decode(list_jwt: &str, jwks: Option<&Value>, idx: &[u64], tokens: &[&str]) -> Value {
    ensure_installed();
    let input = serde_json::json!({
        "list_jwt": list_jwt, "jwks": jwks, "idx": idx, "tokens": tokens,
    });
    let mut child = Command::new("node")
        .arg("decode.mjs")
        .current_dir(interop_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is needed to run the status list interop tests");
    let mut stdin = child.stdin.take().unwrap();
    let body = serde_json::to_vec(&input).unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "node decode.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
