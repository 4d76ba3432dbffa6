//! The world most tests start from: moto with a seeded organization behind a fault proxy,
//! a namespace of the test's own, and the operator running scoped to it.

use aws_sdk_sts::config::Credentials;
use kube::api::{Api, Patch, PatchParams};
use orgconnect::api::{AwsOrgConnection, ConditionStatus, ConditionType, MemberAccount};
use orgconnect::controller::Settings;

use orgconnect::api::connection::DEFAULT_ROLE_NAME;

use super::aws::AwsBed;
use super::iam::{base_principal, create_user, deploy_managing_role_trusting, deploy_template};
use super::kube::{KUBECONFIG_ENV, TestNamespace};
use super::operator::{RunningOperator, apply_connection, in_namespace, start, wait_condition};
use super::org::{OrgSpec, SeededOrg, seed};

pub struct Scenario {
    /// The managing role's IAM path (`/` when it has none).
    pub role_path: String,
    pub bed: AwsBed,
    /// The ExternalId the managing role's trust policy names; [`Scenario::connect`]
    /// presents it.
    pub external_id: String,
    pub org: SeededOrg,
    pub ns: TestNamespace,
    pub operator: RunningOperator,
}

/// Who the operator is on the bed.
enum Operator {
    /// The managing account's own keys, which the managing role trusts.
    Base,
    /// Keys of no account: only a Secret's keys reach the organization.
    Outsider,
    /// An IAM user of an account of its own (as an operator runs outside the
    /// organization), with this inline identity policy; the managing role trusts it.
    User(serde_json::Value),
}

type TemplateEdit<'a> = Box<dyn FnOnce(&mut serde_json::Value) + 'a>;
type Prepare<'a> = Box<dyn FnOnce(&AwsBed, &mut Settings) + 'a>;

/// How a test's world is made: [`Scenario::build`], then the options, then
/// [`Setup::start`].
pub struct Setup<'a> {
    prefix: &'a str,
    spec: &'a OrgSpec,
    strict: bool,
    deploy_role: bool,
    member_role: String,
    role_path: String,
    operator: Operator,
    edit: Option<TemplateEdit<'a>>,
    prepare: Option<Prepare<'a>>,
}

impl<'a> Setup<'a> {
    /// moto's own IAM: any role may be assumed with any ExternalId, and no managing role is
    /// deployed (for tests of the bed's own faults).
    pub fn lenient(mut self) -> Self {
        self.strict = false;
        self
    }

    /// The member role the managing role may assume (default
    /// `OrganizationAccountAccessRole`).
    pub fn member_role(mut self, name: &str) -> Self {
        name.clone_into(&mut self.member_role);
        self
    }

    /// The managing role's IAM path (default `/`): `/platform/` makes
    /// `role/platform/orgconnect`.
    pub fn managing_role_path(mut self, path: &str) -> Self {
        path.clone_into(&mut self.role_path);
        self
    }

    /// Changes the managing-role template before it is deployed (to remove a permission).
    pub fn template(mut self, edit: impl FnOnce(&mut serde_json::Value) + 'a) -> Self {
        self.edit = Some(Box::new(edit));
        self
    }

    /// No managing role until the operator has generated the connection's ExternalId:
    /// [`Scenario::connect_generated`] then deploys it as a user would.
    pub fn generated_external_id(mut self) -> Self {
        self.deploy_role = false;
        self
    }

    /// The operator's own identity reaches nothing; a connection's Secret holding the
    /// test's base keys (which the managing role trusts) does.
    pub fn operator_without_access(mut self) -> Self {
        self.operator = Operator::Outsider;
        self
    }

    /// The operator runs as an IAM user of another account whose only identity policy is
    /// `policy`; the managing role trusts that user.
    pub fn operator_user(mut self, policy: serde_json::Value) -> Self {
        self.operator = Operator::User(policy);
        self
    }

    /// Programs the proxy or changes the operator's settings before it starts.
    pub fn prepare(mut self, prepare: impl FnOnce(&AwsBed, &mut Settings) + 'a) -> Self {
        self.prepare = Some(Box::new(prepare));
        self
    }

    pub async fn start(self) -> Scenario {
        let bed = AwsBed::new().await;
        let org = seed(&bed.sdk_config(), self.spec).await;
        let (identity, principal): (Credentials, String) = match self.operator {
            Operator::Base => (bed.credentials.clone(), base_principal(&bed).await),
            Operator::Outsider => (bed.unmapped_credentials(), base_principal(&bed).await),
            Operator::User(policy) => {
                let (account, admin) = bed.add_principal();
                let admin = bed.sdk_config_with(admin);
                let (arn, keys) =
                    create_user(&bed, &admin, &account, "orgconnect-operator", &policy).await;
                (keys, arn)
            }
        };
        let mut external_id = String::new();
        if self.strict {
            if self.deploy_role {
                external_id = format!("ext-{}", super::unique_suffix());
                let edit = self.edit.unwrap_or_else(|| Box::new(|_| {}));
                let path = self.role_path.clone();
                deploy_managing_role_trusting(
                    &bed,
                    &principal,
                    &external_id,
                    &self.member_role,
                    |template| {
                        template["Parameters"]["RolePath"]["Default"] = path.into();
                        edit(template);
                    },
                )
                .await;
            }
            bed.proxy.enforce_iam();
        }
        let ns = TestNamespace::new(self.prefix).await;
        let mut settings = in_namespace(&ns.name);
        if let Some(prepare) = self.prepare {
            prepare(&bed, &mut settings);
        }
        let operator = start(ns.client.clone(), bed.operator_config(identity), settings);
        Scenario {
            role_path: self.role_path,
            bed,
            external_id,
            org,
            ns,
            operator,
        }
    }
}

impl Scenario {
    /// Starts describing the organization `spec` on the strict bed (IAM enforced), its
    /// managing role made from the managing-role template with an ExternalId of the
    /// test's, and the operator using the managing account's own keys as its default
    /// chain.
    pub fn build<'a>(prefix: &'a str, spec: &'a OrgSpec) -> Setup<'a> {
        Setup {
            prefix,
            spec,
            strict: true,
            deploy_role: true,
            member_role: DEFAULT_ROLE_NAME.to_owned(),
            role_path: "/".to_owned(),
            operator: Operator::Base,
            edit: None,
            prepare: None,
        }
    }

    /// [`Scenario::build`] with every default.
    pub async fn start(prefix: &str, spec: &OrgSpec) -> Self {
        Self::build(prefix, spec).start().await
    }

    /// [`Scenario::build`], letting the test program the proxy or change the operator's
    /// settings before it starts.
    pub async fn start_with(
        prefix: &str,
        spec: &OrgSpec,
        prepare: impl FnOnce(&AwsBed, &mut Settings),
    ) -> Self {
        Self::build(prefix, spec).prepare(prepare).start().await
    }

    /// Applies connection `name` without an ExternalId, as a new user does, and connects
    /// it with [`deploy_generated_role`].
    pub async fn connect_generated(&self, name: &str, extra: serde_json::Value) {
        let mut spec = serde_json::json!({ "roleArn": self.role() });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        apply_connection(&self.connections(), name, spec).await;
        let config = self.bed.sdk_config();
        deploy_generated_role(&self.bed, &self.ns.client, &self.ns.name, name, &config).await;
    }

    pub fn connections(&self) -> Api<AwsOrgConnection> {
        self.ns.api()
    }

    pub fn members(&self) -> Api<MemberAccount> {
        self.ns.api()
    }

    /// The managing role of the seeded organization.
    pub fn role(&self) -> String {
        format!(
            "arn:aws:iam::{}:role{}orgconnect",
            self.org.managing_account_id, self.role_path
        )
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

impl Scenario {
    /// [`Scenario::connect`] with `credentials.source: Secret`: the Secret `aws-keys` holds
    /// the test's base keys, which the managing role trusts (and a run's Jobs present).
    pub async fn connect_with_secret(
        &self,
        name: &str,
        extra: serde_json::Value,
    ) -> AwsOrgConnection {
        super::operator::create_key_secret(&self.ns.api(), "aws-keys", &self.bed.credentials).await;
        let mut spec = serde_json::json!({
            "credentials": { "source": "Secret", "secretRef": { "name": "aws-keys" } },
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        self.connect(name, spec).await
    }
}

/// Connects connection `name` of `namespace`, applied without an ExternalId, as the README says:
/// once the operator has generated the ExternalId (and is refused, since no role exists
/// yet), `orgconnect template managing-role --connection` makes the role's template from
/// the cluster, CloudFormation deploys it as `deploy_as` (an identity in the role's
/// account), and a touch of the connection makes the operator look again at once. The
/// proxy's counts start again just before that touch.
pub async fn deploy_generated_role(
    bed: &AwsBed,
    client: &kube::Client,
    namespace: &str,
    name: &str,
    deploy_as: &aws_config::SdkConfig,
) {
    let connections: Api<AwsOrgConnection> = Api::namespaced(client.clone(), namespace);
    wait_condition(
        &connections,
        name,
        ConditionType::Authenticated,
        ConditionStatus::False,
        "AssumeRoleDenied",
    )
    .await;
    let kubeconfig = std::env::var(KUBECONFIG_ENV).expect("the test bed's kubeconfig");
    let cli = super::process::beside_current_exe("orgconnect").expect("the orgconnect binary");
    let output = std::process::Command::new(cli)
        .args(["template", "managing-role", "--connection", name])
        .args(["-n", namespace, "--format", "json"])
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run orgconnect template");
    assert!(
        output.status.success(),
        "orgconnect template: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    deploy_template(deploy_as, &String::from_utf8_lossy(&output.stdout)).await;
    bed.proxy.reset_stats();
    let touch = serde_json::json!({ "metadata": { "annotations": {
        "example.com/role-deployed": super::unique_suffix() } } });
    connections
        .patch(name, &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .expect("touch the connection");
}
