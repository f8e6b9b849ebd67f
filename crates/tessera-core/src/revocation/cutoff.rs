//! The newest issue time, in milliseconds, that a rule's cut-off may not be earlier than: a
//! credential issued before a revoke is covered even if the clock stepped back in between (or,
//! on a shared ledger, another replica's clock is ahead of this one's).
//!
//! The other half — a credential issued after a rule is made is issued after its cut-off — is
//! per selector value, in [`super::RevocationIndex::issue_ms`]: only a credential a rule could
//! cover is issued after that rule's cut-off, so one rule with a cut-off in the future (a
//! replica whose clock ran ahead) moves the issue time of its own selector's credentials only,
//! never every credential's.

use std::sync::atomic::{AtomicI64, Ordering};

/// The newest issue time this broker knows of (its own, other replicas' through the ledger,
/// and what the ledger held at start).
#[derive(Debug)]
pub struct CutOffs {
    newest_issue: AtomicI64,
}

impl Default for CutOffs {
    fn default() -> Self {
        CutOffs {
            newest_issue: AtomicI64::new(i64::MIN),
        }
    }
}

impl CutOffs {
    /// Returns the cut-off of a rule made now (`now_ms`): now, or the newest issue time when
    /// the clock is behind it.
    pub fn cutoff_ms(&self, now_ms: i64) -> i64 {
        now_ms.max(self.newest_issue.load(Ordering::SeqCst))
    }

    /// Notes a credential issued at `issued_ms` (here, by another replica, or found at start).
    pub fn note_issue(&self, issued_ms: i64) {
        self.newest_issue.fetch_max(issued_ms, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_off_is_never_before_the_newest_issue_even_when_the_clock_steps_back() {
        let cut = CutOffs::default();
        assert_eq!(cut.cutoff_ms(4_000), 4_000, "nothing issued yet");
        cut.note_issue(5_000);
        assert_eq!(
            cut.cutoff_ms(4_000),
            5_000,
            "the clock stepped back a second"
        );
        assert_eq!(cut.cutoff_ms(6_000), 6_000);
        cut.note_issue(3_000);
        assert_eq!(
            cut.cutoff_ms(4_000),
            5_000,
            "an older issue changes nothing"
        );
    }
}
