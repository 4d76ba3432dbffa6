//! Runs the operator's controllers in the test's process, against the test bed.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use orgconnect::api::{
    AwsOrgConnection, ConditionStatus, ConditionType, MemberAccount, find_condition,
};
use orgconnect::controller::{Diagnostics, Operator, Settings};
use tokio::task::JoinHandle;

use super::eventually;

/// The operator running in the background; stops when dropped.
pub struct RunningOperator {
    pub diagnostics: Arc<Diagnostics>,
    /// Where its /healthz, /readyz and /metrics answer.
    pub http: std::net::SocketAddr,
    task: JoinHandle<()>,
    server: JoinHandle<()>,
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        self.task.abort();
        self.server.abort();
    }
}

/// Starts the controllers with `aws` as the operator's own AWS configuration.
pub fn start(client: Client, aws: SdkConfig, settings: Settings) -> RunningOperator {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("orgconnect=info")),
        )
        .with_test_writer()
        .try_init();
    let operator = Operator::new(client, aws, settings);
    let diagnostics = operator.diagnostics();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the HTTP endpoints");
    let http = listener.local_addr().expect("address");
    listener.set_nonblocking(true).expect("non-blocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let server = tokio::spawn(orgconnect::server::serve(listener, operator.health()));
    let task = tokio::spawn(operator.run(std::future::pending()));
    RunningOperator {
        diagnostics,
        http,
        task,
        server,
    }
}

/// GETs `path` from the operator's HTTP endpoints: the status code and body.
pub async fn http_get(operator: &RunningOperator, path: &str) -> (u16, String) {
    super::http_get(operator.http, path)
        .await
        .unwrap_or_else(|| panic!("GET {path} from the operator"))
}

/// Settings that scope the operator to one namespace.
pub fn in_namespace(namespace: &str) -> Settings {
    Settings {
        namespace: Some(namespace.to_owned()),
        instance: format!("test-{namespace}"),
        ..Settings::default()
    }
}

/// Applies a connection from a JSON spec (server-side apply, as a user's tool would).
pub async fn apply_connection(
    api: &Api<AwsOrgConnection>,
    name: &str,
    spec: serde_json::Value,
) -> AwsOrgConnection {
    apply_connection_with_labels(api, name, spec, serde_json::json!({})).await
}

pub async fn apply_connection_with_labels(
    api: &Api<AwsOrgConnection>,
    name: &str,
    spec: serde_json::Value,
    labels: serde_json::Value,
) -> AwsOrgConnection {
    super::kube::apply(api, name, serde_json::json!({ "labels": labels }), spec).await
}

/// Merges `spec` into the connection's spec.
pub async fn patch_spec(api: &Api<AwsOrgConnection>, name: &str, spec: serde_json::Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({ "spec": spec })),
    )
    .await
    .unwrap_or_else(|e| panic!("patching connection {name}: {e}"));
}

/// Waits until `check` holds for the connection, returning it.
pub async fn wait_connection(
    api: &Api<AwsOrgConnection>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&AwsOrgConnection) -> bool,
) -> AwsOrgConnection {
    let check = &check;
    eventually(
        &format!("connection {name}: {what}"),
        timeout,
        || async move {
            let connection = api.get_opt(name).await.ok().flatten()?;
            check(&connection).then_some(connection)
        },
    )
    .await
}

/// The condition `type_` has `status` and `reason`, at the current generation.
pub fn has_condition(
    connection: &AwsOrgConnection,
    type_: ConditionType,
    status: ConditionStatus,
    reason: &str,
) -> bool {
    connection
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, type_))
        .is_some_and(|c| c.status == status && c.reason == reason)
}

/// Waits for the condition, and prints the connection's conditions if it never comes.
pub async fn wait_condition(
    api: &Api<AwsOrgConnection>,
    name: &str,
    type_: ConditionType,
    status: ConditionStatus,
    reason: &str,
) -> AwsOrgConnection {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let connection = api.get(name).await.expect("connection exists");
        if has_condition(&connection, type_, status, reason) {
            return connection;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "connection {name} never had {type_}={status:?} ({reason}); conditions: {:#?}",
                connection.status.map(|s| s.conditions)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The MemberAccounts in `api`'s namespace.
pub async fn members(api: &Api<MemberAccount>) -> Vec<MemberAccount> {
    api.list(&ListParams::default())
        .await
        .expect("list MemberAccounts")
        .items
}

/// Waits until the namespace holds exactly `count` MemberAccounts.
pub async fn wait_members(api: &Api<MemberAccount>, count: usize) -> Vec<MemberAccount> {
    eventually(
        &format!("{count} MemberAccounts"),
        Duration::from_secs(60),
        || async {
            let items = api.list(&ListParams::default()).await.ok()?.items;
            (items.len() == count).then_some(items)
        },
    )
    .await
}

/// Waits until there are `count` MemberAccounts and every one is Connected.
pub async fn wait_all_connected(api: &Api<MemberAccount>, count: usize) -> Vec<MemberAccount> {
    eventually(
        &format!("{count} MemberAccounts, every one Connected"),
        Duration::from_secs(60),
        || async {
            let listed = members(api).await;
            (listed.len() == count
                && listed.iter().all(|m| {
                    phase(m) == Some(orgconnect::api::member_account::MemberPhase::Connected)
                }))
            .then_some(listed)
        },
    )
    .await
}

/// Creates a Secret holding access keys under the standard key names.
pub async fn create_key_secret(
    api: &Api<Secret>,
    name: &str,
    credentials: &aws_sdk_sts::config::Credentials,
) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        string_data: Some(
            [
                (
                    "AWS_ACCESS_KEY_ID".to_owned(),
                    credentials.access_key_id().to_owned(),
                ),
                (
                    "AWS_SECRET_ACCESS_KEY".to_owned(),
                    credentials.secret_access_key().to_owned(),
                ),
            ]
            .into(),
        ),
        ..Secret::default()
    };
    api.create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {}: {e}", secret.name_any()));
}

/// The role ARN of the managing role in `account_id`.
pub fn managing_role(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:role/orgconnect")
}

/// How many AssumeRole calls `proxy` saw for the managing role in `account_id`.
pub fn managing_assumes(proxy: &super::fault_proxy::FaultProxy, account_id: &str) -> usize {
    let role = managing_role(account_id);
    proxy.assumed_roles().iter().filter(|r| **r == role).count()
}

/// A MemberAccount's phase, if it has one yet.
pub fn phase(member: &MemberAccount) -> Option<orgconnect::api::member_account::MemberPhase> {
    member.status.as_ref().and_then(|s| s.phase)
}

/// The reason of a MemberAccount's `Connected` condition.
pub fn connected_reason(member: &MemberAccount) -> Option<String> {
    member
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, ConditionType::Connected))
        .map(|c| c.reason.clone())
}

/// Asks for a run of SyncSchedule `name` now (`orgconnect.dev/run=now`) and waits until
/// the operator has handled the request (it removes the annotation, run or refused).
pub async fn request_run(api: &Api<orgconnect::api::SyncSchedule>, name: &str) {
    use orgconnect::api::sync_schedule::RUN_ANNOTATION;
    let patch = serde_json::json!({ "metadata": { "annotations": { RUN_ANNOTATION: "now" } } });
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .expect("annotate run=now");
    super::eventually(
        "run=now to be handled",
        std::time::Duration::from_secs(30),
        || async {
            let schedule = api.get(name).await.ok()?;
            (!kube::ResourceExt::annotations(&schedule).contains_key(RUN_ANNOTATION)).then_some(())
        },
    )
    .await;
}

/// Creates service account `name`, annotated with the IRSA role `irsa_role` if given.
pub async fn create_service_account(
    api: &Api<k8s_openapi::api::core::v1::ServiceAccount>,
    name: &str,
    irsa_role: Option<&str>,
) {
    let mut account = serde_json::json!({ "metadata": { "name": name } });
    if let Some(role) = irsa_role {
        account["metadata"]["annotations"] =
            serde_json::json!({ "eks.amazonaws.com/role-arn": role });
    }
    api.create(
        &kube::api::PostParams::default(),
        &serde_json::from_value(account).expect("service account"),
    )
    .await
    .expect("create the service account");
}

/// Creates SyncSchedule `name` of connection `acme` (due once a year, so only
/// `orgconnect.dev/run=now` starts a run) whose Jobs run as `service_account`, with
/// `extra` merged into its spec.
pub async fn create_schedule(
    api: &Api<orgconnect::api::SyncSchedule>,
    name: &str,
    service_account: &str,
    extra: serde_json::Value,
) {
    let mut schedule = serde_json::json!({
        "apiVersion": "orgconnect.dev/v1alpha1",
        "kind": "SyncSchedule",
        "metadata": { "name": name },
        "spec": {
            "connectionRef": { "name": "acme" },
            "schedule": "0 0 1 1 *",
            "jobTemplate": { "spec": { "template": { "spec": {
                "serviceAccountName": service_account,
                "restartPolicy": "Never",
                "containers": [{ "name": "sync", "image": "amazon/aws-cli" }],
            } } } },
        },
    });
    if let (Some(spec), Some(extra)) = (schedule["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    api.create(
        &kube::api::PostParams::default(),
        &serde_json::from_value(schedule).expect("schedule"),
    )
    .await
    .expect("create the schedule");
}
