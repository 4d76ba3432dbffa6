//! Revoking a connection, the pure part: what becomes of the StackSet the operator created,
//! how the sync Jobs and run ConfigMaps generated for the connection are found, how long a
//! revoke that cannot reach AWS waits before trying again, and what the `Revoked` Event
//! tells the customer.

use std::time::Duration;

use kube::runtime::events::EventType;

use super::names::{CONNECTION_LABEL, SCHEDULE_LABEL, label_value};

/// The first wait after a revoke could not reach AWS.
pub const REVOKE_RETRY_FIRST: Duration = Duration::from_secs(5);
/// The longest wait between two attempts.
pub const REVOKE_RETRY_MAX: Duration = Duration::from_secs(300);

/// How long to wait after the `failures`th consecutive failed attempt: 5 s, doubling up
/// to 5 min.
pub fn revoke_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    REVOKE_RETRY_FIRST
        .saturating_mul(1u32 << doublings)
        .min(REVOKE_RETRY_MAX)
}

/// What becomes of the StackSet when the connection goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StackSetFate {
    /// The operator never created a StackSet for this connection.
    NotManaged,
    /// Delete its stack instances, then the StackSet (the normal case).
    Delete { name: String },
    /// Kept: `stackSet.deleteOnRevoke` is false.
    KeptByPolicy { name: String },
    /// Kept: the operator created it, but `stackSet.enabled` was turned off since.
    KeptDisabled { name: String },
    /// Not touched: an administrator annotated the connection `orgconnect.dev/revoke=skip`.
    Skipped { name: String },
}

/// The inputs of the StackSet decision, from the connection being deleted.
#[derive(Clone, Copy, Debug)]
pub struct StackSetRevokeInput<'a> {
    pub enabled: bool,
    pub delete_on_revoke: bool,
    /// The StackSet the operator created (from status), if any.
    pub created: Option<&'a str>,
    /// `orgconnect.dev/revoke=skip` is set.
    pub skip: bool,
}

/// Decides what happens to the StackSet. Only a StackSet the operator created is ever
/// deleted; a deliberate choice to keep it wins over `skip`, so the Event names the
/// real reason.
pub fn stack_set_fate(input: StackSetRevokeInput<'_>) -> StackSetFate {
    let Some(name) = input.created.map(str::to_owned) else {
        return StackSetFate::NotManaged;
    };
    if !input.enabled {
        StackSetFate::KeptDisabled { name }
    } else if !input.delete_on_revoke {
        StackSetFate::KeptByPolicy { name }
    } else if input.skip {
        StackSetFate::Skipped { name }
    } else {
        StackSetFate::Delete { name }
    }
}

/// The label selectors that find the sync Jobs and run ConfigMaps generated for
/// `connection`: those labelled with it, and, from before that label existed, those of
/// the `schedules` that name it and carry no connection label.
pub fn sync_selectors(connection: &str, schedules: &[String]) -> Vec<String> {
    let mut selectors = vec![format!("{CONNECTION_LABEL}={}", label_value(connection))];
    let mut values: Vec<String> = schedules.iter().map(|s| label_value(s)).collect();
    values.sort();
    values.dedup();
    if !values.is_empty() {
        selectors.push(format!(
            "{SCHEDULE_LABEL} in ({}),!{CONNECTION_LABEL}",
            values.join(",")
        ));
    }
    selectors
}

/// What a finished revoke did, for its Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokeSummary {
    /// What became of the StackSet; `Delete` means it was deleted.
    pub stack_set: StackSetFate,
    pub members: usize,
    pub jobs: usize,
    pub config_maps: usize,
    /// The managing role, which the operator never created and the customer deletes.
    pub role_arn: String,
}

/// The `Revoked` Event: its type and note. It always says what remains on the AWS side.
pub fn revoke_event(summary: &RevokeSummary) -> (EventType, String) {
    let removed = format!(
        "removed {} MemberAccounts, {} sync Jobs and {} run ConfigMaps",
        summary.members, summary.jobs, summary.config_maps
    );
    let (type_, stack_set) = match &summary.stack_set {
        StackSetFate::Delete { name } => (
            EventType::Normal,
            format!("deleted the member-role StackSet {name} and its stack instances"),
        ),
        StackSetFate::NotManaged => (
            EventType::Normal,
            "the operator managed no StackSet for this connection".to_owned(),
        ),
        StackSetFate::KeptByPolicy { name } => (
            EventType::Normal,
            format!(
                "kept the member-role StackSet {name} because stackSet.deleteOnRevoke is false; \
                 its role stays in every account until you delete the StackSet"
            ),
        ),
        StackSetFate::KeptDisabled { name } => (
            EventType::Normal,
            format!(
                "kept the member-role StackSet {name} because stackSet.enabled is false; \
                 delete it in the managing account if it is no longer wanted"
            ),
        ),
        StackSetFate::Skipped { name } => (
            EventType::Warning,
            format!(
                "did not delete the member-role StackSet {name}: the revoke was skipped on \
                 purpose (orgconnect.dev/revoke=skip), so it may remain in AWS with its role in \
                 every account; delete its stack instances and then the StackSet in the managing \
                 account"
            ),
        ),
    };
    let note = format!(
        "Revoked: {removed}; {stack_set}. Remains on the AWS side: the managing-account role {} \
         — delete its CloudFormation stack in the managing account to end the operator's access",
        summary.role_arn
    );
    (type_, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_five_minutes() {
        let waits: Vec<u64> = (1..=9).map(|n| revoke_backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(revoke_backoff(0), REVOKE_RETRY_FIRST);
        assert_eq!(revoke_backoff(u32::MAX), REVOKE_RETRY_MAX);
    }

    fn input(created: Option<&str>) -> StackSetRevokeInput<'_> {
        StackSetRevokeInput {
            enabled: true,
            delete_on_revoke: true,
            created,
            skip: false,
        }
    }

    #[test]
    fn only_a_stack_set_the_operator_created_is_deleted() {
        assert_eq!(stack_set_fate(input(None)), StackSetFate::NotManaged);
        assert_eq!(
            stack_set_fate(StackSetRevokeInput {
                skip: true,
                ..input(None)
            }),
            StackSetFate::NotManaged
        );
        let name = || "orgconnect-a-b".to_owned();
        assert_eq!(
            stack_set_fate(input(Some("orgconnect-a-b"))),
            StackSetFate::Delete { name: name() }
        );
        assert_eq!(
            stack_set_fate(StackSetRevokeInput {
                skip: true,
                ..input(Some("orgconnect-a-b"))
            }),
            StackSetFate::Skipped { name: name() }
        );
        assert_eq!(
            stack_set_fate(StackSetRevokeInput {
                delete_on_revoke: false,
                skip: true,
                ..input(Some("orgconnect-a-b"))
            }),
            StackSetFate::KeptByPolicy { name: name() }
        );
        assert_eq!(
            stack_set_fate(StackSetRevokeInput {
                enabled: false,
                ..input(Some("orgconnect-a-b"))
            }),
            StackSetFate::KeptDisabled { name: name() }
        );
    }

    #[test]
    fn selectors_find_labelled_and_older_unlabelled_runs() {
        assert_eq!(
            sync_selectors("acme", &[]),
            ["orgconnect.dev/connection=acme"]
        );
        assert_eq!(
            sync_selectors(
                "acme",
                &["nightly".into(), "inventory".into(), "nightly".into()]
            ),
            [
                "orgconnect.dev/connection=acme",
                "orgconnect.dev/sync-schedule in (inventory,nightly),!orgconnect.dev/connection",
            ]
        );
        let long = "c".repeat(100);
        let selectors = sync_selectors(&long, &[]);
        assert_eq!(
            selectors[0],
            format!("orgconnect.dev/connection={}", label_value(&long))
        );
    }

    fn summary(stack_set: StackSetFate) -> RevokeSummary {
        RevokeSummary {
            stack_set,
            members: 4,
            jobs: 1,
            config_maps: 2,
            role_arn: "arn:aws:iam::111122223333:role/orgconnect".into(),
        }
    }

    const REMAINS: &str = "Remains on the AWS side: the managing-account role \
        arn:aws:iam::111122223333:role/orgconnect — delete its CloudFormation stack";

    #[test]
    fn the_event_says_what_happened_and_what_remains() {
        let (type_, note) = revoke_event(&summary(StackSetFate::Delete { name: "ss".into() }));
        assert_eq!(type_, EventType::Normal);
        assert!(note.starts_with(
            "Revoked: removed 4 MemberAccounts, 1 sync Jobs and 2 run ConfigMaps; deleted the \
             member-role StackSet ss and its stack instances."
        ));
        assert!(note.contains(REMAINS), "{note}");

        let (type_, note) = revoke_event(&summary(StackSetFate::Skipped { name: "ss".into() }));
        assert_eq!(type_, EventType::Warning);
        assert!(note.contains("did not delete the member-role StackSet ss"));
        assert!(note.contains("orgconnect.dev/revoke=skip"));
        assert!(note.contains("may remain in AWS"));
        assert!(!note.contains("deleted the member-role"));
        assert!(note.contains(REMAINS));

        let (type_, note) =
            revoke_event(&summary(StackSetFate::KeptByPolicy { name: "ss".into() }));
        assert_eq!(type_, EventType::Normal);
        assert!(
            note.contains(
                "kept the member-role StackSet ss because stackSet.deleteOnRevoke is false"
            )
        );
        assert!(note.contains(REMAINS));

        let (_, note) = revoke_event(&summary(StackSetFate::KeptDisabled { name: "ss".into() }));
        assert!(note.contains("because stackSet.enabled is false"));
        assert!(note.contains(REMAINS));

        let (type_, note) = revoke_event(&summary(StackSetFate::NotManaged));
        assert_eq!(type_, EventType::Normal);
        assert!(note.contains("the operator managed no StackSet for this connection"));
        assert!(!note.contains("deleted the member-role"));
        assert!(note.contains(REMAINS));
        assert!(note.len() < 1024);
    }
}
