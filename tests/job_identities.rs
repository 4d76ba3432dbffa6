//! A sync Job's own identity on the strict bed, as EKS gives it: IRSA (a projected service
//! account token exchanged with AssumeRoleWithWebIdentity) and EKS Pod Identity (container
//! credentials from the agent's endpoint). The managing role is made with `orgconnect
//! template managing-role --connection`, which trusts both; the run's generated config is
//! then used by aws-cli, boto3 and aws-sdk-go-v2, as the Job's tools would. A schedule
//! whose identity the role does not trust is refused before any Job starts.
//! (The Secret identity's row of the matrix is in `sync_schedules.rs`.)

mod support;

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use orgconnect::api::SyncSchedule;
use orgconnect::api::condition::{ConditionStatus, ConditionType, find_condition};
use orgconnect::controller::names::SCHEDULE_LABEL;
use support::clients::{self, JobEnvironment, refused_with, run_clients};
use support::eventually;
use support::iam::create_job_role;
use support::oidc::{
    ISSUER, POD_IDENTITY_AUDIENCE, STS_AUDIENCE, issuer_keys, service_account_token,
};
use support::operator::wait_condition;
use support::operator::{create_schedule, create_service_account, request_run};
use support::org::OrgSpec;
use support::pod_identity::PodIdentityAgent;
use support::scenario::Scenario;

/// Where EKS's webhook mounts the IRSA token; the generated config names it.
const IRSA_TOKEN_FILE: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

/// The IRSA trust policy EKS's documentation gives: the cluster's OIDC provider, for one
/// service account, with the STS audience.
fn irsa_trust(account: &str, namespace: &str, service_account: &str) -> serde_json::Value {
    let host = ISSUER.trim_start_matches("https://");
    serde_json::json!({ "Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": { "Federated": format!("arn:aws:iam::{account}:oidc-provider/{host}") },
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": { "StringEquals": {
            format!("{host}:sub"): format!("system:serviceaccount:{namespace}:{service_account}"),
            format!("{host}:aud"): STS_AUDIENCE,
        } },
    }]})
}

/// The Pod Identity trust policy EKS's documentation gives.
fn pod_identity_trust() -> serde_json::Value {
    serde_json::json!({ "Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": { "Service": "pods.eks.amazonaws.com" },
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    }]})
}

/// The generated AWS config of the first run of schedule `name`.
async fn run_config(scenario: &Scenario, name: &str) -> String {
    let jobs: Api<Job> = scenario.ns.api();
    let job = eventually(
        &format!("a run of {name}"),
        Duration::from_secs(60),
        || async {
            jobs.list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}={name}")))
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        },
    )
    .await;
    let maps: Api<ConfigMap> = scenario.ns.api();
    let map = maps
        .get(&job.name_any())
        .await
        .expect("the run's ConfigMap");
    map.data
        .and_then(|d| d.get("aws-config").cloned())
        .expect("aws-config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irsa_and_pod_identity_jobs_reach_every_account_and_an_untrusted_one_is_refused() {
    let scenario = Scenario::build("job-identity", &OrgSpec::flat(2))
        .generated_external_id()
        .start()
        .await;
    let bed = &scenario.bed;
    let ns = &scenario.ns;
    // The cluster's account: its OIDC provider and the roles the Jobs run as.
    let (cluster_account, admin) = bed.add_principal();
    let iam = aws_sdk_iam::Client::new(&bed.sdk_config_with(admin));
    iam.create_open_id_connect_provider()
        .url(ISSUER)
        .client_id_list(STS_AUDIENCE)
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .expect("CreateOpenIDConnectProvider");
    bed.proxy
        .trust_oidc_issuer(ISSUER, issuer_keys(&ns.client).await);
    let irsa = create_job_role(
        &iam,
        "inventory-irsa",
        &irsa_trust(&cluster_account, &ns.name, "inventory"),
    )
    .await;
    let pod_role = create_job_role(&iam, "inventory-pod-identity", &pod_identity_trust()).await;
    let stranger = create_job_role(
        &iam,
        "stranger-irsa",
        &irsa_trust(&cluster_account, &ns.name, "stranger"),
    )
    .await;
    let agent = PodIdentityAgent::start(
        bed.proxy.session_issuer(),
        HashMap::from([(
            (ns.name.clone(), "inventory-pods".to_owned()),
            pod_role.clone(),
        )]),
    )
    .await;

    let accounts: Api<ServiceAccount> = ns.api();
    create_service_account(&accounts, "inventory", Some(&irsa)).await;
    create_service_account(&accounts, "inventory-pods", None).await;
    let schedules: Api<SyncSchedule> = ns.api();
    create_schedule(&schedules, "irsa", "inventory", serde_json::json!({})).await;
    create_schedule(
        &schedules,
        "pod-identity",
        "inventory-pods",
        serde_json::json!({ "podIdentityRoleArn": pod_role }),
    )
    .await;

    // The role from `template managing-role --connection` trusts both Job roles.
    scenario
        .connect_generated("acme", serde_json::json!({}))
        .await;
    wait_condition(
        &scenario.connections(),
        "acme",
        ConditionType::Ready,
        ConditionStatus::True,
        "Connected",
    )
    .await;
    eventually(
        "every schedule names its Jobs' principal",
        Duration::from_secs(30),
        || async {
            let principal = |name: &str| {
                let schedules = schedules.clone();
                let name = name.to_owned();
                async move { schedules.get(&name).await.ok()?.status?.job_principal }
            };
            (principal("irsa").await.as_deref() == Some(irsa.as_str())
                && principal("pod-identity").await.as_deref() == Some(pod_role.as_str()))
            .then_some(())
        },
    )
    .await;

    // A schedule added later, whose IRSA role the managing role was never told about.
    create_service_account(&accounts, "stranger", Some(&stranger)).await;
    create_schedule(&schedules, "stranger", "stranger", serde_json::json!({})).await;
    for name in ["irsa", "pod-identity", "stranger"] {
        request_run(&schedules, name).await;
    }
    let refused = eventually(
        "the untrusted schedule is refused",
        Duration::from_secs(60),
        || async {
            let status = schedules.get("stranger").await.ok()?.status?;
            find_condition(&status.conditions, ConditionType::Ready)
                .filter(|c| c.reason == "JobPrincipalNotTrusted")
                .cloned()
        },
    )
    .await;
    assert_eq!(refused.status, ConditionStatus::False);
    assert!(
        refused.message.contains(&stranger)
            && refused.message.contains("sts:ExternalId")
            && refused.message.contains("--connection acme"),
        "the reason names the principal, the statement and the command: {}",
        refused.message
    );
    ns.wait_event("stranger", "Warning", "JobPrincipalNotTrusted")
        .await;

    let managing = scenario.org.managing_account_id.clone();
    let reached: Vec<String> = scenario
        .org
        .member_accounts()
        .map(|a| a.id.clone())
        .chain([managing.clone()])
        .collect();
    let dir = std::env::temp_dir().join(format!("orgconnect-identities-{}", ns.name));

    // IRSA: the projected token, as the kubelet writes it, at the path the config names.
    let token = service_account_token(&accounts, "inventory", STS_AUDIENCE).await;
    let token_file = clients::write(&dir, "irsa-token", &token);
    let config = run_config(&scenario, "irsa").await;
    assert!(config.contains(&format!("role_arn = {irsa}")));
    let config = config.replace(IRSA_TOKEN_FILE, &token_file.to_string_lossy());
    let irsa_job = JobEnvironment {
        config: clients::write(&dir, "irsa-config", &config),
        credentials: None,
        env: Vec::new(),
    };
    run_clients(bed, &irsa_job, &reached, &managing);
    assert!(
        bed.proxy.calls("AssumeRoleWithWebIdentity") > 0,
        "the clients exchanged the token with STS"
    );
    // Another service account's token is no way into the IRSA role.
    let other = service_account_token(&accounts, "stranger", STS_AUDIENCE).await;
    let other_file = clients::write(&dir, "foreign-token", &other);
    let foreign_job = JobEnvironment {
        config: clients::write(
            &dir,
            "foreign-config",
            &config.replace(
                &*token_file.to_string_lossy(),
                &other_file.to_string_lossy(),
            ),
        ),
        credentials: None,
        env: Vec::new(),
    };
    let denied = refused_with(bed, &foreign_job, &reached[0]).expect("a foreign token is refused");
    assert!(denied.contains("AccessDenied"), "{denied}");

    // Pod Identity: the agent's endpoint and the token file EKS puts in the pod.
    let token = service_account_token(&accounts, "inventory-pods", POD_IDENTITY_AUDIENCE).await;
    let config = run_config(&scenario, "pod-identity").await;
    assert!(config.contains("credential_source = EcsContainer"));
    let pod_job = JobEnvironment {
        config: clients::write(&dir, "pod-config", &config),
        credentials: None,
        env: vec![
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI".to_owned(), agent.url()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".to_owned(),
                clients::write(&dir, "pod-token", &token)
                    .to_string_lossy()
                    .into_owned(),
            ),
        ],
    };
    let before = bed.proxy.calls("AssumeRole");
    run_clients(bed, &pod_job, &reached, &managing);
    assert!(bed.proxy.calls("AssumeRole") > before);
    let denials = bed.proxy.iam_denials();
    assert!(
        denials.iter().any(|d| d.contains("stranger")),
        "the foreign token was refused by the role's trust policy: {denials:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
