//! Sync runs as a test sees them: a schedule applied, its Jobs listed, and a run's files
//! rendered from its ConfigMap parts by the real `orgconnect render-run`, as the Job's init
//! container does.

use std::collections::BTreeSet;
use std::path::Path;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use orgconnect::api::SyncSchedule;

pub const SCHEDULE_LABEL: &str = "orgconnect.dev/sync-schedule";

/// Server-side applies SyncSchedule `name` with `spec`, as a user would.
pub async fn apply_schedule(api: &Api<SyncSchedule>, name: &str, spec: serde_json::Value) {
    super::kube::apply(api, name, serde_json::json!({}), spec).await;
}

/// Applies SyncSchedule `inventory` of connection `acme`, due once a year (so only
/// `orgconnect.dev/run=now` starts a run), asks for a run and returns its Job once the
/// operator has created it.
pub async fn run_inventory_now(
    schedules: &Api<SyncSchedule>,
    jobs: &Api<Job>,
    timeout: std::time::Duration,
) -> Job {
    run_now(schedules, jobs, "inventory", serde_json::json!({}), timeout).await
}

/// Applies SyncSchedule `name` of connection `acme`, due once a year, with `extra` merged
/// into its spec, asks for a run and returns its Job once the operator has created it.
pub async fn run_now(
    schedules: &Api<SyncSchedule>,
    jobs: &Api<Job>,
    name: &str,
    extra: serde_json::Value,
    timeout: std::time::Duration,
) -> Job {
    let mut spec = serde_json::json!({
        "connectionRef": { "name": "acme" },
        "schedule": "0 0 1 1 *",
        "jobTemplate": { "spec": { "template": { "spec": {
            "containers": [{ "name": "collect", "image": "busybox" }] } } } },
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    apply_schedule(schedules, name, spec).await;
    super::operator::request_run(schedules, name).await;
    super::eventually("the run's Job", timeout, || async {
        jobs_of(jobs, name).await.into_iter().next()
    })
    .await
}

/// The files of a run that fit in one ConfigMap: its data.
pub async fn run_files(
    config_maps: &Api<ConfigMap>,
    job: &Job,
) -> std::collections::BTreeMap<String, String> {
    config_maps
        .get(&job.name_any())
        .await
        .expect("the run's ConfigMap")
        .data
        .expect("data")
}

/// The Pods the bed's Job controller made for Job `job`.
pub async fn pods_of(api: &Api<k8s_openapi::api::core::v1::Pod>, job: &str) -> Vec<String> {
    api.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .expect("list Pods")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect()
}

/// Waits until the Job controller has made `job`'s Pod; its name.
pub async fn wait_for_pod(api: &Api<k8s_openapi::api::core::v1::Pod>, job: &str) -> String {
    super::eventually(
        "the Job controller's Pod",
        std::time::Duration::from_secs(60),
        || async { pods_of(api, job).await.into_iter().next() },
    )
    .await
}

/// Waits until the garbage collector has deleted `job`'s Pods, after the Job went.
pub async fn wait_pods_gone(api: &Api<k8s_openapi::api::core::v1::Pod>, job: &str) {
    super::eventually(
        "the Job's Pods deleted with it",
        std::time::Duration::from_secs(90),
        || async { pods_of(api, job).await.is_empty().then_some(()) },
    )
    .await;
}

/// The schedule's Jobs, oldest first.
pub async fn jobs_of(api: &Api<Job>, schedule: &str) -> Vec<Job> {
    let mut jobs = api
        .list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}={schedule}")))
        .await
        .expect("list Jobs")
        .items;
    jobs.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
    jobs
}

/// What the Job controller writes when the Job's Pods succeed. The bed's Job controller
/// has made the Pods, but no node runs them: the test says they succeeded, as the API
/// server's Job status rules want it (no Pod active any more, a completion time not
/// before the start time, which is never changed once the controller set it).
pub async fn complete(api: &Api<Job>, name: &str) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let started = api
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("reading Job {name}: {e}"))
        .status
        .and_then(|s| s.start_time)
        .is_some();
    let mut status = serde_json::json!({
        "completionTime": now,
        "active": 0,
        "ready": 0,
        "succeeded": 1,
        "conditions": [
            { "type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now },
            { "type": "Complete", "status": "True", "lastTransitionTime": now },
        ],
    });
    if !started {
        status["startTime"] = serde_json::Value::from(now.clone());
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({ "status": status })),
    )
    .await
    .unwrap_or_else(|e| panic!("marking Job {name} complete: {e}"));
}

/// A run in parts, rendered.
pub struct RenderedRun {
    /// The ConfigMaps the Job's `orgconnect-parts` volume projects, in order.
    pub part_names: Vec<String>,
    /// The largest part's data, in bytes (keys and values).
    pub largest_part: usize,
    /// The account-id profiles of the rendered `aws-config`.
    pub profiles: BTreeSet<String>,
    /// The ids in the rendered `accounts.json`.
    pub accounts: BTreeSet<String>,
}

/// Reads the parts `job` projects, writes them out as the kubelet would mount them, and
/// renders them with `binary render-run`.
pub async fn render_parts(config_maps: &Api<ConfigMap>, job: &Job, binary: &Path) -> RenderedRun {
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod spec");
    let part_names: Vec<String> = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "orgconnect-parts")
        .and_then(|v| v.projected.clone())
        .and_then(|p| p.sources)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.config_map.as_ref().map(|c| c.name.clone()))
        .collect();
    assert!(
        !part_names.is_empty(),
        "the Job {} projects no parts",
        job.name_any()
    );
    let dir = std::env::temp_dir().join(format!("orgconnect-parts-{}", super::unique_suffix()));
    let (from, to) = (dir.join("from"), dir.join("to"));
    std::fs::create_dir_all(&from).expect("parts folder");
    std::fs::create_dir_all(&to).expect("files folder");
    let mut largest_part = 0;
    for name in &part_names {
        let data = config_maps
            .get(name)
            .await
            .expect("a part")
            .data
            .expect("data");
        largest_part = largest_part.max(data.iter().map(|(k, v)| k.len() + v.len()).sum());
        for (key, text) in data {
            std::fs::write(from.join(key), text).expect("write part");
        }
    }
    let rendered = std::process::Command::new(binary)
        .arg("render-run")
        .arg("--from")
        .arg(&from)
        .arg("--to")
        .arg(&to)
        .output()
        .expect("orgconnect render-run");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let config = std::fs::read_to_string(to.join("aws-config")).expect("aws-config");
    let profiles = config
        .lines()
        .filter_map(|l| l.strip_prefix("[profile ")?.strip_suffix(']'))
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_owned)
        .collect();
    let listed: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(to.join("accounts.json")).expect("accounts.json"),
    )
    .expect("JSON");
    let accounts = listed
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_owned))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    RenderedRun {
        part_names,
        largest_part,
        profiles,
        accounts,
    }
}
