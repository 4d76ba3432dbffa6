//! Bad input, and secrets kept out of everything the operator writes.
//!
//! The bad-input matrix applies objects a server without the CRDs' validation would take
//! (the test installs the CRDs with their CEL rules and value constraints stripped, and
//! restores them afterwards), and objects that are valid but wrong. Each case runs in a
//! namespace of its own with an operator of its own, so the operator's counters are the
//! case's: every case is answered by a condition naming the problem, and over a minute no
//! object is reconciled more than a handful of times.
//!
//! The secrets test runs the real binary at debug level through a normal cycle and some
//! failures with known secret values, and searches its every log line, every Event, every
//! object's status and every ConfigMap and Job in the namespace for them.
//!
//! The matrix changes the cluster-wide CRDs, so nothing in this file installs them while
//! it runs: [`CRDS`] guards them, and namespaces are created without `install_crds`.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams,
    PostParams,
};
use kube::{Client, Resource, ResourceExt};
use orgconnect::api::condition::Condition;
use orgconnect::api::member_account::MemberPhase;
use orgconnect::api::sync_schedule::RUN_ANNOTATION;
use orgconnect::api::{
    AwsOrgConnection, ConditionStatus, ConditionType, MemberAccount, SyncSchedule, find_condition,
};
use orgconnect::controller::Diagnostics;
use orgconnect::controller::names::{CONNECTION_LABEL, connection_selector, label_value};
use serde::de::DeserializeOwned;
use support::aws::AwsBed;
use support::fault_proxy::Trust;
use support::kube::{KUBECONFIG_ENV, client, install_crds};
use support::operator::{RunningOperator, in_namespace, managing_role, start};
use support::org::{OrgSpec, SeededOrg, seed};
use support::{eventually, metric_value, unique_suffix};

/// Held while the CRDs are being changed: the matrix holds it from stripping them until
/// they are restored, the secrets test while it installs them.
static CRDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the matrix watches the operators for loops.
const OBSERVATION: Duration = Duration::from_secs(60);
/// The most reconciles one object may have in that minute.
const MAX_RECONCILES: u64 = 10;
/// The most reconciles one object may have in the second half of that minute.
const QUIET_RECONCILES: u64 = 2;

const SCHEDULE_RECONCILES: &str = "orgconnect_reconciles_total{kind=\"SyncSchedule\"}";

// ---------------------------------------------------------------------------------------
// CRDs without validation
// ---------------------------------------------------------------------------------------

/// Schema keywords that constrain values; a server without CEL (or an old one) would
/// enforce none of the CEL rules, and the test drops the value constraints as well.
const CONSTRAINTS: &[&str] = &[
    "x-kubernetes-validations",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
];

/// Removes the constraints from a schema node and every schema below it (only schema
/// positions are visited, so a property that happens to be named `pattern` stays).
fn strip_schema(node: &mut serde_json::Value) {
    let Some(object) = node.as_object_mut() else {
        return;
    };
    for keyword in CONSTRAINTS {
        object.remove(*keyword);
    }
    if let Some(properties) = object.get_mut("properties").and_then(|p| p.as_object_mut()) {
        properties.values_mut().for_each(strip_schema);
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = object.get_mut(key) {
            strip_schema(child);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(children) = object.get_mut(key).and_then(|c| c.as_array_mut()) {
            children.iter_mut().for_each(strip_schema);
        }
    }
}

/// The CRD as a server without CEL and value validation would hold it.
fn without_validation(crd: &CustomResourceDefinition) -> CustomResourceDefinition {
    let mut value = serde_json::to_value(crd).expect("CRD serializes");
    for version in value["spec"]["versions"]
        .as_array_mut()
        .expect("CRD versions")
    {
        strip_schema(&mut version["schema"]["openAPIV3Schema"]);
    }
    serde_json::from_value(value).expect("stripped CRD deserializes")
}

async fn wait_established(crds: &Api<CustomResourceDefinition>, name: &str) {
    eventually(
        &format!("CRD {name} Established"),
        Duration::from_secs(30),
        || async move {
            let crd = crds.get(name).await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;
}

/// The orgconnect CRDs with validation stripped, until [`StrippedCrds::restore`] (or,
/// should the test fail, until dropped) puts the real ones back.
struct StrippedCrds {
    restored: bool,
}

impl StrippedCrds {
    async fn install(client: &Client) -> Self {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let guard = Self { restored: false };
        for crd in orgconnect::crds::all() {
            let name = crd.name_any();
            let mut stripped = without_validation(&crd);
            // A replace, not an apply: other field managers (kubectl, helm) may co-own
            // the rules, and an apply would leave theirs in place.
            match crds.get_opt(&name).await.expect("get CRD") {
                Some(current) => {
                    stripped.metadata.resource_version = current.resource_version();
                    crds.replace(&name, &PostParams::default(), &stripped)
                        .await
                        .unwrap_or_else(|e| panic!("replacing CRD {name}: {e}"));
                }
                None => {
                    crds.create(&PostParams::default(), &stripped)
                        .await
                        .unwrap_or_else(|e| panic!("creating CRD {name}: {e}"));
                }
            }
            wait_established(&crds, &name).await;
            let installed =
                serde_json::to_string(&crds.get(&name).await.expect("CRD")).expect("json");
            assert!(
                !installed.contains("x-kubernetes-validations")
                    && !installed.contains("\"pattern\""),
                "CRD {name} still validates"
            );
        }
        guard
    }

    async fn restore(mut self, client: &Client) {
        install_crds(client).await;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let connections = crds
            .get("awsorgconnections.orgconnect.dev")
            .await
            .expect("CRD");
        assert!(
            serde_json::to_string(&connections)
                .expect("json")
                .contains("x-kubernetes-validations"),
            "the real CRDs are back"
        );
        self.restored = true;
    }
}

impl Drop for StrippedCrds {
    fn drop(&mut self) {
        if self.restored {
            return;
        }
        // The test failed half-way: put the real CRDs back before the next test binary.
        let _ = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let client = client().await;
                install_crds(&client).await;
            });
        })
        .join();
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A fresh namespace, created without (re)installing the CRDs.
async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", unique_suffix());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([("orgconnect.dev/test".to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    name
}

/// Applies `manifest`; right after the CRDs changed the server may still validate with
/// the old schema for a moment, so a refusal is retried for a while.
async fn apply<K>(api: &Api<K>, manifest: serde_json::Value)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = manifest["metadata"]["name"]
        .as_str()
        .expect("manifest name")
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match api
            .patch(
                &name,
                &PatchParams::apply("test-user"),
                &Patch::Apply(&manifest),
            )
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(status))
                if status.code == 422 && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("applying {} {name}: {e}", manifest["kind"]),
        }
    }
}

fn connection(name: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "orgconnect.dev/v1alpha1",
        "kind": "AwsOrgConnection",
        "metadata": { "name": name },
        "spec": spec,
    })
}

fn schedule(
    name: &str,
    spec: serde_json::Value,
    annotations: serde_json::Value,
) -> serde_json::Value {
    let mut spec = spec;
    spec["jobTemplate"] = serde_json::json!({
        "spec": { "template": { "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "sync",
                "image": "amazon/aws-cli",
                "args": ["sts", "get-caller-identity"],
            }],
        } } }
    });
    serde_json::json!({
        "apiVersion": "orgconnect.dev/v1alpha1",
        "kind": "SyncSchedule",
        "metadata": { "name": name, "annotations": annotations },
        "spec": spec,
    })
}

/// A case's object: a connection.
fn on_connection(name: &str, spec: serde_json::Value) -> (Kind, serde_json::Value) {
    (Kind::Connection, connection(name, spec))
}

/// A case's object: a schedule (of a connection that need not exist).
fn on_schedule(name: &str, spec: serde_json::Value) -> (Kind, serde_json::Value) {
    (Kind::Schedule, schedule(name, spec, serde_json::json!({})))
}

async fn create_secret(api: &Api<Secret>, name: &str, data: &[(&str, &str)]) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    api.create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {name}: {e}"));
}

/// The conditions of any orgconnect object, from its JSON.
fn conditions_of<K: serde::Serialize>(object: &K) -> Vec<Condition> {
    let value = serde_json::to_value(object).expect("object serializes");
    serde_json::from_value(value["status"]["conditions"].clone()).unwrap_or_default()
}

/// What one case must end with: each condition (type, status, reason), the first one's
/// message naming every one of `names`.
struct Expected {
    conditions: Vec<(ConditionType, ConditionStatus, &'static str)>,
    names: Vec<String>,
}

async fn wait_expected<K>(api: &Api<K>, name: &str, expected: &Expected) -> Condition
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let object = api.get(name).await.expect("object exists");
        let conditions = conditions_of(&object);
        let holds = expected.conditions.iter().all(|(type_, status, reason)| {
            find_condition(&conditions, *type_)
                .is_some_and(|c| c.status == *status && c.reason == *reason)
        });
        if holds {
            let (type_, _, _) = expected.conditions[0];
            return find_condition(&conditions, type_)
                .cloned()
                .expect("condition");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never had {:?}; conditions: {conditions:#?}",
            expected.conditions
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The operator's reconciles of SyncSchedules, from its /metrics.
async fn schedule_reconciles(operator: &RunningOperator) -> u64 {
    let (_, body) = support::operator::http_get(operator, "/metrics").await;
    metric_value(&body, SCHEDULE_RECONCILES).unwrap_or(0.0) as u64
}

// ---------------------------------------------------------------------------------------
// The bad-input matrix
// ---------------------------------------------------------------------------------------

/// The kinds the matrix applies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Connection,
    Schedule,
}

impl Kind {
    fn resource(self) -> ApiResource {
        match self {
            Self::Connection => ApiResource::erase::<AwsOrgConnection>(&()),
            Self::Schedule => ApiResource::erase::<SyncSchedule>(&()),
        }
    }
}

/// One case: its object, what it must end with, and the operator that handles it alone.
struct Case {
    what: &'static str,
    namespace: String,
    kind: Kind,
    name: String,
    expected: Expected,
    operator: RunningOperator,
}

impl Case {
    fn api(&self, client: &Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), &self.namespace, &self.kind.resource())
    }

    /// Reconciles of the case's object so far.
    async fn reconciles(&self) -> u64 {
        match self.kind {
            Kind::Connection => Diagnostics::get(&self.operator.diagnostics.connection_reconciles),
            Kind::Schedule => schedule_reconciles(&self.operator).await,
        }
    }

    /// Waits until the object has the expected conditions; the first of them.
    async fn check(&self, client: &Client) -> Condition {
        wait_expected(&self.api(client), &self.name, &self.expected).await
    }

    /// Touches the object (a label), so a live operator reconciles it once more.
    async fn touch(&self, client: &Client) {
        let patch = serde_json::json!({ "metadata": { "labels": { "touched": "yes" } } });
        self.api(client)
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("touch");
    }

    /// Deletes the object and waits until it is gone (a connection's revoke done).
    async fn delete(&self, client: &Client) {
        let api = self.api(client);
        let _ = api.delete(&self.name, &DeleteParams::default()).await;
        eventually(
            &format!("{}: deleted", self.what),
            Duration::from_secs(30),
            || async { api.get_opt(&self.name).await.ok()?.is_none().then_some(()) },
        )
        .await;
    }
}

/// Each object's reconciles so far, with the most it may have in the minute: what
/// answers bad input stops early; a working connection (the long names) also hears of
/// each of its MemberAccounts being created and probed.
async fn reconcile_counts(
    cases: &[Case],
    (long_253, long_100): (usize, usize),
    accounts: usize,
) -> Vec<(String, u64, u64)> {
    let accounts = accounts as u64;
    let mut counts = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let bound = if i == long_253 || i == long_100 {
            MAX_RECONCILES + 2 * accounts
        } else {
            MAX_RECONCILES
        };
        counts.push((case.what.to_owned(), case.reconciles().await, bound));
    }
    counts.push((
        "253-character schedule name".to_owned(),
        schedule_reconciles(&cases[long_100].operator).await,
        MAX_RECONCILES,
    ));
    for i in [long_253, long_100] {
        let members = Diagnostics::get(&cases[i].operator.diagnostics.member_reconciles);
        counts.push((
            format!("{}: MemberAccount reconciles per account", cases[i].what),
            members.div_ceil(accounts),
            MAX_RECONCILES,
        ));
    }
    counts
}

/// A connection name of `length` characters.
fn long_name(length: usize) -> String {
    let mut name = String::from("long-");
    while name.len() < length {
        name.push(char::from(b'a' + (name.len() % 26) as u8));
    }
    name.truncate(length);
    name
}

/// What the matrix needs to start a case.
struct Matrix<'a> {
    client: &'a Client,
    bed: &'a AwsBed,
    cases: Vec<Case>,
}

impl Matrix<'_> {
    /// Creates the case's namespace, applies its Secrets and objects, and starts its
    /// operator.
    async fn case(
        &mut self,
        what: &'static str,
        (kind, manifest): (Kind, serde_json::Value),
        secrets: Vec<(&str, Vec<(&str, &str)>)>,
        expected: Expected,
    ) -> usize {
        let namespace = namespace(self.client, "bad").await;
        let secrets_api: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        for (name, data) in secrets {
            create_secret(&secrets_api, name, &data).await;
        }
        let name = manifest["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let api = Api::namespaced_with(self.client.clone(), &namespace, &kind.resource());
        apply::<DynamicObject>(&api, manifest).await;
        let operator = start(
            self.client.clone(),
            self.bed.operator_config(self.bed.credentials.clone()),
            in_namespace(&namespace),
        );
        self.cases.push(Case {
            what,
            namespace,
            kind,
            name,
            expected,
            operator,
        });
        self.cases.len() - 1
    }
}

fn expect(
    conditions: &[(ConditionType, ConditionStatus, &'static str)],
    names: &[&str],
) -> Expected {
    Expected {
        conditions: conditions.to_vec(),
        names: names.iter().map(|n| (*n).to_owned()).collect(),
    }
}

/// Runs the `orgconnect` binary with `args` against the bed; its standard output.
async fn orgconnect_cli(args: &[&str]) -> String {
    let kubeconfig = std::env::var(KUBECONFIG_ENV).expect("test bed kubeconfig");
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_orgconnect"))
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .output()
            .expect("run orgconnect")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "orgconnect failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Waits for an Event with `reason` about the object named `regarding`.
async fn wait_event(events: &Api<Event>, regarding: &str, reason: &str) {
    eventually(
        &format!("a {reason} Event about {regarding}"),
        Duration::from_secs(20),
        || async {
            let listed = events.list(&ListParams::default()).await.ok()?.items;
            listed
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
                })
                .then_some(())
        },
    )
    .await;
}

/// A connection with a long name works like any other: valid MemberAccount names and
/// labels, the label selector finds its accounts, `orgconnect tree` draws them, Events
/// about it and its accounts are published, and a sync run of `schedule` (when given)
/// selects its Connected accounts.
async fn check_long_name(
    client: &Client,
    case: &Case,
    (org, blocked): (&SeededOrg, &str),
    schedule: Option<&str>,
) {
    let members: Api<MemberAccount> = Api::namespaced(client.clone(), &case.namespace);
    let accounts: BTreeSet<&str> = org.accounts.iter().map(|a| a.id.as_str()).collect();
    let selector = connection_selector(&case.name);
    let listed = eventually(
        &format!("{}: every account has a phase", case.what),
        Duration::from_secs(45),
        || async {
            let params = ListParams::default().labels(&selector);
            let items = members.list(&params).await.ok()?.items;
            let phased = items
                .iter()
                .filter(|m| m.status.as_ref().and_then(|s| s.phase).is_some())
                .count();
            (items.len() == accounts.len() && phased == items.len()).then_some(items)
        },
    )
    .await;
    let found: BTreeSet<&str> = listed.iter().map(|m| m.spec.account_id.as_str()).collect();
    assert_eq!(
        found, accounts,
        "{}: the selector finds every account",
        case.what
    );
    let mut blocked_member = String::new();
    for member in &listed {
        let name = member.name_any();
        assert!(
            name.len() <= 253 && name.ends_with(&member.spec.account_id),
            "{name}"
        );
        assert_eq!(member.spec.connection, case.name);
        for (key, value) in member.labels() {
            assert!(value.len() <= 63, "label {key}={value} is too long");
        }
        let phase = member.status.as_ref().and_then(|s| s.phase);
        if member.spec.account_id == blocked {
            assert_eq!(phase, Some(MemberPhase::Blocked), "{name}");
            blocked_member = name;
        } else {
            assert_eq!(phase, Some(MemberPhase::Connected), "{name}");
        }
    }

    // The diagram.
    let tree = orgconnect_cli(&["tree", &case.name, "-n", &case.namespace, "-o", "json"]).await;
    for account in &accounts {
        assert!(tree.contains(account), "tree lacks {account}: {tree}");
    }

    // Events about the connection and its accounts, whatever the length of their names.
    let events: Api<Event> = Api::namespaced(client.clone(), &case.namespace);
    wait_event(&events, &case.name, "MembersUpdated").await;
    wait_event(&events, &blocked_member, "Blocked").await;

    // A sync run, started once the accounts have their phase, selects the Connected ones.
    let Some(name) = schedule else {
        return;
    };
    let schedules: Api<SyncSchedule> = Api::namespaced(client.clone(), &case.namespace);
    let spec = serde_json::json!({ "connectionRef": { "name": case.name } });
    let annotations = serde_json::json!({ RUN_ANNOTATION: "now" });
    apply(&schedules, self::schedule(name, spec, annotations)).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &case.namespace);
    let run_selector = format!("{CONNECTION_LABEL}={}", label_value(&case.name));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let job = loop {
        let params = ListParams::default().labels(&run_selector);
        if let Some(job) = jobs.list(&params).await.expect("list Jobs").items.pop() {
            break job;
        }
        if tokio::time::Instant::now() > deadline {
            let status = schedules.get(name).await.expect("schedule").status;
            panic!(
                "{}: no sync Job; the schedule's status: {status:#?}",
                case.what
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(job.name_any().len() <= 63, "Job name {}", job.name_any());
    for (key, value) in job.labels() {
        assert!(value.len() <= 63, "label {key}={value} is too long");
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &case.namespace);
    let run = config_maps
        .get(&job.name_any())
        .await
        .expect("run ConfigMap");
    let listed = run
        .data
        .as_ref()
        .and_then(|d| d.get("accounts.json"))
        .expect("accounts.json");
    for account in &accounts {
        assert_eq!(
            listed.contains(account),
            *account != blocked,
            "the run holds the Connected accounts only: {listed}"
        );
    }
    wait_event(&events, name, "JobStarted").await;
}

/// Deletes a long-named connection and checks the revoke removed what it made.
async fn check_revoke(client: &Client, case: &Case) {
    let connections: Api<AwsOrgConnection> = Api::namespaced(client.clone(), &case.namespace);
    connections
        .delete(&case.name, &DeleteParams::default())
        .await
        .expect("delete connection");
    eventually(
        &format!("{}: revoked", case.what),
        Duration::from_secs(45),
        || async {
            connections
                .get_opt(&case.name)
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let selector = connection_selector(&case.name);
    let members: Api<MemberAccount> = Api::namespaced(client.clone(), &case.namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &case.namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &case.namespace);
    let params = ListParams::default().labels(&selector);
    assert!(
        members
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(jobs.list(&params).await.expect("list").items.is_empty());
    assert!(
        config_maps
            .list(&params)
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_a_clear_reason_and_no_hot_loop() {
    let client = client().await;
    let crds_guard = CRDS.lock().await;
    let stripped = StrippedCrds::install(&client).await;

    let bed = AwsBed::new().await;
    let org = seed(
        &bed.sdk_config(),
        &OrgSpec {
            root_accounts: 1,
            ous: vec![support::org::OuSpec::new("Prod").accounts(1)],
        },
    )
    .await;
    // The account in the OU cannot be reached: Blocked, with an Event about it.
    let blocked = org
        .member_accounts()
        .find(|a| a.parent_id != org.root_id)
        .expect("an account in an OU")
        .id
        .clone();
    bed.proxy.deny_assume_role([blocked.clone()]);
    let account = &org.managing_account_id;
    let role = managing_role(account);
    let mut matrix = Matrix {
        client: &client,
        bed: &bed,
        cases: Vec::new(),
    };
    use ConditionStatus::{False, True};
    use ConditionType::{Authenticated, Discovered, Ready, Scheduled};

    matrix
        .case(
            "malformed role ARN (schema stripped)",
            on_connection(
                "malformed",
                serde_json::json!({ "roleArn": "arn:aws:iam::12345:role/orgconnect" }),
            ),
            vec![],
            expect(
                &[
                    (Authenticated, False, "InvalidRoleArn"),
                    (Ready, False, "NotConnected"),
                ],
                &["arn:aws:iam::12345:role/orgconnect", "12 digits"],
            ),
        )
        .await;
    matrix
        .case(
            "aws-cn role ARN in us-east-1",
            on_connection(
                "china",
                serde_json::json!({
                    "roleArn": format!("arn:aws-cn:iam::{account}:role/orgconnect"),
                    "region": "us-east-1",
                }),
            ),
            vec![],
            expect(
                &[
                    (Authenticated, False, "PartitionMismatch"),
                    (Ready, False, "NotConnected"),
                ],
                &["aws-cn", "us-east-1"],
            ),
        )
        .await;
    matrix
        .case(
            "aws role ARN in cn-north-1",
            on_connection(
                "global",
                serde_json::json!({ "roleArn": role, "region": "cn-north-1" }),
            ),
            vec![],
            expect(
                &[(Authenticated, False, "PartitionMismatch")],
                &["partition aws ", "cn-north-1"],
            ),
        )
        .await;
    let secret_spec = serde_json::json!({
        "roleArn": role,
        "credentials": { "source": "Secret", "secretRef": { "name": "aws-keys" } },
    });
    matrix
        .case(
            "empty Secret",
            on_connection("empty-secret", secret_spec.clone()),
            vec![("aws-keys", vec![])],
            expect(
                &[(Authenticated, False, "SecretKeyMissing")],
                &["aws-keys", "AWS_ACCESS_KEY_ID"],
            ),
        )
        .await;
    matrix
        .case(
            "Secret with the wrong keys",
            on_connection("wrong-keys", secret_spec),
            vec![(
                "aws-keys",
                vec![
                    ("access_key", "AKIAWRONGKEYNAME"),
                    ("secret_key", "not-under-the-right-key"),
                ],
            )],
            expect(
                &[(Authenticated, False, "SecretKeyMissing")],
                &["aws-keys", "AWS_ACCESS_KEY_ID"],
            ),
        )
        .await;
    matrix
        .case(
            "memberAccess.concurrency: 0 (schema stripped)",
            on_connection(
                "no-concurrency",
                serde_json::json!({ "roleArn": role, "memberAccess": { "concurrency": 0 } }),
            ),
            vec![],
            expect(
                &[(Ready, False, "InvalidSpec")],
                &["memberAccess.concurrency is 0", "between 1 and 1000"],
            ),
        )
        .await;
    matrix
        .case(
            "accountSelector naming an OU the organization lacks",
            on_connection(
                "missing-ou",
                serde_json::json!({
                    "roleArn": role,
                    "accountSelector": { "includeOrganizationalUnits": ["ou-zzzz-zzzzzzzz"] },
                }),
            ),
            vec![],
            expect(
                &[
                    (Discovered, False, "UnknownOrganizationalUnit"),
                    (Ready, False, "NotConnected"),
                ],
                &["ou-zzzz-zzzzzzzz", &org.id],
            ),
        )
        .await;
    matrix
        .case(
            "unknown time zone",
            on_schedule(
                "mars",
                serde_json::json!({
                    "connectionRef": { "name": "acme" },
                    "timeZone": "Mars/Olympus_Mons",
                }),
            ),
            vec![],
            expect(
                &[
                    (Scheduled, False, "InvalidSchedule"),
                    (Ready, False, "InvalidSchedule"),
                ],
                &["Mars/Olympus_Mons", "time zone"],
            ),
        )
        .await;
    matrix
        .case(
            "cron with six fields",
            on_schedule(
                "seconds",
                serde_json::json!({
                    "connectionRef": { "name": "acme" },
                    "schedule": "0 */30 * * * *",
                }),
            ),
            vec![],
            expect(
                &[
                    (Scheduled, False, "InvalidSchedule"),
                    (Ready, False, "InvalidSchedule"),
                ],
                &["0 */30 * * * *", "cron"],
            ),
        )
        .await;
    let name_253 = long_name(253);
    let long_253 = matrix
        .case(
            "253-character connection name",
            on_connection(&name_253, serde_json::json!({ "roleArn": role })),
            vec![],
            expect(&[(Ready, True, "Connected")], &[]),
        )
        .await;
    let name_100 = long_name(100);
    let long_100 = matrix
        .case(
            "100-character connection name",
            on_connection(&name_100, serde_json::json!({ "roleArn": role })),
            vec![],
            expect(&[(Ready, True, "Connected")], &[]),
        )
        .await;
    // A 253-character schedule of the 100-character connection, started at once once its
    // accounts are Connected (see `check_long_name`): Job names have at most 63 characters.
    let schedule_253 = long_name(253);
    let started = tokio::time::Instant::now();
    let cases = &matrix.cases;

    for case in cases {
        let condition = case.check(&client).await;
        for name in &case.expected.names {
            assert!(
                condition.message.contains(name.as_str()),
                "{}: the message names {name:?}: {:?}",
                case.what,
                condition.message
            );
        }
        eprintln!(
            "{}: {} {} — {}",
            case.what, condition.type_, condition.reason, condition.message
        );
    }
    check_long_name(&client, &cases[long_253], (&org, &blocked), None).await;
    check_long_name(
        &client,
        &cases[long_100],
        (&org, &blocked),
        Some(&schedule_253),
    )
    .await;
    let missing_ou: Api<MemberAccount> = Api::namespaced(
        client.clone(),
        &cases
            .iter()
            .find(|c| c.name == "missing-ou")
            .expect("case")
            .namespace,
    );
    assert!(
        missing_ou
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "a selector naming a missing OU creates no MemberAccounts"
    );

    // A minute of the operators running: no hot loop, and the answers hold. Everything
    // has settled well before the second half, which must be all but quiet.
    tokio::time::sleep((OBSERVATION / 2).saturating_sub(started.elapsed())).await;
    let half = reconcile_counts(cases, (long_253, long_100), org.accounts.len()).await;
    tokio::time::sleep(OBSERVATION.saturating_sub(started.elapsed())).await;
    let counts = reconcile_counts(cases, (long_253, long_100), org.accounts.len()).await;
    eprintln!("reconciles in {:?}:", started.elapsed());
    for ((what, total, bound), (_, before, _)) in counts.iter().zip(&half) {
        eprintln!(
            "  {total:>3} (at most {bound:>2}; {:>2} in the second half)  {what}",
            total - before
        );
    }
    for ((what, total, bound), (_, before, _)) in counts.iter().zip(&half) {
        assert!(
            total <= bound,
            "{what}: {total} reconciles in a minute (at most {bound})"
        );
        assert!(
            total - before <= QUIET_RECONCILES,
            "{what}: {} reconciles in the second half of the minute (at most {QUIET_RECONCILES})",
            total - before
        );
    }
    for case in cases {
        let condition = case.check(&client).await;
        assert_eq!(
            condition.reason, case.expected.conditions[0].2,
            "{}: the answer holds",
            case.what
        );
    }

    // Every operator is still alive: a touched object is reconciled once more.
    for case in cases {
        let before = case.reconciles().await;
        case.touch(&client).await;
        eventually(
            &format!("{}: the operator reconciles a touched object", case.what),
            Duration::from_secs(20),
            || async { (case.reconciles().await > before).then_some(()) },
        )
        .await;
    }

    // Revoking a long-named connection removes its MemberAccounts, Jobs and ConfigMaps.
    check_revoke(&client, &cases[long_253]).await;
    check_revoke(&client, &cases[long_100]).await;

    // Leave nothing behind for operators of later tests that watch every namespace.
    for case in cases {
        case.delete(&client).await;
    }
    let schedules: Api<SyncSchedule> = Api::namespaced(client.clone(), &cases[long_100].namespace);
    let _ = schedules
        .delete(&schedule_253, &DeleteParams::default())
        .await;
    drop(matrix);
    stripped.restore(&client).await;
    drop(crds_guard);
}

// ---------------------------------------------------------------------------------------
// Secrets never appear in logs, Events or status
// ---------------------------------------------------------------------------------------

/// What went through [`StsRecorder`].
#[derive(Default)]
struct Recorded {
    /// Secret access keys and session tokens STS answered with.
    minted: BTreeSet<String>,
    /// Session tokens requests presented (`X-Amz-Security-Token`).
    presented: BTreeSet<String>,
    /// The access key ids requests were signed with.
    signed_by: BTreeSet<String>,
}

struct RecorderShared {
    upstream: String,
    client: HttpClient<HttpConnector, Full<Bytes>>,
    recorded: Mutex<Recorded>,
}

/// A pass-through in front of the fault proxy that keeps the session credentials STS
/// mints for the operator, so the test knows which values must never leak.
struct StsRecorder {
    addr: SocketAddr,
    shared: Arc<RecorderShared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StsRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn xml_values(body: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    body.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split(&close).next())
        .map(str::to_owned)
        .collect()
}

impl StsRecorder {
    async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let shared = Arc::new(RecorderShared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: HttpClient::builder(TokioExecutor::new()).build(connector),
            recorded: Mutex::new(Recorded::default()),
        });
        let accept = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = accept.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| forward(shared.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, shared, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn minted(&self) -> BTreeSet<String> {
        self.shared.recorded.lock().expect("lock").minted.clone()
    }

    fn presented(&self) -> BTreeSet<String> {
        self.shared.recorded.lock().expect("lock").presented.clone()
    }

    fn signed_by(&self) -> BTreeSet<String> {
        self.shared.recorded.lock().expect("lock").signed_by.clone()
    }
}

async fn forward(
    shared: Arc<RecorderShared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (mut parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let mut recorded = shared.recorded.lock().expect("lock");
        if let Some(token) = header("x-amz-security-token") {
            recorded.presented.insert(token.to_owned());
        }
        let key_id = header("authorization")
            .and_then(|auth| auth.split("Credential=").nth(1))
            .and_then(|rest| rest.split('/').next());
        if let Some(key_id) = key_id {
            recorded.signed_by.insert(key_id.to_owned());
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    parts.uri = format!("{}{path}", shared.upstream)
        .parse()
        .expect("upstream URI");
    let answer = match shared
        .client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            let mut response = Response::new(Full::new(Bytes::from(format!("upstream: {e}"))));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            return Ok(response);
        }
    };
    let (parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let mut recorded = shared.recorded.lock().expect("lock");
    for tag in ["SecretAccessKey", "SessionToken"] {
        recorded.minted.extend(xml_values(&text, tag));
    }
    drop(recorded);
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// The real binary with debug logging into `log`, its AWS calls through `endpoint`.
struct Process {
    child: std::process::Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_operator(
    namespace: &str,
    endpoint: &str,
    credentials: &aws_sdk_sts::config::Credentials,
    log: &Path,
) -> Process {
    let kubeconfig = std::env::var(KUBECONFIG_ENV).expect("test bed kubeconfig");
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let file = std::fs::File::create(log).expect("log file");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_orgconnect"))
        .args([
            "run",
            "--namespace",
            namespace,
            "--http-address",
            &http.to_string(),
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", "orgconnect-secrets")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("RUST_LOG", "debug")
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("start orgconnect run");
    Process { child }
}

/// Every object of kind `K` in the namespace, as JSON text, named for the report.
async fn dump<K>(client: &Client, namespace: &str) -> Vec<(String, String)>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
    <K as Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|object| {
            let kind = K::kind(&Default::default()).to_string();
            (
                format!("{kind} {}", object.name_any()),
                serde_json::to_string(&object).expect("json"),
            )
        })
        .collect()
}

fn base64(value: &str) -> String {
    // The form a Secret's value takes in its `data`.
    serde_json::to_value(ByteString(value.as_bytes().to_vec()))
        .expect("bytes serialize")
        .as_str()
        .expect("base64 text")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_events_or_status() {
    let client = client().await;
    match CRDS.try_lock() {
        Ok(_guard) => install_crds(&client).await,
        // The matrix holds the CRDs (installed, without validation): wait for them.
        Err(_) => {
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            for crd in orgconnect::crds::all() {
                wait_established(&crds, &crd.name_any()).await;
            }
        }
    }
    let bed = AwsBed::new().await;
    let org = seed(&bed.sdk_config(), &OrgSpec::flat(3)).await;
    let blocked = org.member_accounts().next().expect("a member").id.clone();
    bed.proxy.deny_assume_role([blocked.clone()]);

    // The Secret's keys, which alone may assume the managing role.
    let suffix = unique_suffix();
    let key_id = format!("AKIASECRET{}", suffix.to_uppercase());
    let secret_key = format!("MarkerSecretAccessKey{suffix}x{}", rand::random::<u64>());
    let secret_token = format!("MarkerSessionToken{suffix}x{}", rand::random::<u64>());
    bed.proxy
        .map_principal(&key_id, &secret_key, &org.managing_account_id);
    bed.proxy.trust(
        &org.managing_account_id,
        Trust {
            principals: vec![key_id.clone()],
            external_id: None,
        },
    );
    // The operator's own identity: no way into the organization.
    let own = bed.unmapped_credentials();

    let ns = namespace(&client, "secrets").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let keys = [
        ("AWS_ACCESS_KEY_ID", key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret_key.as_str()),
        ("AWS_SESSION_TOKEN", secret_token.as_str()),
    ];
    create_secret(&secrets, "aws-keys", &keys).await;

    let recorder = StsRecorder::start(&bed.proxy.url()).await;
    let log = std::env::temp_dir().join(format!("orgconnect-secrets-{suffix}.log"));
    let process = spawn_operator(&ns, &recorder.url(), &own, &log);

    let connections: Api<AwsOrgConnection> = Api::namespaced(client.clone(), &ns);
    let role = managing_role(&org.managing_account_id);
    apply(
        &connections,
        connection(
            "acme",
            serde_json::json!({
                "roleArn": role,
                "credentials": { "source": "Secret", "secretRef": { "name": "aws-keys" } },
            }),
        ),
    )
    .await;
    apply(
        &connections,
        connection("outsider", serde_json::json!({ "roleArn": role })),
    )
    .await;

    // A normal cycle: the Secret's keys assume the role, members are probed, one Blocked.
    use ConditionStatus::{False, True};
    let wait = |name: &'static str, type_, status, reason: &'static str| {
        let connections = connections.clone();
        async move {
            wait_expected(
                &connections,
                name,
                &Expected {
                    conditions: vec![(type_, status, reason)],
                    names: Vec::new(),
                },
            )
            .await
        }
    };
    wait("acme", ConditionType::Authenticated, True, "RoleAssumed").await;
    wait("acme", ConditionType::Ready, True, "Connected").await;
    wait(
        "outsider",
        ConditionType::Authenticated,
        False,
        "AssumeRoleDenied",
    )
    .await;
    let members: Api<MemberAccount> = Api::namespaced(client.clone(), &ns);
    let phases = || async {
        let items = members.list(&ListParams::default()).await.ok()?.items;
        let phases: Vec<(String, MemberPhase)> = items
            .iter()
            .filter_map(|m| Some((m.spec.account_id.clone(), m.status.as_ref()?.phase?)))
            .collect();
        (phases.len() == org.accounts.len()).then_some(phases)
    };
    let settled = eventually("every account has a phase", Duration::from_secs(60), phases).await;
    assert!(
        settled.contains(&(blocked.clone(), MemberPhase::Blocked)),
        "{settled:?}"
    );
    assert!(
        settled
            .iter()
            .filter(|(_, phase)| *phase == MemberPhase::Connected)
            .count()
            == org.accounts.len() - 1,
        "{settled:?}"
    );

    // Throttling: a new discovery and probes of every account while half the calls fail.
    bed.proxy.throttle("*", 0.5);
    connections
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "spec": { "discoveryInterval": "2h" } })),
        )
        .await
        .expect("patch acme");
    eventually("throttled calls", Duration::from_secs(30), || async {
        (throttled(&bed) > 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    bed.proxy.stop_throttling();
    wait_connection_generation(&connections, "acme").await;

    // A sync run, started at once.
    let schedules: Api<SyncSchedule> = Api::namespaced(client.clone(), &ns);
    apply(
        &schedules,
        schedule(
            "sync",
            serde_json::json!({ "connectionRef": { "name": "acme" } }),
            serde_json::json!({ RUN_ANNOTATION: "now" }),
        ),
    )
    .await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    eventually("the sync Job", Duration::from_secs(30), || async {
        let items = jobs.list(&ListParams::default()).await.ok()?.items;
        (!items.is_empty()).then_some(())
    })
    .await;

    // The secret key filed under the wrong name, then put right.
    let wrong = serde_json::json!({ "data": {
        "AWS_SECRET_ACCESS_KEY": null,
        "aws_secret_access_key": base64(&secret_key),
    } });
    secrets
        .patch("aws-keys", &PatchParams::default(), &Patch::Merge(&wrong))
        .await
        .expect("patch Secret");
    wait(
        "acme",
        ConditionType::Authenticated,
        False,
        "SecretKeyMissing",
    )
    .await;
    let right = serde_json::json!({ "data": {
        "AWS_SECRET_ACCESS_KEY": base64(&secret_key),
        "aws_secret_access_key": null,
    } });
    secrets
        .patch("aws-keys", &PatchParams::default(), &Patch::Merge(&right))
        .await
        .expect("patch Secret");
    wait("acme", ConditionType::Authenticated, True, "RoleAssumed").await;
    // Let the logs of that last step be written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(process);

    // The scenario did exercise what it is about.
    let minted = recorder.minted();
    assert!(minted.len() >= 4, "STS minted sessions: {}", minted.len());
    let presented = recorder.presented();
    assert!(
        presented.iter().any(|token| minted.contains(token)),
        "the operator used the sessions STS minted"
    );
    assert!(
        presented.contains(&secret_token) && recorder.signed_by().contains(&key_id),
        "the Secret's keys signed calls to AWS"
    );
    assert!(throttled(&bed) > 2, "calls were throttled");

    // Search everything.
    let mut markers: Vec<(String, String)> = vec![
        ("the Secret's secret access key".into(), secret_key.clone()),
        (
            "the Secret's secret access key, base64".into(),
            base64(&secret_key),
        ),
        ("the Secret's session token".into(), secret_token.clone()),
        (
            "the Secret's session token, base64".into(),
            base64(&secret_token),
        ),
        (
            "the operator's own secret access key".into(),
            own.secret_access_key().to_owned(),
        ),
    ];
    for (i, value) in minted.iter().enumerate() {
        markers.push((format!("minted secret #{i}"), value.clone()));
    }
    let log_text = std::fs::read_to_string(&log).expect("read the log");
    let lines: Vec<&str> = log_text.lines().collect();
    assert!(
        lines.len() > 100,
        "the operator logged {} lines",
        lines.len()
    );
    assert!(
        lines.iter().any(|l| l.contains("\"level\":\"DEBUG\"")),
        "debug lines are logged"
    );
    let mut haystack: Vec<(String, String)> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| (format!("log line {}", i + 1), (*line).to_owned()))
        .collect();
    haystack.extend(dump::<Event>(&client, &ns).await);
    haystack.extend(dump::<AwsOrgConnection>(&client, &ns).await);
    haystack.extend(dump::<MemberAccount>(&client, &ns).await);
    haystack.extend(dump::<SyncSchedule>(&client, &ns).await);
    haystack.extend(dump::<ConfigMap>(&client, &ns).await);
    haystack.extend(dump::<Job>(&client, &ns).await);
    let events = haystack
        .iter()
        .filter(|(w, _)| w.starts_with("Event "))
        .count();
    assert!(events > 3, "{events} Events");
    let mut leaks = Vec::new();
    for (where_, text) in &haystack {
        for (what, marker) in &markers {
            if text.contains(marker.as_str()) {
                leaks.push(format!("{what} in {where_}: {text}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    eprintln!(
        "searched {} log lines and {} objects for {} secret values ({} minted by STS); \
         {} calls throttled",
        lines.len(),
        haystack.len() - lines.len(),
        markers.len(),
        minted.len(),
        throttled(&bed)
    );
    let _ = std::fs::remove_file(&log);
}

/// Calls the proxy throttled, of every operation.
fn throttled(bed: &AwsBed) -> u64 {
    bed.proxy
        .call_counts()
        .keys()
        .map(|operation| bed.proxy.injected(operation))
        .sum()
}

/// Waits until the connection's status describes its current generation and it is Ready.
async fn wait_connection_generation(api: &Api<AwsOrgConnection>, name: &str) {
    eventually(
        &format!("{name} Ready at its generation"),
        Duration::from_secs(60),
        || async {
            let connection = api.get(name).await.ok()?;
            let status = connection.status.as_ref()?;
            let ready = find_condition(&status.conditions, ConditionType::Ready)?;
            (status.observed_generation == connection.metadata.generation
                && ready.status == ConditionStatus::True)
                .then_some(())
        },
    )
    .await;
}
