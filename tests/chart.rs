//! The Helm chart (`charts/orgconnect`): it ships the generated CRDs, lints, refuses bad
//! values, and renders what a restricted, least-privilege operator needs. Every object it
//! renders is applied to the real API server, and the real binary, started with the
//! Deployment's arguments and environment and authenticated as the chart's
//! ServiceAccount, connects an organization, publishes Events, runs a sync Job and
//! revokes, with nothing but the chart's RBAC.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, ResourceExt};
use orgconnect::api::member_account::MemberPhase;
use orgconnect::api::sync_schedule::RUN_ANNOTATION;
use orgconnect::api::{AwsOrgConnection, ConditionStatus, ConditionType, MemberAccount};
use serde::Deserialize;
use serde_json::{Value, json};
use support::aws::AwsBed;
use support::kube::{KUBECONFIG_ENV, TestNamespace};
use support::operator::{
    apply_connection_with_labels, create_key_secret, managing_role, members, wait_condition,
};
use support::org::{OrgSpec, seed};
use support::{eventually, http_get, unique_suffix};

/// The environment variable `scripts/testbed env` sets to the helm binary.
const HELM_ENV: &str = "ORGCONNECT_TESTBED_HELM";
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/orgconnect");
const FIELD_MANAGER: &str = "orgconnect-chart-tests";

fn helm_binary() -> PathBuf {
    std::env::var_os(HELM_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{HELM_ENV} is not set: run the tests with `scripts/testbed run -- cargo test`, \
             which installs helm and sets it"
            )
        })
}

/// Runs helm with its cache, configuration and data in a directory of its own, so the
/// tests neither read nor write the user's helm state.
fn helm(args: &[&str]) -> std::process::Output {
    let binary = helm_binary();
    let home = std::env::temp_dir().join(format!("orgconnect-helm-{}", unique_suffix()));
    std::fs::create_dir_all(&home).expect("a helm home");
    let output = Command::new(binary)
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .unwrap_or_else(|e| panic!("running helm {args:?}: {e}"));
    let _ = std::fs::remove_dir_all(&home);
    output
}

fn set_args(sets: &[&str]) -> Vec<String> {
    sets.iter()
        .flat_map(|set| ["--set".to_owned(), (*set).to_owned()])
        .collect()
}

/// `helm template` of the chart as release `release` in `namespace`, CRDs included: every
/// object it renders.
fn render(release: &str, namespace: &str, sets: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "template",
        release,
        CHART,
        "--namespace",
        namespace,
        "--include-crds",
    ];
    let sets = set_args(sets);
    args.extend(sets.iter().map(String::as_str));
    let output = helm(&args);
    assert!(
        output.status.success(),
        "helm template {sets:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("helm prints UTF-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde_yaml::Value::deserialize(document).expect("helm renders YAML"))
        .filter(|value| !value.is_null())
        .map(|value| serde_json::to_value(value).expect("a rendered object is JSON"))
        .collect()
}

fn kind(object: &Value) -> &str {
    object["kind"]
        .as_str()
        .expect("a rendered object has a kind")
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"]
        .as_str()
        .expect("a rendered object is named")
}

/// The one rendered object of `kind` whose name is `name`.
fn find<'a>(objects: &'a [Value], kind_: &str, name_: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| kind(o) == kind_ && name(o) == name_)
        .collect();
    assert_eq!(found.len(), 1, "{kind_} {name_} among {:?}", kinds(objects));
    found[0]
}

/// `Kind/name` of every object, sorted.
fn kinds(objects: &[Value]) -> Vec<String> {
    let mut listed: Vec<String> = objects
        .iter()
        .map(|o| format!("{}/{}", kind(o), name(o)))
        .collect();
    listed.sort();
    listed
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// The chart's version of the image tag and the crate's must agree, or the default image
/// would not be this code.
fn app_version() -> String {
    let chart: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{CHART}/Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml is YAML");
    chart["appVersion"]
        .as_str()
        .expect("Chart.yaml has appVersion")
        .to_owned()
}

/// Whatever the values, the pod runs under the restricted Pod Security Standard.
fn assert_restricted(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    let container = container(deployment);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert!(
        container["resources"]["requests"].is_object()
            && container["resources"]["limits"]["memory"].is_string(),
        "resources: {}",
        container["resources"]
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "http", "{probe}");
    }
    assert_eq!(container["ports"][0]["name"], "http");
    let env = container["env"].as_array().expect("env");
    let downward = |variable: &str| {
        env.iter()
            .find(|e| e["name"] == variable)
            .map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone())
    };
    assert_eq!(downward("POD_NAMESPACE"), Some(json!("metadata.namespace")));
    assert_eq!(downward("POD_NAME"), Some(json!("metadata.name")));
}

/// No rule anywhere grants a wildcard, and Secrets are never updated or patched: read,
/// and created and deleted for the sync runs' credentials files.
fn assert_least_privilege(objects: &[Value]) {
    for role in objects
        .iter()
        .filter(|o| matches!(kind(o), "Role" | "ClusterRole"))
    {
        for rule in role["rules"].as_array().expect("rules") {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(
                    !strings(&rule[field]).iter().any(|s| s == "*"),
                    "{} {} grants * in {field}: {rule}",
                    kind(role),
                    name(role)
                );
            }
            if strings(&rule["resources"]).iter().any(|r| r == "secrets") {
                assert_eq!(
                    strings(&rule["verbs"]),
                    ["get", "list", "watch", "create", "delete"],
                    "{rule}"
                );
            }
        }
    }
}

#[test]
fn the_chart_ships_exactly_the_generated_crds() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/orgconnect.yaml"))
            .expect("crds/orgconnect.yaml exists");
    let shipped = std::fs::read_to_string(format!("{CHART}/crds/orgconnect.yaml"))
        .expect("charts/orgconnect/crds/orgconnect.yaml exists");
    assert!(
        shipped == committed,
        "charts/orgconnect/crds/orgconnect.yaml is stale: \
         run `cp crds/orgconnect.yaml charts/orgconnect/crds/` and commit it"
    );
}

#[test]
fn the_chart_lints_and_its_schema_refuses_bad_values() {
    for sets in [
        &[][..],
        &[
            "replicaCount=2",
            "watchNamespace=team-a",
            "networkPolicy.enabled=true",
            "serviceMonitor.enabled=true",
            "rbac.aggregateToDefaultRoles=true",
        ][..],
    ] {
        let mut args = vec!["lint", "--strict", CHART];
        let sets = set_args(sets);
        args.extend(sets.iter().map(String::as_str));
        let output = helm(&args);
        assert!(
            output.status.success(),
            "helm lint {sets:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for (set, named) in [
        ("replicaCount=two", "/replicaCount"),
        ("logFormat=xml", "/logFormat"),
        ("probeConcurrency=0", "/probeConcurrency"),
        ("watchNamespace=Not_A_Namespace", "/watchNamespace"),
        (
            "leaderElection.leaseDuration=soon",
            "/leaderElection/leaseDuration",
        ),
        (
            "leaderElection.renewDeadline=later",
            "/leaderElection/renewDeadline",
        ),
        ("replicas=2", "replicas"),
    ] {
        let output = helm(&["template", "refused", CHART, "--set", set]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{set} was accepted");
        assert!(
            stderr.contains(named),
            "the refusal of {set} names {named}: {stderr}"
        );
    }
}

#[test]
fn the_default_values_render_a_restricted_cluster_wide_operator() {
    let objects = render("orgconnect", "ops", &[]);
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole/orgconnect",
            "ClusterRoleBinding/orgconnect",
            "CustomResourceDefinition/awsorgconnections.orgconnect.dev",
            "CustomResourceDefinition/memberaccounts.orgconnect.dev",
            "CustomResourceDefinition/syncschedules.orgconnect.dev",
            "Deployment/orgconnect",
            "Service/orgconnect-metrics",
            "ServiceAccount/orgconnect",
        ]
    );
    assert_eq!(app_version(), env!("CARGO_PKG_VERSION"));
    let deployment = find(&objects, "Deployment", "orgconnect");
    assert_restricted(deployment);
    assert_least_privilege(&objects);
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(
        deployment["spec"]["strategy"]["type"], "Recreate",
        "one replica without leader election: never two side by side"
    );
    let container = container(deployment);
    assert_eq!(
        container["image"],
        format!(
            "ghcr.io/orgconnect/orgconnect:{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(
        strings(&container["args"]),
        [
            "run",
            "--http-address=0.0.0.0:8080",
            "--log-format=json",
            "--probe-concurrency=64",
            "--discovery-concurrency=8",
            // Large sync runs are assembled by an init container of the operator's image.
            format!(
                "--run-image=ghcr.io/orgconnect/orgconnect:{}",
                env!("CARGO_PKG_VERSION")
            )
            .as_str(),
        ]
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let binding = find(&objects, "ClusterRoleBinding", "orgconnect");
    assert_eq!(
        binding["subjects"],
        json!([{ "kind": "ServiceAccount", "name": "orgconnect", "namespace": "ops" }])
    );
    let service = find(&objects, "Service", "orgconnect-metrics");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    // The ServiceMonitor, when asked for, scrapes that Service's port.
    let objects = render("orgconnect", "ops", &["serviceMonitor.enabled=true"]);
    let monitor = find(&objects, "ServiceMonitor", "orgconnect");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        monitor["spec"]["endpoints"],
        json!([{ "port": "http", "path": "/metrics" }])
    );
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"]
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!(["ops"])
    );

    // Leader election asked for with one replica: the flags and the Lease Role, but no
    // PodDisruptionBudget.
    let objects = render(
        "orgconnect",
        "ops",
        &[
            "leaderElection.enabled=true",
            "selector=orgconnect.dev/tenant=a",
        ],
    );
    let elected = find(&objects, "Deployment", "orgconnect");
    let args = strings(&elected["spec"]["template"]["spec"]["containers"][0]["args"]);
    for expected in [
        "--selector=orgconnect.dev/tenant=a",
        "--leader-election",
        "--leader-election-lease=orgconnect",
        "--leader-election-lease-duration=15s",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
    }
    let election = find(&objects, "Role", "orgconnect-leader-election");
    assert_eq!(election["metadata"]["namespace"], "ops");
    assert!(
        !objects.iter().any(|o| kind(o) == "PodDisruptionBudget"),
        "no PodDisruptionBudget for one replica"
    );

    // IRSA: the ServiceAccount carries the role annotation.
    let objects = render(
        "orgconnect",
        "ops",
        &[
            r"serviceAccount.annotations.eks\.amazonaws\.com/role-arn=arn:aws:iam::111122223333:role/orgconnect",
        ],
    );
    assert_eq!(
        find(&objects, "ServiceAccount", "orgconnect")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::111122223333:role/orgconnect"
    );
}

/// Server-side applies every rendered object whose kind the API server serves; returns
/// the `Kind/name` of those applied and of those skipped.
async fn apply_all(client: &Client, objects: &[Value]) -> (Vec<String>, Vec<String>) {
    let (mut applied, mut skipped) = (Vec::new(), Vec::new());
    for value in objects {
        let object: DynamicObject =
            serde_json::from_value(value.clone()).expect("a rendered object");
        let types = object.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("a valid apiVersion");
        let label = format!("{}/{}", types.kind, object.name_any());
        let Ok((resource, capabilities)) = pinned_kind(client, &gvk).await else {
            skipped.push(label);
            continue;
        };
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                object
                    .metadata
                    .namespace
                    .as_deref()
                    .unwrap_or_else(|| panic!("{label} has no namespace")),
                &resource,
            ),
        };
        api.patch(
            &object.name_any(),
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("the API server refused {label}: {e}"));
        applied.push(label);
    }
    applied.sort();
    skipped.sort();
    (applied, skipped)
}

/// Deletes the cluster-scoped objects a test applied (names unique to the test), so the
/// shared bed keeps no ClusterRole granting a namespace that is gone.
async fn delete_cluster_scoped(client: &Client, objects: &[Value]) {
    for value in objects
        .iter()
        .filter(|o| matches!(kind(o), "ClusterRole" | "ClusterRoleBinding"))
    {
        let object: DynamicObject = serde_json::from_value(value.clone()).expect("object");
        let gvk =
            GroupVersionKind::try_from(object.types.as_ref().expect("types")).expect("apiVersion");
        let (resource, _) = pinned_kind(client, &gvk).await.expect("RBAC kinds");
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        api.delete(&object.name_any(), &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting {} {}: {e}", kind(value), name(value)));
    }
}

/// Asks the API server whether `user` may `verb` the resource.
async fn allowed(
    client: &Client,
    user: &str,
    verb: &str,
    (group, resource): (&str, &str),
    namespace: &str,
    name: Option<&str>,
) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                namespace: Some(namespace.to_owned()),
                name: name.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("a SubjectAccessReview")
        .status
        .is_some_and(|status| status.allowed)
}

/// The bed's kubeconfig with every user impersonating `user`, written to a file of the
/// test's own (removed when dropped).
struct ImpersonatingKubeconfig(PathBuf);

impl ImpersonatingKubeconfig {
    fn new(user: &str) -> Self {
        let source = std::env::var(KUBECONFIG_ENV)
            .unwrap_or_else(|_| panic!("{KUBECONFIG_ENV} is not set: run under scripts/testbed"));
        let mut config: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&source).expect("the bed's kubeconfig"))
                .expect("kubeconfig is YAML");
        for entry in config["users"].as_sequence_mut().expect("kubeconfig users") {
            entry["user"]["as"] = serde_yaml::Value::from(user);
        }
        let path =
            std::env::temp_dir().join(format!("orgconnect-chart-{}.kubeconfig", unique_suffix()));
        std::fs::write(&path, serde_yaml::to_string(&config).expect("YAML"))
            .expect("writing the kubeconfig");
        Self(path)
    }
}

impl Drop for ImpersonatingKubeconfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `orgconnect run` started as the chart's Deployment would start it: its arguments (the
/// HTTP address moved to a free loopback port), its environment with the downward API
/// filled in, and the chart's ServiceAccount as its Kubernetes identity.
struct ChartOperator {
    child: Child,
    http: SocketAddr,
    log: PathBuf,
}

impl ChartOperator {
    fn start(
        deployment: &Value,
        extra_args: &[String],
        kubeconfig: &ImpersonatingKubeconfig,
        bed: &AwsBed,
    ) -> Self {
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port");
        let container = container(deployment);
        let mut args: Vec<String> = strings(&container["args"])
            .into_iter()
            .map(|arg| {
                if arg.starts_with("--http-address=") {
                    format!("--http-address={http}")
                } else {
                    arg
                }
            })
            .collect();
        args.extend(extra_args.iter().cloned());
        let pod_namespace = deployment["metadata"]["namespace"]
            .as_str()
            .expect("the Deployment's namespace");
        let log = std::env::temp_dir().join(format!("orgconnect-chart-{}.log", unique_suffix()));
        let output = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map(Stdio::from)
                .expect("the operator's log file")
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_orgconnect"));
        command
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig.0);
        bed.aws_env(&mut command).stdout(output()).stderr(output());
        for variable in container["env"].as_array().expect("env") {
            let key = variable["name"].as_str().expect("an env name");
            let value = match (
                variable["value"].as_str(),
                variable["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            ) {
                (Some(value), _) => value.to_owned(),
                (None, Some("metadata.namespace")) => pod_namespace.to_owned(),
                (None, Some("metadata.name")) => "orgconnect-chart-pod".to_owned(),
                _ => panic!("an env variable the test cannot fill in: {variable}"),
            };
            command.env(key, value);
        }
        let child = command.spawn().expect("starting the orgconnect binary");
        Self { child, http, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChartOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- the operator's log ---\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// What the operator must manage with the chart's RBAC alone, in `namespace`.
struct Scenario<'a> {
    namespace: &'a TestNamespace,
    /// Labels the test's connection and schedule carry (the operator's `--selector`).
    labels: Value,
    /// Base credentials from a Secret (else the operator's default chain).
    secret: bool,
}

/// Connects an organization with one blocked account, waits for Events, runs a sync
/// Job, then deletes the connection and waits for the finalizer to let it go.
async fn connect_sync_and_revoke(bed: &AwsBed, scenario: Scenario<'_>) {
    let ns = scenario.namespace;
    let org = seed(&bed.sdk_config(), &OrgSpec::flat(2)).await;
    let blocked = org
        .member_accounts()
        .next()
        .expect("a member account")
        .id
        .clone();
    bed.proxy.deny_assume_role([blocked.clone()]);
    let mut spec = json!({ "roleArn": managing_role(&org.managing_account_id) });
    if scenario.secret {
        create_key_secret(&ns.api::<Secret>(), "aws-keys", &bed.credentials).await;
        spec["credentials"] = json!({ "source": "Secret", "secretRef": { "name": "aws-keys" } });
    }
    let connections: Api<AwsOrgConnection> = ns.api();
    apply_connection_with_labels(&connections, "acme", spec, scenario.labels.clone()).await;
    let connected = wait_condition(
        &connections,
        "acme",
        ConditionType::Ready,
        ConditionStatus::True,
        "Connected",
    )
    .await;
    assert!(
        connected
            .status
            .as_ref()
            .and_then(|s| s.external_id.as_ref())
            .is_some(),
        "the generated ExternalId is in status"
    );
    assert!(
        connected
            .finalizers()
            .iter()
            .any(|f| f == orgconnect::controller::FINALIZER),
        "the finalizer was added"
    );

    let member_api: Api<MemberAccount> = ns.api();
    eventually("every account probed", Duration::from_secs(60), || async {
        let listed = members(&member_api).await;
        let phase = |id: &str| {
            listed
                .iter()
                .find(|m| m.spec.account_id == id)
                .and_then(|m| m.status.as_ref()?.phase)
        };
        (listed.len() == 3
            && phase(&blocked) == Some(MemberPhase::Blocked)
            && org
                .accounts
                .iter()
                .filter(|a| a.id != blocked)
                .all(|a| phase(&a.id) == Some(MemberPhase::Connected)))
        .then_some(())
    })
    .await;
    let events: Api<Event> = ns.api();
    eventually(
        "a Warning Event for the blocked account",
        Duration::from_secs(30),
        || async {
            let listed = events.list(&ListParams::default()).await.ok()?.items;
            listed
                .iter()
                .any(|e| {
                    e.reporting_controller.as_deref() == Some("orgconnect")
                        && e.type_.as_deref() == Some("Warning")
                        && e.reason.as_deref() == Some("Blocked")
                })
                .then_some(())
        },
    )
    .await;

    let schedules: Api<orgconnect::api::SyncSchedule> = ns.api();
    let schedule = json!({
        "apiVersion": "orgconnect.dev/v1alpha1",
        "kind": "SyncSchedule",
        "metadata": {
            "name": "inventory",
            "labels": scenario.labels,
            "annotations": { RUN_ANNOTATION: "now" },
        },
        "spec": {
            "connectionRef": { "name": "acme" },
            "schedule": "0 0 1 1 *",
            "jobTemplate": { "spec": { "template": { "spec": {
                "containers": [{ "name": "collect", "image": "public.ecr.aws/aws-cli/aws-cli:2.22.0",
                                 "args": ["sts", "get-caller-identity"] }]
            } } } },
        },
    });
    schedules
        .patch(
            "inventory",
            &PatchParams::apply("test-user"),
            &Patch::Apply(&schedule),
        )
        .await
        .expect("apply the SyncSchedule");
    let jobs: Api<Job> = ns.api();
    let job = eventually("the sync Job", Duration::from_secs(30), || async {
        jobs.list(&ListParams::default().labels("orgconnect.dev/sync-schedule=inventory"))
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let config_maps: Api<ConfigMap> = ns.api();
    let config = config_maps
        .get(&job.name_any())
        .await
        .expect("the run's ConfigMap");
    assert!(
        config
            .data
            .as_ref()
            .is_some_and(|d| d.contains_key("aws-config")),
        "the run has an AWS config"
    );
    eventually("run=now to be removed", Duration::from_secs(30), || async {
        let schedule = schedules.get("inventory").await.ok()?;
        let done =
            !schedule.annotations().contains_key(RUN_ANNOTATION) && schedule.status.is_some();
        done.then_some(())
    })
    .await;

    connections
        .delete("acme", &DeleteParams::default())
        .await
        .expect("delete the connection");
    eventually(
        "the connection to be revoked and gone",
        Duration::from_secs(60),
        || async {
            let gone = connections.get_opt("acme").await.ok()?.is_none();
            (gone && members(&member_api).await.is_empty()).then_some(())
        },
    )
    .await;
}

/// The operator answered, and never met a permission it lacked.
async fn assert_healthy_and_never_forbidden(operator: &ChartOperator) {
    let (status, _) = http_get(operator.http, "/healthz")
        .await
        .expect("the operator answers");
    assert_eq!(status, 200);
    let log = operator.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|line| line.to_ascii_lowercase().contains("forbidden"))
        .collect();
    assert!(
        refused.is_empty(),
        "the chart's RBAC refused the operator:\n{}",
        refused.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_chart_applies_and_its_cluster_role_runs_the_operator() {
    let ns = TestNamespace::new("chart").await;
    let release = format!("orgconnect-{}", unique_suffix());
    let objects = render(&release, &ns.name, &[]);
    let (applied, skipped) = apply_all(&ns.client, &objects).await;
    assert_eq!(applied, kinds(&objects), "every default object applies");
    assert!(skipped.is_empty(), "{skipped:?}");

    // With the ServiceMonitor: the bed has no Prometheus Operator, so only it is skipped.
    let monitored = render(&release, &ns.name, &["serviceMonitor.enabled=true"]);
    let (applied, skipped) = apply_all(&ns.client, &monitored).await;
    assert_eq!(skipped, [format!("ServiceMonitor/{release}")]);
    assert_eq!(
        applied,
        kinds(&objects),
        "and the rest applies again unchanged"
    );

    let account = format!("system:serviceaccount:{}:{release}", ns.name);
    let other = TestNamespace::new("chart-other").await;
    for (verb, resource, namespace, expected) in [
        ("watch", ("", "secrets"), &other.name, true),
        ("get", ("", "secrets"), &other.name, true),
        ("create", ("", "secrets"), &ns.name, true),
        ("update", ("", "secrets"), &ns.name, false),
        ("patch", ("", "secrets"), &ns.name, false),
        ("create", ("batch", "jobs"), &other.name, true),
        ("update", ("batch", "jobs"), &other.name, false),
        ("get", ("", "configmaps"), &ns.name, false),
        ("create", ("", "pods"), &ns.name, false),
        (
            "patch",
            ("orgconnect.dev", "memberaccounts"),
            &other.name,
            true,
        ),
        (
            "create",
            ("orgconnect.dev", "awsorgconnections"),
            &ns.name,
            false,
        ),
        // No leader election with one replica: no Lease either.
        ("create", ("coordination.k8s.io", "leases"), &ns.name, false),
    ] {
        assert_eq!(
            allowed(&ns.client, &account, verb, resource, namespace, None).await,
            expected,
            "{verb} {resource:?} in {namespace}"
        );
    }

    // The operator, as that ServiceAccount, watches every namespace; --selector keeps it
    // to this test's objects, since the bed is shared with other tests.
    let bed = AwsBed::new().await;
    let kubeconfig = ImpersonatingKubeconfig::new(&account);
    let run = unique_suffix();
    let deployment = find(&objects, "Deployment", &release);
    let operator = ChartOperator::start(
        deployment,
        &[format!("--selector=orgconnect.dev/chart-test={run}")],
        &kubeconfig,
        &bed,
    );
    let scenario = Scenario {
        namespace: &ns,
        labels: json!({ "orgconnect.dev/chart-test": run }),
        secret: false,
    };
    connect_sync_and_revoke(&bed, scenario).await;
    let (status, _) = http_get(operator.http, "/readyz")
        .await
        .expect("the operator answers");
    assert_eq!(status, 200, "ready once its caches synced");
    assert_healthy_and_never_forbidden(&operator).await;
    drop(operator);
    delete_cluster_scoped(&ns.client, &objects).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_elected_namespaced_chart_applies_and_its_roles_run_the_operator() {
    let ops = TestNamespace::new("chart-ops").await;
    let team = TestNamespace::new("chart-team").await;
    let release = format!("orgconnect-{}", unique_suffix());
    let watch = format!("watchNamespace={}", team.name);
    let objects = render(
        &release,
        &ops.name,
        &[
            "replicaCount=2",
            &watch,
            "serviceMonitor.enabled=false",
            "networkPolicy.enabled=true",
            "rbac.aggregateToDefaultRoles=true",
            "requireGeneratedExternalId=true",
            "logFormat=text",
            "leaderElection.leaseDuration=3s",
            "leaderElection.retryPeriod=500ms",
        ],
    );
    let lease = release.clone();
    assert_eq!(
        kinds(&objects)
            .into_iter()
            .filter(|k| !k.starts_with("CustomResourceDefinition/"))
            .collect::<Vec<_>>(),
        [
            format!("ClusterRole/{release}-edit"),
            format!("ClusterRole/{release}-view"),
            format!("Deployment/{release}"),
            format!("NetworkPolicy/{release}"),
            format!("PodDisruptionBudget/{release}"),
            format!("Role/{release}"),
            format!("Role/{release}-leader-election"),
            format!("RoleBinding/{release}"),
            format!("RoleBinding/{release}-leader-election"),
            format!("Service/{release}-metrics"),
            format!("ServiceAccount/{release}"),
        ],
        "a Role in the watched namespace, a Lease Role in the release's, no operator ClusterRole"
    );
    assert_least_privilege(&objects);
    let deployment = find(&objects, "Deployment", &release);
    assert_restricted(deployment);
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(deployment["spec"]["strategy"].is_null(), "rolling updates");
    let container = container(deployment);
    let args = strings(&container["args"]);
    for expected in [
        format!("--namespace={}", team.name),
        "--require-generated-external-id".to_owned(),
        "--log-format=text".to_owned(),
        "--leader-election".to_owned(),
        format!("--leader-election-lease={lease}"),
        "--leader-election-lease-duration=3s".to_owned(),
        "--leader-election-retry-period=500ms".to_owned(),
    ] {
        assert!(args.contains(&expected), "{expected} in {args:?}");
    }
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--leader-election-renew-deadline")),
        "an empty renewDeadline is derived by the operator: {args:?}"
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"], "/healthz",
        "a standby replica is ready (its /readyz waits for the Lease)"
    );
    let role = find(&objects, "Role", &release);
    assert_eq!(role["metadata"]["namespace"], team.name.as_str());
    let binding = find(&objects, "RoleBinding", &release);
    assert_eq!(binding["subjects"][0]["namespace"], ops.name.as_str());
    let election = find(&objects, "Role", &format!("{release}-leader-election"));
    assert_eq!(election["metadata"]["namespace"], ops.name.as_str());
    let budget = find(&objects, "PodDisruptionBudget", &release);
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    let policy = find(&objects, "NetworkPolicy", &release);
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    let (applied, skipped) = apply_all(&ops.client, &objects).await;
    assert_eq!(applied, kinds(&objects));
    assert!(skipped.is_empty(), "{skipped:?}");

    let account = format!("system:serviceaccount:{}:{release}", ops.name);
    let client = &ops.client;
    for (verb, resource, namespace, name, expected) in [
        ("list", ("", "secrets"), &team.name, None, true),
        ("list", ("", "secrets"), &ops.name, None, false),
        ("create", ("batch", "jobs"), &team.name, None, true),
        ("create", ("batch", "jobs"), &ops.name, None, false),
        (
            "create",
            ("coordination.k8s.io", "leases"),
            &ops.name,
            None,
            true,
        ),
        (
            "update",
            ("coordination.k8s.io", "leases"),
            &ops.name,
            Some(lease.as_str()),
            true,
        ),
        (
            "update",
            ("coordination.k8s.io", "leases"),
            &ops.name,
            Some("someone-else"),
            false,
        ),
        (
            "create",
            ("coordination.k8s.io", "leases"),
            &team.name,
            None,
            false,
        ),
    ] {
        assert_eq!(
            allowed(client, &account, verb, resource, namespace, name).await,
            expected,
            "{verb} {resource:?} {name:?} in {namespace}"
        );
    }

    let bed = AwsBed::new().await;
    let kubeconfig = ImpersonatingKubeconfig::new(&account);
    let operator = ChartOperator::start(deployment, &[], &kubeconfig, &bed);
    let leases: Api<Lease> = ops.api();
    let holder = eventually("the Lease", Duration::from_secs(60), || async {
        leases.get_opt(&lease).await.ok()??.spec?.holder_identity
    })
    .await;
    assert!(
        holder.starts_with("orgconnect-chart-pod_"),
        "the pod (POD_NAME from the downward API) leads: {holder}"
    );
    let scenario = Scenario {
        namespace: &team,
        labels: json!({}),
        secret: true,
    };
    connect_sync_and_revoke(&bed, scenario).await;
    assert_healthy_and_never_forbidden(&operator).await;
    drop(operator);
    delete_cluster_scoped(&ops.client, &objects).await;
}
