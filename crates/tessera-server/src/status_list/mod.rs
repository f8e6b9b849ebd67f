//! Token Status Lists (draft-ietf-oauth-status-list, DESIGN.md "Revocation that relying
//! parties can enforce"): every minted JWT gets an entry — a list and an index — in its
//! `status` claim, and `GET /statuslists/<list>` serves the list's bits, 1 for every credential
//! a revocation rule covers.
//!
//! - Lists roll over by time window (`[status_list] window`): a process allocates in a list of
//!   the current window that it opened itself (a random name part per list), so replicas and
//!   restarts never hand out an index twice; a list is dropped once every credential in it has
//!   expired. Indices within a list are a keyed permutation, not issuance order.
//! - Each entry keeps what rules select by, interned ([`profiles`]), and its issue time, so a
//!   rule is applied in one pass over a compact column, in the background ([`follow`]),
//!   batched, whatever the number of credentials it covers.
//! - Entries come from the mint path on this replica, from `issued` events of other replicas,
//!   and, after a restart, from the ledger's records that carry an entry. Until that rebuild is
//!   done, lists this process did not open are answered with 503.

mod follow;
mod list;
mod permute;
mod profiles;
mod rules;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tessera_core::clock::SharedClock;
use tessera_core::domain::{CredentialRecord, RevocationRule, Selector};
use tessera_core::mint::MintError;
use tessera_core::policy::MAX_GRANT_TTL;
use tessera_core::status_list::{ListName, list_uri};
use tessera_ledger::{Ledger, LedgerError, StatusScan};

pub use self::follow::start;
use self::list::{CAPACITY, List, RenderParams};
use self::permute::Permutation;
use self::profiles::Profiles;
use self::rules::RuleTable;
use crate::signing::JwtKeys;

/// Default of `[status_list] max_lag`.
pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(1);
/// Default of `[status_list] ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Default of `[status_list] window`.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
/// Seconds a list is kept past the last `exp` in it: relying parties tolerate this much clock
/// skew on `exp`.
const LEEWAY_SECS: i64 = 60;
/// Records read per page when rebuilding.
const REBUILD_PAGE: usize = 10_000;

/// `[status_list]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusListConfig {
    /// How long a revocation may take to show in the served lists.
    pub max_lag: Duration,
    /// How long relying parties may cache a list (`ttl` claim, `Cache-Control: max-age`).
    pub ttl: Duration,
    /// Lists roll over every `window`.
    pub window: Duration,
}

impl Default for StatusListConfig {
    fn default() -> Self {
        StatusListConfig {
            max_lag: DEFAULT_MAX_LAG,
            ttl: DEFAULT_TTL,
            window: DEFAULT_WINDOW,
        }
    }
}

/// Parameters of [`StatusLists::new`].
pub struct StatusListParts {
    /// `iss` of minted tokens: lists are served under `<issuer>/statuslists/`.
    pub issuer: String,
    /// Signs the lists (the key that signs minted tokens now).
    pub jwt: Arc<JwtKeys>,
    pub ledger: Arc<dyn Ledger>,
    pub clock: SharedClock,
    pub config: StatusListConfig,
}

impl fmt::Debug for StatusListParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusListParts")
            .field("issuer", &self.issuer)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Where a credential about to be minted is listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub list: ListName,
    pub idx: u32,
    /// The list's URI (the `uri` of the `status` claim).
    pub uri: String,
}

/// The answer to `GET /statuslists/<list>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// The Status List Token (a compact JWS).
    List(Bytes),
    /// No such list (never, or no longer: all its credentials expired).
    NotFound,
    /// The list may exist but is not rebuilt yet after a start: ask again shortly.
    NotReady,
}

/// The list this process allocates in.
#[derive(Debug)]
struct Open {
    list: Arc<List>,
    permutation: Permutation,
    next: u32,
}

/// Every list this process serves, the rules they enforce, and the list it allocates in.
pub struct StatusLists {
    parts: StatusListParts,
    lists: RwLock<HashMap<ListName, Arc<List>>>,
    open: Mutex<Option<Open>>,
    profiles: Profiles,
    rules: RwLock<RuleTable>,
    /// True once every list this process did not open is rebuilt from the ledger.
    rebuilt: AtomicBool,
}

impl fmt::Debug for StatusLists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusLists")
            .field("config", &self.parts.config)
            .field("lists", &self.lists.read().map_or(0, |l| l.len()))
            .field("profiles", &self.profiles.len())
            .finish_non_exhaustive()
    }
}

/// Returns `n` random `u64`s from the system generator.
fn random_u64s<const N: usize>() -> Result<[u64; N], MintError> {
    let mut bytes = vec![0u8; N * 8];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| MintError::Random)?;
    let mut out = [0u64; N];
    for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *o = u64::from_le_bytes(b);
    }
    Ok(out)
}

impl StatusLists {
    /// Returns an empty set of lists, not rebuilt yet (see [`start`]).
    pub fn new(parts: StatusListParts) -> Self {
        StatusLists {
            parts,
            lists: RwLock::new(HashMap::new()),
            open: Mutex::new(None),
            profiles: Profiles::default(),
            rules: RwLock::new(RuleTable::default()),
            rebuilt: AtomicBool::new(false),
        }
    }

    /// Returns the configuration the lists follow.
    pub fn config(&self) -> StatusListConfig {
        self.parts.config
    }

    /// Returns the start of the window `now` (unix seconds) falls in.
    fn window_start(&self, now: i64) -> i64 {
        let window = i64::try_from(self.parts.config.window.as_secs())
            .unwrap_or(i64::MAX)
            .max(1);
        now - now.rem_euclid(window)
    }

    /// Returns the list named `name`, creating it (as this process's when `local`) if unknown.
    fn list(&self, name: &ListName, local: bool) -> Arc<List> {
        if let Some(list) = self.lists.read().ok().and_then(|l| l.get(name).cloned()) {
            return list;
        }
        let mut lists = self.lists.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(lists.entry(name.clone()).or_insert_with(|| {
            let uri = list_uri(&self.parts.issuer, name);
            Arc::new(List::new(name.clone(), uri, local))
        }))
    }

    /// Reserves the entry of a credential minted at `now` (unix seconds): the next index of
    /// this process's list of the current window, opening a new list when the window turned
    /// or the list is full. Fails only when the random generator fails.
    pub fn allocate(&self, now: i64) -> Result<Allocation, MintError> {
        let window_start = self.window_start(now);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let current = open
            .as_ref()
            .is_some_and(|o| o.list.name().window_start() == window_start && o.next < CAPACITY);
        if !current {
            let [origin, k0, k1, k2, k3] = random_u64s::<5>()?;
            let name = ListName::new(window_start, origin);
            let list = self.list(&name, true);
            tracing::info!(list = %name, "opened a status list");
            *open = Some(Open {
                list,
                permutation: Permutation::new([k0, k1, k2, k3]),
                next: 0,
            });
        }
        let Some(o) = open.as_mut() else {
            return Err(MintError::Random);
        };
        let idx = o.permutation.apply(o.next);
        o.next += 1;
        Ok(Allocation {
            list: o.list.name().clone(),
            idx,
            uri: o.list.uri().to_owned(),
        })
    }

    /// Lists a credential minted here (its record carries the entry from [`Self::allocate`]),
    /// before its record is committed, so that no rule applied meanwhile can miss it.
    pub fn note_issued(&self, record: &CredentialRecord) {
        self.insert(record, true);
    }

    /// Lists a credential whose `issued` event the ledger committed, unless this process
    /// listed it at mint time (then it is in one of its own lists).
    pub fn note_committed(&self, record: &CredentialRecord) {
        self.insert(record, false);
    }

    /// Adds `record`'s entry to its list (skipping entries of this process's lists unless
    /// `here`), then sets its bit if a known rule covers it.
    fn insert(&self, record: &CredentialRecord, here: bool) {
        let Some(entry) = &record.status_list else {
            return;
        };
        let Ok(name) = entry.list.parse::<ListName>() else {
            tracing::warn!(credential_id = %record.credential_id, list = %entry.list, "a credential names a status list with a malformed name; not listed");
            return;
        };
        if entry.idx >= CAPACITY {
            tracing::warn!(credential_id = %record.credential_id, idx = entry.idx, "a credential's status list index is out of range; not listed");
            return;
        }
        let list = self.list(&name, here);
        if list.is_local() != here {
            return;
        }
        let profile = self.profiles.intern(record);
        list.push(
            entry.idx,
            profile,
            rules::issued_ms(record),
            record.expires_at,
        );
        // After the push: a rule added to the table later is applied to this entry by its pass.
        let covered = self.rules.read().map(|r| r.covers(record)).unwrap_or(true);
        if covered {
            list.set(entry.idx);
        }
    }

    /// Enforces `batch` in every list: adds the rules to the table (so credentials listed from
    /// now on are checked against them), then sets the bits of every listed credential they
    /// cover — one pass over each list for all selector rules, a ledger lookup per
    /// credential-id rule. Returns how many bits changed. Fails when a credential cannot be
    /// read.
    pub async fn apply(&self, batch: &[RevocationRule]) -> Result<usize, LedgerError> {
        if let Ok(mut table) = self.rules.write() {
            for rule in batch {
                table.insert(&rule.rule);
            }
        }
        let selected: Vec<(Selector, &str, i64)> = batch
            .iter()
            .filter(|r| r.rule.selector != Selector::CredentialId)
            .map(|r| {
                (
                    r.rule.selector,
                    r.rule.value.as_str(),
                    rules::cut_off_ms(&r.rule),
                )
            })
            .collect();
        let mut changed = 0;
        if !selected.is_empty() {
            let cut_offs = self.profiles.cut_offs(&selected);
            for list in self.all_lists() {
                changed += list.apply(&cut_offs);
            }
        }
        for rule in batch
            .iter()
            .filter(|r| r.rule.selector == Selector::CredentialId)
        {
            changed += self.apply_to_credential(&rule.rule.value).await?;
        }
        Ok(changed)
    }

    /// Sets the bit of credential `id` if it is listed here; returns 1 when it changed.
    async fn apply_to_credential(&self, id: &str) -> Result<usize, LedgerError> {
        let Some(record) = self.parts.ledger.get(id).await? else {
            return Ok(0);
        };
        let Some(entry) = &record.status_list else {
            return Ok(0);
        };
        let list = entry
            .list
            .parse::<ListName>()
            .ok()
            .and_then(|name| self.lists.read().ok()?.get(&name).cloned());
        Ok(list.map_or(0, |l| usize::from(l.set(entry.idx))))
    }

    fn all_lists(&self) -> Vec<Arc<List>> {
        self.lists
            .read()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Loads every rule the ledger holds and enforces them in every list. Fails when the
    /// ledger cannot be read.
    pub async fn load_rules(&self) -> Result<(), LedgerError> {
        let rules = self.parts.ledger.rules().await?;
        let changed = self.apply(&rules).await?;
        tracing::debug!(
            rules = rules.len(),
            changed,
            "status lists enforce the stored rules"
        );
        Ok(())
    }

    /// Lists every live credential the ledger holds an entry for (except in this process's
    /// own lists), page by page, then marks every list ready to serve. Rules already loaded are
    /// applied as entries are added. Fails when the ledger cannot be read.
    pub async fn rebuild(&self) -> Result<(), LedgerError> {
        let started = std::time::Instant::now();
        let mut scan = Some(StatusScan {
            expires_after: self.parts.clock.unix_seconds().saturating_sub(LEEWAY_SECS),
            after: None,
            limit: REBUILD_PAGE,
        });
        let mut listed = 0usize;
        while let Some(page_scan) = scan {
            let page = self
                .parts
                .ledger
                .status_list_records(page_scan.clone())
                .await?;
            for record in &page {
                self.note_committed(record);
            }
            listed += page.len();
            scan = page_scan.next(&page);
        }
        for list in self.all_lists().iter().filter(|l| !l.is_local()) {
            list.dedup();
        }
        self.rebuilt.store(true, Ordering::Release);
        tracing::info!(
            listed,
            lists = self.all_lists().len(),
            elapsed_ms = started.elapsed().as_millis(),
            "status lists rebuilt from the ledger"
        );
        Ok(())
    }

    /// Marks the lists this process did not open as not ready (events were missed: they are
    /// rebuilt again).
    fn unready(&self) {
        self.rebuilt.store(false, Ordering::Release);
    }

    /// Returns true once the lists this process did not open are rebuilt.
    pub fn is_rebuilt(&self) -> bool {
        self.rebuilt.load(Ordering::Acquire)
    }

    /// Drops the lists whose credentials have all expired (past the leeway), except the one
    /// this process allocates in, and the rules nothing live can be covered by.
    pub fn drop_expired(&self) {
        let now = self.parts.clock.unix_seconds();
        let open = self
            .open
            .lock()
            .ok()
            .and_then(|o| o.as_ref().map(|o| o.list.name().clone()));
        if let Ok(mut lists) = self.lists.write() {
            lists.retain(|name, list| {
                let keep = Some(name) == open.as_ref()
                    || list.max_exp().saturating_add(LEEWAY_SECS) >= now;
                if !keep {
                    tracing::info!(list = %name, "dropped a status list: every credential in it expired");
                }
                keep
            });
        }
        let max_ttl = i64::try_from(MAX_GRANT_TTL.as_secs()).unwrap_or(i64::MAX);
        let before_ms = now
            .saturating_sub(max_ttl)
            .saturating_sub(LEEWAY_SECS)
            .saturating_mul(1000);
        if let Ok(mut table) = self.rules.write() {
            table.prune(before_ms);
        }
    }

    /// Returns the Status List Token of list `name` as of now, or why there is none: an
    /// unknown name, or a list not rebuilt yet. CPU-bound (compression, signing): call it off
    /// the async workers. Fails when signing fails.
    pub fn serve(&self, name: &str) -> Result<Served, MintError> {
        let Ok(name) = name.parse::<ListName>() else {
            return Ok(Served::NotFound);
        };
        let list = self.lists.read().ok().and_then(|l| l.get(&name).cloned());
        let list = match list {
            Some(list) if list.is_local() || self.is_rebuilt() => list,
            _ if !self.is_rebuilt() => return Ok(Served::NotReady),
            _ => return Ok(Served::NotFound),
        };
        let jwt = list.render(RenderParams {
            jwt: &self.parts.jwt.signer(),
            issuer: &self.parts.issuer,
            now: self.parts.clock.unix_seconds(),
            ttl: self.parts.config.ttl.as_secs().max(1),
        })?;
        Ok(Served::List(jwt))
    }

    /// Returns (lists, listed credentials, rules held), for logs and tests.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let lists = self.all_lists();
        let entries = lists.iter().map(|l| l.len()).sum();
        let rules = self.rules.read().map_or(0, |r| r.len());
        (lists.len(), entries, rules)
    }
}

#[cfg(test)]
mod tests;
