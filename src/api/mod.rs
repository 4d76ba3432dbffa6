//! The orgconnect API, group `orgconnect.dev`, version `v1alpha1`: one module a kind,
//! the shared condition type, and the validation rules the API server enforces.

pub mod condition;
pub mod connection;
pub mod member_account;
mod rules;
pub mod sync_schedule;

pub use condition::{Condition, ConditionStatus, ConditionType, find_condition, set_condition};
pub use connection::{AwsOrgConnection, AwsOrgConnectionSpec, AwsOrgConnectionStatus};
pub use member_account::{MemberAccount, MemberAccountSpec, MemberAccountStatus, MemberPhase};
pub use sync_schedule::{SyncSchedule, SyncScheduleSpec, SyncScheduleStatus};

/// The API group of every orgconnect kind.
pub const GROUP: &str = "orgconnect.dev";
