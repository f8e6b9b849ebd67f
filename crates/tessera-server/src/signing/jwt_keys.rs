//! The JWT key ring: which keys the JWKS publishes, which key signs now, and which keys verify
//! tokens presented back to the broker (introspection, RFC 7009 revocation).
//!
//! A key is identified by its `kid` (the RFC 7638 thumbprint of its public key), so a reload
//! that lists the same key again, under any file name, changes nothing about it. Listed keys
//! are always published. A key no longer listed is published until the latest `exp` of what it
//! signed (plus [`VERIFY_LEEWAY_SECS`]) has passed and no operation still holds it.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tessera_core::clock::SharedClock;
use tessera_core::mint::{JwtMinter, MintError, MintJwtParams, MintedJwt};

use super::SigningConfig;
use super::{SigningError, VERIFY_LEEWAY_SECS, max_grant_ttl_secs};

/// One key of the ring.
struct RingKey {
    minter: JwtMinter,
    /// When it was first published, in unix milliseconds.
    published_ms: i64,
    /// The latest unix second until which something it signed may be valid (`exp`).
    signed_until: AtomicI64,
}

impl RingKey {
    fn new(minter: JwtMinter, published_ms: i64, signed_until: i64) -> Arc<RingKey> {
        Arc::new(RingKey {
            minter,
            published_ms,
            signed_until: AtomicI64::new(signed_until),
        })
    }

    /// Notes that something valid until `until` (unix seconds) was signed.
    fn note_signed(&self, until: i64) {
        self.signed_until.fetch_max(until, Ordering::AcqRel);
    }

    /// Returns the unix second after which nothing it signed verifies anywhere.
    fn done_at(&self) -> i64 {
        self.signed_until
            .load(Ordering::Acquire)
            .saturating_add(VERIFY_LEEWAY_SECS)
    }
}

/// A key in the ring and whether the configuration lists it.
struct Entry {
    key: Arc<RingKey>,
    listed: bool,
}

/// What the JWKS endpoint and discovery serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// `{"keys": [...]}`, every published key (`kid`, `alg`, `use: sig`).
    pub jwks: Bytes,
    /// The `alg` of every published key, once each.
    pub algs: Vec<&'static str>,
}

/// The ring's state, behind one lock.
struct Ring {
    entries: Vec<Entry>,
    /// The key that signs now.
    signer: Arc<RingKey>,
    /// The configured active key: it signs once published for `publish_before_ms`.
    active: Arc<RingKey>,
    publish_before_ms: i64,
    published: Arc<Published>,
}

impl Ring {
    /// Moves the ring to `now_ms`: the active key takes over signing once published long
    /// enough; keys no longer listed leave once everything they signed expired and nothing
    /// holds them. Returns whether anything changed.
    fn advance(&mut self, now_ms: i64) -> bool {
        let mut changed = false;
        let ready_ms = self
            .active
            .published_ms
            .saturating_add(self.publish_before_ms);
        if !Arc::ptr_eq(&self.signer, &self.active) && now_ms >= ready_ms {
            tracing::info!(
                kid = self.active.minter.kid(),
                previous = self.signer.minter.kid(),
                "JWT signing key now signs"
            );
            self.signer = Arc::clone(&self.active);
            changed = true;
        }
        let now = now_ms.div_euclid(1000);
        let before = self.entries.len();
        let signer = &self.signer;
        self.entries.retain(|e| {
            let keep = e.listed
                || Arc::ptr_eq(&e.key, signer)
                || e.key.done_at() >= now
                // Only this entry holds it: no operation is signing with it.
                || Arc::strong_count(&e.key) > 1;
            if !keep {
                tracing::info!(
                    kid = e.key.minter.kid(),
                    "retired JWT signing key unpublished"
                );
            }
            keep
        });
        changed || self.entries.len() != before
    }

    /// Returns the unix millisecond before which [`Ring::advance`] can change nothing.
    fn next_change_ms(&self, now_ms: i64) -> i64 {
        let mut next = i64::MAX;
        if !Arc::ptr_eq(&self.signer, &self.active) {
            next = self
                .active
                .published_ms
                .saturating_add(self.publish_before_ms);
        }
        for e in &self.entries {
            if !e.listed && !Arc::ptr_eq(&e.key, &self.signer) {
                let at = e.key.done_at().saturating_add(1).saturating_mul(1000);
                // Past it but still held by an operation: look again at the next read.
                next = next.min(at.max(now_ms));
            }
        }
        next
    }

    /// Renders what the JWKS endpoint and discovery serve: the signer's key first.
    fn publish(&mut self) {
        let mut keys: Vec<&Arc<RingKey>> = vec![&self.signer];
        keys.extend(
            self.entries
                .iter()
                .map(|e| &e.key)
                .filter(|k| !Arc::ptr_eq(k, &self.signer)),
        );
        let mut algs: Vec<&'static str> = Vec::new();
        let mut jwks = Vec::with_capacity(keys.len());
        for key in keys {
            if !algs.contains(&key.minter.alg()) {
                algs.push(key.minter.alg());
            }
            if let Some(jwk) = key.minter.jwks().get("keys").and_then(Value::as_array) {
                jwks.extend(jwk.iter().cloned());
            }
        }
        self.published = Arc::new(Published {
            jwks: Bytes::from(json!({ "keys": jwks }).to_string()),
            algs,
        });
    }

    fn find(&self, kid: &str) -> Option<&Arc<RingKey>> {
        self.entries
            .iter()
            .map(|e| &e.key)
            .find(|k| k.minter.kid() == kid)
    }
}

/// The keys of a `[signing]` section, parsed: what [`JwtKeys::commit`] takes.
pub struct PreparedJwtKeys {
    /// Every listed key, in configuration order.
    keys: Vec<JwtMinter>,
    /// Index of the active key in `keys`.
    active: usize,
    publish_before_ms: i64,
}

impl fmt::Debug for PreparedJwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedJwtKeys")
            .field("keys", &self.keys.len())
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// The JWT signing keys, shared for the process lifetime.
pub struct JwtKeys {
    issuer: String,
    clock: SharedClock,
    ring: RwLock<Ring>,
    /// Before this unix millisecond no read needs to move the ring (see [`Ring::advance`]).
    next_change_ms: AtomicI64,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.read();
        f.debug_struct("JwtKeys")
            .field("issuer", &self.issuer)
            .field("signer", &ring.signer.minter.kid())
            .field("keys", &ring.entries.len())
            .finish_non_exhaustive()
    }
}

/// The key one operation signs with. While it is held the key stays published.
#[derive(Clone)]
pub struct JwtSigner {
    key: Arc<RingKey>,
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigner")
            .field("kid", &self.key.minter.kid())
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// Returns the `kid` it signs with.
    pub fn kid(&self) -> &str {
        self.key.minter.kid()
    }

    /// Returns the JWS `alg` it signs with.
    pub fn alg(&self) -> &'static str {
        self.key.minter.alg()
    }

    /// Mints a JWT access token ([`JwtMinter::mint`]) and keeps the key published until it
    /// expires. Fails only when the random generator or the signer fails.
    pub fn mint(&self, params: MintJwtParams<'_>) -> Result<MintedJwt, MintError> {
        let minted = self.key.minter.mint(params)?;
        self.key.note_signed(minted.expires_at);
        Ok(minted)
    }

    /// Signs `claims` with header `typ` ([`JwtMinter::sign_claims`]) and keeps the key
    /// published until `valid_until` (unix seconds: the document's `exp`, or how long a
    /// recipient may take to verify one that has none). Fails when the signer fails.
    pub fn sign_claims(
        &self,
        typ: &str,
        claims: &impl Serialize,
        valid_until: i64,
    ) -> Result<String, MintError> {
        let signed = self.key.minter.sign_claims(typ, claims)?;
        self.key.note_signed(valid_until);
        Ok(signed)
    }
}

impl JwtKeys {
    /// Returns the keys of `signing` at process start, tokens minted as `issuer`: every key is
    /// published, the active one signs at once, and each is assumed to have signed tokens valid
    /// until now + `MAX_GRANT_TTL`. Fails naming the key when one does not parse or is listed
    /// twice.
    pub fn new(
        issuer: &str,
        signing: &SigningConfig,
        clock: SharedClock,
    ) -> Result<JwtKeys, SigningError> {
        let prepared = prepare(issuer, signing)?;
        let now_ms = clock.unix_millis();
        let until = now_ms.div_euclid(1000).saturating_add(max_grant_ttl_secs());
        let keys: Vec<Arc<RingKey>> = prepared
            .keys
            .into_iter()
            .map(|minter| RingKey::new(minter, now_ms, until))
            .collect();
        let active = keys
            .get(prepared.active)
            .cloned()
            .ok_or_else(|| no_active_key(signing))?;
        let entries = keys
            .into_iter()
            .map(|key| Entry { key, listed: true })
            .collect();
        Ok(Self::with_ring(
            issuer,
            clock,
            entries,
            active,
            prepared.publish_before_ms,
        ))
    }

    /// Returns a ring of the one key of `minter`, signing at once (for tools and tests).
    pub fn single(minter: JwtMinter, clock: SharedClock) -> JwtKeys {
        let now_ms = clock.unix_millis();
        let issuer = minter.issuer().to_owned();
        let key = RingKey::new(minter, now_ms, i64::MIN);
        let entries = vec![Entry {
            key: Arc::clone(&key),
            listed: true,
        }];
        Self::with_ring(&issuer, clock, entries, key, 0)
    }

    fn with_ring(
        issuer: &str,
        clock: SharedClock,
        entries: Vec<Entry>,
        active: Arc<RingKey>,
        publish_before_ms: i64,
    ) -> JwtKeys {
        let mut ring = Ring {
            entries,
            signer: Arc::clone(&active),
            active,
            publish_before_ms,
            published: Arc::new(Published {
                jwks: Bytes::new(),
                algs: Vec::new(),
            }),
        };
        ring.publish();
        let next = ring.next_change_ms(clock.unix_millis());
        JwtKeys {
            issuer: issuer.to_owned(),
            clock,
            ring: RwLock::new(ring),
            next_change_ms: AtomicI64::new(next),
        }
    }

    /// Parses the keys of `signing` without changing anything. Fails naming the key when one
    /// does not parse or two are the same key.
    pub fn prepare(&self, signing: &SigningConfig) -> Result<PreparedJwtKeys, SigningError> {
        prepare(&self.issuer, signing)
    }

    /// Takes the keys of `prepared` at `now_ms`: keys not in the ring are published from now,
    /// the active key signs once published for `publish_before` (at once if it already was),
    /// keys no longer listed stay until what they signed has expired. Cannot fail.
    pub fn commit(&self, prepared: PreparedJwtKeys, now_ms: i64) {
        let mut ring = self.write();
        // Up to now first: a key that became ready since the last read has taken over.
        ring.advance(now_ms);
        let mut entries: Vec<Entry> = Vec::with_capacity(prepared.keys.len());
        let mut active = None;
        for (i, minter) in prepared.keys.into_iter().enumerate() {
            let key = match ring.find(minter.kid()) {
                Some(known) => Arc::clone(known),
                None => {
                    tracing::info!(kid = minter.kid(), "JWT signing key published");
                    RingKey::new(minter, now_ms, i64::MIN)
                }
            };
            if i == prepared.active {
                active = Some(Arc::clone(&key));
            }
            entries.push(Entry { key, listed: true });
        }
        let unlisted: Vec<Entry> = std::mem::take(&mut ring.entries)
            .into_iter()
            .filter(|old| !entries.iter().any(|e| Arc::ptr_eq(&e.key, &old.key)))
            .map(|old| Entry {
                key: old.key,
                listed: false,
            })
            .collect();
        entries.extend(unlisted);
        ring.entries = entries;
        if let Some(active) = active {
            ring.active = active;
        }
        ring.publish_before_ms = prepared.publish_before_ms;
        ring.advance(now_ms);
        ring.publish();
        self.next_change_ms
            .store(ring.next_change_ms(now_ms), Ordering::Release);
    }

    /// Parses and takes the keys of `signing` at `now_ms` (see [`JwtKeys::commit`]). Fails, with
    /// nothing changed, naming the key when one does not parse or is listed twice.
    pub fn reload(&self, signing: &SigningConfig, now_ms: i64) -> Result<(), SigningError> {
        let prepared = self.prepare(signing)?;
        self.commit(prepared, now_ms);
        Ok(())
    }

    /// Returns the key to sign with now. Hold it for one operation only.
    pub fn signer(&self) -> JwtSigner {
        self.refresh();
        JwtSigner {
            key: Arc::clone(&self.read().signer),
        }
    }

    /// Returns what the JWKS endpoint and discovery serve now.
    pub fn published(&self) -> Arc<Published> {
        self.refresh();
        Arc::clone(&self.read().published)
    }

    /// Verifies an access token signed by a published key ([`JwtMinter::verify`]): header,
    /// signature, `exp` after `now`. Returns its claims, or `None` for anything else.
    pub fn verify(&self, token: &str, now: i64) -> Option<Map<String, Value>> {
        self.refresh();
        let ring = self.read();
        ring.entries
            .iter()
            .find_map(|e| e.key.minter.verify(token, now))
    }

    /// Moves the ring to the clock's now when something may have changed since it last moved.
    fn refresh(&self) {
        let now_ms = self.clock.unix_millis();
        if now_ms < self.next_change_ms.load(Ordering::Acquire) {
            return;
        }
        let mut ring = self.write();
        if ring.advance(now_ms) {
            ring.publish();
        }
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

/// Parses every key of `signing` for tokens minted as `issuer`. Fails naming the key when one
/// does not parse or two are the same key.
fn prepare(issuer: &str, signing: &SigningConfig) -> Result<PreparedJwtKeys, SigningError> {
    let mut keys: Vec<JwtMinter> = Vec::with_capacity(signing.jwt_keys.len());
    for configured in &signing.jwt_keys {
        let minter =
            JwtMinter::new(issuer, &configured.key).map_err(|error| SigningError::JwtKey {
                key: configured.source.clone(),
                error,
            })?;
        let same = keys
            .iter()
            .zip(&signing.jwt_keys)
            .find(|(k, _)| k.kid() == minter.kid());
        if let Some((_, other)) = same {
            return Err(SigningError::DuplicateJwtKey {
                key: configured.source.clone(),
                other: other.source.clone(),
                kid: minter.kid().to_owned(),
            });
        }
        keys.push(minter);
    }
    let active = signing
        .jwt_keys
        .iter()
        .position(|k| k.active)
        .ok_or_else(|| no_active_key(signing))?;
    Ok(PreparedJwtKeys {
        keys,
        active,
        publish_before_ms: i64::try_from(signing.publish_before.as_millis()).unwrap_or(i64::MAX),
    })
}

/// The error for a `[signing]` without an active key (validation refuses it first).
fn no_active_key(signing: &SigningConfig) -> SigningError {
    SigningError::JwtKey {
        key: signing
            .jwt_keys
            .first()
            .map_or_else(|| "signing.jwt_keys".to_owned(), |k| k.source.clone()),
        error: MintError::Key("no key is marked `active = true`".into()),
    }
}
