//! Pure decisions about an AwsOrgConnection's status: which ExternalId to present, the
//! account counts, and the summarising conditions.

use std::sync::Arc;
use std::time::Duration;

use crate::api::condition::{Condition, ConditionStatus, ConditionType, find_condition};
use crate::api::connection::{AccountCounts, AwsOrgConnectionStatus, ExternalIdSource};
use crate::api::member_account::{MemberAccount, MemberPhase};

/// Which ExternalId the connection presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExternalIdDecision {
    /// Use this id, from this source.
    Use(String, ExternalIdSource),
    /// Generate one and keep it in status before using it.
    Generate,
    /// The operator refuses user-chosen ids (`--require-generated-external-id`).
    Refused,
}

/// Decides the ExternalId. A generated id is kept for the life of the connection; a
/// user-chosen one is used as given unless the operator requires generated ids.
pub fn decide_external_id(
    spec: Option<&str>,
    status: Option<(&str, ExternalIdSource)>,
    require_generated: bool,
) -> ExternalIdDecision {
    match (spec.filter(|s| !s.is_empty()), status) {
        (Some(_), _) if require_generated => ExternalIdDecision::Refused,
        (Some(chosen), _) => ExternalIdDecision::Use(chosen.to_owned(), ExternalIdSource::Spec),
        (None, Some((generated, ExternalIdSource::Generated))) if !generated.is_empty() => {
            ExternalIdDecision::Use(generated.to_owned(), ExternalIdSource::Generated)
        }
        (None, _) => ExternalIdDecision::Generate,
    }
}

/// A new random ExternalId: 40 characters from a 62-letter alphabet (about 238 bits).
pub fn generate_external_id() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("oc-{random}")
}

/// Counts the connection's MemberAccounts by phase; an account without a phase yet is
/// Pending.
pub fn count_phases<'a>(
    members: impl IntoIterator<Item = &'a Arc<MemberAccount>>,
) -> AccountCounts {
    let mut counts = AccountCounts::default();
    for member in members {
        counts.total += 1;
        let phase = member.status.as_ref().and_then(|s| s.phase);
        match phase.unwrap_or(MemberPhase::Pending) {
            MemberPhase::Pending => counts.pending += 1,
            MemberPhase::Connected => counts.connected += 1,
            MemberPhase::Blocked => counts.blocked += 1,
            MemberPhase::Suspended => counts.suspended += 1,
            MemberPhase::Closed => counts.closed += 1,
            MemberPhase::PendingActivation => counts.pending_activation += 1,
            MemberPhase::Paused => counts.paused += 1,
        }
    }
    counts
}

/// A condition's status, reason and message, before it is stamped with a time.
pub type Verdict = (ConditionStatus, &'static str, String);

/// `MembersConnected` from the counts.
pub fn members_connected(counts: &AccountCounts, connection: &str) -> Verdict {
    if counts.blocked > 0 {
        return (
            ConditionStatus::False,
            "AccountsBlocked",
            format!(
                "{} of {} accounts are Blocked; `kubectl get ma -l orgconnect.dev/connection={connection}` \
                 shows each reason and its remediation",
                counts.blocked, counts.total
            ),
        );
    }
    if counts.total == 0 {
        return (
            ConditionStatus::Unknown,
            "NoAccounts",
            "no accounts are selected yet".to_owned(),
        );
    }
    if counts.pending > 0 {
        return (
            ConditionStatus::Unknown,
            "ProbesPending",
            format!(
                "{} of {} accounts have not been probed yet",
                counts.pending, counts.total
            ),
        );
    }
    (
        ConditionStatus::True,
        "AllReachable",
        format!(
            "{} accounts Connected; not probed: {} suspended, {} closed, {} pending activation, {} paused",
            counts.connected,
            counts.suspended,
            counts.closed,
            counts.pending_activation,
            counts.paused
        ),
    )
}

/// `Ready`: the connection works when the role was assumed and the organization
/// discovered. Blocked members are reported by `MembersConnected`, not here, so one
/// blocked account does not mark the whole connection unhealthy.
pub fn ready(conditions: &[Condition]) -> Verdict {
    for type_ in [ConditionType::Authenticated, ConditionType::Discovered] {
        match find_condition(conditions, type_) {
            Some(c) if c.status == ConditionStatus::True => {}
            Some(c) => {
                return (
                    c.status,
                    if c.status == ConditionStatus::False {
                        "NotConnected"
                    } else {
                        "InProgress"
                    },
                    format!("{type_} is {:?} ({}): {}", c.status, c.reason, c.message),
                );
            }
            None => {
                return (
                    ConditionStatus::Unknown,
                    "InProgress",
                    format!("{type_} has not been checked yet"),
                );
            }
        }
    }
    (
        ConditionStatus::True,
        "Connected",
        "the managing role is assumed and the organization is discovered".to_owned(),
    )
}

/// While member probes land, the account counts alone rewrite a connection's status at
/// most this often. With [`super::context::COUNTS_COALESCE`], the written counts trail the
/// MemberAccounts by at most [`COUNTS_LAG`]: a few writes a connection while thousands of
/// accounts are probed, and counts a person reading `kubectl get aoc` finds current.
pub const COUNTS_REFRESH: Duration = Duration::from_secs(2);

/// The longest the connection's counts trail a change of its MemberAccounts' phases.
pub const COUNTS_LAG: Duration =
    Duration::from_secs(COUNTS_REFRESH.as_secs() + super::context::COUNTS_COALESCE.as_secs());

/// How long to hold back writing `next` over `current`: `Some` only when something changed,
/// all that changed is what member probes move (the account counts and
/// `MembersConnected`), and the status was written less than [`COUNTS_REFRESH`] ago
/// (`since_last_write`). Anything else is written at once; nothing changed, nothing is
/// held back, so a reconcile that finds its own write comes back for nothing.
pub fn defer_count_update(
    current: &AwsOrgConnectionStatus,
    next: &AwsOrgConnectionStatus,
    since_last_write: Option<Duration>,
) -> Option<Duration> {
    if current == next {
        return None;
    }
    let wait = COUNTS_REFRESH.checked_sub(since_last_write?)?;
    let without_counts = |status: &AwsOrgConnectionStatus| {
        let mut status = status.clone();
        status.accounts = None;
        status
            .conditions
            .retain(|c| c.type_ != ConditionType::MembersConnected);
        status
    };
    (!wait.is_zero() && without_counts(current) == without_counts(next)).then_some(wait)
}

/// Conditions whose status or reason changed between `before` and `after`: the
/// transitions worth an Event.
pub fn transitions<'a>(before: &[Condition], after: &'a [Condition]) -> Vec<&'a Condition> {
    after
        .iter()
        .filter(|new| {
            find_condition(before, new.type_)
                .is_none_or(|old| old.status != new.status || old.reason != new.reason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_updates_wait_for_the_refresh_but_nothing_else_does() {
        let counts = |connected| AccountCounts {
            total: 10,
            connected,
            ..AccountCounts::default()
        };
        let condition = |type_, status, reason: &str| Condition {
            type_,
            status,
            reason: reason.to_owned(),
            message: String::new(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Timestamp::UNIX_EPOCH,
            ),
            observed_generation: None,
        };
        let current = AwsOrgConnectionStatus {
            accounts: Some(counts(3)),
            conditions: vec![
                condition(ConditionType::Ready, ConditionStatus::True, "Connected"),
                condition(
                    ConditionType::MembersConnected,
                    ConditionStatus::Unknown,
                    "Probing",
                ),
            ],
            ..AwsOrgConnectionStatus::default()
        };
        let mut moved = current.clone();
        moved.accounts = Some(counts(7));
        moved.conditions[1] = condition(
            ConditionType::MembersConnected,
            ConditionStatus::True,
            "AllConnected",
        );
        let soon = Some(Duration::from_millis(500));
        assert_eq!(
            defer_count_update(&current, &moved, soon),
            Some(Duration::from_millis(1500))
        );
        // Long enough since the last write, or never written: write now.
        assert_eq!(
            defer_count_update(&current, &moved, Some(COUNTS_REFRESH)),
            None
        );
        assert_eq!(defer_count_update(&current, &moved, None), None);
        // Nothing changed: nothing to hold back, and no reason to come back.
        assert_eq!(defer_count_update(&moved, &moved, soon), None);
        // Anything beyond the counts is written at once.
        let mut other = moved.clone();
        other.conditions[0] =
            condition(ConditionType::Ready, ConditionStatus::False, "NotConnected");
        assert_eq!(defer_count_update(&current, &other, soon), None);
        let mut generation = moved.clone();
        generation.observed_generation = Some(2);
        assert_eq!(defer_count_update(&current, &generation, soon), None);
    }
    use crate::api::member_account::MemberAccountStatus;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn generated_ids_are_kept_and_user_ids_follow_the_flag() {
        use ExternalIdDecision::*;
        use ExternalIdSource::*;
        assert_eq!(decide_external_id(None, None, false), Generate);
        assert_eq!(
            decide_external_id(None, Some(("oc-abc", Generated)), true),
            Use("oc-abc".into(), Generated)
        );
        assert_eq!(
            decide_external_id(Some("mine"), Some(("oc-abc", Generated)), false),
            Use("mine".into(), Spec)
        );
        assert_eq!(decide_external_id(Some("mine"), None, true), Refused);
        assert_eq!(decide_external_id(Some(""), None, true), Generate);
        assert_eq!(
            decide_external_id(None, Some(("mine", Spec)), false),
            Generate,
            "a user id removed from the spec is not reused as if generated"
        );
    }

    #[test]
    fn generated_ids_are_long_random_and_valid() {
        let a = generate_external_id();
        let b = generate_external_id();
        assert!(a.len() >= 32);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    fn member(phase: Option<MemberPhase>) -> Arc<MemberAccount> {
        let mut member = MemberAccount::new(
            "m",
            serde_json::from_value(
                serde_json::json!({"connection": "c", "accountId": "111111111111"}),
            )
            .expect("spec"),
        );
        member.status = phase.map(|phase| MemberAccountStatus {
            phase: Some(phase),
            ..MemberAccountStatus::default()
        });
        Arc::new(member)
    }

    #[test]
    fn counts_every_phase_and_reports_blocked_first() {
        let members = [
            member(None),
            member(Some(MemberPhase::Connected)),
            member(Some(MemberPhase::Blocked)),
            member(Some(MemberPhase::Suspended)),
            member(Some(MemberPhase::Paused)),
        ];
        let counts = count_phases(&members);
        assert_eq!(
            (
                counts.total,
                counts.pending,
                counts.connected,
                counts.blocked,
                counts.suspended,
                counts.paused
            ),
            (5, 1, 1, 1, 1, 1)
        );
        let (status, reason, message) = members_connected(&counts, "acme");
        assert_eq!(
            (status, reason),
            (ConditionStatus::False, "AccountsBlocked")
        );
        assert!(message.contains("1 of 5"));
        let all_good = count_phases(&[member(Some(MemberPhase::Connected))]);
        assert_eq!(
            members_connected(&all_good, "acme").0,
            ConditionStatus::True
        );
    }

    fn condition(type_: ConditionType, status: ConditionStatus, reason: &str) -> Condition {
        Condition::new(type_, status, reason, "msg", Some(1), Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn ready_needs_authentication_and_discovery() {
        use ConditionStatus::*;
        use ConditionType::*;
        assert_eq!(ready(&[]).0, Unknown);
        let denied = [condition(Authenticated, False, "AssumeRoleDenied")];
        assert_eq!(ready(&denied).0, False);
        assert!(ready(&denied).2.contains("AssumeRoleDenied"));
        let ok = [
            condition(Authenticated, True, "RoleAssumed"),
            condition(Discovered, True, "Discovered"),
        ];
        assert_eq!(ready(&ok).0, True);
    }

    #[test]
    fn transitions_are_status_or_reason_changes() {
        use ConditionStatus::*;
        use ConditionType::*;
        let before = [
            condition(Authenticated, True, "RoleAssumed"),
            condition(Discovered, True, "Discovered"),
        ];
        let after = [
            condition(Authenticated, True, "RoleAssumed"),
            condition(Discovered, True, "Stale"),
        ];
        let changed: Vec<_> = transitions(&before, &after)
            .iter()
            .map(|c| c.type_)
            .collect();
        assert_eq!(changed, [Discovered]);
        assert_eq!(transitions(&[], &after).len(), 2);
    }
}
