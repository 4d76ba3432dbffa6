//! The SyncSchedule reconciler on the test bed. The bed's Job controller makes each run's
//! Pod, but no node runs it: the tests mark Jobs Complete as its Pod would make them.

mod support;

use support::scenario::Scenario;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use orgconnect::api::member_account::MemberPhase;
use orgconnect::api::sync_schedule::{RunMode, RunOutcome};
use orgconnect::api::{
    AwsOrgConnection, ConditionStatus, ConditionType, MemberAccount, SyncSchedule, find_condition,
};
use support::aws::AwsBed;
use support::clients::{self, JobEnvironment, run_clients};
use support::eventually;
use support::iam::{delete_role, deploy_managing_role};
use support::kube::TestNamespace;
use support::operator::{
    apply_connection, create_key_secret, in_namespace, managing_role, members, request_run, start,
};
use support::org::{OrgSpec, SeededOrg, seed};
use support::runs::{
    SCHEDULE_LABEL, apply_schedule, complete, jobs_of, render_parts, run_inventory_now,
    wait_for_pod, wait_pods_gone,
};

const CONNECTION_LABEL: &str = "orgconnect.dev/connection";

/// Applies connection `acme` to `org`'s managing role and waits until its `accounts`
/// MemberAccounts are all Connected.
async fn connect_acme(
    ns: &TestNamespace,
    org: &SeededOrg,
    external_id: &str,
    accounts: usize,
) -> (Api<AwsOrgConnection>, Api<MemberAccount>) {
    let connections: Api<AwsOrgConnection> = ns.api();
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({
            "roleArn": managing_role(&org.managing_account_id),
            "externalId": external_id,
        }),
    )
    .await;
    let member_api: Api<MemberAccount> = ns.api();
    eventually("accounts Connected", Duration::from_secs(60), || async {
        let listed = members(&member_api).await;
        (listed.len() == accounts
            && listed
                .iter()
                .all(|m| m.status.as_ref().and_then(|s| s.phase) == Some(MemberPhase::Connected)))
        .then_some(())
    })
    .await;
    (connections, member_api)
}

fn env_of(job: &Job) -> std::collections::BTreeMap<String, String> {
    let container = &job
        .spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod")
        .containers[0];
    container
        .env
        .iter()
        .flatten()
        .map(|e| {
            let value = e.value.clone().unwrap_or_else(|| {
                let secret = e
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .expect("value or secret");
                format!("secret:{}/{}", secret.name, secret.key)
            });
            (e.name.clone(), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_demand_with_a_working_aws_config_then_incrementally_and_prunes_history() {
    let bed = AwsBed::new().await;
    let org = seed(&bed.sdk_config(), &OrgSpec::flat(3)).await;
    let mut ids = org.member_accounts().map(|a| a.id.clone());
    let blocked = ids.next().expect("account");
    let connected: Vec<String> = ids.collect();
    // An account without its member role.
    delete_role(&bed, &blocked, "OrganizationAccountAccessRole").await;
    // The strict bed: the managing role from its template trusts the Secret's keys.
    let external_id = format!("ext-{}", support::unique_suffix());
    deploy_managing_role(&bed, &external_id, "OrganizationAccountAccessRole", |_| {}).await;
    bed.proxy.enforce_iam();

    let ns = TestNamespace::new("sync").await;
    create_key_secret(&ns.api::<Secret>(), "aws-keys", &bed.credentials).await;
    let _operator = start(
        ns.client.clone(),
        bed.operator_config(bed.unmapped_credentials()),
        in_namespace(&ns.name),
    );
    let connections: Api<AwsOrgConnection> = ns.api();
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({
            "roleArn": managing_role(&org.managing_account_id),
            "externalId": external_id,
            "credentials": { "source": "Secret", "secretRef": { "name": "aws-keys" } },
        }),
    )
    .await;
    let member_api: Api<MemberAccount> = ns.api();
    eventually("every account probed", Duration::from_secs(60), || async {
        let listed = members(&member_api).await;
        (listed.len() == 4
            && listed.iter().all(|m| {
                matches!(
                    m.status.as_ref().and_then(|s| s.phase),
                    Some(MemberPhase::Connected | MemberPhase::Blocked)
                )
            }))
        .then_some(())
    })
    .await;

    let schedules: Api<SyncSchedule> = ns.api();
    apply_schedule(
        &schedules,
        "inventory",
        serde_json::json!({
            "connectionRef": { "name": "acme" },
            "schedule": "0 0 1 1 *",
            "successfulJobsHistoryLimit": 1,
            "jobTemplate": { "spec": { "backoffLimit": 0, "template": { "spec": {
                "containers": [{ "name": "collect", "image": "public.ecr.aws/aws-cli/aws-cli:2.22.0",
                                 "args": ["sts", "get-caller-identity"] }]
            } } } },
        }),
    )
    .await;
    let scheduled = eventually(
        "the schedule to be Scheduled",
        Duration::from_secs(30),
        || async {
            let schedule = schedules.get("inventory").await.ok()?;
            let status = schedule.status.clone()?;
            let condition = find_condition(&status.conditions, ConditionType::Scheduled)?;
            (condition.status == ConditionStatus::True).then_some(status)
        },
    )
    .await;
    assert!(scheduled.next_schedule_time.is_some());
    // Secret mode: the Jobs present the Secret's keys, the operator's own principal.
    let operator_principal = connections
        .get("acme")
        .await
        .expect("connection")
        .status
        .and_then(|s| s.operator_principal);
    assert!(operator_principal.is_some());
    assert_eq!(scheduled.job_principal, operator_principal);

    let jobs: Api<Job> = ns.api();
    request_run(&schedules, "inventory").await;
    let first = eventually("one Job", Duration::from_secs(30), || async {
        let listed = jobs_of(&jobs, "inventory").await;
        (listed.len() == 1).then(|| listed[0].clone())
    })
    .await;
    let env = env_of(&first);
    assert_eq!(env["AWS_CONFIG_FILE"], "/etc/orgconnect/aws-config");
    assert_eq!(env["ORGCONNECT_MODE"], "backfill");
    assert_eq!(env["ORGCONNECT_CONNECTION"], "acme");
    assert!(
        env["ORGCONNECT_SINCE"]
            .parse::<k8s_openapi::jiff::Timestamp>()
            .is_ok()
    );
    // The Secret's keys are a profile of the run's credentials file, never the standard
    // environment variables (which tools put ahead of the profile AWS_PROFILE picks).
    assert!(!env.contains_key("AWS_ACCESS_KEY_ID"), "{env:?}");
    assert!(!env.contains_key("AWS_SECRET_ACCESS_KEY"), "{env:?}");
    assert_eq!(
        env["AWS_SHARED_CREDENTIALS_FILE"],
        "/etc/orgconnect/credentials"
    );
    let pod = first
        .spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "orgconnect")
        .expect("volume");
    let sources = volume
        .projected
        .as_ref()
        .and_then(|p| p.sources.clone())
        .unwrap_or_default();
    assert_eq!(
        sources
            .iter()
            .map(|s| {
                s.config_map
                    .as_ref()
                    .map(|c| format!("configmap/{}", c.name))
                    .or_else(|| s.secret.as_ref().map(|c| format!("secret/{}", c.name)))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>(),
        [
            format!("configmap/{}", first.name_any()),
            format!("secret/{}", first.name_any())
        ]
    );
    assert!(
        pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == "/etc/orgconnect")
    );

    // The generated AWS config works with the real AWS CLI, one profile per Connected account.
    let config_maps: Api<ConfigMap> = ns.api();
    let config_map = config_maps
        .get(&first.name_any())
        .await
        .expect("the run's ConfigMap");
    let data = config_map.data.expect("data");
    let config = &data["aws-config"];
    assert!(
        !config.contains(&format!("[profile {blocked}]")),
        "a Blocked account has no profile"
    );
    let accounts: serde_json::Value =
        serde_json::from_str(&data["accounts.json"]).expect("accounts.json");
    assert_eq!(accounts.as_array().map(Vec::len), Some(connected.len() + 1));
    assert!(config.contains("sts_regional_endpoints = regional"));
    let run_secret = ns
        .api::<Secret>()
        .get(&first.name_any())
        .await
        .expect("the run's credentials Secret");
    let credentials = run_secret
        .data
        .as_ref()
        .and_then(|d| d.get("credentials"))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .expect("a credentials file");
    assert!(credentials.starts_with("[orgconnect-base]\n"));
    let dir = std::env::temp_dir().join(format!("orgconnect-run-{}", ns.name));
    let job = JobEnvironment {
        config: clients::write(&dir, "aws-config", config),
        credentials: Some(clients::write(&dir, "credentials", &credentials)),
        env: Vec::new(),
    };
    let reached: Vec<String> = connected
        .iter()
        .chain([&org.managing_account_id])
        .cloned()
        .collect();
    run_clients(&bed, &job, &reached, &org.managing_account_id);
    let _ = std::fs::remove_dir_all(&dir);

    let pods: Api<Pod> = ns.api();
    wait_for_pod(&pods, &first.name_any()).await;

    // Forbid: a second manual run while the first is active starts nothing.
    request_run(&schedules, "inventory").await;
    assert_eq!(jobs_of(&jobs, "inventory").await.len(), 1);

    // The first run succeeds: backfill is done and the next run is incremental.
    complete(&jobs, &first.name_any()).await;
    eventually("the run recorded", Duration::from_secs(30), || async {
        let status = schedules.get("inventory").await.ok()?.status?;
        let last = status.last_run?;
        (last.outcome == RunOutcome::Succeeded
            && last.mode == RunMode::Backfill
            && status.backfill_done)
            .then_some(())
    })
    .await;
    request_run(&schedules, "inventory").await;
    let second = eventually("a second Job", Duration::from_secs(30), || async {
        let listed = jobs_of(&jobs, "inventory").await;
        listed
            .iter()
            .find(|j| j.name_any() != first.name_any())
            .cloned()
    })
    .await;
    assert_eq!(env_of(&second)["ORGCONNECT_MODE"], "incremental");
    complete(&jobs, &second.name_any()).await;

    // successfulJobsHistoryLimit 1: the first run, its ConfigMap and its credentials
    // Secret are pruned.
    eventually("the older run pruned", Duration::from_secs(30), || async {
        let listed = jobs_of(&jobs, "inventory").await;
        let gone = config_maps.get_opt(&first.name_any()).await.ok()?.is_none()
            && ns
                .api::<Secret>()
                .get_opt(&first.name_any())
                .await
                .ok()?
                .is_none();
        (listed.len() == 1 && listed[0].name_any() == second.name_any() && gone).then_some(())
    })
    .await;
    // And the pruned run's Pod with it, by the garbage collector.
    wait_pods_gone(&pods, &first.name_any()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_schedule_or_time_zone_is_reported() {
    let bed = AwsBed::new().await;
    let ns = TestNamespace::new("bad-cron").await;
    let _operator = start(
        ns.client.clone(),
        bed.operator_config(bed.credentials.clone()),
        in_namespace(&ns.name),
    );
    let schedules: Api<SyncSchedule> = ns.api();
    let template = serde_json::json!({ "spec": { "template": { "spec": {
        "containers": [{ "name": "c", "image": "busybox" }] } } } });
    for (name, schedule, zone, quoted) in [
        ("six-fields", "0 */5 * * * *", None, "0 */5 * * * *"),
        (
            "bad-zone",
            "@daily",
            Some("Mars/Olympus_Mons"),
            "Mars/Olympus_Mons",
        ),
    ] {
        let mut spec = serde_json::json!({
            "connectionRef": { "name": "acme" },
            "schedule": schedule,
            "jobTemplate": template,
        });
        if let Some(zone) = zone {
            spec["timeZone"] = serde_json::Value::from(zone);
        }
        apply_schedule(&schedules, name, spec).await;
        let condition = eventually(
            &format!("{name}: InvalidSchedule"),
            Duration::from_secs(30),
            || async {
                let status = schedules.get(name).await.ok()?.status?;
                let condition = find_condition(&status.conditions, ConditionType::Ready)?.clone();
                (condition.reason == "InvalidSchedule").then_some(condition)
            },
        )
        .await;
        assert_eq!(condition.status, ConditionStatus::False);
        assert!(condition.message.contains(quoted), "{}", condition.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_slot_starts_one_job_named_for_its_slot() {
    let Scenario {
        bed: _bed,
        external_id,
        org,
        ns,
        operator: _operator,
        ..
    } = Scenario::start("cron", &OrgSpec::flat(1)).await;
    connect_acme(&ns, &org, &external_id, 2).await;
    let schedules: Api<SyncSchedule> = ns.api();
    apply_schedule(
        &schedules,
        "every-minute",
        serde_json::json!({
            "connectionRef": { "name": "acme" },
            "schedule": "* * * * *",
            "jobTemplate": { "spec": { "template": { "spec": {
                "containers": [{ "name": "c", "image": "busybox" }] } } } },
        }),
    )
    .await;
    let jobs: Api<Job> = ns.api();
    // The next minute boundary starts exactly one Job, named for its slot.
    let job = eventually("the slot's Job", Duration::from_secs(75), || async {
        jobs_of(&jobs, "every-minute").await.into_iter().next()
    })
    .await;
    // The operator records the slot in status right after creating its Job.
    let status = eventually("lastScheduleTime", Duration::from_secs(30), || async {
        let status = schedules.get("every-minute").await.ok()?.status?;
        status.last_schedule_time.is_some().then_some(status)
    })
    .await;
    let slot = status.last_schedule_time.expect("lastScheduleTime").0;
    assert_eq!(slot.as_second() % 60, 0, "slots are whole minutes");
    assert_eq!(
        job.name_any(),
        format!("every-minute-{}", slot.as_second() / 60)
    );
    assert!(status.next_schedule_time.is_some_and(|next| next.0 > slot));
    assert_eq!(jobs_of(&jobs, "every-minute").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_connection_removes_its_sync_runs_and_its_schedules_say_so() {
    let Scenario {
        bed: _bed,
        external_id,
        org,
        ns,
        operator: _operator,
        ..
    } = Scenario::start("sync-revoke", &OrgSpec::flat(2)).await;
    let (connections, member_api) = connect_acme(&ns, &org, &external_id, 3).await;
    let schedules: Api<SyncSchedule> = ns.api();
    let jobs: Api<Job> = ns.api();
    let config_maps: Api<ConfigMap> = ns.api();
    let job = run_inventory_now(&schedules, &jobs, Duration::from_secs(30)).await;
    assert_eq!(
        job.labels().get(CONNECTION_LABEL).map(String::as_str),
        Some("acme"),
        "a run is labelled with its connection"
    );
    // The bed's Job controller gives the run its Pod.
    let pods: Api<Pod> = ns.api();
    wait_for_pod(&pods, &job.name_any()).await;
    let run_config = config_maps
        .get(&job.name_any())
        .await
        .expect("the run's ConfigMap");
    assert_eq!(
        run_config
            .labels()
            .get(CONNECTION_LABEL)
            .map(String::as_str),
        Some("acme")
    );
    // A run ConfigMap from before runs carried the connection label, and one of another
    // connection's schedule, which must stay.
    for (name, labels) in [
        ("inventory-1", vec![(SCHEDULE_LABEL, "inventory")]),
        (
            "other-1",
            vec![(SCHEDULE_LABEL, "other"), (CONNECTION_LABEL, "other")],
        ),
    ] {
        let config_map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    labels
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        config_maps
            .create(&PostParams::default(), &config_map)
            .await
            .expect("create ConfigMap");
    }

    connections
        .delete("acme", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the connection gone", Duration::from_secs(60), || async {
        connections
            .get_opt("acme")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        jobs_of(&jobs, "inventory").await.is_empty(),
        "the sync Job is deleted"
    );
    for gone in [job.name_any().as_str(), "inventory-1"] {
        assert!(
            config_maps.get_opt(gone).await.expect("get").is_none(),
            "ConfigMap {gone} is deleted"
        );
    }
    assert!(
        config_maps.get_opt("other-1").await.expect("get").is_some(),
        "another connection's run is left alone"
    );
    // The run's Pod goes with its Job: the garbage collector follows the owner reference.
    wait_pods_gone(&pods, &job.name_any()).await;
    assert!(members(&member_api).await.is_empty(), "MemberAccounts gone");

    // The schedule is the user's: it stays, and says why nothing runs.
    let condition = eventually(
        "the schedule: ConnectionNotFound",
        Duration::from_secs(30),
        || async {
            let status = schedules.get("inventory").await.ok()?.status?;
            let condition = find_condition(&status.conditions, ConditionType::Ready)?.clone();
            (condition.reason == "ConnectionNotFound").then_some(condition)
        },
    )
    .await;
    assert_eq!(condition.status, ConditionStatus::False);
    assert!(
        condition
            .message
            .contains("AwsOrgConnection acme does not exist"),
        "{}",
        condition.message
    );

    let event = eventually("the Revoked Event", Duration::from_secs(30), || async {
        ns.events("acme", "Revoked").await.into_iter().next()
    })
    .await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("removed 3 MemberAccounts, 1 sync Jobs and 2 run ConfigMaps"),
        "{note}"
    );
    assert!(
        note.contains("the operator managed no StackSet for this connection"),
        "{note}"
    );
    assert!(
        note.contains("Remains on the AWS side: the managing-account role"),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_take_only_the_selected_accounts_and_are_skipped_when_none_is_connected() {
    let Scenario {
        bed: _bed,
        external_id,
        org,
        ns,
        operator: _operator,
        ..
    } = Scenario::start("selector", &OrgSpec::flat(3)).await;
    let (_, member_api) = connect_acme(&ns, &org, &external_id, 4).await;
    let schedules: Api<SyncSchedule> = ns.api();
    apply_schedule(
        &schedules,
        "audit",
        serde_json::json!({
            "connectionRef": { "name": "acme" },
            "schedule": "0 0 1 1 *",
            "accountSelector": { "matchLabels": { "team": "audit" } },
            "jobTemplate": { "spec": { "template": { "spec": {
                "containers": [{ "name": "c", "image": "busybox" }] } } } },
        }),
    )
    .await;
    let jobs: Api<Job> = ns.api();

    // No Connected account carries the label: the run is skipped, with a reason and an Event.
    request_run(&schedules, "audit").await;
    let skipped = eventually("NoConnectedAccounts", Duration::from_secs(30), || async {
        let status = schedules.get("audit").await.ok()?.status?;
        let ready = find_condition(&status.conditions, ConditionType::Ready)?.clone();
        (ready.reason == "NoConnectedAccounts").then_some(ready)
    })
    .await;
    assert_eq!(skipped.status, ConditionStatus::False);
    assert!(skipped.message.contains("acme"), "{}", skipped.message);
    assert!(
        jobs_of(&jobs, "audit").await.is_empty(),
        "no Job for a skipped run"
    );
    ns.wait_event("audit", "Warning", "NoConnectedAccounts")
        .await;

    // One account labelled by its owner: the next run holds that account and no other.
    let chosen = org.member_accounts().next().expect("a member").id.clone();
    let label = serde_json::json!({ "metadata": { "labels": { "team": "audit" } } });
    member_api
        .patch(
            &format!("acme-{chosen}"),
            &PatchParams::default(),
            &Patch::Merge(&label),
        )
        .await
        .expect("label an account");
    // The operator selects from its cache of MemberAccounts, which sees the label a moment
    // after the API server does: a run asked for before that is skipped again, as a user
    // would see, so ask until one runs.
    let job = eventually("the run's Job", Duration::from_secs(60), || async {
        if let Some(job) = jobs_of(&jobs, "audit").await.into_iter().next() {
            return Some(job);
        }
        request_run(&schedules, "audit").await;
        None
    })
    .await;
    let config_maps: Api<ConfigMap> = ns.api();
    let data = config_maps
        .get(&job.name_any())
        .await
        .expect("the run's ConfigMap")
        .data
        .expect("data");
    let accounts: Vec<serde_json::Value> =
        serde_json::from_str(&data["accounts.json"]).expect("accounts.json");
    let ids: Vec<&str> = accounts.iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(ids, [chosen.as_str()]);
    assert!(data["aws-config"].contains(&format!("[profile {chosen}]")));
    assert_eq!(
        data["aws-config"].matches("[profile ").count(),
        2,
        "the account and the managing hop"
    );
}

/// A run whose files outgrow one ConfigMap of the run (4 KiB here, 900 KiB by default)
/// comes in parts: ConfigMaps of at most that size, mounted only in a first init container
/// of the operator's image, which renders the same `aws-config` and `accounts.json` into a
/// volume of the Pod's memory for every other container. The real `orgconnect render-run`
/// renders the parts as the API server holds them; revoking removes every part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_too_large_for_one_config_map_comes_in_parts_that_render_its_files() {
    const PART_BYTES: usize = 4096;
    let scenario = Scenario::build("bigrun", &OrgSpec::flat(40))
        .prepare(|_, settings| {
            settings.run_image = Some("orgconnect:bed".to_owned());
            settings.run_part_bytes = PART_BYTES;
        })
        .start()
        .await;
    let (connections, member_api) =
        connect_acme(&scenario.ns, &scenario.org, &scenario.external_id, 41).await;
    let connected: std::collections::BTreeSet<String> = members(&member_api)
        .await
        .into_iter()
        .map(|m| m.spec.account_id)
        .collect();
    let schedules: Api<SyncSchedule> = scenario.ns.api();
    let jobs: Api<Job> = scenario.ns.api();
    let job = run_inventory_now(&schedules, &jobs, Duration::from_secs(30)).await;
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod spec");
    let render = &pod.init_containers.as_ref().expect("init containers")[0];
    assert_eq!(render.name, "orgconnect-render");
    assert_eq!(render.image.as_deref(), Some("orgconnect:bed"));
    assert_eq!(
        render.args.clone().unwrap_or_default(),
        [
            "render-run",
            "--from",
            "/etc/orgconnect-parts",
            "--to",
            "/etc/orgconnect"
        ]
    );
    let volume = |name: &str| {
        pod.volumes
            .iter()
            .flatten()
            .find(|v| v.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("volume {name}"))
    };
    assert_eq!(
        volume("orgconnect")
            .empty_dir
            .and_then(|e| e.medium)
            .as_deref(),
        Some("Memory")
    );
    // The parts as the kubelet would mount them, rendered by the real subcommand.
    let config_maps: Api<ConfigMap> = scenario.ns.api();
    let run = render_parts(
        &config_maps,
        &job,
        std::path::Path::new(env!("CARGO_BIN_EXE_orgconnect")),
    )
    .await;
    assert!(run.part_names.len() > 1, "{:?}", run.part_names);
    assert_eq!(run.part_names[0], job.name_any());
    assert!(
        run.largest_part <= PART_BYTES + 64,
        "a part holds {} bytes",
        run.largest_part
    );
    assert!(
        pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "orgconnect" && m.mount_path == "/etc/orgconnect"),
        "the Job's own container reads the rendered files"
    );
    assert_eq!(run.profiles, connected, "one profile per Connected account");
    assert_eq!(run.accounts, connected);

    // Revoking the connection removes every part.
    connections
        .delete("acme", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("every part deleted", Duration::from_secs(60), || async {
        let left = config_maps
            .list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}=inventory")))
            .await
            .ok()?;
        left.items.is_empty().then_some(())
    })
    .await;
}
