//! Leader election on a `coordination.k8s.io` Lease, so several replicas can run and only
//! one reconciles. The holder renews the Lease; a replica takes it over once it has not
//! been renewed for its duration.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::{info, warn};

/// What to do with the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder stopped renewing: take it.
    TakeOver,
    /// Someone else holds it.
    Wait,
}

/// Decides from the Lease's holder and last renewal.
pub fn decide(
    holder: Option<&str>,
    renewed: Option<Timestamp>,
    duration: Duration,
    me: &str,
    now: Timestamp,
) -> LeaseAction {
    match holder {
        Some(holder) if holder == me => LeaseAction::Renew,
        None | Some("") => LeaseAction::TakeOver,
        Some(_) => {
            let expired = renewed.is_none_or(|renewed| {
                renewed
                    .checked_add(
                        jiff::SignedDuration::try_from(duration)
                            .unwrap_or(jiff::SignedDuration::ZERO),
                    )
                    .is_ok_and(|deadline| deadline < now)
            });
            if expired {
                LeaseAction::TakeOver
            } else {
                LeaseAction::Wait
            }
        }
    }
}

/// One replica's side of the election.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    fn lease(&self, previous: Option<&Lease>, now: Timestamp, take_over: bool) -> Lease {
        let spec = previous.and_then(|l| l.spec.clone()).unwrap_or_default();
        let transitions =
            spec.lease_transitions.unwrap_or(0) + i32::from(take_over && previous.is_some());
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: previous.and_then(|l| l.metadata.resource_version.clone()),
                ..previous.map(|l| l.metadata.clone()).unwrap_or_default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(
                    i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX),
                ),
                acquire_time: if take_over {
                    Some(MicroTime(now))
                } else {
                    spec.acquire_time.clone()
                },
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(transitions),
                ..spec
            }),
        }
    }

    /// One round: acquires or renews the Lease if it can; returns whether we lead.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let action = decide(
            spec.and_then(|s| s.holder_identity.as_deref()),
            spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            spec.and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.duration, Duration::from_secs),
            &self.identity,
            now,
        );
        let lease = match action {
            LeaseAction::Wait => return Ok(false),
            LeaseAction::Renew => self.lease(current.as_ref(), now, false),
            LeaseAction::TakeOver => self.lease(current.as_ref(), now, true),
        };
        let written = match &current {
            None => self.api.create(&PostParams::default(), &lease).await,
            Some(_) => {
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(true),
            // Another replica wrote first: it leads this round.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&self) {
        loop {
            match self.try_lead().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "leading");
                    return;
                }
                Ok(false) => {}
                Err(err) => warn!(error = %err, "leader election failed; retrying"),
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renews the Lease while leading; returns when leadership is lost (another replica
    /// took the Lease, or it could not be renewed for its whole duration).
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_lead().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.name, "another replica took the Lease");
                    return;
                }
                Err(err) => {
                    warn!(error = %err, "could not renew the Lease");
                    if last_renewal.elapsed() >= self.duration {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).expect("time")
    }

    #[test]
    fn holders_renew_and_others_wait_until_it_expires() {
        let ttl = Duration::from_secs(15);
        assert_eq!(
            decide(Some("me"), Some(at(0)), ttl, "me", at(5)),
            LeaseAction::Renew
        );
        assert_eq!(decide(None, None, ttl, "me", at(0)), LeaseAction::TakeOver);
        assert_eq!(
            decide(Some("other"), Some(at(0)), ttl, "me", at(10)),
            LeaseAction::Wait
        );
        assert_eq!(
            decide(Some("other"), Some(at(0)), ttl, "me", at(16)),
            LeaseAction::TakeOver
        );
        assert_eq!(
            decide(Some("other"), None, ttl, "me", at(0)),
            LeaseAction::TakeOver
        );
    }
}
