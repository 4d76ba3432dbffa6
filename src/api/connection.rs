//! `AwsOrgConnection`: one AWS Organization connected to the cluster.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::rules;

/// The desired connection to one AWS Organization.
#[allow(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats keys such as type_ by design"
)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "orgconnect.dev",
    version = "v1alpha1",
    kind = "AwsOrgConnection",
    doc = "Connects the cluster to one AWS Organization: the operator assumes `roleArn` in the organization's managing account with the connection's ExternalId, discovers every member account as a MemberAccount, and reports which accounts it can reach.",
    namespaced,
    status = "AwsOrgConnectionStatus",
    shortname = "aoc",
    category = "orgconnect",
    printcolumn(
        name = "Organization",
        type_ = "string",
        json_path = ".status.organization.id"
    ),
    printcolumn(
        name = "Accounts",
        type_ = "integer",
        json_path = ".status.accounts.total"
    ),
    printcolumn(
        name = "Connected",
        type_ = "integer",
        json_path = ".status.accounts.connected"
    ),
    printcolumn(
        name = "Blocked",
        type_ = "integer",
        json_path = ".status.accounts.blocked"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new(
    "!self.stackSet.enabled || self.memberAccess.roleName != 'OrganizationAccountAccessRole'"
).message(
    "with stackSet.enabled, memberAccess.roleName names the role the StackSet creates, and \
     OrganizationAccountAccessRole already exists in accounts created by the organization; \
     use another name, such as OrgconnectMemberRole"
))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.accountTags) || self.accountTags.enabled || !has(self.accountSelector) || \
     (!has(self.accountSelector.includeTags) && !has(self.accountSelector.excludeTags))"
).message(
    "accountSelector.includeTags and excludeTags need the accounts' tags; set \
     accountTags.enabled to true or remove them"
))]
#[serde(rename_all = "camelCase")]
pub struct AwsOrgConnectionSpec {
    /// ARN of the role in the organization's managing account that the operator assumes,
    /// e.g. `arn:aws:iam::111122223333:role/orgconnect`. `orgconnect template managing-role`
    /// prints a CloudFormation template that creates it. The partition of the ARN is the
    /// partition the operator talks to.
    #[x_kube(validation = rules::role_arn())]
    #[schemars(length(max = 2048))]
    pub role_arn: String,

    /// The `sts:ExternalId` presented when assuming `roleArn`. Leave empty (recommended) and
    /// the operator generates a random one, unique to this connection, shown in
    /// `status.externalId` and never changed; put that value in the role's trust policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224), regex(pattern = rules::EXTERNAL_ID_PATTERN))]
    pub external_id: Option<String>,

    /// The AWS region whose STS endpoint the operator uses and that sync Jobs get as their
    /// default region.
    #[serde(default = "default_region")]
    #[schemars(regex(pattern = rules::REGION_PATTERN))]
    pub region: String,

    /// Where the operator's own (base) AWS credentials come from before it assumes `roleArn`.
    #[serde(default)]
    pub credentials: Credentials,

    /// How the operator reaches each member account from the managing account.
    #[serde(default)]
    pub member_access: MemberAccess,

    /// Which accounts of the organization become MemberAccounts. Empty selects all.
    #[serde(default)]
    pub account_selector: AccountSelector,

    /// Whether discovery reads each account's AWS tags (ListTagsForResource, one call per
    /// account at each discovery) into its MemberAccount's `status.tags` and labels.
    #[serde(default)]
    pub account_tags: AccountTags,

    /// How often the organization is listed again to find new, moved and removed accounts.
    #[serde(default = "default_discovery_interval")]
    #[x_kube(validation = rules::duration_at_least("1m"))]
    #[schemars(length(max = 32))]
    pub discovery_interval: String,

    /// The permissions the generated CloudFormation templates grant: `DataOnly` (read usage
    /// and inventory data) or `DataAndScheduling` (also start and stop tagged instances).
    #[serde(default)]
    pub access_policy: AccessPolicy,

    /// Optional: let the operator create and track a service-managed CloudFormation
    /// StackSet that installs the member role in every account of the organization.
    #[serde(default)]
    pub stack_set: StackSetSpec,
}

impl AwsOrgConnectionSpec {
    /// What is wrong with the spec that the CRD's validation refuses, should it reach the
    /// operator anyway (from an API server that does not enforce the CRD's rules): the
    /// field, its value and what it must be. `None` when the operator can act on it.
    pub fn problem(&self) -> Option<String> {
        let concurrency = self.member_access.concurrency;
        if !(MIN_CONCURRENCY..=MAX_CONCURRENCY).contains(&concurrency) {
            return Some(format!(
                "memberAccess.concurrency is {concurrency}; it must be between \
                 {MIN_CONCURRENCY} and {MAX_CONCURRENCY}"
            ));
        }
        if !self.account_tags.enabled && self.account_selector.names_tags() {
            return Some(
                "accountSelector.includeTags and excludeTags need the accounts' tags; set \
                 accountTags.enabled to true or remove them"
                    .to_owned(),
            );
        }
        for (field, value) in [
            ("discoveryInterval", &self.discovery_interval),
            (
                "memberAccess.probeInterval",
                &self.member_access.probe_interval,
            ),
        ] {
            let at_least_a_minute = crate::duration::parse_duration(value)
                .is_ok_and(|d| d >= std::time::Duration::from_secs(60));
            if !at_least_a_minute {
                return Some(format!(
                    "{field} is {value:?}; it must be a duration such as 30m or 1h, at least 1m"
                ));
            }
        }
        None
    }
}

/// Set this annotation to `now` on a connection to list the organization again at once
/// (new accounts, moves, tags) instead of at the next `discoveryInterval`; the operator
/// removes it after the discovery.
pub const DISCOVER_ANNOTATION: &str = "orgconnect.dev/discover";

fn default_region() -> String {
    "us-east-1".into()
}

fn default_discovery_interval() -> String {
    "1h".into()
}

/// Where the operator's base AWS credentials come from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = kube::core::Rule::new(
    "self.source == 'Secret' ? has(self.secretRef) : !has(self.secretRef)"
).message("secretRef is required when source is Secret, and only then"))]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// `DefaultChain` (default): the operator pod's own AWS credentials (IRSA web identity,
    /// EKS Pod Identity, or environment). `Secret`: an IAM user's access keys from a Secret
    /// in the connection's namespace.
    #[serde(default)]
    pub source: CredentialSource,

    /// The Secret holding the access keys, when `source` is `Secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeysRef>,
}

/// The kinds of base credentials the operator can use.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CredentialSource {
    /// The pod's default AWS credential chain.
    #[default]
    DefaultChain,
    /// An IAM user's access keys from a Secret.
    Secret,
}

/// A Secret in the connection's own namespace and the keys that hold the access keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeysRef {
    /// Name of the Secret, in the same namespace as the connection, so one tenant cannot
    /// use another tenant's keys.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Must be empty or the connection's own namespace: Secrets in other namespaces are
    /// refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// Key of the access key id in the Secret's data.
    #[serde(default = "default_access_key_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub access_key_id_key: String,
    /// Key of the secret access key in the Secret's data.
    #[serde(default = "default_secret_access_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_access_key_key: String,
    /// Key of an optional session token in the Secret's data; absent keys are ignored.
    #[serde(default = "default_session_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub session_token_key: String,
}

fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}

fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

fn default_session_token_key() -> String {
    "AWS_SESSION_TOKEN".into()
}

/// How the operator reaches member accounts: a chained AssumeRole from the managing role.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberAccess {
    /// Name of the role assumed in each member account. Accounts created from the
    /// organization have `OrganizationAccountAccessRole`; invited accounts have it only if
    /// someone created it (`orgconnect template member-stackset` installs one everywhere).
    /// A MemberAccount may override it.
    #[serde(default = "default_member_role_name")]
    #[schemars(regex(pattern = rules::ROLE_NAME_PATTERN))]
    pub role_name: String,

    /// Optional `sts:ExternalId` presented when assuming the member role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224), regex(pattern = rules::EXTERNAL_ID_PATTERN))]
    pub external_id: Option<String>,

    /// How often every account is probed again (jittered).
    #[serde(default = "default_probe_interval")]
    #[x_kube(validation = rules::duration_at_least("1m"))]
    #[schemars(length(max = 32))]
    pub probe_interval: String,

    /// How many member accounts of this connection are probed at the same time.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = MIN_CONCURRENCY, max = MAX_CONCURRENCY))]
    pub concurrency: i32,
}

impl Default for MemberAccess {
    fn default() -> Self {
        Self {
            role_name: default_member_role_name(),
            external_id: None,
            probe_interval: default_probe_interval(),
            concurrency: default_concurrency(),
        }
    }
}

/// The role AWS Organizations creates in every account it creates.
pub const DEFAULT_ROLE_NAME: &str = "OrganizationAccountAccessRole";

fn default_member_role_name() -> String {
    DEFAULT_ROLE_NAME.into()
}

fn default_probe_interval() -> String {
    "30m".into()
}

/// The bounds of `memberAccess.concurrency`.
pub const MIN_CONCURRENCY: i32 = 1;
pub const MAX_CONCURRENCY: i32 = 1000;

fn default_concurrency() -> i32 {
    16
}

/// Narrows the organization to some of its accounts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountSelector {
    /// Only accounts under these organizational units (at any depth) are selected. Root
    /// (`r-…`) or OU (`ou-…`) ids; empty selects the whole organization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = rules::PARENT_ID_PATTERN)))]
    pub include_organizational_units: Vec<String>,

    /// Accounts never selected, by 12-digit account id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = rules::ACCOUNT_ID_PATTERN)))]
    pub exclude_accounts: Vec<String>,

    /// Only accounts carrying every one of these AWS tags are selected. Needs
    /// `accountTags.enabled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub include_tags: Vec<TagMatch>,

    /// Accounts carrying any one of these AWS tags are never selected. Needs
    /// `accountTags.enabled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub exclude_tags: Vec<TagMatch>,
}

impl AccountSelector {
    /// Whether the selector reads account tags.
    pub fn names_tags(&self) -> bool {
        !self.include_tags.is_empty() || !self.exclude_tags.is_empty()
    }
}

/// An AWS tag an account must (or must not) carry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct TagMatch {
    /// The tag's key, as AWS has it (case-sensitive).
    #[schemars(length(min = 1, max = 128))]
    pub key: String,
    /// The values that match; any value of the key matches when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(max = 256)))]
    pub values: Vec<String>,
}

impl TagMatch {
    /// Whether `tags` carry this tag.
    pub fn matches(&self, tags: &std::collections::BTreeMap<String, String>) -> bool {
        tags.get(&self.key)
            .is_some_and(|value| self.values.is_empty() || self.values.contains(value))
    }
}

/// How discovery treats the accounts' AWS tags.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct AccountTags {
    /// Read every account's tags at each discovery. When false, no tag is read, and
    /// `status.tags` and the tag labels are removed from the MemberAccounts.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for AccountTags {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The two permission levels of the generated CloudFormation templates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AccessPolicy {
    /// Read usage, billing and inventory data only.
    #[default]
    DataOnly,
    /// Read data, and also start and stop instances that carry the scheduling tag.
    DataAndScheduling,
}

/// Operator-managed StackSet that installs the member role across the organization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackSetSpec {
    /// Create and track a service-managed StackSet (automatic deployment on) that
    /// installs the member role in every current and future account. Off by default.
    #[serde(default)]
    pub enabled: bool,

    /// Name of the StackSet; defaults to `orgconnect-<namespace>-<connection>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9-]{0,127}$"))]
    pub name: Option<String>,

    /// Deploy to these OUs (`ou-…`) or the root (`r-…`); empty deploys to the root, i.e.
    /// the whole organization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = rules::PARENT_ID_PATTERN)))]
    pub organizational_units: Vec<String>,

    /// Regions to deploy stack instances to; IAM is global, so one is enough. Defaults to
    /// the connection's region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = rules::REGION_PATTERN)))]
    pub regions: Vec<String>,

    /// Delete the stack instances and the StackSet when the connection is deleted.
    #[serde(default = "default_true")]
    pub delete_on_revoke: bool,

    /// How each StackSet operation rolls out across accounts and regions. AWS's own
    /// defaults deploy one account at a time and stop at the first failure; these deploy
    /// a quarter of the accounts at once and let a tenth fail.
    #[serde(default)]
    pub rollout: StackSetRollout,
}

impl Default for StackSetSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            name: None,
            organizational_units: Vec::new(),
            regions: Vec::new(),
            delete_on_revoke: true,
            rollout: StackSetRollout::default(),
        }
    }
}

/// The operation preferences sent with every StackSet operation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackSetRollout {
    /// Share of the accounts of a region deployed at once, in percent.
    #[serde(default = "default_max_concurrent_percentage")]
    #[schemars(range(min = 1, max = 100))]
    pub max_concurrent_percentage: u8,

    /// Share of the accounts of a region that may fail before AWS stops the operation in
    /// that region, in percent.
    #[serde(default = "default_failure_tolerance_percentage")]
    #[schemars(range(min = 0, max = 100))]
    pub failure_tolerance_percentage: u8,

    /// Deploy all regions at once (`Parallel`) or one after another (`Sequential`).
    #[serde(default)]
    pub region_concurrency: RegionConcurrency,

    /// `SoftFailureTolerance` keeps the concurrency while failures stay under the
    /// tolerance; `StrictFailureTolerance` lowers it to the tolerance plus one.
    #[serde(default)]
    pub concurrency_mode: ConcurrencyMode,
}

impl Default for StackSetRollout {
    fn default() -> Self {
        Self {
            max_concurrent_percentage: default_max_concurrent_percentage(),
            failure_tolerance_percentage: default_failure_tolerance_percentage(),
            region_concurrency: RegionConcurrency::default(),
            concurrency_mode: ConcurrencyMode::default(),
        }
    }
}

fn default_max_concurrent_percentage() -> u8 {
    25
}

fn default_failure_tolerance_percentage() -> u8 {
    10
}

/// How a StackSet operation moves through regions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RegionConcurrency {
    #[default]
    Parallel,
    Sequential,
}

/// How failures shape a StackSet operation's concurrency.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyMode {
    #[default]
    SoftFailureTolerance,
    StrictFailureTolerance,
}

fn default_true() -> bool {
    true
}

/// What the operator observed about the connection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsOrgConnectionStatus {
    /// The ExternalId the operator presents: `spec.externalId`, or the one it generated
    /// for this connection. Put it in the managing role's trust policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,

    /// Where `externalId` came from: `Generated` by the operator (kept for the life of
    /// the connection) or taken from the `Spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id_source: Option<ExternalIdSource>,

    /// The principal the operator runs as: name it in the managing role's trust policy
    /// (`orgconnect template managing-role --connection` does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_principal: Option<String>,

    /// The organization found behind `roleArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<OrganizationInfo>,

    /// Selected member accounts, by phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<AccountCounts>,

    /// The operator-managed StackSet, when `stackSet.enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_set: Option<StackSetStatus>,

    /// When the last complete discovery finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_discovery_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Authenticated`, `Discovered`, `MembersConnected`, `StackSetReady` (when managed)
    /// and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The operator-managed StackSet as last seen.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackSetStatus {
    /// The StackSet's name.
    pub name: String,
    /// Stack instances deployed.
    pub instances: i32,
    /// The last operation the operator started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// That operation's status: RUNNING, SUCCEEDED, FAILED, STOPPED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_status: Option<String>,
    /// How many stack instances the last finished operation failed to deploy.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_instances: i32,
    /// The first of them (up to 50), with CloudFormation's reason; each one's
    /// MemberAccount says the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<StackInstanceFailure>,
    /// The drift detection (DetectStackSetDrift) the operator started and is following.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_operation_id: Option<String>,
    /// Stack instances whose member role drifted from the StackSet's template (DriftStatus
    /// `DRIFTED`) at the last drift detection; each one's MemberAccount says so in its
    /// `MemberRoleCurrent` condition.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drifted_instances: i32,
    /// Stack instances not current with the StackSet (Status `OUTDATED`: an operation
    /// failed or never reached them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub outdated_instances: i32,
    /// Stack instances CloudFormation can no longer manage (Status `INOPERABLE`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inoperable_instances: i32,
}

/// A stack instance an operation failed to deploy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackInstanceFailure {
    /// The account the stack instance is in.
    pub account_id: String,
    /// The stack instance's region.
    pub region: String,
    /// CloudFormation's status reason.
    pub reason: String,
}

fn is_zero(value: &i32) -> bool {
    *value == 0
}

/// Set this annotation to `skip` on a connection being deleted to let go without removing
/// what the operator created on the AWS side (for when AWS cannot be reached any more).
pub const REVOKE_ANNOTATION: &str = "orgconnect.dev/revoke";

/// Where the ExternalId in use came from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExternalIdSource {
    /// Generated by the operator for this connection.
    Generated,
    /// Chosen by the user in `spec.externalId`.
    Spec,
}

/// The organization as DescribeOrganization reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationInfo {
    /// Organization id, `o-…`.
    pub id: String,
    /// Root id, `r-…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_id: Option<String>,
    /// The managing (management) account's id.
    pub managing_account_id: String,
    /// `ALL` or `CONSOLIDATED_BILLING`.
    pub feature_set: String,
    /// Set when `roleArn` is in a delegated administrator account rather than the
    /// management account: that account's id. Its StackSet calls use
    /// `CallAs=DELEGATED_ADMIN`, and the management account is probed like a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated_administrator_account_id: Option<String>,
}

/// Member accounts counted by phase.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountCounts {
    /// Selected accounts.
    pub total: i32,
    /// Reached through their member role.
    pub connected: i32,
    /// Not reachable; see each MemberAccount's reason and remediation.
    pub blocked: i32,
    /// Suspended or closing in AWS.
    pub suspended: i32,
    /// Closed in AWS.
    #[serde(default)]
    pub closed: i32,
    /// Not yet activated in AWS.
    #[serde(default)]
    pub pending_activation: i32,
    /// Not probed yet.
    pub pending: i32,
    /// Paused by a user.
    pub paused: i32,
}

impl AwsOrgConnection {
    /// Whether the last discovery found `roleArn` in a delegated administrator account.
    pub fn is_delegated_administrator(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.organization.as_ref())
            .is_some_and(|o| o.delegated_administrator_account_id.is_some())
    }
}

impl AccountCounts {
    /// The count of accounts in `phase`.
    pub fn of(&self, phase: crate::api::member_account::MemberPhase) -> i32 {
        use crate::api::member_account::MemberPhase;
        match phase {
            MemberPhase::Pending => self.pending,
            MemberPhase::Connected => self.connected,
            MemberPhase::Blocked => self.blocked,
            MemberPhase::Suspended => self.suspended,
            MemberPhase::Closed => self.closed,
            MemberPhase::PendingActivation => self.pending_activation,
            MemberPhase::Paused => self.paused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: serde_json::Value) -> AwsOrgConnectionSpec {
        let mut spec =
            serde_json::json!({ "roleArn": "arn:aws:iam::111122223333:role/orgconnect" });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(spec).expect("spec")
    }

    #[test]
    fn a_spec_within_the_schema_has_no_problem() {
        assert_eq!(spec(serde_json::json!({})).problem(), None);
        let edges = spec(serde_json::json!({
            "discoveryInterval": "1m",
            "memberAccess": { "concurrency": 1000, "probeInterval": "1h30m" },
        }));
        assert_eq!(edges.problem(), None);
    }

    #[test]
    fn names_what_the_schema_would_have_refused() {
        for (extra, field) in [
            (
                serde_json::json!({ "memberAccess": { "concurrency": 0 } }),
                "memberAccess.concurrency is 0",
            ),
            (
                serde_json::json!({ "memberAccess": { "concurrency": -3 } }),
                "memberAccess.concurrency is -3",
            ),
            (
                serde_json::json!({ "memberAccess": { "concurrency": 1001 } }),
                "memberAccess.concurrency is 1001",
            ),
            (
                serde_json::json!({ "discoveryInterval": "30s" }),
                "discoveryInterval is \"30s\"",
            ),
            (
                serde_json::json!({ "discoveryInterval": "hourly" }),
                "discoveryInterval is \"hourly\"",
            ),
            (
                serde_json::json!({ "memberAccess": { "probeInterval": "" } }),
                "memberAccess.probeInterval is \"\"",
            ),
        ] {
            let problem = spec(extra).problem().expect("a problem");
            assert!(problem.starts_with(field), "{problem}");
        }
    }
}
