//! IAM role ARNs: parsing the ones users write and building the ones the operator assumes.

use std::fmt;
use std::str::FromStr;

/// A parsed `arn:<partition>:iam::<account>:role/<path/name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleArn {
    /// `aws`, `aws-cn`, `aws-us-gov`, …
    pub partition: String,
    /// The 12-digit account id.
    pub account_id: String,
    /// The role's path and name after `role/`.
    pub name: String,
}

/// Why a string is not an IAM role ARN.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not an IAM role ARN (arn:<partition>:iam::<12-digit account>:role/<name>): {problem}"
)]
pub struct InvalidRoleArn {
    pub value: String,
    pub problem: &'static str,
}

const PARTITIONS: &[&str] = &[
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
    "aws-eusc",
];

impl FromStr for RoleArn {
    type Err = InvalidRoleArn;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = |problem| InvalidRoleArn {
            value: value.to_owned(),
            problem,
        };
        let parts: Vec<&str> = value.splitn(6, ':').collect();
        let [prefix, partition, service, region, account_id, resource] = parts[..] else {
            return Err(invalid("it does not have six ':'-separated parts"));
        };
        if prefix != "arn" {
            return Err(invalid("it does not start with arn:"));
        }
        if !PARTITIONS.contains(&partition) {
            return Err(invalid("the partition is not a known AWS partition"));
        }
        if service != "iam" || !region.is_empty() {
            return Err(invalid("it is not an IAM ARN (arn:<partition>:iam::…)"));
        }
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the account id is not 12 digits"));
        }
        let Some(name) = resource.strip_prefix("role/") else {
            return Err(invalid("it does not name a role (…:role/<name>)"));
        };
        if name.is_empty() || name.ends_with('/') {
            return Err(invalid("the role name is empty"));
        }
        Ok(Self {
            partition: partition.to_owned(),
            account_id: account_id.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:iam::{}:role/{}",
            self.partition, self.account_id, self.name
        )
    }
}

impl RoleArn {
    /// The role's name: the last segment of `name`.
    pub fn role_name(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }

    /// The role's IAM path: `/` when it has none, else `/team/` for `role/team/x`.
    pub fn path(&self) -> String {
        match self.name.rsplit_once('/') {
            Some((path, _)) => format!("/{path}/"),
            None => "/".to_owned(),
        }
    }

    /// The role `role_name` in `account_id`, in this ARN's partition: how a member role is
    /// reached from the managing role.
    pub fn sibling(&self, account_id: &str, role_name: &str) -> RoleArn {
        RoleArn {
            partition: self.partition.clone(),
            account_id: account_id.to_owned(),
            name: role_name.to_owned(),
        }
    }
}

/// The principal a trust policy names to let `caller_arn` assume a role: an assumed-role
/// session (`arn:aws:sts::A:assumed-role/R/S`, as with IRSA or Pod Identity) is trusted
/// through its role (`arn:aws:iam::A:role/R`); users and roles are named as they are.
pub fn trust_principal(caller_arn: &str) -> String {
    let parts: Vec<&str> = caller_arn.splitn(6, ':').collect();
    if let [_, partition, "sts", _, account, resource] = parts[..]
        && let Some(rest) = resource.strip_prefix("assumed-role/")
        && let Some((role, _session)) = rest.split_once('/')
    {
        return format!("arn:{partition}:iam::{account}:role/{role}");
    }
    caller_arn.to_owned()
}

/// The trust-policy statement that lets `principal` (the caller's ARN, when known)
/// assume a role, with the ExternalId condition when one is presented.
pub fn trust_statement(
    principal: Option<&str>,
    role: &RoleArn,
    external_id: Option<&str>,
) -> serde_json::Value {
    let trusted = principal.map_or_else(
        || {
            format!(
                "arn:{}:iam::<operator account>:role/<operator role>",
                role.partition
            )
        },
        trust_principal,
    );
    let mut statement = serde_json::json!({
        "Effect": "Allow",
        "Principal": { "AWS": trusted },
        "Action": "sts:AssumeRole",
    });
    if let Some(id) = external_id.filter(|id| !id.is_empty()) {
        statement["Condition"] = serde_json::json!({ "StringEquals": { "sts:ExternalId": id } });
    }
    statement
}

/// The identity-policy statement that lets a principal assume `role` (the operator's own
/// identity needs it for a role in another account).
pub fn assume_role_statement(role: &RoleArn) -> serde_json::Value {
    serde_json::json!({
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Resource": role.to_string(),
    })
}

/// The partition a region belongs to.
pub fn partition_of_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else if region.starts_with("us-isof-") {
        "aws-iso-f"
    } else if region.starts_with("eusc-") {
        "aws-eusc"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_with_a_path_has_its_name_and_path_apart() {
        let plain: RoleArn = "arn:aws:iam::111122223333:role/orgconnect"
            .parse()
            .expect("arn");
        assert_eq!(
            (plain.role_name(), plain.path().as_str()),
            ("orgconnect", "/")
        );
        let nested: RoleArn = "arn:aws:iam::111122223333:role/platform/team/orgconnect"
            .parse()
            .expect("arn");
        assert_eq!(
            (nested.role_name(), nested.path().as_str()),
            ("orgconnect", "/platform/team/")
        );
    }

    #[test]
    fn parses_role_arns_in_every_partition() {
        let arn: RoleArn = "arn:aws-cn:iam::111122223333:role/team/orgconnect"
            .parse()
            .expect("valid");
        assert_eq!(arn.partition, "aws-cn");
        assert_eq!(arn.account_id, "111122223333");
        assert_eq!(arn.name, "team/orgconnect");
        assert_eq!(
            arn.to_string(),
            "arn:aws-cn:iam::111122223333:role/team/orgconnect"
        );
        assert_eq!(
            arn.sibling("444455556666", "OrganizationAccountAccessRole")
                .to_string(),
            "arn:aws-cn:iam::444455556666:role/OrganizationAccountAccessRole"
        );
    }

    #[test]
    fn trust_principals_name_the_role_behind_a_session() {
        assert_eq!(
            trust_principal(
                "arn:aws:sts::111122223333:assumed-role/orgconnect-operator/botocore-session-1"
            ),
            "arn:aws:iam::111122223333:role/orgconnect-operator"
        );
        assert_eq!(
            trust_principal("arn:aws:iam::111122223333:user/orgconnect"),
            "arn:aws:iam::111122223333:user/orgconnect"
        );
    }

    #[test]
    fn regions_map_to_their_partition() {
        assert_eq!(partition_of_region("eu-west-1"), "aws");
        assert_eq!(partition_of_region("cn-north-1"), "aws-cn");
        assert_eq!(partition_of_region("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition_of_region("us-isob-east-1"), "aws-iso-b");
    }

    #[test]
    fn refuses_what_is_not_a_role_arn() {
        for (value, problem) in [
            ("arn:aws:iam::12345:role/x", "12 digits"),
            ("arn:aws:iam::111122223333:user/x", "does not name a role"),
            ("arn:aws:s3:::bucket", "not an IAM ARN"),
            ("arn:azure:iam::111122223333:role/x", "partition"),
            ("arn:aws:sts::111122223333:role/x", "not an IAM ARN"),
            ("arn:aws:iam::111122223333:role/", "empty"),
            ("", "six"),
        ] {
            let err = value.parse::<RoleArn>().expect_err(value);
            assert!(err.to_string().contains(problem), "{value}: {err}");
        }
    }
}
