//! The mint CA ring: which CA signs new X.509-SVIDs, and which CAs still have live
//! certificates, so that each keeps its CRL (`/crl/<key id>`) until the last certificate it
//! signed has expired and left the CRL (RFC 5280 §3.3: one CRL period after expiry).
//!
//! A CA is identified by its key identifier (SKI). Relying parties trust the trust domain
//! bundle's roots, not a published list, so a new active CA signs at once; what a reload must
//! prove instead is that the new active CA's SVIDs verify against the bundles (the start-up
//! self-test) and that every CA with live certificates still chains to the bundle of each trust
//! domain it signed in.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use tessera_core::clock::SharedClock;
use tessera_core::domain::id;
use tessera_core::mint::crl::CRL_VALIDITY_SECS;
use tessera_core::mint::{
    CrlCache, CrlParams, MintCa, MintError, MintX509Params, MintedX509, RevokedSerial, X509Minter,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::self_test::self_test_domain;
use super::{SelfTestError, SigningConfig, SigningError, Trust, max_grant_ttl_secs};

/// One mint CA and what it has signed.
pub struct IssuingCa {
    minter: X509Minter,
    /// Lowercase hex of the CA's key identifier (`/crl/<key id>`).
    key_id: String,
    /// The CA's subject, for messages.
    name: String,
    /// The latest `notAfter` of a certificate it signed, in unix seconds.
    signed_until: AtomicI64,
    /// The trust domains it signed certificates in.
    domains: Mutex<BTreeSet<String>>,
    crl: CrlCache,
}

impl fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuingCa")
            .field("key_id", &self.key_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl IssuingCa {
    fn new(minter: X509Minter, signed_until: i64, domains: BTreeSet<String>) -> Arc<IssuingCa> {
        let name = minter
            .ca()
            .chain()
            .first()
            .and_then(|der| X509Certificate::from_der(der).ok())
            .map_or_else(String::new, |(_, cert)| cert.subject().to_string());
        Arc::new(IssuingCa {
            key_id: id::hex(minter.ca().key_id()),
            name,
            minter,
            signed_until: AtomicI64::new(signed_until),
            domains: Mutex::new(domains),
            crl: CrlCache::default(),
        })
    }

    /// Returns the lowercase hex of the CA's key identifier.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Returns the CA chain, signing CA first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        self.minter.ca().chain()
    }

    /// Returns the unix second until which a certificate it signed may be valid.
    pub fn signed_until(&self) -> i64 {
        self.signed_until.load(Ordering::Acquire)
    }

    fn domains(&self) -> BTreeSet<String> {
        self.domains
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Notes a certificate valid until `until` (unix seconds) signed in trust domain `domain`.
    fn note_signed(&self, until: i64, domain: &str) {
        self.signed_until.fetch_max(until, Ordering::AcqRel);
        let mut domains = self.domains.lock().unwrap_or_else(PoisonError::into_inner);
        if !domains.contains(domain) {
            domains.insert(domain.to_owned());
        }
    }

    /// Returns the unix second after which nothing it signed is valid or on its CRL.
    fn done_at(&self) -> i64 {
        self.signed_until().saturating_add(CRL_VALIDITY_SECS)
    }

    fn same_chain(&self, minter: &X509Minter) -> bool {
        self.chain() == minter.ca().chain()
    }
}

/// The CA one X.509-SVID is signed with. While it is held the CA is kept.
#[derive(Debug, Clone)]
pub struct CaSigner {
    ca: Arc<IssuingCa>,
}

impl CaSigner {
    /// Returns the CA it signs with.
    pub fn ca(&self) -> &IssuingCa {
        &self.ca
    }

    /// Signs an X.509-SVID ([`X509Minter::mint`]) and keeps the CA until it has expired and left
    /// the CRL. Fails when the random generator or signer fails, or the CA has expired.
    pub fn mint(&self, params: MintX509Params<'_>) -> Result<MintedX509, MintError> {
        let minted = self.ca.minter.mint(params)?;
        self.ca
            .note_signed(minted.expires_at, params.workload.trust_domain_name());
        Ok(minted)
    }
}

/// A CA in the ring and whether the configuration lists it.
struct Entry {
    ca: Arc<IssuingCa>,
    listed: bool,
}

/// The ring's state, behind one lock.
#[derive(Default)]
struct Ring {
    entries: Vec<Entry>,
    active: Option<Arc<IssuingCa>>,
    /// (unix ms, key id): which CA became active when, oldest first.
    history: Vec<(i64, String)>,
}

impl Ring {
    fn find(&self, key_id: &str) -> Option<&Arc<IssuingCa>> {
        self.entries
            .iter()
            .map(|e| &e.ca)
            .find(|ca| ca.key_id == key_id)
    }

    fn is_active(&self, ca: &Arc<IssuingCa>) -> bool {
        self.active.as_ref().is_some_and(|a| Arc::ptr_eq(a, ca))
    }

    /// Drops CAs no longer listed once nothing they signed is valid or on their CRL and no
    /// operation holds them, and the history of CAs that left.
    fn advance(&mut self, now: i64) {
        let active = self.active.clone();
        self.entries.retain(|e| {
            let keep = e.listed
                || active.as_ref().is_some_and(|a| Arc::ptr_eq(a, &e.ca))
                || e.ca.done_at() >= now
                || Arc::strong_count(&e.ca) > 1;
            if !keep {
                tracing::info!(key_id = %e.ca.key_id, ca = %e.ca.name, "retired mint CA dropped");
            }
            keep
        });
        let entries = &self.entries;
        self.history
            .retain(|(_, key_id)| entries.iter().any(|e| &e.ca.key_id == key_id));
    }

    /// Returns the unix millisecond before which [`Ring::advance`] can drop nothing.
    fn next_change_ms(&self, now_ms: i64) -> i64 {
        self.entries
            .iter()
            .filter(|e| !e.listed && !self.is_active(&e.ca))
            .map(|e| {
                let at = e.ca.done_at().saturating_add(1).saturating_mul(1000);
                // Past it but still held by an operation: look again at the next read.
                at.max(now_ms)
            })
            .min()
            .unwrap_or(i64::MAX)
    }
}

/// The CAs of a configuration, parsed and checked: what [`MintCas::commit`] takes.
pub struct PreparedCas {
    /// Every listed CA, in configuration order, and whether it is active.
    cas: Vec<(X509Minter, bool)>,
}

impl fmt::Debug for PreparedCas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedCas")
            .field("cas", &self.cas.len())
            .finish()
    }
}

/// The mint CAs, shared for the process lifetime.
pub struct MintCas {
    clock: SharedClock,
    ring: RwLock<Ring>,
    /// Before this unix millisecond no read needs to move the ring.
    next_change_ms: AtomicI64,
}

impl fmt::Debug for MintCas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.read();
        f.debug_struct("MintCas")
            .field("active", &ring.active.as_ref().map(|a| a.key_id.clone()))
            .field("cas", &ring.entries.len())
            .finish_non_exhaustive()
    }
}

impl MintCas {
    /// Returns the CAs of `signing` at process start: the active CA signs at once; every listed
    /// CA is assumed to have live certificates, in every trust domain a grant mints X.509-SVIDs
    /// in, until now + `MAX_GRANT_TTL`. Fails naming the key when a CA does not load, is listed
    /// twice, or its SVIDs would not verify against the bundles of `trust`.
    pub fn new(
        signing: &SigningConfig,
        trust: &Trust,
        clock: SharedClock,
    ) -> Result<MintCas, SigningError> {
        let now = clock.unix_seconds();
        let cas = parse(signing)?;
        check_active(signing, trust, &cas, now)?;
        // The others may have signed before a restart: they must still verify too.
        let others = cas
            .iter()
            .zip(&signing.mint_cas)
            .filter(|((_, active), _)| !active);
        for ((minter, _), configured) in others {
            for domain in &trust.x509_domains {
                self_test_domain(domain, minter, trust.roots(domain), now).map_err(|reason| {
                    SigningError::SelfTest {
                        key: configured.source.clone(),
                        domain: domain.clone(),
                        reason: Box::new(reason),
                    }
                })?;
            }
        }
        let until = now.saturating_add(max_grant_ttl_secs());
        let mut ring = Ring::default();
        for (minter, active) in cas {
            let signed_until = until.min(minter.ca().not_after());
            let ca = IssuingCa::new(minter, signed_until, trust.x509_domains.clone());
            if active {
                ring.history.push((i64::MIN, ca.key_id.clone()));
                ring.active = Some(Arc::clone(&ca));
            }
            ring.entries.push(Entry { ca, listed: true });
        }
        Ok(Self::with_ring(ring, clock))
    }

    /// Returns a ring of the one CA of `minter`, signing at once (for tools and tests).
    pub fn single(minter: X509Minter, clock: SharedClock) -> MintCas {
        let ca = IssuingCa::new(minter, i64::MIN, BTreeSet::new());
        let ring = Ring {
            history: vec![(i64::MIN, ca.key_id.clone())],
            active: Some(Arc::clone(&ca)),
            entries: vec![Entry { ca, listed: true }],
        };
        Self::with_ring(ring, clock)
    }

    /// Returns a ring without any CA: no X.509-SVID can be signed.
    pub fn none(clock: SharedClock) -> MintCas {
        Self::with_ring(Ring::default(), clock)
    }

    fn with_ring(ring: Ring, clock: SharedClock) -> MintCas {
        let next = ring.next_change_ms(clock.unix_millis());
        MintCas {
            clock,
            ring: RwLock::new(ring),
            next_change_ms: AtomicI64::new(next),
        }
    }

    /// Parses and checks the CAs of `signing` at `now_ms` without changing anything. Fails
    /// naming the key when a CA does not load or is listed twice, or the active CA's SVIDs
    /// would not verify against the bundles of `trust`; fails naming the CA when one with live
    /// certificates would no longer chain to the bundle of a trust domain it signed in.
    pub fn prepare(
        &self,
        signing: &SigningConfig,
        trust: &Trust,
        now_ms: i64,
    ) -> Result<PreparedCas, SigningError> {
        let now = now_ms.div_euclid(1000);
        let cas = parse(signing)?;
        check_active(signing, trust, &cas, now)?;
        let live: Vec<Arc<IssuingCa>> = self
            .read()
            .entries
            .iter()
            .filter(|e| e.ca.signed_until() > now)
            .map(|e| Arc::clone(&e.ca))
            .collect();
        for ca in live {
            // A domain no longer configured has no bundle here to keep its root in.
            for domain in ca.domains() {
                let Some(roots) = trust.bundles.get(&domain) else {
                    continue;
                };
                self_test_domain(&domain, &ca.minter, roots, now).map_err(|reason| {
                    SigningError::LiveCa {
                        ca: ca.name.clone(),
                        key_id: ca.key_id.clone(),
                        domain,
                        until: ca.signed_until(),
                        reason: Box::new(reason),
                    }
                })?;
            }
        }
        Ok(PreparedCas { cas })
    }

    /// Takes the CAs of `prepared` at `now_ms`: the active one signs new X.509-SVIDs from now;
    /// CAs no longer listed are kept until what they signed has expired and left the CRL.
    /// Cannot fail.
    pub fn commit(&self, prepared: PreparedCas, now_ms: i64) {
        let mut ring = self.write();
        let mut entries: Vec<Entry> = Vec::with_capacity(prepared.cas.len());
        let mut active = None;
        for (minter, is_active) in prepared.cas {
            let ca = match ring.find(&id::hex(minter.ca().key_id())) {
                Some(known) if known.same_chain(&minter) => Arc::clone(known),
                // The same key with a renewed chain: what it signed carries over.
                Some(known) => IssuingCa::new(minter, known.signed_until(), known.domains()),
                None => IssuingCa::new(minter, i64::MIN, BTreeSet::new()),
            };
            if is_active {
                active = Some(Arc::clone(&ca));
            }
            entries.push(Entry { ca, listed: true });
        }
        let unlisted: Vec<Entry> = std::mem::take(&mut ring.entries)
            .into_iter()
            .filter(|old| !entries.iter().any(|e| e.ca.key_id == old.ca.key_id))
            .map(|old| Entry {
                ca: old.ca,
                listed: false,
            })
            .collect();
        entries.extend(unlisted);
        ring.entries = entries;
        let changed = ring.active.as_ref().map(|a| &a.key_id) != active.as_ref().map(|a| &a.key_id);
        if let Some(new) = active.as_ref().filter(|_| changed) {
            tracing::info!(key_id = %new.key_id, ca = %new.name, "mint CA now signs");
            ring.history.push((now_ms, new.key_id.clone()));
        }
        ring.active = active;
        ring.advance(now_ms.div_euclid(1000));
        self.next_change_ms
            .store(ring.next_change_ms(now_ms), Ordering::Release);
    }

    /// Returns the CA to sign an X.509-SVID with now, or `None` when no mint CA is configured.
    /// Hold it for one operation only.
    pub fn signer(&self) -> Option<CaSigner> {
        self.refresh();
        self.read().active.clone().map(|ca| CaSigner { ca })
    }

    /// Returns the CA whose key id is `key_id` (lowercase hex) while it is kept, else `None`.
    pub fn get(&self, key_id: &str) -> Option<Arc<IssuingCa>> {
        self.refresh();
        self.read().find(key_id).cloned()
    }

    /// Returns the key ids of every CA kept (listed, or with live certificates), active first.
    pub fn key_ids(&self) -> Vec<String> {
        self.refresh();
        let ring = self.read();
        let mut ids: Vec<String> = ring.active.iter().map(|a| a.key_id.clone()).collect();
        ids.extend(
            ring.entries
                .iter()
                .filter(|e| !ring.is_active(&e.ca))
                .map(|e| e.ca.key_id.clone()),
        );
        ids
    }

    /// Returns the CA that was active at `issued_ms` (unix ms) as far as this process knows
    /// (before it started: the CA active at start), or `None` without any.
    pub fn issuer_at(&self, issued_ms: i64) -> Option<Arc<IssuingCa>> {
        self.refresh();
        let ring = self.read();
        let key_id = ring
            .history
            .iter()
            .rev()
            .find(|(since, _)| *since <= issued_ms)
            .or_else(|| ring.history.first())
            .map(|(_, key_id)| key_id.as_str())?;
        ring.find(key_id).cloned()
    }

    /// Returns the DER CRL of the CA `key_id` (the active CA when `None`) as of `now` (unix
    /// seconds), listing `revoked` (called only when the CRL is rebuilt; `revision` changes
    /// whenever it would list something else). `None` when there is no such CA. Fails only when
    /// signing fails.
    ///
    /// Every CA's CRL lists every revoked serial, whichever CA signed it: serials are unique
    /// across CAs (time-ordered, with 88 random bits), so a relying party checking a
    /// certificate against its issuer's CRL finds only that certificate's entry.
    pub fn crl(
        &self,
        key_id: Option<&str>,
        now: i64,
        revision: u64,
        revoked: &dyn Fn() -> Vec<RevokedSerial>,
    ) -> Option<Result<Bytes, MintError>> {
        self.refresh();
        let ca = {
            let ring = self.read();
            match key_id {
                None => ring.active.clone(),
                Some(key_id) => ring.find(&key_id.to_ascii_lowercase()).cloned(),
            }
        }?;
        Some(ca.crl.current(CrlParams {
            minter: &ca.minter,
            now,
            revision,
            revoked,
        }))
    }

    /// Drops what may be dropped when something may have changed since the ring last moved.
    fn refresh(&self) {
        let now_ms = self.clock.unix_millis();
        if now_ms < self.next_change_ms.load(Ordering::Acquire) {
            return;
        }
        let mut ring = self.write();
        ring.advance(now_ms.div_euclid(1000));
        self.next_change_ms
            .store(ring.next_change_ms(now_ms), Ordering::Release);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Ring> {
        self.ring.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Ring> {
        self.ring.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Loads every CA of `signing`. Fails naming the key when one does not load or two share a
/// key.
fn parse(signing: &SigningConfig) -> Result<Vec<(X509Minter, bool)>, SigningError> {
    let mut cas: Vec<(X509Minter, bool)> = Vec::with_capacity(signing.mint_cas.len());
    for configured in &signing.mint_cas {
        let ca = MintCa::new(&configured.chain, &configured.key).map_err(|error| {
            SigningError::MintCa {
                key: configured.source.clone(),
                error,
            }
        })?;
        let same = cas
            .iter()
            .zip(&signing.mint_cas)
            .find(|((m, _), _)| m.ca().key_id() == ca.key_id());
        if let Some((_, other)) = same {
            return Err(SigningError::DuplicateCa {
                key: configured.source.clone(),
                other: other.source.clone(),
            });
        }
        cas.push((X509Minter::new(ca), configured.active));
    }
    Ok(cas)
}

/// Runs the self-test of the active CA of `cas` in every trust domain `trust` says grants mint
/// X.509-SVIDs in. Fails naming the key and the first domain whose SVIDs would not verify (or
/// naming `signing` when X.509-SVIDs are granted and no CA is active).
fn check_active(
    signing: &SigningConfig,
    trust: &Trust,
    cas: &[(X509Minter, bool)],
    now: i64,
) -> Result<(), SigningError> {
    let active = cas
        .iter()
        .zip(&signing.mint_cas)
        .find(|((_, active), _)| *active);
    for domain in &trust.x509_domains {
        let (key, tested) = match active {
            Some(((minter, _), configured)) => (
                configured.source.clone(),
                self_test_domain(domain, minter, trust.roots(domain), now),
            ),
            None => ("signing".to_owned(), Err(SelfTestError::NoMintCa)),
        };
        tested.map_err(|reason| SigningError::SelfTest {
            key,
            domain: domain.clone(),
            reason: Box::new(reason),
        })?;
    }
    Ok(())
}
