//! Whether an account's member role is still what the operator's StackSet deployed, pure:
//! the state of the account's stack instance (current, outdated or inoperable, and drifted
//! or not at the last drift detection) becomes its MemberAccount's `MemberRoleCurrent`
//! condition, with the command that puts it right.

use std::collections::HashMap;

use crate::api::condition::ConditionStatus;
use crate::aws::stackset::InstanceState;

/// A condition's status, reason and message.
pub type Verdict = (ConditionStatus, &'static str, String);

/// How bad a stack instance's state is: the account's condition reports its worst region.
fn severity(state: &InstanceState) -> u8 {
    match (state.status.as_str(), state.drift_status.as_str()) {
        ("INOPERABLE", _) => 4,
        ("OUTDATED", _) => 3,
        (_, "DRIFTED") => 2,
        (_, "IN_SYNC") => 0,
        _ => 1,
    }
}

/// Each account's stack instance, the worst of its regions when it has several.
pub fn worst_by_account(states: &[InstanceState]) -> HashMap<String, InstanceState> {
    let mut worst: HashMap<String, InstanceState> = HashMap::new();
    for state in states {
        match worst.get(&state.account_id) {
            Some(known) if severity(known) >= severity(state) => {}
            _ => {
                worst.insert(state.account_id.clone(), state.clone());
            }
        }
    }
    worst
}

/// How many of the accounts' stack instances drifted, are outdated and are inoperable.
pub fn counts(states: &[InstanceState]) -> (i32, i32, i32) {
    let count = |keep: &dyn Fn(&InstanceState) -> bool| {
        i32::try_from(states.iter().filter(|s| keep(s)).count()).unwrap_or(i32::MAX)
    };
    (
        count(&|s| s.drift_status == "DRIFTED"),
        count(&|s| s.status == "OUTDATED"),
        count(&|s| s.status == "INOPERABLE"),
    )
}

/// Whether a drift detection is due: some instance was never checked, or the oldest check
/// is `every_secs` old (`now` in seconds since the epoch). No instance, nothing to check.
/// Only `CURRENT` instances count: an outdated or inoperable one may never get a drift
/// check, which would otherwise start detections back to back.
pub fn drift_check_due(states: &[InstanceState], now: i64, every_secs: i64) -> bool {
    let current = || states.iter().filter(|s| s.status == "CURRENT");
    if current().any(|s| s.last_drift_check.is_none()) {
        return true;
    }
    current()
        .filter_map(|s| s.last_drift_check)
        .min()
        .is_some_and(|oldest| now.saturating_sub(oldest) >= every_secs)
}

/// Where the account's stack instance is, for the fixing commands.
pub struct Instance<'a> {
    pub stack_set: &'a str,
    pub account_id: &'a str,
    /// The account's OU (or root), the StackSet's deployment target.
    pub organizational_unit: Option<&'a str>,
}

/// The `MemberRoleCurrent` condition for `state`.
pub fn condition(instance: &Instance<'_>, state: &InstanceState) -> Verdict {
    let Instance {
        stack_set,
        account_id,
        ..
    } = instance;
    let region = &state.region;
    let reason_of = |what: &str| {
        state
            .status_reason
            .as_deref()
            .map(|r| format!("{what}: {r}"))
            .unwrap_or_else(|| what.to_owned())
    };
    match (state.status.as_str(), state.drift_status.as_str()) {
        ("INOPERABLE", _) => (
            ConditionStatus::False,
            "InstanceInoperable",
            format!(
                "{}; CloudFormation can no longer manage the member role that StackSet \
                 {stack_set} deployed to account {account_id} in {region}. Fix: {}, then {}",
                reason_of("the stack instance is INOPERABLE"),
                command(
                    "delete-stack-instances",
                    instance,
                    region,
                    " --retain-stacks"
                ),
                command("create-stack-instances", instance, region, "")
            ),
        ),
        ("OUTDATED", _) => (
            ConditionStatus::False,
            "InstanceOutdated",
            format!(
                "{}; the member role in account {account_id} ({region}) may not match \
                 StackSet {stack_set}'s current template. Fix: {}",
                reason_of("the stack instance is OUTDATED"),
                command("update-stack-instances", instance, region, "")
            ),
        ),
        (_, "DRIFTED") => (
            ConditionStatus::False,
            "RoleDrifted",
            format!(
                "the member role that StackSet {stack_set} deployed to account {account_id} \
                 ({region}) was changed outside CloudFormation since it was deployed (drift \
                 detection found it DRIFTED); the operator may lose access, or have more \
                 than the template grants. Fix: undo the change in IAM, or deploy the role \
                 again: {}, then {}",
                command(
                    "delete-stack-instances",
                    instance,
                    region,
                    " --no-retain-stacks"
                ),
                command("create-stack-instances", instance, region, "")
            ),
        ),
        (_, "IN_SYNC") => (
            ConditionStatus::True,
            "InSync",
            format!(
                "the stack instance of StackSet {stack_set} in account {account_id} \
                 ({region}) is current and its member role matched the template at the last \
                 drift detection"
            ),
        ),
        (_, drift) => (
            ConditionStatus::Unknown,
            "DriftNotChecked",
            format!(
                "the stack instance of StackSet {stack_set} in account {account_id} \
                 ({region}) is current; its drift is {drift} until the operator's next drift \
                 detection"
            ),
        ),
    }
}

/// `aws cloudformation <verb>` for this account's stack instance alone.
fn command(verb: &str, instance: &Instance<'_>, region: &str, extra: &str) -> String {
    let target = instance
        .organizational_unit
        .map(|ou| {
            format!(
                "OrganizationalUnitIds={ou},Accounts={},AccountFilterType=INTERSECTION",
                instance.account_id
            )
        })
        .unwrap_or_else(|| format!("Accounts={}", instance.account_id));
    format!(
        "`aws cloudformation {verb} --stack-set-name {} --deployment-targets {target} \
         --regions {region}{extra}`",
        instance.stack_set
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(account: &str, region: &str, status: &str, drift: &str) -> InstanceState {
        InstanceState {
            account_id: account.into(),
            region: region.into(),
            status: status.into(),
            status_reason: None,
            drift_status: drift.into(),
            last_drift_check: None,
        }
    }

    #[test]
    fn each_state_is_a_reason_with_its_fix() {
        let instance = Instance {
            stack_set: "orgconnect-members",
            account_id: "222222222222",
            organizational_unit: Some("ou-ab12-prod0001"),
        };
        let cases = [
            ("CURRENT", "IN_SYNC", ConditionStatus::True, "InSync"),
            (
                "CURRENT",
                "NOT_CHECKED",
                ConditionStatus::Unknown,
                "DriftNotChecked",
            ),
            ("CURRENT", "DRIFTED", ConditionStatus::False, "RoleDrifted"),
            (
                "OUTDATED",
                "IN_SYNC",
                ConditionStatus::False,
                "InstanceOutdated",
            ),
            (
                "INOPERABLE",
                "DRIFTED",
                ConditionStatus::False,
                "InstanceInoperable",
            ),
        ];
        for (status, drift, want, reason) in cases {
            let (got, got_reason, message) = condition(
                &instance,
                &state("222222222222", "us-east-1", status, drift),
            );
            assert_eq!((got, got_reason), (want, reason), "{status} {drift}");
            assert!(message.contains("222222222222"), "{message}");
            if want == ConditionStatus::False {
                assert!(
                    message.contains(
                        "--deployment-targets OrganizationalUnitIds=ou-ab12-prod0001,\
                         Accounts=222222222222,AccountFilterType=INTERSECTION --regions us-east-1"
                    ),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn an_account_reports_its_worst_region_and_the_counts_add_up() {
        let states = [
            state("222222222222", "us-east-1", "CURRENT", "IN_SYNC"),
            state("222222222222", "eu-west-1", "CURRENT", "DRIFTED"),
            state("333333333333", "us-east-1", "OUTDATED", "DRIFTED"),
            state("444444444444", "us-east-1", "CURRENT", "NOT_CHECKED"),
        ];
        let worst = worst_by_account(&states);
        assert_eq!(worst["222222222222"].region, "eu-west-1");
        assert_eq!(worst["333333333333"].status, "OUTDATED");
        assert_eq!(counts(&states), (2, 1, 0));
    }

    #[test]
    fn drift_is_checked_when_never_checked_or_older_than_the_interval() {
        let mut states = vec![state("222222222222", "us-east-1", "CURRENT", "IN_SYNC")];
        assert!(drift_check_due(&states, 1_000, 1_800), "never checked");
        states[0].last_drift_check = Some(1_000);
        assert!(!drift_check_due(&states, 2_000, 1_800));
        assert!(drift_check_due(&states, 2_800, 1_800));
        states.push(state("333333333333", "us-east-1", "CURRENT", "NOT_CHECKED"));
        assert!(drift_check_due(&states, 2_000, 1_800), "a new instance");
        assert!(!drift_check_due(&[], 2_000, 1_800), "no instance");
        // An outdated instance that never gets a check does not keep detections going.
        states[1] = state("333333333333", "us-east-1", "OUTDATED", "NOT_CHECKED");
        assert!(!drift_check_due(&states, 2_000, 1_800));
    }
}
