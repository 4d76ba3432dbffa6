//! The world most tests start from: moto with a seeded organization behind a fault proxy,
//! a namespace of the test's own, and the operator running scoped to it.

use aws_sdk_sts::config::Credentials;
use kube::api::Api;
use orgconnect::api::{AwsOrgConnection, MemberAccount};
use orgconnect::controller::Settings;

use orgconnect::api::connection::DEFAULT_ROLE_NAME;

use super::aws::AwsBed;
use super::iam::deploy_managing_role;
use super::kube::TestNamespace;
use super::operator::{RunningOperator, apply_connection, in_namespace, managing_role, start};
use super::org::{OrgSpec, SeededOrg, seed};

pub struct Scenario {
    pub bed: AwsBed,
    /// The ExternalId the managing role's trust policy names; [`Scenario::connect`]
    /// presents it.
    pub external_id: String,
    pub org: SeededOrg,
    pub ns: TestNamespace,
    pub operator: RunningOperator,
}

impl Scenario {
    /// The organization `spec` on the strict bed (IAM enforced), its managing role made from
    /// the managing-role template, and the operator using the managing account's own keys
    /// as its default chain.
    pub async fn start(prefix: &str, spec: &OrgSpec) -> Self {
        Self::start_with(prefix, spec, |_, _| {}).await
    }

    /// Like [`Scenario::start`], letting the test program the proxy or change the
    /// operator's settings before it starts.
    pub async fn start_with(
        prefix: &str,
        spec: &OrgSpec,
        prepare: impl FnOnce(&AwsBed, &mut Settings),
    ) -> Self {
        Self::begin(prefix, spec, true, prepare).await
    }

    /// Like [`Scenario::start`] on the lenient bed (moto's: any role may be assumed with
    /// any ExternalId), for tests of generated ExternalIds or of roles the managing-role
    /// template does not make.
    pub async fn start_lenient(prefix: &str, spec: &OrgSpec) -> Self {
        Self::begin(prefix, spec, false, |_, _| {}).await
    }

    async fn begin(
        prefix: &str,
        spec: &OrgSpec,
        strict: bool,
        prepare: impl FnOnce(&AwsBed, &mut Settings),
    ) -> Self {
        let bed = AwsBed::new().await;
        let org = seed(&bed.sdk_config(), spec).await;
        let external_id = if strict {
            let external_id = format!("ext-{}", super::unique_suffix());
            deploy_managing_role(&bed, &external_id, DEFAULT_ROLE_NAME, |_| {}).await;
            bed.proxy.enforce_iam();
            external_id
        } else {
            String::new()
        };
        let ns = TestNamespace::new(prefix).await;
        let mut settings = in_namespace(&ns.name);
        prepare(&bed, &mut settings);
        let operator = start(
            ns.client.clone(),
            bed.operator_config(bed.credentials.clone()),
            settings,
        );
        Self {
            bed,
            external_id,
            org,
            ns,
            operator,
        }
    }

    /// Same, but the operator's own identity cannot reach the organization (for tests
    /// of Secret credentials).
    pub async fn start_without_access(
        prefix: &str,
        spec: &OrgSpec,
        prepare: impl FnOnce(&AwsBed),
    ) -> Self {
        let bed = AwsBed::new().await;
        let org = seed(&bed.sdk_config(), spec).await;
        prepare(&bed);
        let ns = TestNamespace::new(prefix).await;
        let outsider: Credentials = bed.unmapped_credentials();
        let operator = start(
            ns.client.clone(),
            bed.operator_config(outsider),
            in_namespace(&ns.name),
        );
        Self {
            bed,
            external_id: String::new(),
            org,
            ns,
            operator,
        }
    }

    pub fn connections(&self) -> Api<AwsOrgConnection> {
        self.ns.api()
    }

    pub fn members(&self) -> Api<MemberAccount> {
        self.ns.api()
    }

    /// The managing role of the seeded organization.
    pub fn role(&self) -> String {
        managing_role(&self.org.managing_account_id)
    }

    /// Applies connection `name` to the managing role with the ExternalId its trust policy
    /// names, with `extra` merged into its spec.
    pub async fn connect(&self, name: &str, extra: serde_json::Value) -> AwsOrgConnection {
        let mut spec = serde_json::json!({ "roleArn": self.role() });
        if !self.external_id.is_empty() {
            spec["externalId"] = serde_json::Value::from(self.external_id.clone());
        }
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        apply_connection(&self.connections(), name, spec).await
    }
}
