//! Validation the API server enforces: CEL rules (`x-kubernetes-validations`) for what an
//! OpenAPI pattern cannot say clearly, and the patterns shared by several kinds.

use kube::core::{Message, Rule};

/// A 12-digit AWS account id.
pub const ACCOUNT_ID_PATTERN: &str = r"^[0-9]{12}$";

/// An Organizations root (`r-…`) or organizational unit (`ou-…-…`) id.
pub const PARENT_ID_PATTERN: &str = r"^(r-[0-9a-z]{4,32}|ou-[0-9a-z]{4,32}-[a-z0-9]{8,32})$";

/// An IAM role name (without path).
pub const ROLE_NAME_PATTERN: &str = r"^[A-Za-z0-9_+=,.@-]{1,64}$";

/// An AWS region name, e.g. `eu-west-1`.
pub const REGION_PATTERN: &str = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$";

/// The characters AWS accepts in an `sts:ExternalId` (2 to 1224 of them).
pub const EXTERNAL_ID_PATTERN: &str = r"^[A-Za-z0-9_+=,.@:/-]+$";

/// An IAM role ARN in any AWS partition, naming a 12-digit account.
pub fn role_arn() -> Rule {
    Rule::new("self.matches('^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$')")
        .message(
            "must be an IAM role ARN, arn:<partition>:iam::<12-digit account id>:role/<name>, \
         for example arn:aws:iam::111122223333:role/orgconnect",
        )
}

/// A Go-style duration (`90s`, `10m`, `1h30m`) of at least `minimum`.
pub fn duration_at_least(minimum: &str) -> Rule {
    Rule::new(format!(
        "self.matches('^([0-9]+(ms|s|m|h))+$') && duration(self) >= duration('{minimum}')"
    ))
    .message(Message::Message(format!(
        "must be a duration such as 30s, 10m or 1h30m, and at least {minimum}"
    )))
}

/// A value that may be set once and never changed afterwards.
pub fn immutable() -> Rule {
    Rule::new("self == oldSelf").message("is immutable")
}
