//! The layout's rules, checked on every CI run (README "Layout"): crates depend on each other
//! only in the direction of the flow, the client SDK compiles no server, and no crate's
//! modules import each other in a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which workspace crates each crate may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("tessera-proto", &[]),
    ("tessera-core", &[]),
    ("tessera-ledger", &["tessera-core"]),
    (
        "tessera-server",
        &["tessera-core", "tessera-ledger", "tessera-proto"],
    ),
    ("tessera-client", &["tessera-core", "tessera-proto"]),
];

/// Crates a relying party must never compile by adding `tessera-client`.
const NOT_IN_CLIENT: &[&str] = &["redb", "axum", "rcgen", "tokio-postgres", "tessera-server"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cargo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn crates_depend_only_in_the_direction_of_the_flow() {
    let metadata: serde_json::Value = serde_json::from_str(&cargo(&[
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
        "--offline",
    ]))
    .unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    for (name, allowed) in ALLOWED {
        let package = packages
            .iter()
            .find(|p| p["name"] == *name)
            .unwrap_or_else(|| panic!("{name} is not in the workspace"));
        let internal: Vec<&str> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|d| d.starts_with("tessera"))
            .collect();
        for dependency in internal {
            assert!(
                allowed.contains(&dependency),
                "{name} depends on {dependency}; it may depend only on {allowed:?}"
            );
        }
    }
}

#[test]
fn the_client_sdk_compiles_no_storage_no_http_server_and_no_certificate_generator() {
    let tree = cargo(&[
        "tree",
        "-p",
        "tessera-client",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--offline",
    ]);
    let crates: BTreeSet<&str> = tree.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(crates.contains("tessera-core"), "{crates:?}");
    for banned in NOT_IN_CLIENT {
        assert!(!crates.contains(banned), "tessera-client pulls in {banned}");
    }
    let hyper = cargo(&[
        "tree",
        "-p",
        "tessera-client",
        "-e",
        "features",
        "-i",
        "hyper",
        "--offline",
    ]);
    assert!(
        !hyper.contains("hyper feature \"server\""),
        "tessera-client enables hyper's server:\n{hyper}"
    );
}

/// Returns the module path of a source file (`attest::oidc` for `src/attest/oidc/mod.rs`),
/// or `None` for the crate root.
fn module_path(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut path: Vec<String> = rel
        .components()
        .filter_map(|c| c.as_os_str().to_str().map(str::to_owned))
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    let root = path.len() == 1 && (path[0] == "lib" || path[0] == "main");
    (!path.is_empty() && !root).then_some(path)
}

/// Returns the production code of a file: comments and `#[cfg(test)]` items cut.
fn production_code(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Returns the path segments written after each occurrence of `prefix` in `code`.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    code.match_indices(prefix)
        .filter(|(i, _)| {
            !code[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        })
        .map(|(i, _)| {
            let mut segments = Vec::new();
            for seg in code[i + prefix.len()..].split("::") {
                let end = seg
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(seg.len());
                if end > 0 {
                    segments.push(&seg[..end]);
                }
                if end < seg.len() || end == 0 {
                    break;
                }
            }
            segments
        })
        .collect()
}

/// Returns the longest module of `modules` that `path` names (its own or an item's path).
fn resolve(modules: &BTreeSet<Vec<String>>, path: &[String]) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
}

/// Returns, for each module of the crate at `src` (one per file), the modules it names
/// through `crate::` and `super::` paths, leaving out its own ancestors and descendants
/// (a parent declares and re-exports its children; a child uses its parent's items).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let is_test = |f: &Path| {
        f.file_stem().and_then(|s| s.to_str()).is_some_and(|s| {
            s.starts_with("tests") || s.ends_with("_tests") || s.starts_with("test_")
        })
    };
    let files: Vec<(Vec<String>, PathBuf)> = files
        .into_iter()
        .filter(|f| !is_test(f))
        .filter_map(|f| module_path(src, &f).map(|m| (m, f)))
        .collect();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &files {
        let code = production_code(&std::fs::read_to_string(file).unwrap());
        let parent = &module[..module.len() - 1];
        let mut targets = Vec::new();
        for segs in paths_after(&code, "crate::") {
            targets.push(segs.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        for segs in paths_after(&code, "super::") {
            let mut path = parent.to_vec();
            path.extend(segs.iter().map(|s| s.to_string()));
            targets.push(path);
        }
        let edges = graph.entry(module.join("::")).or_default();
        for target in targets {
            let Some(to) = resolve(&modules, &target) else {
                continue;
            };
            let related = to.starts_with(module) || module.starts_with(&to);
            if !related {
                edges.insert(to.join("::"));
            }
        }
    }
    graph
}

/// Returns a cycle of `graph` as a path that starts and ends at the same module, if any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_accepts_a_chain() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry((*a).into()).or_default().insert((*b).into());
        }
        g
    };
    let cycle = graph(&[
        ("config", "policy"),
        ("policy", "attest"),
        ("attest", "config"),
    ]);
    assert_eq!(
        find_cycle(&cycle).unwrap(),
        ["attest", "config", "policy", "attest"]
    );
    let chain = graph(&[("api", "issuer"), ("issuer", "policy"), ("api", "policy")]);
    assert_eq!(find_cycle(&chain), None);
}

#[test]
fn no_crate_has_a_cycle_between_its_modules() {
    let crates = root().join("crates");
    let mut checked = 0;
    for entry in std::fs::read_dir(&crates).unwrap() {
        let src = entry.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let graph = module_graph(&src);
        assert_eq!(
            find_cycle(&graph),
            None,
            "module cycle in {}",
            src.display()
        );
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} crates found under crates/");
    let core = module_graph(&crates.join("tessera-core/src"));
    assert!(
        core["policy"].contains("attest") && core["attest::oidc::keys"].contains("http_client"),
        "the module graph lost its edges: {core:?}"
    );
}
