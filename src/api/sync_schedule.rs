//! `SyncSchedule`: sync Jobs run on a cron schedule against a connection's accounts.

use k8s_openapi::api::batch::v1::JobTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::rules;

/// When and how sync Jobs run.
#[allow(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats keys such as type_ by design"
)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "orgconnect.dev",
    version = "v1alpha1",
    kind = "SyncSchedule",
    doc = "Runs a Job from `jobTemplate` at each time of `schedule`. Each Job gets an AWS config file with one profile per Connected account of the connection, so any AWS tool works unchanged. The first successful run is a backfill; later runs are incremental.",
    namespaced,
    status = "SyncScheduleStatus",
    shortname = "ss",
    category = "orgconnect",
    printcolumn(
        name = "Connection",
        type_ = "string",
        json_path = ".spec.connectionRef.name"
    ),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "Last Schedule",
        type_ = "date",
        json_path = ".status.lastScheduleTime"
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
#[serde(rename_all = "camelCase")]
pub struct SyncScheduleSpec {
    /// The AwsOrgConnection (same namespace) whose accounts the Jobs reach.
    pub connection_ref: ConnectionRef,

    /// Five-field cron expression or a macro such as `@hourly` or `@daily`.
    #[serde(default = "default_schedule")]
    #[schemars(length(min = 1, max = 256))]
    pub schedule: String,

    /// IANA time zone the schedule is read in, e.g. `Europe/Berlin`; UTC when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_+/-]+$"))]
    pub time_zone: Option<String>,

    /// Stop starting new Jobs; running Jobs are left alone.
    #[serde(default)]
    pub suspend: bool,

    /// What to do when a run is due while the previous one still runs: `Forbid` (default,
    /// skip the new run), `Allow` (run both) or `Replace` (stop the old one).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,

    /// A run that could not start within this many seconds of its time is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,

    /// How many finished successful Jobs to keep.
    #[serde(default = "default_successful_history")]
    #[schemars(range(min = 0, max = 100))]
    pub successful_jobs_history_limit: i32,

    /// How many finished failed Jobs to keep.
    #[serde(default = "default_failed_history")]
    #[schemars(range(min = 0, max = 100))]
    pub failed_jobs_history_limit: i32,

    /// Only MemberAccounts matching this label selector are given to the Jobs; all
    /// Connected accounts of the connection when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_selector: Option<LabelSelector>,

    /// The first successful run fetches history; later runs are incremental.
    #[serde(default)]
    pub backfill: Backfill,

    /// Regions the tool files of `toolConfigs` name for every account (c7n-org's
    /// `regions`, Steampipe's `regions`); the connection's region when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(regex(pattern = rules::REGION_PATTERN)))]
    pub regions: Vec<String>,

    /// Configuration files for these tools, written beside `aws-config` and
    /// `accounts.json` in every run: `C7nOrg` (`c7n-org-accounts.yml`, Cloud Custodian's
    /// c7n-org accounts file) and `Steampipe` (`aws.spc`, one AWS plugin connection per
    /// account and an aggregator over them all). None when empty, which keeps each run's
    /// ConfigMap small.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2), extend("x-kubernetes-list-type" = "set"))]
    pub tool_configs: Vec<ToolConfig>,

    /// The IAM role EKS Pod Identity gives the Jobs' service account, when it has no IRSA
    /// role annotation. The cluster does not show Pod Identity associations, so name the
    /// role here: it is reported in `status.jobPrincipal`, trusted by `orgconnect template
    /// managing-role --connection`, and checked against the managing role's trust policy
    /// before each run.
    #[x_kube(validation = rules::role_arn())]
    #[schemars(length(max = 2048))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity_role_arn: Option<String>,

    /// The Job to run. Its containers get `AWS_CONFIG_FILE`, `ORGCONNECT_CONNECTION`,
    /// `ORGCONNECT_MODE` and `ORGCONNECT_SINCE`, and the generated AWS config mounted.
    #[schemars(schema_with = "preserved_object")]
    pub job_template: JobTemplateSpec,
}

/// The Job template is validated by the API server when each Job is created; its schema
/// here is kept open so the CRD stays small enough for client-side `kubectl apply`.
fn preserved_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let open_object = |description: &str| {
        serde_json::json!({
            "type": "object",
            "description": description,
            "x-kubernetes-preserve-unknown-fields": true,
        })
    };
    schemars::json_schema!({
        "type": "object",
        "description": "A batch/v1 JobTemplateSpec (metadata and spec), as in a CronJob's jobTemplate.",
        "required": ["spec"],
        "properties": {
            "metadata": open_object("Labels and annotations copied to every Job."),
            "spec": {
                "type": "object",
                "description": "A batch/v1 JobSpec; `template` is the Pod template.",
                "required": ["template"],
                "properties": {
                    "template": open_object("The Pod template of each Job."),
                },
                "x-kubernetes-preserve-unknown-fields": true,
            },
        },
    })
}

fn default_schedule() -> String {
    "*/30 * * * *".into()
}

fn default_successful_history() -> i32 {
    3
}

fn default_failed_history() -> i32 {
    1
}

/// A tool whose configuration each run gets, rendered from the run's accounts.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum ToolConfig {
    /// Cloud Custodian's c7n-org: `c7n-org-accounts.yml`, one entry per account with its
    /// role chain, ExternalId, regions and tags (`path:<OU path>` and the account's AWS
    /// tags); the run's path is in `ORGCONNECT_C7N_ORG_ACCOUNTS`.
    C7nOrg,
    /// Steampipe's AWS plugin: `aws.spc`, a connection `aws_<account id>` per account on
    /// the account's profile of the run's AWS config, and the aggregator `aws_all`; the
    /// run's path is in `ORGCONNECT_STEAMPIPE_CONFIG`.
    Steampipe,
}

/// Set this annotation to `now` to start a run at once; the operator removes it.
pub const RUN_ANNOTATION: &str = "orgconnect.dev/run";

/// A reference to an AwsOrgConnection in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ConnectionRef {
    /// Name of the AwsOrgConnection.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// CronJob's concurrency policies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Run a new Job even while an earlier one runs.
    Allow,
    /// Skip a run while an earlier one runs.
    #[default]
    Forbid,
    /// Stop the running Job and start the new one.
    Replace,
}

/// The historical backfill done before incremental runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Backfill {
    /// Run a backfill until one run has succeeded. When false, the first run is
    /// incremental too.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// How far back the backfill reaches (`ORGCONNECT_SINCE` = now - lookback).
    #[serde(default = "default_lookback")]
    #[x_kube(validation = rules::duration_at_least("1h"))]
    #[schemars(length(max = 32))]
    pub lookback: String,
}

impl Default for Backfill {
    fn default() -> Self {
        Self {
            enabled: true,
            lookback: default_lookback(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_lookback() -> String {
    "8760h".into()
}

/// What the operator observed about the schedule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncScheduleStatus {
    /// The slot time of the last Job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// The next slot time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// When the last successful run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// When the last successful run started: the next incremental run's
    /// `ORGCONNECT_SINCE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_start_time: Option<Time>,
    /// Names of the Jobs still running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// The last finished run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
    /// True once a backfill run has succeeded.
    #[serde(default)]
    pub backfill_done: bool,
    /// The principal this schedule's Jobs present to the managing role, which its trust
    /// policy must name (`orgconnect template managing-role --connection` does): the
    /// connection's `operatorPrincipal` with Secret credentials, else the service
    /// account's IRSA role, or `spec.podIdentityRoleArn` with EKS Pod Identity (empty
    /// when that is not set: the cluster does not show Pod Identity associations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_principal: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Scheduled` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// One finished run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The Job's name.
    pub job: String,
    /// `Succeeded` or `Failed`.
    pub outcome: RunOutcome,
    /// `backfill` or `incremental`.
    pub mode: RunMode,
    /// How many accounts the run was given.
    pub accounts: i32,
    /// When the Job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the Job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

/// How a run ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunOutcome {
    Succeeded,
    Failed,
}

/// What a run fetches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    Backfill,
    Incremental,
}
