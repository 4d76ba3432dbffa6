//! What each sync Job gets, pure: an AWS config file with one profile per Connected
//! account, chained through the managing role with the connection's ExternalId, and an
//! `accounts.json`, so any AWS tool reaches every account unchanged; and, where the
//! schedule asks, the configuration of tools that read their own account lists
//! (c7n-org's accounts file, Steampipe's connections).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::api::sync_schedule::ToolConfig;

/// The profile holding the managing-role hop every account profile chains through.
pub const MANAGING_PROFILE: &str = "orgconnect-managing";
/// The profile holding the Job's own identity: the connection's Secret keys (in the
/// run's credentials file) or the IRSA web identity.
pub const BASE_PROFILE: &str = "orgconnect-base";

/// Where the Job's own AWS identity comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum JobIdentity {
    /// The connection's Secret keys, as profile `orgconnect-base` of the run's credentials
    /// file: never the standard environment variables, which botocore and the Go SDK put
    /// ahead of the profile `AWS_PROFILE` picks.
    SharedCredentials,
    /// IRSA: a web identity token for the role on the Job's service account.
    WebIdentity {
        role_arn: String,
        token_file: String,
    },
    /// EKS Pod Identity (container credentials).
    Container,
}

/// One account a run reaches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunAccount {
    pub id: String,
    pub name: String,
    pub ou_path: String,
    pub phase: String,
    /// The role the profile assumes in this account (not in `accounts.json`).
    pub role_arn: String,
    /// The account's AWS tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// An account as `accounts.json` lists it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed<'a> {
    id: &'a str,
    name: &'a str,
    ou_path: &'a str,
    phase: &'a str,
}

/// Everything a run's files are rendered from. A run whose files outgrow one ConfigMap
/// gets this instead, split by accounts into parts ([`split`]) that its first init
/// container joins ([`join`]) and renders ([`RunInput::files`]) into the same files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInput {
    pub managing_role_arn: String,
    pub external_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_external_id: Option<String>,
    pub region: String,
    /// The regions tool files name for each account; `region` when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// The tools whose configuration the run gets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolConfig>,
    pub identity: JobIdentity,
    /// The accounts, in the run's order (in a part: that part's share of them).
    pub accounts: Vec<RunAccount>,
}

/// The name of part `index` among a run's files: they sort in order.
pub fn part_key(index: usize) -> String {
    format!("run-{index:05}.json")
}

impl RunInput {
    /// The run's files: `aws-config` and `accounts.json`.
    pub fn files(&self) -> BTreeMap<String, String> {
        let config = aws_config(&ConfigInput {
            managing_role_arn: &self.managing_role_arn,
            external_id: &self.external_id,
            member_external_id: self.member_external_id.as_deref(),
            region: &self.region,
            identity: &self.identity,
            accounts: &self.accounts,
        });
        let mut files = BTreeMap::from([
            ("aws-config".to_owned(), config),
            ("accounts.json".to_owned(), accounts_json(&self.accounts)),
        ]);
        for tool in &self.tools {
            let content = match tool {
                ToolConfig::C7nOrg => c7n_org_accounts(self),
                ToolConfig::Steampipe => steampipe_config(self),
            };
            files.insert(tool_file(*tool).to_owned(), content);
        }
        files
    }

    /// The regions tool files name for every account.
    fn tool_regions(&self) -> Vec<String> {
        if self.regions.is_empty() {
            vec![self.region.clone()]
        } else {
            self.regions.clone()
        }
    }
}

/// The file of a run that holds `tool`'s configuration.
pub fn tool_file(tool: ToolConfig) -> &'static str {
    match tool {
        ToolConfig::C7nOrg => "c7n-org-accounts.yml",
        ToolConfig::Steampipe => "aws.spc",
    }
}

/// The environment variable that gives a run's containers the path of `tool`'s file.
pub fn tool_env(tool: ToolConfig) -> &'static str {
    match tool {
        ToolConfig::C7nOrg => "ORGCONNECT_C7N_ORG_ACCOUNTS",
        ToolConfig::Steampipe => "ORGCONNECT_STEAMPIPE_CONFIG",
    }
}

/// One account of c7n-org's accounts file (its `accounts` schema).
#[derive(Serialize)]
struct C7nAccount<'a> {
    account_id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'a str>,
    regions: &'a [String],
    tags: Vec<String>,
}

/// Cloud Custodian's c7n-org `accounts.yml`: one entry per account. c7n-org assumes an
/// entry's `role` list hop by hop from its own default credentials (the Job's identity)
/// and presents the entry's one `external_id` at every hop: the managing role, then the
/// member role. When the member roles want an ExternalId of their own
/// (`memberAccess.externalId`) one value cannot serve both hops, so the member accounts'
/// entries name their profile of the run's AWS config instead, which chains with both.
/// Tags: `path:<OU path>` and `<key>:<value>` for each AWS tag, as c7n-org's `-t` takes
/// them.
pub fn c7n_org_accounts(input: &RunInput) -> String {
    let regions = input.tool_regions();
    let accounts: Vec<C7nAccount<'_>> = input
        .accounts
        .iter()
        .map(|account| {
            let managing = account.role_arn == input.managing_role_arn;
            let by_profile = !managing && input.member_external_id.is_some();
            let role = match (managing, by_profile) {
                (true, _) => Some(vec![input.managing_role_arn.as_str()]),
                (false, false) => Some(vec![
                    input.managing_role_arn.as_str(),
                    account.role_arn.as_str(),
                ]),
                (false, true) => None,
            };
            let mut tags = vec![format!("path:{}", account.ou_path)];
            tags.extend(account.tags.iter().map(|(k, v)| format!("{k}:{v}")));
            C7nAccount {
                account_id: &account.id,
                name: if account.name.is_empty() {
                    &account.id
                } else {
                    &account.name
                },
                external_id: role.is_some().then_some(input.external_id.as_str()),
                profile: by_profile.then_some(account.id.as_str()),
                role,
                regions: &regions,
                tags,
            }
        })
        .collect();
    #[derive(Serialize)]
    struct File<'a> {
        accounts: Vec<C7nAccount<'a>>,
    }
    let yaml = serde_yaml::to_string(&File { accounts }).unwrap_or_default();
    format!("# Written by orgconnect for this run: c7n-org run -c THIS_FILE ...\n{yaml}")
}

/// Steampipe's `aws.spc`: a connection `aws_<account id>` on each account's profile of
/// the run's AWS config, and the aggregator `aws_all` over them. Written by hand: the
/// file is three fields a connection, and every value is an account id, a profile (an
/// account id) or a region, each checked against its pattern before it gets here, so
/// no HCL library is needed to quote them.
pub fn steampipe_config(input: &RunInput) -> String {
    let regions = input
        .tool_regions()
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = String::from(
        "# Written by orgconnect for this run: one connection per account, and aws_all over them.\n",
    );
    for account in &input.accounts {
        let _ = writeln!(
            out,
            "connection \"aws_{id}\" {{\n  plugin         = \"aws\"\n  profile        = {id:?}\n  \
             regions        = [{regions}]\n  default_region = {region:?}\n}}\n",
            id = account.id,
            region = input.region,
        );
    }
    out.push_str(
        "connection \"aws_all\" {\n  plugin      = \"aws\"\n  type        = \"aggregator\"\n  \
         connections = [\"aws_*\"]\n}\n",
    );
    out
}

/// `input` as parts of at most about `limit` bytes each (one account never splits, so a
/// part holds at least one), in order; always at least one part.
pub fn split(input: &RunInput, limit: usize) -> Result<Vec<String>, serde_json::Error> {
    let header = RunInput {
        accounts: Vec::new(),
        ..input.clone()
    };
    let base = serde_json::to_string(&header)?.len();
    let mut parts: Vec<Vec<RunAccount>> = vec![Vec::new()];
    let mut size = base;
    for account in &input.accounts {
        let len = serde_json::to_string(account)?.len() + 1;
        if size + len > limit && parts.last().is_some_and(|p| !p.is_empty()) {
            parts.push(Vec::new());
            size = base;
        }
        size += len;
        if let Some(part) = parts.last_mut() {
            part.push(account.clone());
        }
    }
    parts
        .into_iter()
        .map(|accounts| {
            serde_json::to_string(&RunInput {
                accounts,
                ..header.clone()
            })
        })
        .collect()
}

/// The run [`split`] made `parts` from, the parts in order.
pub fn join(parts: &[String]) -> Result<RunInput, String> {
    let mut joined: Option<RunInput> = None;
    for (index, part) in parts.iter().enumerate() {
        let part: RunInput = serde_json::from_str(part)
            .map_err(|e| format!("part {index} is not a run part: {e}"))?;
        match &mut joined {
            None => joined = Some(part),
            Some(run) => {
                let same = RunInput {
                    accounts: Vec::new(),
                    ..part.clone()
                } == RunInput {
                    accounts: Vec::new(),
                    ..run.clone()
                };
                if !same {
                    return Err(format!("part {index} belongs to another run"));
                }
                run.accounts.extend(part.accounts);
            }
        }
    }
    joined.ok_or_else(|| "the run has no parts".to_owned())
}

/// Everything the config file is made from.
#[derive(Clone, Debug)]
pub struct ConfigInput<'a> {
    pub managing_role_arn: &'a str,
    pub external_id: &'a str,
    pub member_external_id: Option<&'a str>,
    pub region: &'a str,
    pub identity: &'a JobIdentity,
    pub accounts: &'a [RunAccount],
}

/// The AWS config file: `[profile <account id>]` for each account.
pub fn aws_config(input: &ConfigInput<'_>) -> String {
    let mut out =
        String::from("# Written by orgconnect for this run. One profile per Connected account.\n");
    // Older boto3 and aws-cli v1 call the global STS endpoint unless told otherwise.
    let _ = writeln!(out, "[default]\nregion = {}\n{REGIONAL}\n", input.region);
    let source = match input.identity {
        JobIdentity::SharedCredentials => {
            // The keys are in the credentials file; the profile's region and endpoint
            // settings are here, for tools that start from it (the Job's AWS_PROFILE).
            let _ = writeln!(
                out,
                "[profile {BASE_PROFILE}]\nregion = {}\n{REGIONAL}\n",
                input.region
            );
            format!("source_profile = {BASE_PROFILE}")
        }
        JobIdentity::Container => "credential_source = EcsContainer".to_owned(),
        JobIdentity::WebIdentity {
            role_arn,
            token_file,
        } => {
            let _ = writeln!(
                out,
                "[profile {BASE_PROFILE}]\nrole_arn = {role_arn}\nweb_identity_token_file = {token_file}\nregion = {}\n{REGIONAL}\n",
                input.region
            );
            format!("source_profile = {BASE_PROFILE}")
        }
    };
    let _ = writeln!(
        out,
        "[profile {MANAGING_PROFILE}]\nrole_arn = {}\nexternal_id = {}\n{source}\nrole_session_name = orgconnect-sync\nregion = {}\n{REGIONAL}\n",
        input.managing_role_arn, input.external_id, input.region
    );
    for account in input.accounts {
        let _ = writeln!(out, "[profile {}]", account.id);
        if account.role_arn == input.managing_role_arn {
            // The managing account is reached with the managing role itself.
            let _ = writeln!(
                out,
                "role_arn = {}\nexternal_id = {}\n{source}",
                account.role_arn, input.external_id
            );
        } else {
            let _ = writeln!(
                out,
                "role_arn = {}\nsource_profile = {MANAGING_PROFILE}",
                account.role_arn
            );
            if let Some(id) = input.member_external_id {
                let _ = writeln!(out, "external_id = {id}");
            }
        }
        let _ = writeln!(
            out,
            "role_session_name = orgconnect-sync\nregion = {}\n{REGIONAL}\n",
            input.region
        );
    }
    out
}

const REGIONAL: &str = "sts_regional_endpoints = regional";

/// The run's credentials file for [`JobIdentity::SharedCredentials`]: the Secret's keys as
/// profile `orgconnect-base`.
pub fn credentials_file(
    access_key_id: &str,
    secret_access_key: &str,
    session_token: Option<&str>,
) -> String {
    let mut out = format!(
        "[{BASE_PROFILE}]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {secret_access_key}\n"
    );
    if let Some(token) = session_token.filter(|t| !t.is_empty()) {
        let _ = writeln!(out, "aws_session_token = {token}");
    }
    out
}

/// `accounts.json`: id, name, OU path and phase of every account of the run.
pub fn accounts_json(accounts: &[RunAccount]) -> String {
    let listed: Vec<Listed<'_>> = accounts
        .iter()
        .map(|a| Listed {
            id: &a.id,
            name: &a.name,
            ou_path: &a.ou_path,
            phase: &a.phase,
        })
        .collect();
    serde_json::to_string_pretty(&listed).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, role: &str) -> RunAccount {
        RunAccount {
            id: id.into(),
            name: format!("n{id}"),
            ou_path: "Root/Prod".into(),
            phase: "Connected".into(),
            role_arn: role.into(),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn every_account_chains_through_the_managing_role() {
        let managing = "arn:aws:iam::111111111111:role/orgconnect";
        let accounts = [
            account("111111111111", managing),
            account(
                "222222222222",
                "arn:aws:iam::222222222222:role/OrganizationAccountAccessRole",
            ),
        ];
        let config = aws_config(&ConfigInput {
            managing_role_arn: managing,
            external_id: "oc-abc",
            member_external_id: None,
            region: "eu-west-1",
            identity: &JobIdentity::SharedCredentials,
            accounts: &accounts,
        });
        assert!(config.contains("[profile orgconnect-managing]\nrole_arn = arn:aws:iam::111111111111:role/orgconnect\nexternal_id = oc-abc\nsource_profile = orgconnect-base"));
        assert!(!config.contains("credential_source = Environment"));
        // The base profile carries the region for tools that start from it.
        assert!(config.contains("[profile orgconnect-base]\nregion = eu-west-1\n"));
        // Every profile, and the default, uses the regional STS endpoint.
        assert_eq!(
            config.matches("sts_regional_endpoints = regional").count(),
            config.matches("[profile ").count() + 1
        );
        assert!(config.contains("[profile 222222222222]\nrole_arn = arn:aws:iam::222222222222:role/OrganizationAccountAccessRole\nsource_profile = orgconnect-managing"));
        assert!(config.contains("[profile 111111111111]\nrole_arn = arn:aws:iam::111111111111:role/orgconnect\nexternal_id = oc-abc"));
        assert_eq!(config.matches("[profile ").count(), 4);
        let json: serde_json::Value =
            serde_json::from_str(&accounts_json(&accounts)).expect("JSON");
        assert_eq!(json[1]["ouPath"], "Root/Prod");
        assert!(json[1].get("roleArn").is_none());
    }

    #[test]
    fn the_secret_keys_are_a_profile_of_the_credentials_file() {
        let file = credentials_file("AKIAEXAMPLE", "secret", Some("token"));
        assert_eq!(
            file,
            "[orgconnect-base]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = secret\naws_session_token = token\n"
        );
        assert!(!credentials_file("AKIAEXAMPLE", "secret", Some("")).contains("token"));
    }

    #[test]
    fn irsa_jobs_start_from_a_web_identity_profile() {
        let config = aws_config(&ConfigInput {
            managing_role_arn: "arn:aws:iam::111111111111:role/orgconnect",
            external_id: "oc-abc",
            member_external_id: Some("member-id"),
            region: "us-east-1",
            identity: &JobIdentity::WebIdentity {
                role_arn: "arn:aws:iam::999999999999:role/sync".into(),
                token_file: "/var/run/secrets/eks.amazonaws.com/serviceaccount/token".into(),
            },
            accounts: &[account("222222222222", "arn:aws:iam::222222222222:role/R")],
        });
        assert!(config.contains("[profile orgconnect-base]\nrole_arn = arn:aws:iam::999999999999:role/sync\nweb_identity_token_file = /var/run/secrets/eks.amazonaws.com/serviceaccount/token"));
        assert!(config.contains("source_profile = orgconnect-base"));
        assert!(config.contains("external_id = member-id"));
    }

    #[test]
    fn a_run_of_20000_accounts_splits_into_parts_that_render_the_same_files() {
        let managing = "arn:aws:iam::111111111111:role/orgconnect";
        let input = RunInput {
            managing_role_arn: managing.into(),
            external_id: "oc-abc".into(),
            member_external_id: Some("member-id".into()),
            region: "eu-west-1".into(),
            regions: vec!["eu-west-1".into(), "us-east-1".into()],
            tools: vec![ToolConfig::C7nOrg, ToolConfig::Steampipe],
            identity: JobIdentity::WebIdentity {
                role_arn: "arn:aws:iam::999999999999:role/sync".into(),
                token_file: "/var/run/token".into(),
            },
            accounts: (0..20_000u64)
                .map(|n| {
                    let id = format!("{:012}", 200_000_000_000 + n);
                    let role = format!("arn:aws:iam::{id}:role/OrganizationAccountAccessRole");
                    account(&id, &role)
                })
                .collect(),
        };
        let limit = 900 * 1024;
        let parts = split(&input, limit).expect("split");
        assert!(parts.len() > 1, "{} parts", parts.len());
        assert!(parts.iter().all(|p| p.len() <= limit));
        let joined = join(&parts).expect("join");
        assert_eq!(joined, input);
        let files = joined.files();
        assert_eq!(files, input.files());
        assert_eq!(files["aws-config"].matches("[profile ").count(), 20_002);
        assert_eq!(
            files["aws.spc"].matches("connection \"aws_").count(),
            20_001
        );
        assert_eq!(
            files["c7n-org-accounts.yml"]
                .matches("- account_id:")
                .count(),
            20_000
        );
        let listed: Vec<serde_json::Value> =
            serde_json::from_str(&files["accounts.json"]).expect("JSON");
        assert_eq!(listed.len(), 20_000);
        assert!(
            files["aws-config"].len() > 1024 * 1024,
            "too big for one ConfigMap"
        );

        // Parts of two runs are refused, never half-joined.
        let mut other = input.clone();
        other.external_id = "oc-other".into();
        let foreign = split(&other, limit).expect("split");
        assert!(join(&[parts[0].clone(), foreign[1].clone()]).is_err());
        assert!(join(&[]).is_err());
        assert!(join(&["{".to_owned()]).is_err());
        // A run with no accounts is one part.
        let empty = RunInput {
            accounts: Vec::new(),
            ..input
        };
        assert_eq!(split(&empty, limit).expect("split").len(), 1);
    }

    fn tool_input(member_external_id: Option<&str>) -> RunInput {
        let managing = "arn:aws:iam::111111111111:role/orgconnect";
        let mut tagged = account(
            "222222222222",
            "arn:aws:iam::222222222222:role/OrganizationAccountAccessRole",
        );
        tagged.tags = BTreeMap::from([
            ("team".to_owned(), "payments".to_owned()),
            ("cost-center".to_owned(), "42".to_owned()),
        ]);
        RunInput {
            managing_role_arn: managing.into(),
            external_id: "oc-abc".into(),
            member_external_id: member_external_id.map(str::to_owned),
            region: "eu-west-1".into(),
            regions: Vec::new(),
            tools: vec![ToolConfig::C7nOrg, ToolConfig::Steampipe],
            identity: JobIdentity::SharedCredentials,
            accounts: vec![account("111111111111", managing), tagged],
        }
    }

    #[test]
    fn c7n_org_gets_each_account_with_its_role_chain_external_id_regions_and_tags() {
        let files = tool_input(None).files();
        let file: serde_yaml::Value =
            serde_yaml::from_str(&files["c7n-org-accounts.yml"]).expect("YAML");
        let accounts = file["accounts"].as_sequence().expect("accounts");
        assert_eq!(accounts.len(), 2);
        // Account ids stay strings (c7n-org's schema refuses a number).
        assert_eq!(
            accounts[0]["account_id"],
            serde_yaml::Value::String("111111111111".into())
        );
        assert_eq!(accounts[0]["name"].as_str(), Some("n111111111111"));
        // The managing account: the managing role alone.
        assert_eq!(
            accounts[0]["role"],
            serde_yaml::from_str::<serde_yaml::Value>(
                "[arn:aws:iam::111111111111:role/orgconnect]"
            )
            .expect("YAML")
        );
        // A member: through the managing role, with the connection's ExternalId.
        assert_eq!(
            accounts[1]["role"],
            serde_yaml::from_str::<serde_yaml::Value>(
                "[arn:aws:iam::111111111111:role/orgconnect, \
                 arn:aws:iam::222222222222:role/OrganizationAccountAccessRole]"
            )
            .expect("YAML")
        );
        assert_eq!(accounts[1]["external_id"].as_str(), Some("oc-abc"));
        assert!(accounts[1].get("profile").is_none());
        assert_eq!(
            accounts[1]["regions"],
            serde_yaml::from_str::<serde_yaml::Value>("[eu-west-1]").expect("YAML")
        );
        assert_eq!(
            accounts[1]["tags"],
            serde_yaml::from_str::<serde_yaml::Value>(
                "['path:Root/Prod', 'cost-center:42', 'team:payments']"
            )
            .expect("YAML")
        );
    }

    #[test]
    fn c7n_org_member_entries_use_their_profile_when_members_want_their_own_external_id() {
        let files = tool_input(Some("member-id")).files();
        let file: serde_yaml::Value =
            serde_yaml::from_str(&files["c7n-org-accounts.yml"]).expect("YAML");
        let member = &file["accounts"][1];
        assert!(member.get("role").is_none(), "{member:?}");
        assert!(member.get("external_id").is_none(), "{member:?}");
        assert_eq!(member["profile"].as_str(), Some("222222222222"));
        // The managing account still assumes the managing role with its ExternalId.
        assert_eq!(file["accounts"][0]["external_id"].as_str(), Some("oc-abc"));
    }

    #[test]
    fn steampipe_gets_a_connection_per_account_profile_and_an_aggregator() {
        let mut input = tool_input(None);
        input.regions = vec!["eu-west-1".into(), "us-east-1".into()];
        let spc = &input.files()["aws.spc"];
        assert!(spc.contains(
            "connection \"aws_222222222222\" {\n  plugin         = \"aws\"\n  \
             profile        = \"222222222222\"\n  regions        = [\"eu-west-1\", \"us-east-1\"]\n  \
             default_region = \"eu-west-1\"\n}\n"
        ));
        assert!(spc.contains(
            "connection \"aws_all\" {\n  plugin      = \"aws\"\n  type        = \"aggregator\"\n  \
             connections = [\"aws_*\"]\n}\n"
        ));
        assert_eq!(spc.matches("connection \"").count(), 3);
        // Every connection's profile is one the run's AWS config has.
        let config = &input.files()["aws-config"];
        for account in &input.accounts {
            assert!(config.contains(&format!("[profile {}]", account.id)));
        }
        // Without toolConfigs a run gets the two files it always had.
        input.tools.clear();
        assert_eq!(
            input.files().keys().collect::<Vec<_>>(),
            ["accounts.json", "aws-config"]
        );
    }
}
