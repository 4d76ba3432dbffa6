//! moto behind the fault proxy: an organization seeded from code is listed completely at
//! AWS's page size, blocked accounts are denied AssumeRole, and each programmable fault
//! reaches the SDK.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_organizations::Client as Organizations;
use aws_sdk_organizations::error::ProvideErrorMetadata;
use aws_sdk_sts::Client as Sts;
use aws_sdk_sts::config::Credentials;
use support::aws::AwsBed;
use support::org::{OrgSpec, OuSpec, seed};

#[tokio::test]
async fn lists_250_accounts_three_levels_deep_at_page_size_20() {
    let bed = AwsBed::new().await;
    let spec = OrgSpec::generated(245, 3, 2, 5);
    let org = seed(&bed.sdk_config(), &spec).await;
    assert_eq!(
        org.accounts.len(),
        251,
        "250 members and the managing account"
    );
    assert_eq!(org.ous.iter().map(|ou| ou.depth).max(), Some(3));
    bed.proxy.reset_stats();
    // One call in four is throttled: the SDK's retries must still deliver every page.
    bed.proxy.throttle("ListAccounts", 0.25);

    let client = Organizations::new(&bed.sdk_config());
    let mut pages = client
        .list_accounts()
        .max_results(20)
        .into_paginator()
        .send();
    let mut listed = BTreeSet::new();
    let mut suspended = 0;
    let mut page_count = 0;
    while let Some(page) = pages.next().await {
        let page = page.expect("ListAccounts page");
        assert!(page.accounts().len() <= 20);
        page_count += 1;
        for account in page.accounts() {
            let id = account.id().expect("account id").to_owned();
            assert!(listed.insert(id.clone()), "account {id} listed twice");
            // The bed answers as AWS does today: `State`, never the retired `Status`.
            assert!(account.status().is_none(), "no retired Status for {id}");
            if account.state().map(|s| s.as_str()) == Some("SUSPENDED") {
                suspended += 1;
            }
        }
    }
    let seeded: BTreeSet<_> = org.accounts.iter().map(|a| a.id.clone()).collect();
    assert_eq!(
        listed, seeded,
        "every seeded account is listed, and nothing else"
    );
    assert_eq!(suspended, 5);
    assert_eq!(page_count, 13, "251 accounts at 20 a page");
    assert!(
        bed.proxy.injected("ListAccounts") >= 3,
        "throttling was injected"
    );

    // The OU tree walks back to the same nesting, three levels under the root.
    let mut stack = vec![(org.root_id.clone(), 0usize)];
    let mut deepest = 0;
    let mut found_ous = 0;
    let mut found_accounts = 0;
    while let Some((parent, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        let mut ous = client
            .list_organizational_units_for_parent()
            .parent_id(&parent)
            .max_results(20)
            .into_paginator()
            .send();
        while let Some(page) = ous.next().await {
            for ou in page.expect("OU page").organizational_units() {
                found_ous += 1;
                stack.push((ou.id().expect("OU id").to_owned(), depth + 1));
            }
        }
        let mut accounts = client
            .list_accounts_for_parent()
            .parent_id(&parent)
            .max_results(20)
            .into_paginator()
            .send();
        while let Some(page) = accounts.next().await {
            found_accounts += page.expect("account page").accounts().len();
        }
    }
    assert_eq!(deepest, 3);
    assert_eq!(found_ous, org.ous.len());
    assert_eq!(found_accounts, 251);
}

#[tokio::test]
async fn assume_role_is_denied_for_blocked_accounts_only() {
    let bed = AwsBed::new().await;
    let spec = OrgSpec {
        root_accounts: 1,
        ous: vec![
            OuSpec::new("Prod")
                .accounts(2)
                .child(OuSpec::new("Payments").accounts(2)),
        ],
    };
    let org = seed(&bed.sdk_config(), &spec).await;
    let members: Vec<_> = org.member_accounts().cloned().collect();
    assert_eq!(members.len(), 5);
    let blocked = &members[0];
    bed.proxy.deny_assume_role([blocked.id.clone()]);

    let sts = Sts::new(&bed.sdk_config());
    for member in &members {
        let result = sts
            .assume_role()
            .role_arn(format!(
                "arn:aws:iam::{}:role/OrganizationAccountAccessRole",
                member.id
            ))
            .role_session_name("orgconnect-probe")
            .external_id("test-external-id")
            .send()
            .await;
        if member.id == blocked.id {
            let err = result.expect_err("blocked account is denied");
            assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
            continue;
        }
        let creds = result
            .expect("member role is assumed")
            .credentials
            .expect("credentials");
        let member_config = bed.sdk_config_with(Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_owned()),
            None,
            "assumed",
        ));
        let identity = Sts::new(&member_config)
            .get_caller_identity()
            .send()
            .await
            .expect("GetCallerIdentity");
        assert_eq!(
            identity.account(),
            Some(member.id.as_str()),
            "chained credentials act in the member"
        );
    }
    assert_eq!(bed.proxy.injected("AssumeRole"), 1);
}

#[tokio::test]
async fn throttling_server_errors_and_latency_reach_the_sdk() {
    let bed = AwsBed::new().await;
    seed(&bed.sdk_config(), &OrgSpec::default()).await;
    let no_retries = aws_config::retry::RetryConfig::disabled();
    let config = bed
        .sdk_config()
        .into_builder()
        .retry_config(no_retries)
        .build();
    let client = Organizations::new(&config);

    bed.proxy.throttle("DescribeOrganization", 1.0);
    let err = client
        .describe_organization()
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(err.code(), Some("TooManyRequestsException"));

    bed.proxy.clear_faults();
    bed.proxy.server_errors("*", 1.0);
    let err = client
        .describe_organization()
        .send()
        .await
        .expect_err("503");
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(503));

    bed.proxy.clear_faults();
    bed.proxy.throttle("AssumeRole", 1.0);
    let err = Sts::new(&config)
        .assume_role()
        .role_arn("arn:aws:iam::111122223333:role/x")
        .role_session_name("s")
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(err.code(), Some("Throttling"));

    bed.proxy.clear_faults();
    bed.proxy.latency(Duration::from_millis(300));
    let started = Instant::now();
    client
        .describe_organization()
        .send()
        .await
        .expect("succeeds after the delay");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "latency was added"
    );
    assert_eq!(bed.proxy.calls("DescribeOrganization"), 3);
}

#[tokio::test]
async fn only_keys_the_accounts_hold_sign_requests_and_signatures_must_match() {
    let bed = AwsBed::new().await;
    let sts = |credentials: Credentials| Sts::new(&bed.sdk_config_with(credentials));
    let identity = sts(bed.credentials.clone())
        .get_caller_identity()
        .send()
        .await
        .expect("the test's own key signs");
    assert_eq!(identity.account(), Some(bed.managing_account_id.as_str()));

    let unknown = Credentials::new("AKIANOBODYHOLDS0000", "whatever", None, None, "test");
    let err = sts(unknown)
        .get_caller_identity()
        .send()
        .await
        .expect_err("an unknown key is refused");
    assert_eq!(err.code(), Some("InvalidClientTokenId"), "{err:?}");

    let wrong_secret = Credentials::new(
        bed.credentials.access_key_id(),
        "not-the-secret",
        None,
        None,
        "test",
    );
    let err = sts(wrong_secret)
        .get_caller_identity()
        .send()
        .await
        .expect_err("a wrong secret is refused");
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err:?}");

    // Session keys minted by AssumeRole sign, with their token and only with it.
    let assumed = sts(bed.credentials.clone())
        .assume_role()
        .role_arn(format!(
            "arn:aws:iam::{}:role/anything",
            bed.managing_account_id
        ))
        .role_session_name("signing")
        .send()
        .await
        .expect("AssumeRole")
        .credentials
        .expect("credentials");
    let session = |token: &str| {
        Credentials::new(
            assumed.access_key_id(),
            assumed.secret_access_key(),
            Some(token.to_owned()),
            None,
            "test",
        )
    };
    sts(session(assumed.session_token()))
        .get_caller_identity()
        .send()
        .await
        .expect("the session key signs with its token");
    let err = Organizations::new(&bed.sdk_config_with(session("another-token")))
        .describe_organization()
        .send()
        .await
        .expect_err("a session key with another token is refused");
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "{err:?}");
    assert!(bed.proxy.refused("GetCallerIdentity") >= 2);
}

/// The bed's moto finds accounts through an index (`scripts/moto_server.py`): moving,
/// describing, tagging, attaching a policy to and removing accounts answer as moto's own
/// walk does, unknown accounts included, and a removal (which shifts the index) leaves
/// every other account found.
#[tokio::test]
async fn indexed_account_lookups_answer_as_moto_does() {
    let bed = AwsBed::new().await;
    let spec = OrgSpec {
        root_accounts: 4,
        ous: vec![OuSpec::new("Prod").accounts(1)],
    };
    let org = seed(&bed.sdk_config(), &spec).await;
    let client = Organizations::new(&bed.sdk_config());
    let members: Vec<_> = org.member_accounts().map(|a| a.id.clone()).collect();
    let prod = &org.ous[0].id;
    let unknown = "000000000001";

    client
        .move_account()
        .account_id(&members[0])
        .source_parent_id(&org.root_id)
        .destination_parent_id(prod)
        .send()
        .await
        .expect("MoveAccount");
    let in_prod = |parent: String| {
        let client = client.clone();
        async move {
            client
                .list_accounts_for_parent()
                .parent_id(parent)
                .send()
                .await
                .expect("ListAccountsForParent")
                .accounts()
                .iter()
                .filter_map(|a| a.id().map(str::to_owned))
                .collect::<BTreeSet<_>>()
        }
    };
    assert!(in_prod(prod.clone()).await.contains(&members[0]));
    assert!(!in_prod(org.root_id.clone()).await.contains(&members[0]));
    let error = client
        .move_account()
        .account_id(unknown)
        .source_parent_id(&org.root_id)
        .destination_parent_id(prod)
        .send()
        .await
        .expect_err("an unknown account does not move");
    assert_eq!(error.code(), Some("AccountNotFoundException"), "{error:?}");

    client
        .tag_resource()
        .resource_id(&members[1])
        .tags(
            aws_sdk_organizations::types::Tag::builder()
                .key("team")
                .value("payments")
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("TagResource");
    let tags = client
        .list_tags_for_resource()
        .resource_id(&members[1])
        .send()
        .await
        .expect("ListTagsForResource");
    let tags: Vec<_> = tags.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags, [("team", "payments")]);
    let error = client
        .list_tags_for_resource()
        .resource_id(unknown)
        .send()
        .await
        .expect_err("an unknown account has no tags");
    assert_eq!(error.code(), Some("TargetNotFoundException"), "{error:?}");

    let policy = client
        .create_policy()
        .name(format!("bed-{}", support::unique_suffix()))
        .description("indexed attach")
        .r#type(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
        .content(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
        .send()
        .await
        .expect("CreatePolicy")
        .policy
        .and_then(|p| p.policy_summary)
        .and_then(|s| s.id)
        .expect("policy id");
    for _ in 0..2 {
        // Twice: a policy attached again is still listed once.
        let _ = client
            .attach_policy()
            .policy_id(&policy)
            .target_id(&members[2])
            .send()
            .await;
    }
    let attached = client
        .list_policies_for_target()
        .target_id(&members[2])
        .filter(aws_sdk_organizations::types::PolicyType::ServiceControlPolicy)
        .send()
        .await
        .expect("ListPoliciesForTarget");
    let attached = attached
        .policies()
        .iter()
        .filter(|p| p.id() == Some(policy.as_str()))
        .count();
    assert_eq!(attached, 1);
    let error = client
        .attach_policy()
        .policy_id(&policy)
        .target_id(unknown)
        .send()
        .await
        .expect_err("no policy attaches to an unknown account");
    assert_eq!(error.code(), Some("AccountNotFoundException"), "{error:?}");

    client
        .remove_account_from_organization()
        .account_id(&members[0])
        .send()
        .await
        .expect("RemoveAccountFromOrganization");
    let error = client
        .describe_account()
        .account_id(&members[0])
        .send()
        .await
        .expect_err("a removed account is gone");
    assert_eq!(error.code(), Some("AccountNotFoundException"), "{error:?}");
    for id in &members[1..] {
        let described = client
            .describe_account()
            .account_id(id)
            .send()
            .await
            .expect("DescribeAccount after a removal");
        assert_eq!(described.account().and_then(|a| a.id()), Some(id.as_str()));
    }
}
