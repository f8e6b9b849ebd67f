//! One status list: the bits relying parties read, plus, per credential listed, what a rule
//! needs to decide whether it covers it — its profile id and issue time — in 12 bytes, so that
//! applying a rule is one pass over a compact column however many credentials it covers.
//! Rendering (compress, sign) is cached until the bits change or the second turns.

use std::sync::Mutex;

use bytes::Bytes;
use tessera_core::mint::MintError;
use tessera_core::status_list::{EncodedList, ListName, StatusListClaims, TYP};

use super::permute::INDEX_BITS;
use crate::signing::JwtSigner;

/// Entries a list holds: indices are below this.
pub(super) const CAPACITY: u32 = 1 << INDEX_BITS;

/// One listed credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    idx: u32,
    profile: u32,
    /// Issue time in ms after the list's window start.
    offset_ms: u32,
}

/// The mutable part of a list.
#[derive(Debug)]
struct State {
    entries: Vec<Entry>,
    /// One bit per index, least significant first (the draft's byte order).
    bits: Vec<u8>,
    /// The latest `exp` of any listed credential: the list is dropped after it.
    max_exp: i64,
    /// Changes whenever a bit does.
    revision: u64,
}

/// The last rendering of a list.
#[derive(Debug, Clone)]
struct Rendered {
    revision: u64,
    lst: EncodedList,
    iat: i64,
    jwt: Bytes,
}

/// What rendering a list needs besides the list.
#[derive(Debug, Clone, Copy)]
pub(super) struct RenderParams<'a> {
    /// The key that signs now.
    pub jwt: &'a JwtSigner,
    pub issuer: &'a str,
    pub now: i64,
    /// Seconds a relying party may cache the list (`ttl`).
    pub ttl: u64,
}

/// One list and its cached rendering.
#[derive(Debug)]
pub(super) struct List {
    name: ListName,
    uri: String,
    /// Opened by this process: it allocates here and adds entries at mint time.
    local: bool,
    base_ms: i64,
    state: Mutex<State>,
    rendered: Mutex<Option<Rendered>>,
}

impl List {
    /// Returns an empty list named `name`, published at `uri`.
    pub(super) fn new(name: ListName, uri: String, local: bool) -> Self {
        List {
            base_ms: name.window_start().saturating_mul(1000),
            name,
            uri,
            local,
            state: Mutex::new(State {
                entries: Vec::new(),
                bits: vec![0; (CAPACITY / 8) as usize],
                max_exp: i64::MIN,
                revision: 0,
            }),
            rendered: Mutex::new(None),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn name(&self) -> &ListName {
        &self.name
    }

    pub(super) fn uri(&self) -> &str {
        &self.uri
    }

    /// Returns true when this process opened the list.
    pub(super) fn is_local(&self) -> bool {
        self.local
    }

    /// Adds the credential at `idx` (below [`CAPACITY`]) of `profile`, issued at `issued_ms`
    /// and expiring at `expires_at`.
    pub(super) fn push(&self, idx: u32, profile: u32, issued_ms: i64, expires_at: i64) {
        let offset_ms = issued_ms
            .saturating_sub(self.base_ms)
            .clamp(0, i64::from(u32::MAX));
        let mut state = self.state();
        state.entries.push(Entry {
            idx,
            profile,
            offset_ms: u32::try_from(offset_ms).unwrap_or(u32::MAX),
        });
        state.max_exp = state.max_exp.max(expires_at);
    }

    /// Sets the bit of `idx` (1 = INVALID); returns true when it was 0.
    pub(super) fn set(&self, idx: u32) -> bool {
        let mut state = self.state();
        set_bit(&mut state, idx)
    }

    /// Sets the bit of every entry issued at or before `cut_offs[profile]` (unix ms); returns
    /// how many bits changed. One pass over the entries.
    pub(super) fn apply(&self, cut_offs: &[i64]) -> usize {
        let mut state = self.state();
        let State { entries, bits, .. } = &mut *state;
        let mut changed = 0;
        for e in entries.iter() {
            let cut_off = cut_offs
                .get(e.profile as usize)
                .copied()
                .unwrap_or(i64::MIN);
            if self.base_ms + i64::from(e.offset_ms) <= cut_off {
                let (byte, mask) = ((e.idx / 8) as usize, 1u8 << (e.idx % 8));
                if let Some(b) = bits.get_mut(byte)
                    && *b & mask == 0
                {
                    *b |= mask;
                    changed += 1;
                }
            }
        }
        if changed > 0 {
            state.revision += 1;
        }
        changed
    }

    /// Drops entries added twice (a credential seen both by the rebuild and live).
    pub(super) fn dedup(&self) {
        let mut state = self.state();
        state.entries.sort_unstable();
        state.entries.dedup();
    }

    /// Returns the latest `exp` of the listed credentials (`i64::MIN` when none).
    pub(super) fn max_exp(&self) -> i64 {
        self.state().max_exp
    }

    /// Returns how many credentials are listed.
    pub(super) fn len(&self) -> usize {
        self.state().entries.len()
    }

    /// Returns the Status List Token of this list as of `p.now`: `iat` now, `exp` two `ttl`s
    /// later. Compresses again only when bits changed and signs again only when those or the
    /// second did. Fails when signing fails.
    pub(super) fn render(&self, p: RenderParams<'_>) -> Result<Bytes, MintError> {
        let mut rendered = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        let revision = self.state().revision;
        if let Some(r) = rendered.as_ref()
            && r.revision == revision
            && r.iat == p.now
        {
            return Ok(r.jwt.clone());
        }
        let (revision, lst) = match rendered.take() {
            Some(r) if r.revision == revision => (r.revision, r.lst),
            _ => {
                let (revision, bits) = {
                    let state = self.state();
                    (state.revision, state.bits.clone())
                };
                (revision, EncodedList::compress(&bits))
            }
        };
        let ttl = i64::try_from(p.ttl).unwrap_or(i64::MAX);
        let exp = p.now.saturating_add(ttl.saturating_mul(2));
        let claims = StatusListClaims {
            iss: Some(p.issuer.to_owned()),
            sub: self.uri.clone(),
            iat: p.now,
            exp: Some(exp),
            ttl: Some(p.ttl),
            status_list: lst,
        };
        let jwt = Bytes::from(p.jwt.sign_claims(TYP, &claims, exp)?);
        *rendered = Some(Rendered {
            revision,
            lst: claims.status_list,
            iat: p.now,
            jwt: jwt.clone(),
        });
        Ok(jwt)
    }
}

/// Sets bit `idx` of `state`; returns true when it was 0.
fn set_bit(state: &mut State, idx: u32) -> bool {
    let (byte, mask) = ((idx / 8) as usize, 1u8 << (idx % 8));
    match state.bits.get_mut(byte) {
        Some(b) if *b & mask == 0 => {
            *b |= mask;
            state.revision += 1;
            true
        }
        _ => false,
    }
}
