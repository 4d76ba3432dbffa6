//! The operator-managed StackSet on the test bed: created service-managed with the member
//! role, deployed to the organization, Blocked accounts reached once it is deployed, and
//! removed when the connection is deleted, or let go with `orgconnect.dev/revoke=skip`.

mod support;

use support::scenario::Scenario;

use std::time::Duration;

use aws_sdk_cloudformation::types::CallAs;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use orgconnect::api::member_account::MemberPhase;
use orgconnect::api::{AwsOrgConnection, ConditionStatus, ConditionType, MemberAccount};
use support::aws::AwsBed;
use support::eventually;
use support::kube::TestNamespace;
use support::operator::{
    apply_connection, in_namespace, managing_role, members, start, wait_condition,
};
use support::org::{OrgSpec, OuSpec, seed};

fn phases(listed: &[MemberAccount]) -> Vec<Option<MemberPhase>> {
    listed
        .iter()
        .map(|m| m.status.as_ref().and_then(|s| s.phase))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_set_connects_blocked_accounts_and_goes_on_revoke() {
    let bed = AwsBed::new().await;
    let org = seed(
        &bed.sdk_config(),
        &OrgSpec {
            root_accounts: 2,
            ous: vec![OuSpec::new("Prod").accounts(2)],
        },
    )
    .await;
    let blocked: Vec<String> = org
        .member_accounts()
        .take(2)
        .map(|a| a.id.clone())
        .collect();
    bed.proxy.deny_assume_role(blocked.iter().cloned());
    // The StackSet creates the member role: from then on those accounts can be reached.
    bed.proxy.unblock_on("CreateStackInstances");

    let ns = TestNamespace::new("stackset").await;
    let _operator = start(
        ns.client.clone(),
        bed.operator_config(bed.credentials.clone()),
        in_namespace(&ns.name),
    );
    let connections: Api<AwsOrgConnection> = ns.api();
    let member_api: Api<MemberAccount> = ns.api();
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({
            "roleArn": managing_role(&org.managing_account_id),
            "memberAccess": { "roleName": "OrgconnectMemberRole" },
            "stackSet": { "enabled": true },
        }),
    )
    .await;
    let ready = wait_condition(
        &connections,
        "acme",
        ConditionType::StackSetReady,
        ConditionStatus::True,
        "Deployed",
    )
    .await;
    let name = ready
        .status
        .and_then(|s| s.stack_set)
        .expect("stack set status")
        .name;

    let cloudformation = aws_sdk_cloudformation::Client::new(&bed.sdk_config());
    let described = cloudformation
        .describe_stack_set()
        .stack_set_name(&name)
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .expect("the StackSet exists")
        .stack_set
        .expect("stack set");
    assert_eq!(
        described.permission_model().map(|p| p.as_str()),
        Some("SERVICE_MANAGED")
    );
    let body: serde_json::Value =
        serde_json::from_str(described.template_body().unwrap_or_default()).expect("template");
    assert!(
        body["Resources"]["OrgconnectMemberRole"].is_object(),
        "the member-role template"
    );
    let instances = cloudformation
        .list_stack_instances()
        .stack_set_name(&name)
        .call_as(CallAs::SelfValue)
        .send()
        .await
        .expect("instances");
    let accounts: Vec<&str> = instances
        .summaries()
        .iter()
        .filter_map(|s| s.account())
        .collect();
    for id in &blocked {
        assert!(
            accounts.contains(&id.as_str()),
            "an instance in {id}: {accounts:?}"
        );
    }

    eventually(
        "every account Connected after the deployment",
        Duration::from_secs(60),
        || async {
            let listed = members(&member_api).await;
            (listed.len() == 5
                && phases(&listed)
                    .iter()
                    .all(|p| *p == Some(MemberPhase::Connected)))
            .then_some(())
        },
    )
    .await;

    // A new policy level updates the StackSet's template.
    support::operator::patch_spec(
        &connections,
        "acme",
        serde_json::json!({ "accessPolicy": "DataAndScheduling" }),
    )
    .await;
    eventually(
        "the StackSet updated to the scheduling level",
        Duration::from_secs(60),
        || async {
            let described = cloudformation
                .describe_stack_set()
                .stack_set_name(&name)
                .call_as(CallAs::SelfValue)
                .send()
                .await
                .ok()?;
            let body = described.stack_set?.template_body?;
            body.contains("ec2:StopInstances").then_some(())
        },
    )
    .await;
    wait_condition(
        &connections,
        "acme",
        ConditionType::StackSetReady,
        ConditionStatus::True,
        "Deployed",
    )
    .await;

    // Revoke: the StackSet, its instances and the MemberAccounts go.
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
    assert!(members(&member_api).await.is_empty());
    let after = cloudformation
        .describe_stack_set()
        .stack_set_name(&name)
        .call_as(CallAs::SelfValue)
        .send()
        .await;
    let gone = match after {
        Err(_) => true,
        Ok(output) => {
            output
                .stack_set
                .and_then(|s| s.status)
                .map(|s| s.as_str().to_owned())
                == Some("DELETED".into())
        }
    };
    assert!(gone, "the StackSet was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_aws_holds_the_revoke_until_skipped() {
    let Scenario {
        bed,
        org,
        ns,
        operator: _operator,
    } = Scenario::start("revoke-skip", &OrgSpec::flat(1)).await;
    let connections: Api<AwsOrgConnection> = ns.api();
    apply_connection(
        &connections,
        "acme",
        serde_json::json!({
            "roleArn": managing_role(&org.managing_account_id),
            "memberAccess": { "roleName": "OrgconnectMemberRole" },
            "stackSet": { "enabled": true },
        }),
    )
    .await;
    wait_condition(
        &connections,
        "acme",
        ConditionType::StackSetReady,
        ConditionStatus::True,
        "Deployed",
    )
    .await;

    // AWS stops answering, and the managing-role session is no help for a new login.
    bed.proxy.server_errors("*", 1.0);
    connections
        .delete("acme", &DeleteParams::default())
        .await
        .expect("delete");
    let held = wait_condition(
        &connections,
        "acme",
        ConditionType::Ready,
        ConditionStatus::False,
        "RevokeBlocked",
    )
    .await;
    assert!(held.metadata.deletion_timestamp.is_some());
    let patch =
        serde_json::json!({ "metadata": { "annotations": { "orgconnect.dev/revoke": "skip" } } });
    connections
        .patch("acme", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate revoke=skip");
    eventually("the connection let go", Duration::from_secs(60), || async {
        connections
            .get_opt("acme")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}
