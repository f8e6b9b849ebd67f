//! Domain types that every stage imports: credential kinds, evidence kinds, statuses,
//! selectors, the credential record, revocation rules and events. A leaf: nothing here imports
//! a stage of the flow.

mod event;
mod grant_selection;
pub mod id;
mod kinds;
mod record;

pub use self::event::{Event, EventKind, NewRule, RevocationRule, RuleScope};
pub use self::grant_selection::{GrantPart, GrantSelection, GrantSelectionError};
pub use self::kinds::{CredentialKind, EvidenceKind, Selector, Status, UnknownName};
pub use self::record::{CiEvidence, CredentialRecord, StatusListRef};

/// UUID `09c15247-e845-453b-9ded-52714c0be66d` as an integer: the arc of [`BINDING_OID`].
pub const BINDING_UUID: u128 = 12_966_834_110_432_767_641_313_908_341_871_470_189;
/// `2.25.12966834110432767641313908341871470189`: the extension holding
/// `SEQUENCE { destination UTF8String, purpose UTF8String }`.
pub const BINDING_OID: &str = "2.25.12966834110432767641313908341871470189";
