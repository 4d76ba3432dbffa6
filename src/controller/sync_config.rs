//! What each sync Job gets, pure: an AWS config file with one profile per Connected
//! account, chained through the managing role with the connection's ExternalId, and an
//! `accounts.json`, so any AWS tool reaches every account unchanged.

use std::fmt::Write as _;

use serde::Serialize;

/// The profile holding the managing-role hop every account profile chains through.
pub const MANAGING_PROFILE: &str = "orgconnect-managing";
/// The profile holding the Job's own identity: the connection's Secret keys (in the
/// run's credentials file) or the IRSA web identity.
pub const BASE_PROFILE: &str = "orgconnect-base";

/// Where the Job's own AWS identity comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunAccount {
    pub id: String,
    pub name: String,
    pub ou_path: String,
    pub phase: String,
    /// The role the profile assumes in this account.
    #[serde(skip)]
    pub role_arn: String,
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
        JobIdentity::SharedCredentials => format!("source_profile = {BASE_PROFILE}"),
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
    serde_json::to_string_pretty(accounts).unwrap_or_else(|_| "[]".to_owned())
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
        // Every profile, and the default, uses the regional STS endpoint.
        assert_eq!(
            config.matches("sts_regional_endpoints = regional").count(),
            config.matches("[profile ").count() + 1
        );
        assert!(config.contains("[profile 222222222222]\nrole_arn = arn:aws:iam::222222222222:role/OrganizationAccountAccessRole\nsource_profile = orgconnect-managing"));
        assert!(config.contains("[profile 111111111111]\nrole_arn = arn:aws:iam::111111111111:role/orgconnect\nexternal_id = oc-abc"));
        assert_eq!(config.matches("[profile ").count(), 3);
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
}
