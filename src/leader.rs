//! Leader election on a `coordination.k8s.io` Lease, so several replicas can run and only
//! one reconciles, with the guarantees of client-go's leaderelection:
//!
//! - a follower takes the Lease over only once it has seen the same Lease record, unrenewed,
//!   for the whole lease duration, measured on its own clock from when it saw the record
//!   change (never by comparing the holder's `renewTime` with its own clock);
//! - the leader renews every retry period and gives up leading once it could not renew
//!   for the renew deadline, which is shorter than the lease duration, so a leader cut off
//!   from the API server stops before any follower can start;
//! - a leader that stops (SIGTERM) releases the Lease, so a follower takes over within
//!   one retry period instead of a whole lease duration.
//!
//! kube-lease-manager, the maintained crate for kube, keeps leading while its renewals
//! fail, which is the very split this module exists to prevent; hence this one.

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::lock;

/// The three durations of an election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How long followers wait, after seeing the Lease last change, before taking it.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading.
    pub renew_deadline: Duration,
    /// How often the leader renews and followers look.
    pub retry_period: Duration,
}

/// The shortest lease duration the operator accepts: a Lease stores whole seconds, and a
/// leader needs more than one renewal try within it.
pub const MIN_LEASE_DURATION: Duration = Duration::from_secs(3);

/// Whether `lease_duration` can be a Lease's: whole seconds, at least
/// [`MIN_LEASE_DURATION`].
pub fn check_lease_duration(lease_duration: Duration) -> Result<(), String> {
    if lease_duration.subsec_nanos() != 0 || lease_duration < MIN_LEASE_DURATION {
        return Err(format!(
            "the lease duration must be whole seconds, at least {}s (got {lease_duration:?})",
            MIN_LEASE_DURATION.as_secs()
        ));
    }
    Ok(())
}

impl Timings {
    /// Checks what makes the election safe: the leader gives up (renew deadline) before
    /// a follower may take over (lease duration), and has time for more than one try.
    pub fn new(
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Result<Self, String> {
        check_lease_duration(lease_duration)?;
        if renew_deadline >= lease_duration {
            return Err(format!(
                "the renew deadline ({renew_deadline:?}) must be shorter than the lease \
                 duration ({lease_duration:?}), or a cut-off leader would still lead when \
                 another takes over"
            ));
        }
        if retry_period.is_zero() || retry_period.mul_f64(1.2) >= renew_deadline {
            return Err(format!(
                "the retry period ({retry_period:?}) must be under the renew deadline \
                 ({renew_deadline:?}) divided by 1.2, so the leader can retry a renewal"
            ));
        }
        Ok(Self {
            lease_duration,
            renew_deadline,
            retry_period,
        })
    }
}

impl Timings {
    /// The renew deadline and retry period in client-go's proportions (10 s and 2 s for a
    /// 15 s lease) for `lease_duration`.
    pub fn from_lease(lease_duration: Duration) -> Self {
        Self {
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: lease_duration * 2 / 15,
        }
    }
}

impl Default for Timings {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder has not renewed it for the lease duration: take it.
    TakeOver,
    /// Someone else holds it.
    Wait,
}

/// Decides from the Lease's holder, its lease duration, and how long ago (on this
/// process's clock) the Lease was last seen to change.
pub fn decide(
    holder: Option<&str>,
    me: &str,
    lease_duration: Duration,
    unchanged_for: Duration,
) -> LeaseAction {
    match holder {
        Some(holder) if holder == me => LeaseAction::Renew,
        None | Some("") => LeaseAction::TakeOver,
        Some(_) if unchanged_for >= lease_duration => LeaseAction::TakeOver,
        Some(_) => LeaseAction::Wait,
    }
}

/// The Lease record as last seen, and when.
#[derive(Clone, Debug)]
struct Observed {
    spec: LeaseSpec,
    at: Instant,
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
    observed: Mutex<Option<Observed>>,
    /// When the request of our last successful acquire or renewal was sent.
    renewed: Mutex<Option<Instant>>,
}

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("the API server did not answer within {0:?}")]
    Timeout(Duration),
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: Timings,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timings,
            observed: Mutex::new(None),
            renewed: Mutex::new(None),
        }
    }

    /// One API call, bounded by the renew deadline (a call that hangs is a failed round).
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, RoundError> {
        let limit = self.timings.renew_deadline;
        tokio::time::timeout(limit, call)
            .await
            .map_err(|_| RoundError::Timeout(limit))?
            .map_err(RoundError::from)
    }

    fn record(&self, previous: Option<&Lease>, now: Timestamp, take_over: bool) -> Lease {
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
                    i32::try_from(self.timings.lease_duration.as_secs()).unwrap_or(i32::MAX),
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

    /// How long the Lease has been seen unchanged, noting `spec` as seen now if it differs
    /// from what was seen before.
    fn observe(&self, spec: &LeaseSpec) -> Duration {
        let mut observed = lock(&self.observed);
        match observed.as_ref() {
            Some(seen) if seen.spec == *spec => seen.at.elapsed(),
            _ => {
                *observed = Some(Observed {
                    spec: spec.clone(),
                    at: Instant::now(),
                });
                Duration::ZERO
            }
        }
    }

    /// One round: acquires or renews the Lease if it can; returns whether we lead.
    pub async fn try_lead(&self) -> Result<bool, RoundError> {
        let current = self.bounded(self.api.get_opt(&self.name)).await?;
        let spec = current
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let unchanged_for = self.observe(&spec);
        let action = decide(
            spec.holder_identity.as_deref(),
            &self.identity,
            spec.lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.timings.lease_duration, Duration::from_secs),
            unchanged_for,
        );
        let take_over = match action {
            LeaseAction::Wait => return Ok(false),
            LeaseAction::Renew => false,
            LeaseAction::TakeOver => true,
        };
        let lease = self.record(current.as_ref(), Timestamp::now(), take_over);
        let sent = Instant::now();
        let written = match &current {
            None => {
                self.bounded(self.api.create(&PostParams::default(), &lease))
                    .await
            }
            Some(_) => {
                self.bounded(self.api.replace(&self.name, &PostParams::default(), &lease))
                    .await
            }
        };
        match written {
            Ok(written) => {
                if let Some(spec) = &written.spec {
                    self.observe(spec);
                }
                *lock(&self.renewed) = Some(sent);
                Ok(true)
            }
            // Another replica wrote first: it leads this round.
            Err(RoundError::Kube(kube::Error::Api(status))) if status.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// The retry period with up to a fifth more, so followers do not ask in step.
    fn retry_delay(&self) -> Duration {
        let period = self.timings.retry_period;
        period + period.mul_f64(rand::random::<f64>() / 5.0)
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
            tokio::time::sleep(self.retry_delay()).await;
        }
    }

    /// Renews the Lease every retry period while leading; returns once leadership is lost:
    /// another replica holds the Lease, or no renewal succeeded within the renew deadline
    /// of the last one sent. The caller must stop reconciling at once.
    pub async fn hold(&self) {
        loop {
            tokio::time::sleep(self.timings.retry_period).await;
            let Some(renewed) = *lock(&self.renewed) else {
                return;
            };
            let deadline = renewed + self.timings.renew_deadline;
            let renewal = async {
                loop {
                    match self.try_lead().await {
                        Ok(held) => return held,
                        Err(err) => warn!(error = %err, "could not renew the Lease; retrying"),
                    }
                    tokio::time::sleep(self.timings.retry_period).await;
                }
            };
            match tokio::time::timeout_at(deadline, renewal).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(lease = %self.name, "another replica holds the Lease");
                    return;
                }
                Err(_) => {
                    warn!(lease = %self.name, deadline = ?self.timings.renew_deadline,
                        "the Lease could not be renewed within the renew deadline; stopping");
                    return;
                }
            }
        }
    }

    /// Gives the Lease up, if we hold it, so a follower takes it at its next look: the
    /// holder is cleared and the lease duration set to one second, as client-go does.
    pub async fn release(&self) -> Result<(), RoundError> {
        let Some(current) = self.bounded(self.api.get_opt(&self.name)).await? else {
            return Ok(());
        };
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let now = MicroTime(Timestamp::now());
        let released = Lease {
            metadata: current.metadata.clone(),
            spec: Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                ..spec
            }),
        };
        self.bounded(
            self.api
                .replace(&self.name, &PostParams::default(), &released),
        )
        .await?;
        info!(lease = %self.name, "released the Lease");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_renew_and_others_wait_until_it_went_unchanged_for_the_lease() {
        let ttl = Duration::from_secs(15);
        let seconds = Duration::from_secs;
        assert_eq!(
            decide(Some("me"), "me", ttl, seconds(30)),
            LeaseAction::Renew
        );
        assert_eq!(decide(None, "me", ttl, seconds(0)), LeaseAction::TakeOver);
        assert_eq!(
            decide(Some(""), "me", ttl, seconds(0)),
            LeaseAction::TakeOver
        );
        assert_eq!(
            decide(Some("other"), "me", ttl, seconds(10)),
            LeaseAction::Wait
        );
        assert_eq!(
            decide(Some("other"), "me", ttl, seconds(15)),
            LeaseAction::TakeOver
        );
    }

    #[test]
    fn timings_let_the_leader_stop_before_a_follower_starts() {
        let seconds = Duration::from_secs;
        assert!(Timings::new(seconds(15), seconds(10), seconds(2)).is_ok());
        assert_eq!(
            Timings::default(),
            Timings::new(seconds(15), seconds(10), seconds(2)).expect("valid")
        );
        let equal = Timings::new(seconds(10), seconds(10), seconds(2)).expect_err("refused");
        assert!(equal.contains("shorter than the lease duration"), "{equal}");
        let slow_retry = Timings::new(seconds(15), seconds(10), seconds(9)).expect_err("refused");
        assert!(slow_retry.contains("retry period"), "{slow_retry}");
        assert!(
            Timings::new(
                Duration::from_millis(1500),
                seconds(1),
                Duration::from_millis(100)
            )
            .is_err()
        );
        // The command line's limit is the library's: 2s is refused, 3s with its derived
        // deadline and period is accepted.
        assert!(check_lease_duration(seconds(2)).is_err());
        let derived = Timings::from_lease(MIN_LEASE_DURATION);
        assert!(
            Timings::new(
                MIN_LEASE_DURATION,
                derived.renew_deadline,
                derived.retry_period
            )
            .is_ok()
        );
        assert_eq!(Timings::from_lease(seconds(15)), Timings::default());
    }
}
