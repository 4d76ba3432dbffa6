//! The Argo CD health checks in `examples/argocd/argocd-cm.yaml`, run the way Argo CD runs
//! them: Lua 5.1 semantics (Argo CD uses gopher-lua), only the base, package and table
//! libraries, the object as the global `obj` with JSON null as nil, and the chunk's
//! returned table read as `{status = ..., message = ...}`.
//!
//! The objects' statuses are built from the operator's own API types, so a renamed status
//! field or condition breaks this test rather than every Argo CD installation.

use std::collections::BTreeSet;
use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use mlua::{Lua, LuaOptions, LuaSerdeExt, StdLib, Table};
use orgconnect::api::connection::AccountCounts;
use orgconnect::api::sync_schedule::{RunMode, RunOutcome, RunSummary};
use orgconnect::api::{
    AwsOrgConnectionStatus, Condition, ConditionStatus, ConditionType, MemberAccountStatus,
    MemberPhase, SyncScheduleStatus,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const CONFIG_MAP: &str = "examples/argocd/argocd-cm.yaml";
const KEY_PREFIX: &str = "resource.customizations.health.";

/// The statuses Argo CD accepts from a health script.
const HEALTH_STATUSES: [&str; 6] = [
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn config_map() -> ConfigMap {
    let path = manifest_dir().join(CONFIG_MAP);
    let text = std::fs::read_to_string(&path).expect("the argocd-cm example is readable");
    serde_yaml::from_str(&text).expect("the argocd-cm example is a ConfigMap")
}

/// The health script for an orgconnect kind, under the key Argo CD reads.
fn script(kind: &str) -> String {
    let key = format!("{KEY_PREFIX}orgconnect.dev_{kind}");
    config_map()
        .data
        .unwrap_or_default()
        .remove(&key)
        .unwrap_or_else(|| panic!("{CONFIG_MAP} has no {key}"))
}

/// A Lua state with what Argo CD gives custom health scripts: base, package and table
/// (and a reduced `os` the scripts do not use); no `string`, no `math`.
fn argo_cd_lua() -> Lua {
    Lua::new_with(StdLib::TABLE | StdLib::PACKAGE, LuaOptions::default()).expect("a Lua state")
}

#[derive(Debug)]
struct Health {
    status: String,
    message: String,
}

/// Runs the health script of `object`'s kind on it.
fn health(object: &Value) -> Health {
    let kind = object["kind"].as_str().expect("the object has a kind");
    let lua = argo_cd_lua();
    // Argo CD turns the object's JSON into plain tables: null fields are absent, arrays
    // are tables indexed from 1 without a metatable.
    let options = mlua::serde::SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    let obj = lua
        .to_value_with(object, options)
        .expect("the object converts to Lua");
    lua.globals().set("obj", obj).expect("obj is set");
    let result: Table = lua
        .load(script(kind))
        .set_name(format!("{kind} health"))
        .eval()
        .unwrap_or_else(|e| panic!("the {kind} health script failed on {object:#}: {e}"));
    let status: String = result.get("status").expect("the result has a status");
    let message: Option<String> = result.get("message").expect("the message is a string");
    assert!(
        HEALTH_STATUSES.contains(&status.as_str()),
        "{kind}: {status:?} is not a status Argo CD knows"
    );
    Health {
        status,
        message: message.unwrap_or_default(),
    }
}

fn assert_health(object: &Value, status: &str, message: &str) {
    let health = health(object);
    assert_eq!(
        (health.status.as_str(), health.message.as_str()),
        (status, message),
        "health of {object:#}"
    );
}

fn condition(
    type_: ConditionType,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: i64,
) -> Condition {
    let now = Timestamp::from_second(1_800_000_000).expect("a valid time");
    Condition::new(type_, status, reason, message, Some(generation), now)
}

/// An orgconnect object as the API server returns it: `generation` in metadata, and the
/// status, if any, as the operator's types serialize it.
fn object(kind: &str, generation: i64, spec: Value, status: Option<impl Serialize>) -> Value {
    json!({
        "apiVersion": "orgconnect.dev/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": "acme",
            "namespace": "team-a",
            "generation": generation,
            "uid": "6f1c9d43-5d0b-4c38-9f5e-0a4be0b1c2d3",
        },
        "spec": spec,
        "status": status.map(|s| serde_json::to_value(s).expect("a status serializes")),
    })
}

// --- AwsOrgConnection ---------------------------------------------------------------

const ROLE: &str = "arn:aws:iam::111122223333:role/orgconnect";
const READY_MESSAGE: &str = "the managing role is assumed and the organization is discovered";

fn connection(generation: i64, status: Option<AwsOrgConnectionStatus>) -> Value {
    object(
        "AwsOrgConnection",
        generation,
        json!({ "roleArn": ROLE }),
        status,
    )
}

fn connection_status(generation: i64, conditions: Vec<Condition>) -> AwsOrgConnectionStatus {
    AwsOrgConnectionStatus {
        external_id: Some("Zb0yT8cY1pVw3kQ9rN2mH6jL4sX7eF5aD0gU8iOq".into()),
        observed_generation: Some(generation),
        conditions,
        ..AwsOrgConnectionStatus::default()
    }
}

fn connected(generation: i64) -> Vec<Condition> {
    use ConditionStatus::True;
    use ConditionType::*;
    vec![
        condition(Authenticated, True, "RoleAssumed", "assumed", generation),
        condition(Discovered, True, "Discovered", "40 accounts", generation),
        condition(
            MembersConnected,
            True,
            "AllReachable",
            "40 accounts Connected; not probed: 0 suspended, 0 closed, 0 pending activation, 0 paused",
            generation,
        ),
        condition(Ready, True, "Connected", READY_MESSAGE, generation),
    ]
}

#[test]
fn connection_without_status_is_progressing() {
    assert_health(
        &connection(1, None),
        "Progressing",
        "Waiting for the operator to report on the connection",
    );
}

#[test]
fn connection_ready_is_healthy() {
    assert_health(
        &connection(2, Some(connection_status(2, connected(2)))),
        "Healthy",
        &format!("Connected: {READY_MESSAGE}"),
    );
}

#[test]
fn connection_with_blocked_members_stays_healthy_and_says_so() {
    let mut conditions = connected(1);
    let blocked = "2 of 40 accounts are Blocked; `kubectl get ma -l orgconnect.dev/connection=acme` \
                   shows each reason and its remediation";
    conditions[2] = condition(
        ConditionType::MembersConnected,
        ConditionStatus::False,
        "AccountsBlocked",
        blocked,
        1,
    );
    let mut status = connection_status(1, conditions);
    status.accounts = Some(AccountCounts {
        total: 40,
        connected: 38,
        blocked: 2,
        ..AccountCounts::default()
    });
    assert_health(
        &connection(1, Some(status)),
        "Healthy",
        &format!("AccountsBlocked: {blocked}"),
    );
}

#[test]
fn connection_not_ready_is_degraded_with_the_reason() {
    let message = "Authenticated is False (AssumeRoleDenied): the role's trust policy does not \
                   let arn:aws:iam::999999999999:role/orgconnect-operator in with this ExternalId";
    let conditions = vec![
        condition(
            ConditionType::Authenticated,
            ConditionStatus::False,
            "AssumeRoleDenied",
            "denied",
            1,
        ),
        condition(
            ConditionType::Ready,
            ConditionStatus::False,
            "NotConnected",
            message,
            1,
        ),
    ];
    assert_health(
        &connection(1, Some(connection_status(1, conditions))),
        "Degraded",
        &format!("NotConnected: {message}"),
    );
}

#[test]
fn connection_being_revoked_and_stuck_is_degraded() {
    let message = "the connection is being deleted but StackSet orgconnect-team-a-acme could not \
                   be removed (throttled); retrying";
    let mut conditions = connected(4);
    conditions[3] = condition(
        ConditionType::Ready,
        ConditionStatus::False,
        "RevokeBlocked",
        message,
        4,
    );
    let mut object = connection(4, Some(connection_status(4, conditions)));
    object["metadata"]["deletionTimestamp"] = json!("2027-01-15T08:00:00Z");
    assert_health(&object, "Degraded", &format!("RevokeBlocked: {message}"));
}

#[test]
fn connection_in_progress_is_progressing() {
    let conditions = vec![
        condition(
            ConditionType::Authenticated,
            ConditionStatus::True,
            "RoleAssumed",
            "assumed",
            1,
        ),
        condition(
            ConditionType::Ready,
            ConditionStatus::Unknown,
            "InProgress",
            "Discovered has not been checked yet",
            1,
        ),
    ];
    assert_health(
        &connection(1, Some(connection_status(1, conditions))),
        "Progressing",
        "InProgress: Discovered has not been checked yet",
    );
}

#[test]
fn connection_with_status_but_no_ready_condition_is_progressing() {
    assert_health(
        &connection(1, Some(connection_status(1, Vec::new()))),
        "Progressing",
        "Waiting for the Ready condition",
    );
}

#[test]
fn connection_with_a_stale_status_is_progressing() {
    // A spec change the operator has not seen yet: the old Ready says nothing about it.
    assert_health(
        &connection(3, Some(connection_status(2, connected(2)))),
        "Progressing",
        "Waiting for the operator to observe generation 3",
    );
    // Status caught up but Ready itself is older.
    let mut conditions = connected(3);
    conditions[3] = condition(
        ConditionType::Ready,
        ConditionStatus::True,
        "Connected",
        READY_MESSAGE,
        2,
    );
    assert_health(
        &connection(3, Some(connection_status(3, conditions))),
        "Progressing",
        "Waiting for the operator to observe generation 3",
    );
}

#[test]
fn connection_with_a_failed_stack_set_is_degraded() {
    let message = "AccessDenied. Enable trusted access for StackSets in the managing account";
    let mut conditions = connected(1);
    conditions.push(condition(
        ConditionType::StackSetReady,
        ConditionStatus::False,
        "TrustedAccessNotEnabled",
        message,
        1,
    ));
    let mut object = connection(1, Some(connection_status(1, conditions)));
    object["spec"]["stackSet"] = json!({ "enabled": true });
    assert_health(
        &object,
        "Degraded",
        &format!("StackSet TrustedAccessNotEnabled: {message}"),
    );
}

#[test]
fn connection_with_a_running_stack_set_operation_is_progressing() {
    let message = "deploying: operation 5e3f is running";
    let mut conditions = connected(1);
    conditions.push(condition(
        ConditionType::StackSetReady,
        ConditionStatus::Unknown,
        "OperationRunning",
        message,
        1,
    ));
    let mut object = connection(1, Some(connection_status(1, conditions)));
    object["spec"]["stackSet"] = json!({ "enabled": true });
    assert_health(
        &object,
        "Progressing",
        &format!("StackSet OperationRunning: {message}"),
    );
}

#[test]
fn connection_ignores_the_stack_set_condition_once_unmanaged() {
    let mut conditions = connected(2);
    conditions.push(condition(
        ConditionType::StackSetReady,
        ConditionStatus::False,
        "StackSetFailed",
        "left over",
        1,
    ));
    let mut object = connection(2, Some(connection_status(2, conditions)));
    object["spec"]["stackSet"] = json!({ "enabled": false });
    assert_health(&object, "Healthy", &format!("Connected: {READY_MESSAGE}"));
}

// --- MemberAccount ------------------------------------------------------------------

fn member(
    generation: i64,
    phase: MemberPhase,
    connected: Condition,
    remediation: Option<&str>,
) -> Value {
    let status = MemberAccountStatus {
        phase: Some(phase),
        remediation: remediation.map(str::to_owned),
        observed_generation: Some(generation),
        conditions: vec![connected],
        ..MemberAccountStatus::default()
    };
    member_object(generation, Some(status))
}

fn member_object(generation: i64, status: Option<MemberAccountStatus>) -> Value {
    object(
        "MemberAccount",
        generation,
        json!({
            "connection": "acme",
            "accountId": "222222222222",
            "name": "payments-0",
            "organizationalUnit": { "id": "ou-b6tm-7ggs82j3", "path": "Root/Prod/Payments" },
            "joinedMethod": "INVITED",
            "awsStatus": "ACTIVE",
        }),
        status,
    )
}

fn connected_condition(status: ConditionStatus, reason: &str, message: &str) -> Condition {
    condition(ConditionType::Connected, status, reason, message, 1)
}

#[test]
fn member_without_status_is_progressing() {
    assert_health(
        &member_object(1, None),
        "Progressing",
        "Waiting for the first probe of the account",
    );
}

#[test]
fn connected_member_is_healthy() {
    let message = "assumed arn:aws:iam::222222222222:role/OrganizationAccountAccessRole from the \
                   managing role; the session acts in account 222222222222";
    let condition = connected_condition(ConditionStatus::True, "RoleAssumed", message);
    assert_health(
        &member(1, MemberPhase::Connected, condition, None),
        "Healthy",
        &format!("RoleAssumed: {message}"),
    );
}

#[test]
fn blocked_member_is_degraded_with_the_remediation() {
    let message = "the managing role arn:aws:iam::111122223333:role/orgconnect was denied \
                   assuming arn:aws:iam::222222222222:role/OrganizationAccountAccessRole";
    let remediation = "Create the role OrganizationAccountAccessRole in account 222222222222, \
                       trusting the managing role arn:aws:iam::111122223333:role/orgconnect.";
    for reason in [
        "AssumeRoleDenied",
        "RoleMissingForInvitedAccount",
        "WrongAccount",
    ] {
        let condition = connected_condition(ConditionStatus::False, reason, message);
        assert_health(
            &member(1, MemberPhase::Blocked, condition, Some(remediation)),
            "Degraded",
            &format!("{reason}: {message} Remediation: {remediation}"),
        );
    }
}

#[test]
fn blocked_member_stays_degraded_while_probes_are_throttled() {
    let message = "AWS throttled the probe; the previous phase is kept and the probe is retried \
                   with backoff";
    let condition = connected_condition(ConditionStatus::Unknown, "Throttled", message);
    assert_health(
        &member(1, MemberPhase::Blocked, condition.clone(), None),
        "Degraded",
        &format!("Throttled: {message}"),
    );
    assert_health(
        &member(1, MemberPhase::Connected, condition, None),
        "Healthy",
        &format!("Throttled: {message}"),
    );
}

#[test]
fn suspended_and_paused_members_are_suspended() {
    let message = "the account is SUSPENDED in AWS Organizations; it is not probed";
    let condition = connected_condition(ConditionStatus::False, "AccountSuspended", message);
    assert_health(
        &member(1, MemberPhase::Suspended, condition, None),
        "Suspended",
        &format!("AccountSuspended: {message}"),
    );
    let message = "spec.paused is true: the account is not probed and sync Jobs leave it out";
    let condition = connected_condition(ConditionStatus::Unknown, "Paused", message);
    assert_health(
        &member(1, MemberPhase::Paused, condition, None),
        "Suspended",
        &format!("Paused: {message}"),
    );
}

#[test]
fn pending_member_is_progressing() {
    let message =
        "the connection has no managing-role session yet; see its Authenticated condition";
    let condition = connected_condition(ConditionStatus::Unknown, "ConnectionNotReady", message);
    assert_health(
        &member(1, MemberPhase::Pending, condition, None),
        "Progressing",
        &format!("ConnectionNotReady: {message}"),
    );
}

#[test]
fn member_with_a_stale_status_is_progressing() {
    // A user just set spec.paused: generation 2, the status still describes generation 1.
    let condition = connected_condition(ConditionStatus::True, "RoleAssumed", "assumed");
    let mut object = member(1, MemberPhase::Connected, condition, None);
    object["metadata"]["generation"] = json!(2);
    object["spec"]["paused"] = json!(true);
    assert_health(
        &object,
        "Progressing",
        "Waiting for the operator to observe generation 2",
    );
}

// --- SyncSchedule -------------------------------------------------------------------

fn schedule(generation: i64, status: Option<SyncScheduleStatus>) -> Value {
    object(
        "SyncSchedule",
        generation,
        json!({
            "connectionRef": { "name": "acme" },
            "schedule": "*/30 * * * *",
            "jobTemplate": { "spec": { "template": { "spec": {
                "containers": [{ "name": "sync", "image": "public.ecr.aws/aws-cli/aws-cli:2.22.0" }],
            }}}},
        }),
        status,
    )
}

fn schedule_status(generation: i64, ready: Condition) -> SyncScheduleStatus {
    SyncScheduleStatus {
        observed_generation: Some(generation),
        conditions: vec![
            condition(
                ConditionType::Scheduled,
                ConditionStatus::True,
                "Scheduled",
                "next run at 2027-01-15T08:30:00Z",
                generation,
            ),
            ready,
        ],
        ..SyncScheduleStatus::default()
    }
}

fn ready(status: ConditionStatus, reason: &str, message: &str) -> Condition {
    condition(ConditionType::Ready, status, reason, message, 1)
}

fn run(outcome: RunOutcome) -> RunSummary {
    RunSummary {
        job: "acme-inventory-29961630".into(),
        outcome,
        mode: RunMode::Incremental,
        accounts: 12,
        start_time: None,
        completion_time: None,
    }
}

#[test]
fn schedule_without_status_is_progressing() {
    assert_health(
        &schedule(1, None),
        "Progressing",
        "Waiting for the operator to schedule the first run",
    );
}

#[test]
fn running_schedule_is_healthy_with_its_next_run() {
    let status = schedule_status(
        1,
        ready(
            ConditionStatus::True,
            "Scheduled",
            "the schedule is running",
        ),
    );
    assert_health(
        &schedule(1, Some(status.clone())),
        "Healthy",
        "next run at 2027-01-15T08:30:00Z",
    );
    let status = SyncScheduleStatus {
        last_run: Some(run(RunOutcome::Succeeded)),
        backfill_done: true,
        ..status
    };
    assert_health(
        &schedule(1, Some(status)),
        "Healthy",
        "next run at 2027-01-15T08:30:00Z; last run acme-inventory-29961630 Succeeded",
    );
}

#[test]
fn schedule_whose_last_run_failed_is_degraded() {
    let status = SyncScheduleStatus {
        last_run: Some(run(RunOutcome::Failed)),
        ..schedule_status(
            1,
            ready(
                ConditionStatus::True,
                "Scheduled",
                "the schedule is running",
            ),
        )
    };
    assert_health(
        &schedule(1, Some(status)),
        "Degraded",
        "The last run, Job acme-inventory-29961630 (incremental, 12 accounts), failed; see its \
         Pods' logs",
    );
}

#[test]
fn schedule_that_cannot_run_is_degraded_with_the_reason() {
    for (reason, message) in [
        (
            "InvalidSchedule",
            "invalid cron expression \"*/30 * *\": expected five fields",
        ),
        (
            "NoConnectedAccounts",
            "connection acme has no Connected accounts to sync; the run was skipped",
        ),
        (
            "ConnectionNotFound",
            "AwsOrgConnection acme does not exist in this namespace",
        ),
    ] {
        let status = schedule_status(1, ready(ConditionStatus::False, reason, message));
        assert_health(
            &schedule(1, Some(status)),
            "Degraded",
            &format!("{reason}: {message}"),
        );
    }
}

#[test]
fn schedule_waiting_for_its_connection_is_progressing() {
    let message = "connection acme has no ExternalId yet";
    let status = schedule_status(
        1,
        ready(ConditionStatus::False, "ConnectionNotReady", message),
    );
    assert_health(
        &schedule(1, Some(status)),
        "Progressing",
        &format!("ConnectionNotReady: {message}"),
    );
}

#[test]
fn suspended_schedule_is_suspended() {
    let status = schedule_status(
        1,
        ready(
            ConditionStatus::True,
            "Scheduled",
            "the schedule is running",
        ),
    );
    let mut object = schedule(1, Some(status));
    object["spec"]["suspend"] = json!(true);
    assert_health(&object, "Suspended", "suspend is true: no new runs start");
}

#[test]
fn schedule_with_a_stale_status_is_progressing() {
    let status = schedule_status(
        1,
        ready(
            ConditionStatus::True,
            "Scheduled",
            "the schedule is running",
        ),
    );
    assert_health(
        &schedule(2, Some(status)),
        "Progressing",
        "Waiting for the operator to observe generation 2",
    );
}

// --- All kinds ----------------------------------------------------------------------

#[test]
fn every_orgconnect_kind_has_exactly_one_health_check() {
    let kinds: BTreeSet<String> = orgconnect::crds::all()
        .into_iter()
        .map(|crd| {
            assert_eq!(crd.spec.group, orgconnect::api::GROUP);
            format!("{KEY_PREFIX}{}_{}", crd.spec.group, crd.spec.names.kind)
        })
        .collect();
    let keys: BTreeSet<String> = config_map()
        .data
        .unwrap_or_default()
        .into_keys()
        .filter(|key| key.starts_with(KEY_PREFIX))
        .collect();
    assert_eq!(keys, kinds);
}

#[test]
fn examples_as_written_are_progressing_until_the_operator_reports() {
    let mut checked = 0;
    for entry in std::fs::read_dir(manifest_dir().join("examples")).expect("examples/") {
        let path = entry.expect("an entry").path();
        if path.extension().is_none_or(|ext| ext != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).expect("YAML");
            if value["apiVersion"] != "orgconnect.dev/v1alpha1" {
                continue;
            }
            let health = health(&value);
            assert_eq!(
                health.status,
                "Progressing",
                "{}: {health:?}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "only {checked} orgconnect objects in examples/"
    );
}

#[test]
fn the_sandbox_lacks_what_argo_cd_lacks() {
    // Argo CD opens neither `string` nor `math` for health customizations: a script that
    // used them would fail there, so it must fail here too.
    let lua = argo_cd_lua();
    for chunk in [
        "return string.format('%d', 1)",
        "return math.floor(1.5)",
        "return ('x'):upper()",
    ] {
        assert!(
            lua.load(chunk).eval::<mlua::Value>().is_err(),
            "{chunk} ran, but Argo CD would refuse it"
        );
    }
    assert!(lua.load("return table.getn({1, 2})").eval::<i64>().is_ok());
}
