//! `MemberAccount`: one account of a connected organization, written by the operator.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::rules;

/// The account as AWS Organizations reports it, plus the fields a user may set.
#[allow(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats keys such as type_ by design"
)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "orgconnect.dev",
    version = "v1alpha1",
    kind = "MemberAccount",
    doc = "One member account of a connected organization, created by the operator for each account discovery finds. Its spec mirrors what AWS Organizations reports; a user may set `paused` or `roleName`, and the operator never overwrites those.",
    namespaced,
    status = "MemberAccountStatus",
    shortname = "ma",
    category = "orgconnect",
    printcolumn(name = "Account", type_ = "string", json_path = ".spec.accountId"),
    printcolumn(name = "Account Name", type_ = "string", json_path = ".spec.name"),
    printcolumn(
        name = "OU",
        type_ = "string",
        json_path = ".spec.organizationalUnit.path"
    ),
    printcolumn(name = "AWS State", type_ = "string", json_path = ".spec.awsStatus"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Connected\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.accountId",
    selectable = ".spec.connection"
)]
#[serde(rename_all = "camelCase")]
pub struct MemberAccountSpec {
    /// Name of the AwsOrgConnection (same namespace) this account was discovered through.
    #[x_kube(validation = rules::immutable())]
    #[schemars(length(min = 1, max = 253))]
    pub connection: String,

    /// The 12-digit AWS account id.
    #[x_kube(validation = rules::immutable())]
    #[schemars(regex(pattern = rules::ACCOUNT_ID_PATTERN))]
    pub account_id: String,

    /// The account's name in AWS Organizations.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub name: String,

    /// The account's root email address.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub email: String,

    /// The organizational unit the account sits in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizational_unit: Option<OrganizationalUnitRef>,

    /// How the account joined the organization: `CREATED` or `INVITED`. Invited accounts
    /// have no `OrganizationAccountAccessRole` unless someone created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined_method: Option<JoinedMethod>,

    /// The account's state in AWS Organizations: its `State`, or the retired `Status`
    /// where AWS reports no `State`. Only `ACTIVE` accounts are probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_status: Option<AwsAccountStatus>,

    /// True for the organization's management account, which no StackSet reaches and which
    /// has no `OrganizationAccountAccessRole`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_account: Option<bool>,

    /// Set to true to stop probing this account and leave it out of sync Jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,

    /// Role to assume in this account instead of the connection's
    /// `memberAccess.roleName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = rules::ROLE_NAME_PATTERN))]
    pub role_name: Option<String>,
}

/// Where an account sits in the organization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationalUnitRef {
    /// Id of the parent: an OU (`ou-…`) or the root (`r-…`).
    #[schemars(regex(pattern = rules::PARENT_ID_PATTERN))]
    pub id: String,
    /// Names from the root down, e.g. `Root/Prod/Payments`. A `/` or `\` inside an OU's
    /// name is escaped with `\` (`Root/Prod\/EU` is the OU `Prod/EU` under the root), so
    /// a path names one OU.
    #[schemars(length(max = 4096))]
    pub path: String,
    /// The OUs from the root down to the parent, each with its id and name; empty when the
    /// account sits in the root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub lineage: Vec<UnitLevel>,
}

/// One OU on the way from the root to an account.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct UnitLevel {
    /// The OU's id (`ou-…`).
    #[schemars(regex(pattern = rules::PARENT_ID_PATTERN))]
    pub id: String,
    /// The OU's name, as AWS Organizations has it.
    #[schemars(length(max = 128))]
    pub name: String,
}

/// Set this annotation to `now` to probe the account at once; the operator removes it
/// after the probe.
pub const PROBE_ANNOTATION: &str = "orgconnect.dev/probe";

/// How an account joined its organization (AWS's `JoinedMethod`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JoinedMethod {
    Created,
    Invited,
}

/// An account's state in AWS Organizations (`Account.State`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AwsAccountStatus {
    /// Being activated after it was created or joined; not usable yet.
    PendingActivation,
    /// Usable: the only state in which the account is probed.
    Active,
    /// Suspended by AWS or by the organization.
    Suspended,
    /// Closing: a closed account stays in this state until AWS has processed it.
    PendingClosure,
    /// Closed; AWS keeps it for 90 days before it is removed for good.
    Closed,
}

impl AwsAccountStatus {
    /// AWS's spelling, e.g. `PENDING_CLOSURE`.
    pub fn as_aws_str(self) -> &'static str {
        match self {
            Self::PendingActivation => "PENDING_ACTIVATION",
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::PendingClosure => "PENDING_CLOSURE",
            Self::Closed => "CLOSED",
        }
    }

    /// Reads AWS's `State` (or `Status`) value; `None` for a value this version does not
    /// know.
    pub fn from_aws_str(value: &str) -> Option<Self> {
        [
            Self::PendingActivation,
            Self::Active,
            Self::Suspended,
            Self::PendingClosure,
            Self::Closed,
        ]
        .into_iter()
        .find(|state| state.as_aws_str() == value)
    }
}

/// Whether the operator can reach the account.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MemberPhase {
    /// Not probed yet.
    Pending,
    /// The member role was assumed and the account confirmed.
    Connected,
    /// The member role could not be assumed; see the `Connected` condition and
    /// `remediation`.
    Blocked,
    /// Suspended or closing in AWS; not probed.
    Suspended,
    /// Closed in AWS; not probed.
    Closed,
    /// Not yet activated in AWS; not probed until it is.
    PendingActivation,
    /// Paused by a user; not probed.
    Paused,
}

impl MemberPhase {
    /// Every phase, in the order counts and metrics list them.
    pub const ALL: [Self; 7] = [
        Self::Connected,
        Self::Blocked,
        Self::Suspended,
        Self::Closed,
        Self::PendingActivation,
        Self::Pending,
        Self::Paused,
    ];

    /// The phase as it is written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Connected => "Connected",
            Self::Blocked => "Blocked",
            Self::Suspended => "Suspended",
            Self::Closed => "Closed",
            Self::PendingActivation => "PendingActivation",
            Self::Paused => "Paused",
        }
    }
}

/// What the operator observed about the account.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberAccountStatus {
    /// Pending, Connected, Blocked, Suspended, Closed, PendingActivation or Paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MemberPhase>,

    /// For a Blocked account, the concrete fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The account's AWS tags, every one of them, as discovery last read them (unless the
    /// connection's `accountTags.enabled` is false). Those whose key and value are valid
    /// label syntax are also labels `tags.orgconnect.dev/<key>: <value>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,

    /// `Connected`, with a reason such as `AssumeRoleDenied`,
    /// `RoleMissingForInvitedAccount`, `RegionDisabled`, `AccountSuspended`,
    /// `AccountClosed`, `AccountPendingActivation` or `Throttled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
