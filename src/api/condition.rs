//! The one condition type shared by every orgconnect kind, following the Kubernetes API
//! conventions (`type`, `status`, `reason`, `message`, `lastTransitionTime`,
//! `observedGeneration`), and the helper that merges a new observation into a list.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether the condition holds: `True`, `False`, or `Unknown` when the operator could not
/// tell (for example because AWS throttled the request).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    /// `True` when `holds`, else `False`.
    pub fn from_bool(holds: bool) -> Self {
        if holds { Self::True } else { Self::False }
    }
}

/// The aspects of an orgconnect object that a condition can describe.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ConditionType {
    /// AwsOrgConnection: the managing-account role was assumed with the ExternalId.
    Authenticated,
    /// AwsOrgConnection: the organization, its OUs and accounts were listed completely.
    Discovered,
    /// AwsOrgConnection: every selected member account is Connected.
    MembersConnected,
    /// AwsOrgConnection: the operator-managed StackSet is deployed (only when managed).
    StackSetReady,
    /// MemberAccount: the operator reached the account through its member role.
    Connected,
    /// MemberAccount, with an operator-managed StackSet: the account's stack instance is
    /// current and its member role has not drifted from the StackSet's template.
    MemberRoleCurrent,
    /// SyncSchedule: the schedule is valid and the operator is running it.
    Scheduled,
    /// Every kind: the object is fully working; the summary GitOps tools read.
    Ready,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authenticated => "Authenticated",
            Self::Discovered => "Discovered",
            Self::MembersConnected => "MembersConnected",
            Self::StackSetReady => "StackSetReady",
            Self::Connected => "Connected",
            Self::MemberRoleCurrent => "MemberRoleCurrent",
            Self::Scheduled => "Scheduled",
            Self::Ready => "Ready",
        }
    }
}

impl std::fmt::Display for ConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One observation about an object, as the Kubernetes API conventions describe it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Which aspect of the object this condition describes.
    #[serde(rename = "type")]
    pub type_: ConditionType,
    /// Whether the condition holds: True, False or Unknown.
    pub status: ConditionStatus,
    /// A machine-readable, CamelCase reason for the last transition, such as
    /// `AssumeRoleDenied`.
    #[schemars(
        length(min = 1, max = 1024),
        regex(pattern = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    )]
    pub reason: String,
    /// A human-readable explanation, with what to do when the condition is not True.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub message: String,
    /// When the status last changed; kept unchanged while only reason or message change.
    pub last_transition_time: Time,
    /// The `metadata.generation` the operator had observed when it set this condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition observed at `now`.
    pub fn new(
        type_: ConditionType,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
        observed_generation: Option<i64>,
        now: Timestamp,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Time(now),
            observed_generation,
        }
    }

    /// True when both say the same thing, whatever their transition times.
    fn same_observation(&self, other: &Self) -> bool {
        self.type_ == other.type_
            && self.status == other.status
            && self.reason == other.reason
            && self.message == other.message
            && self.observed_generation == other.observed_generation
    }
}

/// Merges `new` into `conditions`, replacing the condition of the same type or appending
/// it. `lastTransitionTime` of an existing condition is kept unless its status changed, so
/// it always tells when the status last flipped. Returns whether anything changed, which
/// lets a reconciler skip a status write that would change nothing.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        None => {
            conditions.push(new);
            true
        }
        Some(existing) if existing.same_observation(&new) => false,
        Some(existing) => {
            let last_transition_time = if existing.status == new.status {
                existing.last_transition_time.clone()
            } else {
                new.last_transition_time.clone()
            };
            *existing = Condition {
                last_transition_time,
                ..new
            };
            true
        }
    }
}

/// The condition of type `type_`, if present.
pub fn find_condition(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("valid timestamp")
    }

    fn authenticated(status: ConditionStatus, reason: &str, t: i64) -> Condition {
        Condition::new(
            ConditionType::Authenticated,
            status,
            reason,
            format!("{reason} message"),
            Some(1),
            at(t),
        )
    }

    #[test]
    fn appends_a_new_type() {
        let mut conditions = vec![];
        assert!(set_condition(
            &mut conditions,
            authenticated(ConditionStatus::True, "Assumed", 0)
        ));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Time(at(0)));
    }

    #[test]
    fn same_observation_changes_nothing() {
        let mut conditions = vec![authenticated(ConditionStatus::True, "Assumed", 0)];
        let changed = set_condition(
            &mut conditions,
            authenticated(ConditionStatus::True, "Assumed", 60),
        );
        assert!(!changed);
        assert_eq!(conditions[0].last_transition_time, Time(at(0)));
    }

    #[test]
    fn keeps_transition_time_when_only_reason_changes() {
        let mut conditions = vec![authenticated(ConditionStatus::False, "AssumeRoleDenied", 0)];
        let changed = set_condition(
            &mut conditions,
            authenticated(ConditionStatus::False, "SecretMissing", 60),
        );
        assert!(changed);
        assert_eq!(conditions[0].reason, "SecretMissing");
        assert_eq!(conditions[0].message, "SecretMissing message");
        assert_eq!(conditions[0].last_transition_time, Time(at(0)));
    }

    #[test]
    fn moves_transition_time_when_status_changes() {
        let mut conditions = vec![authenticated(ConditionStatus::False, "AssumeRoleDenied", 0)];
        assert!(set_condition(
            &mut conditions,
            authenticated(ConditionStatus::True, "Assumed", 60)
        ));
        assert_eq!(conditions[0].status, ConditionStatus::True);
        assert_eq!(conditions[0].last_transition_time, Time(at(60)));
    }

    #[test]
    fn new_generation_is_a_change_but_not_a_transition() {
        let mut conditions = vec![authenticated(ConditionStatus::True, "Assumed", 0)];
        let mut newer = authenticated(ConditionStatus::True, "Assumed", 60);
        newer.observed_generation = Some(2);
        assert!(set_condition(&mut conditions, newer));
        assert_eq!(conditions[0].observed_generation, Some(2));
        assert_eq!(conditions[0].last_transition_time, Time(at(0)));
    }

    #[test]
    fn leaves_other_types_alone() {
        let discovered = Condition::new(
            ConditionType::Discovered,
            ConditionStatus::Unknown,
            "Pending",
            "",
            None,
            at(0),
        );
        let mut conditions = vec![
            discovered.clone(),
            authenticated(ConditionStatus::True, "Assumed", 0),
        ];
        set_condition(
            &mut conditions,
            authenticated(ConditionStatus::False, "AssumeRoleDenied", 5),
        );
        assert_eq!(conditions[0], discovered);
        assert_eq!(conditions.len(), 2);
        assert_eq!(
            find_condition(&conditions, ConditionType::Authenticated).map(|c| c.status),
            Some(ConditionStatus::False)
        );
    }

    #[test]
    fn serializes_with_kubernetes_field_names() {
        let value = serde_json::to_value(authenticated(ConditionStatus::True, "Assumed", 0))
            .expect("serializable");
        assert_eq!(value["type"], "Authenticated");
        assert_eq!(value["status"], "True");
        assert_eq!(value["observedGeneration"], 1);
        assert!(value["lastTransitionTime"].is_string());
    }
}
