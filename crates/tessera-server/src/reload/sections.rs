//! The sections of a configuration file as written, to tell which changed keys a reload can
//! apply and which need a restart.

use toml::Table;

/// Top-level tables a reload puts in force whole.
const RELOADED: &[&str] = &["trust_domain", "oidc_issuer", "grant", "admin", "signing"];
/// Keys of other tables a reload puts in force (they feed the attestor).
const RELOADED_KEYS: &[&str] = &["server.audience", "server.tls_client_ca"];

/// A configuration file's top-level tables; empty when the text does not parse (a file that
/// does not parse is never put in force, so this only matters for the one at start).
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Sections(Table);

impl Sections {
    /// Returns the sections of `text`.
    pub fn parse(text: &str) -> Self {
        Sections(text.parse::<Table>().unwrap_or_default())
    }

    /// Returns the keys (`section.key`, or `section` for a whole table) that differ between
    /// `self` and `new` and that a reload does not apply, sorted.
    pub fn restart_required(&self, new: &Sections) -> Vec<String> {
        let mut out = Vec::new();
        let names = self.0.keys().chain(new.0.keys());
        let mut names: Vec<&String> = names.filter(|n| !RELOADED.contains(&n.as_str())).collect();
        names.sort();
        names.dedup();
        for name in names {
            let (before, after) = (self.0.get(name.as_str()), new.0.get(name.as_str()));
            if before == after {
                continue;
            }
            match (
                before.and_then(|v| v.as_table()),
                after.and_then(|v| v.as_table()),
            ) {
                (Some(b), Some(a)) => out.extend(changed_keys(name, b, a)),
                _ => out.push(name.clone()),
            }
        }
        out
    }
}

/// Returns `section.key` for each key of `section` that differs and is not reloaded.
fn changed_keys(section: &str, before: &Table, after: &Table) -> Vec<String> {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| before.get(k.as_str()) != after.get(k.as_str()))
        .map(|k| format!("{section}.{k}"))
        .filter(|k| !RELOADED_KEYS.contains(&k.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[server]
grpc_addr = "127.0.0.1:8443"
audience = "a"
[[grant]]
name = "g"
[admin]
ids = ["x"]
"#;

    #[test]
    fn grants_admins_and_the_audience_reload_without_a_restart() {
        let new = BASE
            .replace("name = \"g\"", "name = \"h\"")
            .replace("[\"x\"]", "[\"y\"]")
            .replace("audience = \"a\"", "audience = \"b\"");
        let required = Sections::parse(BASE).restart_required(&Sections::parse(&new));
        assert!(required.is_empty(), "{required:?}");
    }

    #[test]
    fn a_changed_listener_or_a_new_section_needs_a_restart() {
        let new = BASE.replace("8443", "9443") + "[ledger]\npath = \"x\"\n";
        let required = Sections::parse(BASE).restart_required(&Sections::parse(&new));
        assert_eq!(required, ["ledger", "server.grpc_addr"]);
    }
}
