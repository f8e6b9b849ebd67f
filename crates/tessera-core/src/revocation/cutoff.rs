//! Issue times and revocation cut-offs, in milliseconds, kept in an order that makes a revoke
//! mean what an operator expects (DESIGN.md "Credential ids and revocation cut-offs"):
//! - a rule's cut-off is never earlier than the newest issue time recorded, so a credential
//!   issued before the revoke is covered even if the clock stepped back in between;
//! - a credential issued after a rule was made is issued after its cut-off, so a workload that
//!   re-mints right after "your token was revoked" gets a live token, also when the clock
//!   stepped back.

use std::sync::atomic::{AtomicI64, Ordering};

/// The newest issue time and the newest cut-off this broker knows of (its own, other
/// replicas' through the ledger, and what the ledger held at start).
#[derive(Debug)]
pub struct CutOffs {
    newest_issue: AtomicI64,
    newest_cutoff: AtomicI64,
}

impl Default for CutOffs {
    fn default() -> Self {
        CutOffs {
            newest_issue: AtomicI64::new(i64::MIN),
            newest_cutoff: AtomicI64::new(i64::MIN),
        }
    }
}

impl CutOffs {
    /// Returns the issue time of a credential minted now (`now_ms`): now, or just after the
    /// newest cut-off when the clock is behind it. Notes it as the newest issue.
    pub fn issue_ms(&self, now_ms: i64) -> i64 {
        let after_cutoff = self.newest_cutoff.load(Ordering::SeqCst).saturating_add(1);
        let issued = now_ms.max(after_cutoff);
        self.newest_issue.fetch_max(issued, Ordering::SeqCst);
        issued
    }

    /// Returns the cut-off of a rule made now (`now_ms`): now, or the newest issue time when
    /// the clock is behind it. Notes it as the newest cut-off.
    pub fn cutoff_ms(&self, now_ms: i64) -> i64 {
        let cutoff = now_ms.max(self.newest_issue.load(Ordering::SeqCst));
        self.newest_cutoff.fetch_max(cutoff, Ordering::SeqCst);
        cutoff
    }

    /// Notes a credential issued at `issued_ms` (here, by another replica, or found at start).
    pub fn note_issue(&self, issued_ms: i64) {
        self.newest_issue.fetch_max(issued_ms, Ordering::SeqCst);
    }

    /// Notes a rule with cut-off `cutoff_ms` (made here, by another replica, or found at start).
    pub fn note_cutoff(&self, cutoff_ms: i64) {
        self.newest_cutoff.fetch_max(cutoff_ms, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_off_is_never_before_the_newest_issue_even_when_the_clock_steps_back() {
        let cut = CutOffs::default();
        assert_eq!(cut.issue_ms(5_000), 5_000);
        assert_eq!(
            cut.cutoff_ms(4_000),
            5_000,
            "the clock stepped back a second"
        );
        assert_eq!(cut.cutoff_ms(6_000), 6_000);
    }

    #[test]
    fn an_issue_after_a_cut_off_is_later_than_it_even_in_the_same_millisecond() {
        let cut = CutOffs::default();
        let rule = cut.cutoff_ms(7_000);
        assert_eq!(cut.issue_ms(7_000), rule + 1);
        assert_eq!(cut.issue_ms(3_000), rule + 1, "the clock stepped back");
        assert_eq!(cut.issue_ms(9_000), 9_000);
    }

    #[test]
    fn times_learned_from_elsewhere_count_as_much_as_our_own() {
        let cut = CutOffs::default();
        cut.note_issue(10_000);
        assert_eq!(cut.cutoff_ms(1_000), 10_000);
        cut.note_cutoff(20_000);
        assert_eq!(cut.issue_ms(1_000), 20_001);
    }
}
