//! The CustomResourceDefinitions, generated from the API types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{AwsOrgConnection, MemberAccount, SyncSchedule};

/// The three CRDs, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        AwsOrgConnection::crd(),
        MemberAccount::crd(),
        SyncSchedule::crd(),
    ]
}

/// The CRDs as one multi-document YAML stream, as `orgconnect crds` prints it and
/// `crds/orgconnect.yaml` holds it.
pub fn to_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
