//! An in-process HTTP proxy in front of moto that each test programs to inject what moto
//! cannot produce: AccessDenied on AssumeRole for chosen accounts, throttling and 5xx
//! errors for chosen operations at a given rate, and added latency. It also maps a test's
//! base access key to the test's own managing account (moto's `x-moto-account-id`), so
//! tests running in parallel each see their own organization.
//!
//! It also makes moto's StackSets behave like AWS's where the operator relies on it:
//! DeleteStackInstances by OU removes the instances of that OU's accounts (moto ignores
//! DeploymentTargets there), and DescribeStackSet reports the OUs a service-managed
//! StackSet is deployed to (`OrganizationalUnitIds`, which moto leaves out).
//!
//! And it answers as AWS Organizations and STS do today where moto does not: accounts carry
//! `State` and no retired `Status` (a switch serves both), in any of the five states;
//! STS answers `RegionDisabledException` for chosen accounts; a member account may list
//! the organization only as a delegated administrator allowed by the management
//! account's delegation policy (`PutResourcePolicy`, kept here: moto has none), and may
//! call StackSets with `CallAs=DELEGATED_ADMIN` only once registered as a delegated
//! administrator for StackSets.
//!
//! Sockets on both sides set TCP_NODELAY: without it every call waits ~40 ms for delayed
//! ACKs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::Digest;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Body = Full<Bytes>;

/// Faults injected at a fixed rate: of every `1/rate` matching calls, one fails, spread
/// evenly and deterministically (no randomness, so tests repeat exactly).
#[derive(Clone, Copy, Debug)]
struct RateFault {
    rate: f64,
    seen: u64,
}

impl RateFault {
    fn new(rate: f64) -> Self {
        Self {
            rate: rate.clamp(0.0, 1.0),
            seen: 0,
        }
    }

    /// Whether the next call fails. The first call fails (for any rate above zero), then
    /// one in every `1/rate`.
    fn fire(&mut self) -> bool {
        let before = (self.seen as f64 * self.rate).ceil();
        self.seen += 1;
        (self.seen as f64 * self.rate).ceil() > before
    }
}

/// A trust policy for the roles of one account, checked on AssumeRole.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// Access key ids allowed to assume the roles; anyone when empty.
    pub principals: Vec<String>,
    /// The `sts:ExternalId` the caller must present, if any.
    pub external_id: Option<String>,
}

/// A StackSet operation as AWS runs it: in steps of as many accounts at once as its
/// preferences allow, each step taking `FaultProxy::stack_set_step`.
struct RollingOperation {
    started: tokio::time::Instant,
    duration: Duration,
    /// SUCCEEDED, or FAILED when more accounts of a region failed than it tolerates.
    outcome: &'static str,
    /// (account, region, failure reason) for every stack instance of the operation.
    results: Vec<(String, String, Option<String>)>,
}

/// A drift detection (DetectStackSetDrift) as AWS runs it: an operation that takes a step,
/// after which every stack instance of its StackSet reports what it found.
struct DriftCheck {
    stack_set: String,
    /// When it ends.
    done_at: tokio::time::Instant,
    /// When it ends, in seconds since the epoch: each instance's LastDriftCheckTimestamp.
    checked_at: i64,
    /// The accounts whose stacks it finds DRIFTED.
    drifted: HashSet<String>,
}

#[derive(Default)]
struct Faults {
    /// How long one step of a StackSet operation takes (zero: operations end at once).
    stack_set_step: Duration,
    /// Account -> why its stack instances fail (CloudFormation's status reason).
    failing_instances: HashMap<String, String>,
    /// Account -> the Status (`OUTDATED`, `INOPERABLE`) and reason its stack instances
    /// report instead of moto's `CURRENT`.
    instance_status: HashMap<String, (String, String)>,
    /// Accounts whose member-role stacks drifted: the next drift detection finds them
    /// DRIFTED (every other instance IN_SYNC).
    drifted_instances: HashSet<String>,
    /// Access key id -> the moto account its requests act in.
    principals: HashMap<String, String>,
    /// Access key id -> its secret and, for session keys, the session token: the keys the
    /// emulated accounts hold. A request signed with any other key, or whose signature
    /// does not match, is refused as AWS refuses it.
    keys: HashMap<String, (String, Option<String>)>,
    /// Accept any signature, as moto does (for a test that needs it).
    lenient_signatures: bool,
    /// Account ids whose roles cannot be assumed.
    denied_accounts: HashSet<String>,
    /// Account id -> who may assume its roles, and with which ExternalId.
    trust: HashMap<String, Trust>,
    /// Operation -> (calls seen, the first call number that fails with 503).
    fail_from: HashMap<String, (u64, u64)>,
    /// Accounts that ListAccounts reports as having joined by invitation.
    invited: HashSet<String>,
    /// Account id -> the `State` Organizations reports for it (moto knows only ACTIVE and
    /// SUSPENDED).
    states: HashMap<String, String>,
    /// Serve the retired `Status` beside `State`, as AWS did before 2026-09-09.
    retired_status: bool,
    /// Accounts where STS is not active in the region: AssumeRole into their roles
    /// answers `RegionDisabledException`.
    region_disabled: HashSet<String>,
    /// Access key id -> the principal ARN its requests act as (the role it was minted
    /// for); keys without one act as their account's root.
    principal_arns: HashMap<String, String>,
    /// Management account id -> its organization's delegation policy.
    delegation_policies: HashMap<String, serde_json::Value>,
    /// Account id -> its organization's management account, as moto reported it.
    management_of: HashMap<String, String>,
    /// Accounts registered as delegated administrators for StackSets, whose service
    /// principal moto does not know.
    stack_set_admins: HashSet<String>,
    /// Evaluate IAM as AWS does: AssumeRole needs the role to exist and its trust policy to
    /// let the caller in; a role session's calls need its identity policies to allow them.
    enforce_iam: bool,
    /// Access key id -> the ARN GetCallerIdentity gives for it (IAM users' keys).
    caller_arns: HashMap<String, String>,
    /// Role ARN -> its inline identity policies, read from moto at the role's first use
    /// (a test makes its roles before it uses them).
    role_policies: HashMap<String, Vec<serde_json::Value>>,
    /// Role ARN -> its trust policy, read at the role's first use.
    trust_policies: HashMap<String, Option<serde_json::Value>>,
    /// IAM user ARN -> its inline identity policies (`None`: IAM holds no such user).
    user_policies: HashMap<String, Option<Vec<serde_json::Value>>>,
    /// Account -> the organization it belongs to (`None`: none).
    organization_of: HashMap<String, Option<String>>,
    /// OIDC issuer URL -> the keys it signs web identity tokens with, as AWS fetches them
    /// from the issuer (an IAM OIDC provider must also name the issuer).
    oidc_issuers: HashMap<String, jsonwebtoken::jwk::JwkSet>,
    /// Operation name (`ListAccounts`, `AssumeRole`, ...) or `*` -> throttling rate.
    throttled: HashMap<String, RateFault>,
    /// Operation name or `*` -> rate of 503 responses.
    server_errors: HashMap<String, RateFault>,
    latency: Duration,
}

#[derive(Default)]
struct Stats {
    /// Calls that reached the proxy, by operation.
    calls: HashMap<String, u64>,
    /// Calls the proxy failed on purpose, by operation.
    injected: HashMap<String, u64>,
    /// Calls refused for their signature (unknown key, wrong signature), by operation.
    refused: HashMap<String, u64>,
    /// What IAM refused, as AWS's messages say it.
    iam_denials: Vec<String>,
    /// Every role ARN an AssumeRole call asked for, in order.
    assumed_roles: Vec<String>,
    /// The rollout settings (`OperationPreferences.*`, `ManagedExecution.*`) of every
    /// StackSet call, in order, with its operation.
    stack_set_settings: Vec<(String, BTreeMap<String, String>)>,
    /// Every StackSet operation: its call, its stack instances and the steps it took.
    stack_set_steps: Vec<(String, usize, u64)>,
    /// Calls being handled now, and the most ever handled at once, by operation.
    in_flight: HashMap<String, u64>,
    max_in_flight: HashMap<String, u64>,
}

/// Counts a call as in flight until dropped.
struct InFlight {
    shared: Arc<Shared>,
    operation: String,
}

impl InFlight {
    fn start(shared: &Arc<Shared>, operation: &str) -> Self {
        let mut stats = lock(&shared.stats);
        let now = stats.in_flight.entry(operation.to_owned()).or_default();
        *now += 1;
        let now = *now;
        let max = stats.max_in_flight.entry(operation.to_owned()).or_default();
        *max = (*max).max(now);
        Self {
            shared: shared.clone(),
            operation: operation.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(now) = lock(&self.shared.stats).in_flight.get_mut(&self.operation) {
            *now = now.saturating_sub(1);
        }
    }
}

struct Shared {
    faults: Mutex<Faults>,
    stats: Mutex<Stats>,
    /// StackSet name -> the roots and OUs it is deployed to, as AWS would report them.
    stack_set_targets: Mutex<HashMap<String, BTreeSet<String>>>,
    /// StackSet operation id -> how it rolls out (moto finishes every operation at once).
    stack_set_operations: Mutex<HashMap<String, RollingOperation>>,
    /// Drift detections (moto has none), by operation id.
    drift_checks: Mutex<HashMap<String, DriftCheck>>,
    upstream: String,
    client: Client<HttpConnector, Body>,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        let shared = Arc::new(Shared {
            faults: Mutex::new(Faults::default()),
            stats: Mutex::new(Stats::default()),
            stack_set_targets: Mutex::new(HashMap::new()),
            stack_set_operations: Mutex::new(HashMap::new()),
            drift_checks: Mutex::new(HashMap::new()),
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Self { addr, shared, task }
    }

    /// The URL to give the AWS SDK as its endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `access_key_id` with `secret` is a key of an IAM user of moto account `account_id`:
    /// requests signed with it act there.
    pub fn map_principal(&self, access_key_id: &str, secret: &str, account_id: &str) {
        let mut faults = lock(&self.shared.faults);
        faults
            .principals
            .insert(access_key_id.to_owned(), account_id.to_owned());
        faults
            .keys
            .insert(access_key_id.to_owned(), (secret.to_owned(), None));
    }

    /// `access_key_id` with `secret` is a valid key of moto's default account, which holds
    /// no organization.
    pub fn hold_key(&self, access_key_id: &str, secret: &str) {
        lock(&self.shared.faults)
            .keys
            .insert(access_key_id.to_owned(), (secret.to_owned(), None));
    }

    /// From now on, IAM is evaluated as AWS does for every call (see [`Faults::enforce_iam`]).
    pub fn enforce_iam(&self) {
        lock(&self.shared.faults).enforce_iam = true;
    }

    /// Web identity tokens of `issuer` are signed with `keys` (its JWKS), as AWS reads
    /// them from the issuer's discovery document.
    pub fn trust_oidc_issuer(&self, issuer: &str, keys: jsonwebtoken::jwk::JwkSet) {
        lock(&self.shared.faults)
            .oidc_issuers
            .insert(issuer.to_owned(), keys);
    }

    /// What EKS's Pod Identity service does for its agent: checks tokens and mints role
    /// sessions, for a [`super::pod_identity::PodIdentityAgent`].
    pub fn session_issuer(&self) -> SessionIssuer {
        SessionIssuer(self.shared.clone())
    }

    /// Calls refused by IAM (trust or identity policy, or a role that does not exist).
    pub fn iam_denials(&self) -> Vec<String> {
        lock(&self.shared.stats).iam_denials.clone()
    }

    /// Accept requests whatever their signature, as moto does.
    pub fn lenient_signatures(&self) {
        lock(&self.shared.faults).lenient_signatures = true;
    }

    /// AssumeRole into any role of these accounts fails with AccessDenied.
    pub fn deny_assume_role<I, S>(&self, account_ids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        lock(&self.shared.faults)
            .denied_accounts
            .extend(account_ids.into_iter().map(Into::into));
    }

    /// AssumeRole into roles of `account_id` succeeds only as `trust` allows.
    pub fn trust(&self, account_id: &str, trust: Trust) {
        lock(&self.shared.faults)
            .trust
            .insert(account_id.to_owned(), trust);
    }

    /// From now on, the `n`th call to `operation` (counting from 1) and every later one
    /// fail with 503, retries included, until the faults are cleared.
    pub fn fail_from_call(&self, operation: &str, n: u64) {
        lock(&self.shared.faults)
            .fail_from
            .insert(operation.to_owned(), (0, n));
    }

    /// `rate` (0.0..=1.0) of calls to `operation` (or `*` for all) fail with the service's
    /// throttling error.
    pub fn throttle(&self, operation: &str, rate: f64) {
        lock(&self.shared.faults)
            .throttled
            .insert(operation.to_owned(), RateFault::new(rate));
    }

    /// Stops every throttling fault, leaving the others.
    pub fn stop_throttling(&self) {
        lock(&self.shared.faults).throttled.clear();
    }

    /// `rate` of calls to `operation` (or `*`) fail with 503 Service Unavailable.
    pub fn server_errors(&self, operation: &str, rate: f64) {
        lock(&self.shared.faults)
            .server_errors
            .insert(operation.to_owned(), RateFault::new(rate));
    }

    /// ListAccounts reports these accounts with `JoinedMethod: INVITED` (moto reports
    /// every account as CREATED).
    pub fn report_invited<I, S>(&self, account_ids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        lock(&self.shared.faults)
            .invited
            .extend(account_ids.into_iter().map(Into::into));
    }

    /// Organizations reports `state` (`PENDING_ACTIVATION`, `ACTIVE`, `SUSPENDED`,
    /// `PENDING_CLOSURE`, `CLOSED`) as these accounts' `State`.
    pub fn account_state<I, S>(&self, account_ids: I, state: &str)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut faults = lock(&self.shared.faults);
        for id in account_ids {
            faults.states.insert(id.into(), state.to_owned());
        }
    }

    /// Serve the retired `Status` beside `State` (AWS serves `State` alone).
    pub fn serve_retired_status(&self, serve: bool) {
        lock(&self.shared.faults).retired_status = serve;
    }

    /// AssumeRole into roles of these accounts fails with `RegionDisabledException`.
    pub fn disable_region<I, S>(&self, account_ids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        lock(&self.shared.faults)
            .region_disabled
            .extend(account_ids.into_iter().map(Into::into));
    }

    /// The role ARNs AssumeRole calls asked for so far.
    pub fn assumed_roles(&self) -> Vec<String> {
        lock(&self.shared.stats).assumed_roles.clone()
    }

    /// Each step of a StackSet operation takes `step`: an operation of N accounts at C at
    /// once stays RUNNING for ceil(N / C) steps, as on AWS.
    pub fn stack_set_step(&self, step: Duration) {
        lock(&self.shared.faults).stack_set_step = step;
    }

    /// Stack instances in these accounts fail with `reason`, as CloudFormation reports a
    /// stack that could not be created (the member role is then not made there).
    pub fn fail_stack_instances<I, S>(&self, account_ids: I, reason: &str)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut faults = lock(&self.shared.faults);
        for id in account_ids {
            faults
                .failing_instances
                .insert(id.into(), reason.to_owned());
        }
    }

    /// The stack instances in `account_ids` report `status` (`OUTDATED`, `INOPERABLE`, or
    /// `CURRENT` again) with `reason`, as AWS does after an operation failed to reach them.
    pub fn stack_instance_status<I, S>(&self, account_ids: I, status: &str, reason: &str)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut faults = lock(&self.shared.faults);
        for id in account_ids {
            let id = id.into();
            if status == "CURRENT" {
                faults.instance_status.remove(&id);
            } else {
                faults
                    .instance_status
                    .insert(id, (status.to_owned(), reason.to_owned()));
            }
        }
    }

    /// The member-role stacks of `account_ids` were changed outside CloudFormation (or,
    /// with `drifted` false, put back): the next drift detection says so.
    pub fn drift_member_roles<I, S>(&self, account_ids: I, drifted: bool)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut faults = lock(&self.shared.faults);
        for id in account_ids {
            if drifted {
                faults.drifted_instances.insert(id.into());
            } else {
                faults.drifted_instances.remove(&id.into());
            }
        }
    }

    /// Every StackSet operation so far: its call, how many stack instances it touched, and
    /// how many steps it took.
    pub fn stack_set_steps(&self) -> Vec<(String, usize, u64)> {
        lock(&self.shared.stats).stack_set_steps.clone()
    }

    /// The rollout settings each `operation` call carried (`OperationPreferences.*` and
    /// `ManagedExecution.*` parameters), in order.
    pub fn stack_set_settings(&self, operation: &str) -> Vec<BTreeMap<String, String>> {
        lock(&self.shared.stats)
            .stack_set_settings
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, settings)| settings.clone())
            .collect()
    }

    /// Every call waits this long before it is forwarded.
    pub fn latency(&self, latency: Duration) {
        lock(&self.shared.faults).latency = latency;
    }

    /// Forgets the trust and identity policies and the accounts' organizations the proxy
    /// has read from moto, so the next calls pay those reads again as a first cycle does.
    pub fn forget_iam_reads(&self) {
        let mut faults = lock(&self.shared.faults);
        faults.trust_policies.clear();
        faults.role_policies.clear();
        faults.user_policies.clear();
        faults.organization_of.clear();
    }

    /// Removes every fault (principal mappings stay).
    pub fn clear_faults(&self) {
        let mut faults = lock(&self.shared.faults);
        faults.denied_accounts.clear();
        faults.trust.clear();
        faults.fail_from.clear();
        faults.throttled.clear();
        faults.server_errors.clear();
        faults.latency = Duration::ZERO;
    }

    /// Calls to `operation` that reached the proxy, failed or not.
    pub fn calls(&self, operation: &str) -> u64 {
        lock(&self.shared.stats)
            .calls
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Calls that reached the proxy, by operation.
    pub fn call_counts(&self) -> std::collections::BTreeMap<String, u64> {
        lock(&self.shared.stats)
            .calls
            .iter()
            .map(|(operation, n)| (operation.clone(), *n))
            .collect()
    }

    /// The most calls to `operation` the proxy was handling at once.
    pub fn max_in_flight(&self, operation: &str) -> u64 {
        lock(&self.shared.stats)
            .max_in_flight
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Calls to `operation` the proxy failed on purpose.
    pub fn injected(&self, operation: &str) -> u64 {
        lock(&self.shared.stats)
            .injected
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Calls to `operation` refused for their signature.
    pub fn refused(&self, operation: &str) -> u64 {
        lock(&self.shared.stats)
            .refused
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Forgets the call counts.
    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(shared.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The wire protocol of a request, which decides the shape of an injected error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// awsQuery (STS, CloudFormation): form body, XML errors.
    Query,
    /// awsJson (Organizations): `X-Amz-Target`, JSON errors.
    Json,
}

struct Call {
    protocol: Protocol,
    /// The service of the signature's credential scope (`sts`, `iam`, `cloudformation`).
    service: String,
    operation: String,
    access_key_id: Option<String>,
    /// For AssumeRole: the account of the role being assumed.
    target_account: Option<String>,
    /// For AssumeRole: the ExternalId presented.
    external_id: Option<String>,
    /// For AssumeRole: the role ARN asked for.
    role_arn: Option<String>,
    /// For CloudFormation StackSet calls: `CallAs`.
    call_as: Option<String>,
    /// For IAM role calls: the `RoleName` they act on.
    role_name: Option<String>,
}

/// The values of a list parameter (`Prefix.member.1`, `Prefix.member.2`, ...), in order.
fn form_list(body: &str, prefix: &str) -> Vec<String> {
    let mut values: Vec<(u32, String)> = body
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let index = k.strip_prefix(prefix)?.strip_prefix(".member.")?;
            Some((index.parse().ok()?, percent_decode(v)))
        })
        .collect();
    values.sort();
    values.into_iter().map(|(_, v)| v).collect()
}

/// The text of the first `<tag>` element of an XML answer.
fn xml_value(body: &[u8], tag: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let (_, rest) = text.split_once(&format!("<{tag}>"))?;
    let (value, _) = rest.split_once(&format!("</{tag}>"))?;
    Some(value.trim().to_owned())
}

fn form_value(body: &str, key: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'%' => std::str::from_utf8(bytes.get(i + 1..i + 3).unwrap_or_default())
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match (decoded, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn classify(request: &hyper::http::request::Parts, body: &[u8]) -> Call {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let access_key_id = header("authorization").and_then(|auth| {
        let rest = auth.split("Credential=").nth(1)?;
        Some(rest.split('/').next()?.to_owned())
    });
    // The credential scope: key/date/region/service/aws4_request.
    let service = header("authorization")
        .and_then(|auth| {
            let scope = auth.split("Credential=").nth(1)?.split([',', ' ']).next()?;
            Some(scope.split('/').nth(3)?.to_owned())
        })
        .unwrap_or_default();
    if let Some(target) = header("x-amz-target") {
        let operation = target.rsplit('.').next().unwrap_or(&target).to_owned();
        return Call {
            protocol: Protocol::Json,
            service,
            operation,
            access_key_id,
            target_account: None,
            external_id: None,
            role_arn: None,
            call_as: None,
            role_name: None,
        };
    }
    let body = String::from_utf8_lossy(body);
    let query = request.uri.query().unwrap_or("");
    let operation = form_value(&body, "Action")
        .or_else(|| form_value(query, "Action"))
        .unwrap_or_else(|| "Unknown".to_owned());
    let target_account =
        form_value(&body, "RoleArn").and_then(|arn| arn.split(':').nth(4).map(str::to_owned));
    Call {
        protocol: Protocol::Query,
        service,
        operation,
        access_key_id,
        target_account,
        external_id: form_value(&body, "ExternalId"),
        role_arn: form_value(&body, "RoleArn"),
        call_as: form_value(&body, "CallAs"),
        role_name: form_value(&body, "RoleName"),
    }
}

fn error_response(
    protocol: Protocol,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<Body> {
    let (content_type, body) = match protocol {
        Protocol::Query => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
                 <Message>{message}</Message></Error>\
                 <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
            ),
        ),
        Protocol::Json => (
            "application/x-amz-json-1.1",
            serde_json::json!({ "__type": code, "Message": message }).to_string(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-requestid", "00000000-0000-0000-0000-000000000000")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The fault to inject for this call, if any, as a ready response.
fn injected_fault(faults: &mut Faults, call: &Call) -> Option<Response<Body>> {
    if let Some(account) = &call.target_account
        && call.operation == "AssumeRole"
        && faults.region_disabled.contains(account)
    {
        return Some(error_response(
            call.protocol,
            StatusCode::FORBIDDEN,
            "RegionDisabledException",
            &format!(
                "STS is not activated in this region for account:{account}. Your account \
                 administrator can activate STS in this region using the IAM Console."
            ),
        ));
    }
    if let Some(account) = &call.target_account
        && call.operation == "AssumeRole"
        && faults.denied_accounts.contains(account)
    {
        return Some(error_response(
            call.protocol,
            StatusCode::FORBIDDEN,
            "AccessDenied",
            &format!(
                "User is not authorized to perform: sts:AssumeRole on a role in account {account}"
            ),
        ));
    }
    if let Some(account) = &call.target_account
        && call.operation == "AssumeRole"
        && let Some(trust) = faults.trust.get(account)
    {
        let principal_ok = trust.principals.is_empty()
            || call
                .access_key_id
                .as_ref()
                .is_some_and(|key| trust.principals.contains(key));
        let external_id_ok = trust
            .external_id
            .as_ref()
            .is_none_or(|expected| call.external_id.as_ref() == Some(expected));
        if !(principal_ok && external_id_ok) {
            return Some(error_response(
                call.protocol,
                StatusCode::FORBIDDEN,
                "AccessDenied",
                &format!(
                    "User is not authorized to perform: sts:AssumeRole on a role in account {account}"
                ),
            ));
        }
    }
    if let Some((seen, first_failing)) = faults.fail_from.get_mut(&call.operation) {
        *seen += 1;
        if *seen >= *first_failing {
            return Some(error_response(
                call.protocol,
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Service is unavailable",
            ));
        }
    }
    for key in [call.operation.as_str(), "*"] {
        if let Some(fault) = faults.throttled.get_mut(key) {
            if fault.fire() {
                let code = match call.protocol {
                    Protocol::Json => "TooManyRequestsException",
                    Protocol::Query => "Throttling",
                };
                return Some(error_response(
                    call.protocol,
                    StatusCode::BAD_REQUEST,
                    code,
                    "Rate exceeded",
                ));
            }
            break;
        }
    }
    for key in [call.operation.as_str(), "*"] {
        if let Some(fault) = faults.server_errors.get_mut(key) {
            if fault.fire() {
                return Some(error_response(
                    call.protocol,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "Service is unavailable",
                ));
            }
            break;
        }
    }
    None
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let (mut parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(error_response(
                Protocol::Query,
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                "request body could not be read",
            ));
        }
    };
    let call = classify(&parts, &body);
    // AssumeRoleWithWebIdentity is not signed: the token is the credential.
    let web_identity = call.operation == "AssumeRoleWithWebIdentity";
    if !web_identity
        && let Some(refused) =
            refused_signature(&lock(&shared.faults), &parts, &body, call.protocol)
    {
        *lock(&shared.stats)
            .refused
            .entry(call.operation.clone())
            .or_default() += 1;
        return Ok(refused);
    }
    let mapped_account = call
        .access_key_id
        .as_ref()
        .and_then(|key| lock(&shared.faults).principals.get(key).cloned());
    // moto ignores DeploymentTargets when deleting stack instances: name the accounts.
    let form = String::from_utf8_lossy(&body).into_owned();
    let target_ous = form_list(&form, "DeploymentTargets.OrganizationalUnitIds");
    let stack_set_name = form_value(&form, "StackSetName");
    let mut emptied_ous = Vec::new();
    let body = if call.operation == "DeleteStackInstances"
        && !form.contains("Accounts.member")
        && let Some(name) = &stack_set_name
    {
        let upstream = Upstream {
            shared: &shared,
            parts: &parts,
            account: mapped_account.as_deref(),
        };
        let (rewritten, emptied) =
            with_instance_accounts(&upstream, name, &form, &target_ous).await;
        emptied_ous = emptied;
        rewritten
    } else {
        body
    };
    let (latency, fault, account) = {
        let mut faults = lock(&shared.faults);
        let fault = injected_fault(&mut faults, &call);
        (faults.latency, fault, mapped_account)
    };
    {
        let mut stats = lock(&shared.stats);
        *stats.calls.entry(call.operation.clone()).or_default() += 1;
        if let Some(role) = &call.role_arn {
            stats.assumed_roles.push(role.clone());
        }
        if stack_set_name.is_some() {
            let settings: BTreeMap<String, String> = form
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .filter(|(key, _)| {
                    key.starts_with("OperationPreferences.") || key.starts_with("ManagedExecution.")
                })
                .map(|(key, value)| (key.to_owned(), percent_decode(value)))
                .collect();
            stats
                .stack_set_settings
                .push((call.operation.clone(), settings));
        }
        if fault.is_some() {
            *stats.injected.entry(call.operation.clone()).or_default() += 1;
        }
    }
    let _in_flight = InFlight::start(&shared, &call.operation);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(response) = fault {
        return Ok(response);
    }
    if lock(&shared.faults).enforce_iam {
        let refused = if web_identity {
            web_identity_refusal(&shared, &call, &form).await
        } else {
            iam_refusal(&shared, &parts, &call, account.as_deref()).await
        };
        if let Some(refused) = refused {
            return Ok(refused);
        }
    }
    let account = match member_access(&shared, &parts, &call, &body, account).await {
        // A web identity session is made in the role's account.
        Ok(None) if web_identity => call.target_account.clone(),
        Ok(account) => account,
        Err(refused) => return Ok(refused),
    };
    // Drift detection, which moto lacks, is the proxy's own.
    if call.operation == "DetectStackSetDrift"
        && let Some(name) = &stack_set_name
    {
        return Ok(detect_drift(&shared, name));
    }
    if let Some(operation_id) = form_value(&form, "OperationId")
        && let Some(answer) = drift_check_answer(&shared, &call.operation, &operation_id)
    {
        return Ok(answer);
    }

    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    parts.uri = match format!("{}{path}", shared.upstream).parse() {
        Ok(uri) => uri,
        Err(_) => {
            return Ok(error_response(
                call.protocol,
                StatusCode::BAD_GATEWAY,
                "BadGateway",
                "bad upstream URI",
            ));
        }
    };
    // What the proxy's own follow-up calls act as: this caller, in the account it acts in.
    let mut caller_parts = Request::new(()).into_parts().0;
    caller_parts.headers = parts.headers.clone();
    let acting_account = account.clone();
    if let Some(value) = account.and_then(|account| account.parse().ok()) {
        parts.headers.insert("x-moto-account-id", value);
    }
    // The body may have been rewritten; hyper sets the length of the one sent.
    parts.headers.remove("content-length");
    let forwarded = String::from_utf8_lossy(&body).into_owned();
    let upstream = Request::from_parts(parts, Full::new(body));
    let response = match shared.client.request(upstream).await {
        Ok(response) => response,
        Err(e) => {
            return Ok(error_response(
                call.protocol,
                StatusCode::BAD_GATEWAY,
                "BadGateway",
                &format!("upstream unreachable: {e}"),
            ));
        }
    };
    let (mut parts, body) = response.into_parts();
    let mut body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if (call.operation == "AssumeRole" || web_identity)
        && parts.status.is_success()
        && let Some(role) = &call.role_arn
    {
        remember_session(&shared, &body, role);
    }
    // A role made, changed or deleted (by IAM or by a stack) is read again.
    if parts.status.is_success() && changes_roles(&call) {
        let mut faults = lock(&shared.faults);
        faults.trust_policies.clear();
        faults.role_policies.clear();
        faults.user_policies.clear();
    }
    if parts.status.is_success()
        && matches!(
            call.operation.as_str(),
            "ListAccounts" | "ListAccountsForParent" | "DescribeAccount"
        )
    {
        body = as_aws_reports_accounts(&body, &lock(&shared.faults));
        parts.headers.remove("content-length");
    }
    if parts.status.is_success()
        && call.operation == "ListStackInstances"
        && let Some(name) = &stack_set_name
    {
        body = as_aws_reports_instances(&shared, name, &body);
        parts.headers.remove("content-length");
    }
    if parts.status.is_success()
        && call.operation == "CreateStackInstances"
        && let Some(name) = &stack_set_name
    {
        let upstream = Upstream {
            shared: &shared,
            parts: &caller_parts,
            account: acting_account.as_deref(),
        };
        without_management_account_instances(&upstream, name, &form).await;
    }
    if parts.status.is_success()
        && matches!(
            call.operation.as_str(),
            "CreateStackInstances" | "DeleteStackInstances" | "UpdateStackSet"
        )
        && let Some(name) = &stack_set_name
        && let Some(operation_id) = xml_value(&body, "OperationId")
    {
        let upstream = Upstream {
            shared: &shared,
            parts: &caller_parts,
            account: acting_account.as_deref(),
        };
        roll_out(
            &upstream,
            &call.operation,
            name,
            &operation_id,
            &form,
            &forwarded,
        )
        .await;
    }
    if parts.status.is_success()
        && let Some(operation_id) = form_value(&form, "OperationId")
        && let Some(answer) = rolling_answer(&shared, &call.operation, &operation_id, &body)
    {
        body = answer;
        parts.headers.remove("content-length");
    }
    if parts.status.is_success()
        && let Some(name) = stack_set_name
    {
        let mut targets = lock(&shared.stack_set_targets);
        match call.operation.as_str() {
            "CreateStackInstances" => targets.entry(name).or_default().extend(target_ous),
            "DeleteStackInstances" => {
                if let Some(deployed) = targets.get_mut(&name) {
                    for ou in &emptied_ous {
                        deployed.remove(ou);
                    }
                }
            }
            "DeleteStackSet" => {
                targets.remove(&name);
            }
            "DescribeStackSet" => {
                if let Some(deployed) = targets.get(&name).filter(|d| !d.is_empty()) {
                    body = with_organizational_units(&body, deployed);
                    parts.headers.remove("content-length");
                }
            }
            _ => {}
        }
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// Session keys minted here act in the role's account, as on AWS. Remembering them
/// spares moto finding the account by scanning every account it holds on each call made
/// with them, which makes an organization of thousands of accounts quadratic.
fn remember_session(shared: &Shared, answer: &[u8], role: &str) {
    let (Some(role_account), Some(key)) =
        (role.split(':').nth(4), xml_value(answer, "AccessKeyId"))
    else {
        return;
    };
    let mut faults = lock(&shared.faults);
    if let Some(secret) = xml_value(answer, "SecretAccessKey") {
        faults
            .keys
            .insert(key.clone(), (secret, xml_value(answer, "SessionToken")));
    }
    faults
        .principals
        .insert(key.clone(), role_account.to_owned());
    faults.principal_arns.insert(key, role.to_owned());
}

/// Whether `call` may create, change or delete IAM roles: any IAM or CloudFormation call
/// that is not a read.
fn changes_roles(call: &Call) -> bool {
    let reads = ["Get", "List", "Describe", "Validate", "Estimate", "Detect"];
    matches!(call.service.as_str(), "iam" | "cloudformation")
        && !reads.iter().any(|read| call.operation.starts_with(read))
}

/// Where the proxy sends calls of its own: moto, acting as the caller of the request at
/// hand.
struct Upstream<'a> {
    shared: &'a Shared,
    parts: &'a hyper::http::request::Parts,
    /// The moto account the caller is mapped to, if any.
    account: Option<&'a str>,
}

impl Upstream<'_> {
    /// Sends `body` to `service` (`cloudformation`, `organizations`) as the caller, with
    /// the awsJson `target` when given; the answer's body.
    async fn call(&self, service: &str, target: Option<&str>, body: String) -> Option<String> {
        let authorization = self
            .parts
            .headers
            .get("authorization")?
            .to_str()
            .ok()
            .map(|auth| with_service(auth, service))?;
        let mut request = Request::builder()
            .method("POST")
            .uri(format!("{}/", self.shared.upstream))
            .header("authorization", authorization);
        for header in ["x-amz-date", "host"] {
            if let Some(value) = self.parts.headers.get(header) {
                request = request.header(header, value);
            }
        }
        if let Some(account) = self.account {
            request = request.header("x-moto-account-id", account);
        }
        request = match target {
            Some(target) => request
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amz-target", target),
            None => request.header("content-type", "application/x-www-form-urlencoded"),
        };
        let request = request.body(Full::new(Bytes::from(body))).ok()?;
        let response = self.shared.client.request(request).await.ok()?;
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The stack instances of StackSet `name`: (account, region) pairs.
    async fn instances(&self, name: &str) -> Vec<(String, String)> {
        let list = format!("Action=ListStackInstances&Version=2010-05-15&StackSetName={name}");
        let listed = self
            .call("cloudformation", None, list)
            .await
            .unwrap_or_default();
        let tags = |tag: &str| -> Vec<String> {
            listed
                .split(&format!("<{tag}>"))
                .skip(1)
                .filter_map(|rest| rest.split(&format!("</{tag}>")).next())
                .map(str::to_owned)
                .collect()
        };
        tags("Account").into_iter().zip(tags("Region")).collect()
    }

    /// An Organizations listing under `parent`: the `Id`s in `field`, every page.
    async fn organizations_ids(&self, operation: &str, field: &str, parent: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = serde_json::json!({ "ParentId": parent });
            if let Some(token) = &token {
                request["NextToken"] = serde_json::Value::from(token.clone());
            }
            let target = format!("AWSOrganizationsV20161128.{operation}");
            let Some(answer) = self
                .call("organizations", Some(&target), request.to_string())
                .await
            else {
                return ids;
            };
            let Ok(answer) = serde_json::from_str::<serde_json::Value>(&answer) else {
                return ids;
            };
            ids.extend(
                answer[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|item| item["Id"].as_str().map(str::to_owned)),
            );
            token = answer["NextToken"].as_str().map(str::to_owned);
            if token.is_none() {
                return ids;
            }
        }
    }

    /// The accounts moto deploys to for `ou`: those in it and in its direct child OUs.
    async fn accounts_under(&self, ou: &str) -> HashSet<String> {
        let mut parents = vec![ou.to_owned()];
        parents.extend(
            self.organizations_ids(
                "ListOrganizationalUnitsForParent",
                "OrganizationalUnits",
                ou,
            )
            .await,
        );
        let mut accounts = HashSet::new();
        for parent in parents {
            accounts.extend(
                self.organizations_ids("ListAccountsForParent", "Accounts", &parent)
                    .await,
            );
        }
        accounts
    }
}

/// Adds `Accounts.member.N` to a DeleteStackInstances request that targets OUs, which
/// moto would otherwise ignore: the accounts of those OUs with an instance in the named
/// regions. Also returns the OUs left with no instance at all, which AWS then no longer
/// reports as deployment targets.
async fn with_instance_accounts(
    upstream: &Upstream<'_>,
    name: &str,
    form: &str,
    ous: &[String],
) -> (Bytes, Vec<String>) {
    let regions = form_list(form, "Regions");
    let instances = upstream.instances(name).await;
    let mut accounts = BTreeSet::new();
    let mut emptied = Vec::new();
    for ou in ous {
        let under = upstream.accounts_under(ou).await;
        let mut left = false;
        for (account, region) in &instances {
            if !under.contains(account) {
                continue;
            }
            if regions.contains(region) {
                accounts.insert(account.clone());
            } else {
                left = true;
            }
        }
        if !left {
            emptied.push(ou.clone());
        }
    }
    let mut text = form.to_owned();
    for (i, account) in accounts.iter().enumerate() {
        text.push_str(&format!("&Accounts.member.{}={account}", i + 1));
    }
    (Bytes::from(text), emptied)
}

/// Removes the instance moto deploys to the organization's management account: AWS never
/// deploys a service-managed StackSet there, even when the management account sits in a
/// targeted OU (moto also runs the template there, so its resources go with it).
async fn without_management_account_instances(upstream: &Upstream<'_>, name: &str, form: &str) {
    let Some(acting) = upstream.account else {
        return;
    };
    let Some(management) = management_account(upstream, acting).await else {
        return;
    };
    let regions: Vec<String> = upstream
        .instances(name)
        .await
        .into_iter()
        .filter(|(account, _)| *account == management)
        .map(|(_, region)| region)
        .collect();
    if regions.is_empty() {
        return;
    }
    let mut delete = format!(
        "Action=DeleteStackInstances&Version=2010-05-15&StackSetName={name}\
         &RetainStacks=false&Accounts.member.1={management}"
    );
    for (i, region) in regions.iter().enumerate() {
        delete.push_str(&format!("&Regions.member.{}={region}", i + 1));
    }
    if let Some(call_as) = form_value(form, "CallAs") {
        delete.push_str(&format!("&CallAs={call_as}"));
    }
    upstream.call("cloudformation", None, delete).await;
}

/// Plans StackSet operation `operation_id` (`call` on StackSet `name`, `form` as the
/// caller sent it, `forwarded` as moto got it) as AWS runs it: its stack instances, the
/// steps its preferences make of them, and the instances that fail (removed from moto, so
/// their member role is not there).
async fn roll_out(
    upstream: &Upstream<'_>,
    call: &str,
    name: &str,
    operation_id: &str,
    form: &str,
    forwarded: &str,
) {
    let regions = form_list(form, "Regions");
    let instances = upstream.instances(name).await;
    let pairs: Vec<(String, String)> = match call {
        "CreateStackInstances" => {
            let mut under = HashSet::new();
            for ou in form_list(form, "DeploymentTargets.OrganizationalUnitIds") {
                under.extend(upstream.accounts_under(&ou).await);
            }
            instances
                .into_iter()
                .filter(|(account, region)| under.contains(account) && regions.contains(region))
                .collect()
        }
        "DeleteStackInstances" => form_list(forwarded, "Accounts")
            .into_iter()
            .flat_map(|account| regions.iter().map(move |r| (account.clone(), r.clone())))
            .collect(),
        _ => instances,
    };
    let (step, failing) = {
        let faults = lock(&upstream.shared.faults);
        (faults.stack_set_step, faults.failing_instances.clone())
    };
    let results: Vec<(String, String, Option<String>)> = pairs
        .iter()
        .map(|(account, region)| {
            let failure = (call != "DeleteStackInstances")
                .then(|| failing.get(account).cloned())
                .flatten();
            (account.clone(), region.clone(), failure)
        })
        .collect();
    let failed: Vec<&(String, String, Option<String>)> =
        results.iter().filter(|r| r.2.is_some()).collect();
    if call == "CreateStackInstances" && !failed.is_empty() {
        let mut delete = format!(
            "Action=DeleteStackInstances&Version=2010-05-15&StackSetName={name}&RetainStacks=false"
        );
        for (i, (account, _, _)) in failed.iter().enumerate() {
            delete.push_str(&format!("&Accounts.member.{}={account}", i + 1));
        }
        for (i, region) in regions.iter().enumerate() {
            delete.push_str(&format!("&Regions.member.{}={region}", i + 1));
        }
        upstream.call("cloudformation", None, delete).await;
    }
    let preference = |key: &str| -> Option<u64> {
        form_value(form, &format!("OperationPreferences.{key}")).and_then(|v| v.parse().ok())
    };
    let sequential = form_value(form, "OperationPreferences.RegionConcurrencyType")
        .is_some_and(|v| v == "SEQUENTIAL");
    let mut steps = 0;
    let mut outcome = "SUCCEEDED";
    let mut by_region: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (_, region, failure) in &results {
        let entry = by_region.entry(region.as_str()).or_default();
        entry.0 += 1;
        entry.1 += u64::from(failure.is_some());
    }
    for (accounts, failures) in by_region.values() {
        // AWS rounds a percentage down, to no fewer than one account; its default is one.
        let at_once = match (
            preference("MaxConcurrentPercentage"),
            preference("MaxConcurrentCount"),
        ) {
            (Some(percent), _) => (accounts * percent / 100).max(1),
            (None, Some(count)) => count.max(1),
            (None, None) => 1,
        };
        let tolerated = match (
            preference("FailureTolerancePercentage"),
            preference("FailureToleranceCount"),
        ) {
            (Some(percent), _) => accounts * percent / 100,
            (None, Some(count)) => count,
            (None, None) => 0,
        };
        let region_steps = accounts.div_ceil(at_once);
        steps = if sequential {
            steps + region_steps
        } else {
            steps.max(region_steps)
        };
        if *failures > tolerated {
            outcome = "FAILED";
        }
    }
    lock(&upstream.shared.stats)
        .stack_set_steps
        .push((call.to_owned(), results.len(), steps));
    let duration = step * u32::try_from(steps).unwrap_or(u32::MAX);
    lock(&upstream.shared.stack_set_operations).insert(
        operation_id.to_owned(),
        RollingOperation {
            started: tokio::time::Instant::now(),
            duration,
            outcome,
            results,
        },
    );
}

/// The answer AWS gives about a rolling operation, where moto's differs:
/// DescribeStackSetOperation is RUNNING until its steps are done, then its outcome;
/// ListStackSetOperationResults lists every stack instance with its status and reason.
fn rolling_answer(shared: &Shared, call: &str, operation_id: &str, body: &Bytes) -> Option<Bytes> {
    let operations = lock(&shared.stack_set_operations);
    let operation = operations.get(operation_id)?;
    match call {
        "DescribeStackSetOperation" => {
            let status = if operation.started.elapsed() < operation.duration {
                "RUNNING"
            } else {
                operation.outcome
            };
            let text = String::from_utf8_lossy(body);
            Some(Bytes::from(text.replacen(
                "<Status>SUCCEEDED</Status>",
                &format!("<Status>{status}</Status>"),
                1,
            )))
        }
        "ListStackSetOperationResults" => {
            let mut summaries = String::new();
            for (account, region, failure) in &operation.results {
                let (status, reason) = match failure {
                    Some(reason) => (
                        "FAILED",
                        reason
                            .replace('&', "&amp;")
                            .replace('<', "&lt;")
                            .replace('>', "&gt;"),
                    ),
                    None => ("SUCCEEDED", String::new()),
                };
                summaries.push_str(&format!(
                    "<member><Account>{account}</Account><Region>{region}</Region>\
                     <Status>{status}</Status><StatusReason>{reason}</StatusReason>\
                     <AccountGateResult><Status>SKIPPED</Status></AccountGateResult></member>"
                ));
            }
            Some(Bytes::from(format!(
                "<ListStackSetOperationResultsResponse \
                 xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\">\
                 <ListStackSetOperationResultsResult><Summaries>{summaries}</Summaries>\
                 </ListStackSetOperationResultsResult><ResponseMetadata><RequestId>orgconnect-bed\
                 </RequestId></ResponseMetadata></ListStackSetOperationResultsResponse>"
            )))
        }
        _ => None,
    }
}

/// Starts a drift detection of StackSet `name`: it ends after one StackSet step and finds
/// the member roles marked drifted at this moment.
fn detect_drift(shared: &Shared, name: &str) -> Response<Body> {
    let (step, drifted) = {
        let faults = lock(&shared.faults);
        (faults.stack_set_step, faults.drifted_instances.clone())
    };
    let mut checks = lock(&shared.drift_checks);
    let operation_id = format!("orgconnect-bed-drift-{}", checks.len() + 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + step;
    checks.insert(
        operation_id.clone(),
        DriftCheck {
            stack_set: name.to_owned(),
            done_at: tokio::time::Instant::now() + step,
            checked_at: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            drifted,
        },
    );
    xml_response(
        "DetectStackSetDrift",
        &format!("<OperationId>{operation_id}</OperationId>"),
    )
}

/// The answer to DescribeStackSetOperation or ListStackSetOperationResults about a drift
/// detection: RUNNING until its step is done, then SUCCEEDED, with no per-instance results.
fn drift_check_answer(shared: &Shared, call: &str, operation_id: &str) -> Option<Response<Body>> {
    let checks = lock(&shared.drift_checks);
    let check = checks.get(operation_id)?;
    match call {
        "DescribeStackSetOperation" => {
            let status = if tokio::time::Instant::now() < check.done_at {
                "RUNNING"
            } else {
                "SUCCEEDED"
            };
            Some(xml_response(
                call,
                &format!(
                    "<StackSetOperation><OperationId>{operation_id}</OperationId>\
                     <StackSetId>{}</StackSetId><Action>DETECT_DRIFT</Action>\
                     <Status>{status}</Status></StackSetOperation>",
                    check.stack_set
                ),
            ))
        }
        "ListStackSetOperationResults" => Some(xml_response(call, "<Summaries></Summaries>")),
        _ => None,
    }
}

/// A CloudFormation query answer holding `result`.
fn xml_response(action: &str, result: &str) -> Response<Body> {
    let body = format!(
        "<{action}Response xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\">\
         <{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>orgconnect-bed\
         </RequestId></ResponseMetadata></{action}Response>"
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        "content-type",
        hyper::http::HeaderValue::from_static("text/xml"),
    );
    response
}

/// Rewrites a ListStackInstances answer of StackSet `name` as AWS reports it: each
/// instance's chosen Status and reason (moto says CURRENT), and its DriftStatus and
/// LastDriftCheckTimestamp from the last drift detection that ended (NOT_CHECKED before
/// any).
fn as_aws_reports_instances(shared: &Shared, name: &str, body: &Bytes) -> Bytes {
    let now = tokio::time::Instant::now();
    let last_check = lock(&shared.drift_checks)
        .values()
        .filter(|c| c.stack_set == name && c.done_at <= now)
        .max_by_key(|c| c.done_at)
        .map(|c| (c.checked_at, c.drifted.clone()));
    let statuses = lock(&shared.faults).instance_status.clone();
    let text = String::from_utf8_lossy(body);
    let marker = "<Status>CURRENT</Status>";
    let mut out = String::with_capacity(text.len());
    let mut rest: &str = &text;
    while let Some(at) = rest.find(marker) {
        let before = &rest[..at];
        let account = before
            .rfind("<Account>")
            .and_then(|start| {
                let tail = &before[start + "<Account>".len()..];
                tail.find("</Account>").map(|end| tail[..end].to_owned())
            })
            .unwrap_or_default();
        out.push_str(before);
        match statuses.get(&account) {
            Some((status, reason)) => out.push_str(&format!(
                "<Status>{status}</Status><StatusReason>{}</StatusReason>",
                reason
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            )),
            None => out.push_str(marker),
        }
        match &last_check {
            Some((checked_at, drifted)) => {
                let drift = if drifted.contains(&account) {
                    "DRIFTED"
                } else {
                    "IN_SYNC"
                };
                let when = k8s_openapi::jiff::Timestamp::from_second(*checked_at)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                out.push_str(&format!(
                    "<DriftStatus>{drift}</DriftStatus>\
                     <LastDriftCheckTimestamp>{when}</LastDriftCheckTimestamp>"
                ));
            }
            None => out.push_str("<DriftStatus>NOT_CHECKED</DriftStatus>"),
        }
        rest = &rest[at + marker.len()..];
    }
    out.push_str(rest);
    Bytes::from(out)
}

/// Adds `OrganizationalUnitIds` to a DescribeStackSet answer, as AWS reports them for a
/// service-managed StackSet.
fn with_organizational_units(body: &Bytes, ous: &BTreeSet<String>) -> Bytes {
    let text = String::from_utf8_lossy(body);
    if text.contains("<OrganizationalUnitIds>") {
        return body.clone();
    }
    let members: String = ous
        .iter()
        .map(|ou| format!("<member>{ou}</member>"))
        .collect();
    Bytes::from(text.replacen(
        "<StackSet>",
        &format!("<StackSet><OrganizationalUnitIds>{members}</OrganizationalUnitIds>"),
        1,
    ))
}

/// Rewrites the accounts of a ListAccounts, ListAccountsForParent or DescribeAccount answer
/// as AWS reports them: the chosen `JoinedMethod` and `State`, and no retired `Status`
/// unless asked for (then derived from the `State`, as AWS kept it).
fn as_aws_reports_accounts(body: &Bytes, faults: &Faults) -> Bytes {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.clone();
    };
    let rewrite = |account: &mut serde_json::Value| {
        let id = account["Id"].as_str().unwrap_or_default().to_owned();
        if faults.invited.contains(&id) {
            account["JoinedMethod"] = serde_json::Value::from("INVITED");
        }
        if let Some(state) = faults.states.get(&id) {
            account["State"] = serde_json::Value::from(state.as_str());
        }
        let Some(fields) = account.as_object_mut() else {
            return;
        };
        if faults.retired_status {
            let state = fields
                .get("State")
                .and_then(|s| s.as_str())
                .unwrap_or("ACTIVE");
            // `Status` never had CLOSED or PENDING_ACTIVATION.
            let status = match state {
                "CLOSED" => "SUSPENDED",
                "PENDING_ACTIVATION" => "ACTIVE",
                other => other,
            };
            fields.insert("Status".to_owned(), serde_json::Value::from(status));
        } else {
            fields.remove("Status");
        }
    };
    if let Some(accounts) = value.get_mut("Accounts").and_then(|a| a.as_array_mut()) {
        accounts.iter_mut().for_each(rewrite);
    }
    if let Some(account) = value.get_mut("Account") {
        rewrite(account);
    }
    Bytes::from(value.to_string())
}

/// AWS's refusal of a request whose SigV4 signature is not made with a key the emulated
/// accounts hold, or does not match: `None` when it is properly signed. Written here
/// because the SDK's signer only signs; checking needs the canonical request rebuilt from
/// what arrived (method, path, query, the signed headers, the body), as AWS rebuilds it.
fn refused_signature(
    faults: &Faults,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    protocol: Protocol,
) -> Option<Response<Body>> {
    if faults.lenient_signatures {
        return None;
    }
    let refuse = |code_query: &str, code_json: &str, message: &str| {
        Some(match protocol {
            Protocol::Query => error_response(protocol, StatusCode::FORBIDDEN, code_query, message),
            Protocol::Json => error_response(protocol, StatusCode::BAD_REQUEST, code_json, message),
        })
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let Some(authorization) = header("authorization") else {
        return refuse(
            "MissingAuthenticationToken",
            "MissingAuthenticationTokenException",
            "Request is missing Authentication Token",
        );
    };
    let field = |name: &str| {
        authorization
            .split([' ', ','])
            .find_map(|part| part.trim().strip_prefix(name))
    };
    let (Some(credential), Some(signed_headers), Some(signature)) = (
        field("Credential="),
        field("SignedHeaders="),
        field("Signature="),
    ) else {
        return refuse(
            "IncompleteSignature",
            "IncompleteSignatureException",
            "The request signature does not conform to AWS standards.",
        );
    };
    let mut scope = credential.splitn(2, '/');
    let (Some(key_id), Some(scope)) = (scope.next(), scope.next()) else {
        return refuse(
            "IncompleteSignature",
            "IncompleteSignatureException",
            "The request signature does not conform to AWS standards.",
        );
    };
    let Some((secret, token)) = faults.keys.get(key_id) else {
        return refuse(
            "InvalidClientTokenId",
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        );
    };
    if token.is_some() && header("x-amz-security-token") != token.as_deref() {
        return refuse(
            "InvalidClientTokenId",
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        );
    }
    let date = header("x-amz-date").unwrap_or_default();
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let mut query: Vec<&str> = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    query.sort_unstable();
    let query: Vec<String> = query
        .iter()
        .map(|p| {
            if p.contains('=') {
                (*p).to_owned()
            } else {
                format!("{p}=")
            }
        })
        .collect();
    let payload = header("x-amz-content-sha256")
        .map(str::to_owned)
        .unwrap_or_else(|| hex::encode(sha2::Sha256::digest(body)));
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload}",
        parts.method,
        parts.uri.path(),
        query.join("&"),
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
    );
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        key = hmac_sha256(&key, part.as_bytes());
    }
    if hex::encode(hmac_sha256(&key, to_sign.as_bytes())) == signature {
        return None;
    }
    refuse(
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check \
         your AWS Secret Access Key and signing method.",
    )
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// An Authorization header with its credential scope's service set to `service`, so moto
/// routes a call the proxy makes to that service.
fn with_service(authorization: &str, service: &str) -> String {
    let Some((head, rest)) = authorization.split_once("Credential=") else {
        return authorization.to_owned();
    };
    let (credential, tail) = rest
        .split_once([',', ' '])
        .map_or((rest, ""), |(c, _)| (c, &rest[c.len()..]));
    let mut parts: Vec<&str> = credential.split('/').collect();
    if parts.len() == 5 {
        parts[3] = service;
    }
    format!("{head}Credential={}{tail}", parts.join("/"))
}

/// Undoes the XML escaping of a value in an answer.
fn xml_unescape(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A policy document as IAM returns it inside XML: URL-encoded JSON, plain JSON, or (for
/// inline policies moto's CloudFormation stored) the Python form of the JSON.
fn policy_document(raw: &str) -> Option<serde_json::Value> {
    let text = xml_unescape(raw);
    let python = || {
        text.replace('\'', "\"")
            .replace(": True", ": true")
            .replace(": False", ": false")
            .replace(": None", ": null")
    };
    serde_json::from_str(&text)
        .ok()
        .or_else(|| serde_json::from_str(&percent_decode(&text)).ok())
        .or_else(|| serde_json::from_str(&python()).ok())
}

/// Every `<tag>` value of an XML answer, in order.
fn xml_values(body: &str, tag: &str) -> Vec<String> {
    body.split(&format!("<{tag}>"))
        .skip(1)
        .filter_map(|rest| rest.split(&format!("</{tag}>")).next())
        .map(|v| v.trim().to_owned())
        .collect()
}

/// The role ARN of an assumed-role session ARN, or the ARN itself.
fn role_of(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if let [_, partition, "sts", _, account, resource] = parts[..]
        && let Some((role, _)) = resource
            .strip_prefix("assumed-role/")
            .and_then(|r| r.rsplit_once('/'))
    {
        return format!("arn:{partition}:iam::{account}:role/{role}");
    }
    arn.to_owned()
}

/// Refuses what AWS's IAM would refuse: AssumeRole into a role that does not exist or
/// whose trust policy does not let the caller in (principal, and the `sts:ExternalId`,
/// `aws:PrincipalArn` and `aws:PrincipalAccount` conditions of `StringEquals` and
/// `StringLike`); any call that the caller's identity policies do not allow (actions and
/// resources, with wildcards; Deny wins): a role session's, and an IAM user's that moto
/// holds. An AssumeRole in the caller's own account needs no identity policy when the
/// trust policy names the caller itself. Keys of no IAM user (the tests' own) act as the
/// organization's administrators. GetCallerIdentity is never refused, as on AWS.
async fn iam_refusal(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    call: &Call,
    account: Option<&str>,
) -> Option<Response<Body>> {
    let caller_account = account?;
    if call.operation == "GetCallerIdentity" || call.service.is_empty() {
        return None;
    }
    let key = call.access_key_id.clone()?;
    let session_role = lock(&shared.faults).principal_arns.get(&key).cloned();
    let upstream = Upstream {
        shared,
        parts,
        account: Some(caller_account),
    };
    let caller_arn = match &session_role {
        Some(role) => role.clone(),
        None => caller_arn(&upstream, &key).await?,
    };
    let action = format!("{}:{}", call.service, call.operation);
    let resource = match &call.role_arn {
        Some(role) => role.clone(),
        // IAM evaluates a role's own calls on it against the role's ARN, path included.
        None if call.operation == "GetRole" => role_arn_named(&upstream, call).await,
        None => "*".to_owned(),
    };
    let deny = |message: String| {
        lock(&shared.stats).iam_denials.push(message.clone());
        let (status, code) = match call.protocol {
            Protocol::Query => (StatusCode::FORBIDDEN, "AccessDenied"),
            Protocol::Json => (StatusCode::BAD_REQUEST, "AccessDeniedException"),
        };
        Some(error_response(call.protocol, status, code, &message))
    };
    // AWS creates OrganizationAccountAccessRole with AdministratorAccess attached; moto
    // creates it with no policy at all.
    let administrator = session_role
        .as_deref()
        .is_some_and(|role| role.ends_with(":role/OrganizationAccountAccessRole"));
    let policies = match &session_role {
        Some(_) if administrator => None,
        Some(role) => Some(role_policies(shared, parts, role).await),
        None if is_user(&caller_arn) => user_policies(shared, parts, &caller_arn).await,
        None => None,
    };
    let identity_ok = match &policies {
        None => true,
        Some(policies) => {
            let context =
                request_context(shared, parts, call, caller_account, &caller_arn, policies).await;
            identity_allows(policies, &action, &resource, &context)
        }
    };
    let identity_denied = || {
        deny(format!(
            "User: {caller_arn} is not authorized to perform: {action} on resource: \
             {resource} because no identity-based policy allows the {action} action"
        ))
    };
    if call.operation != "AssumeRole" {
        return if identity_ok { None } else { identity_denied() };
    }
    let target = call.role_arn.as_deref()?;
    let target_account = call.target_account.as_deref()?;
    let trust = trust_policy(shared, parts, target, target_account).await;
    let names_caller = trust
        .as_ref()
        .is_some_and(|trust| trust_names(trust, &caller_arn));
    // Within one account, a trust policy naming the caller itself is enough.
    let trusted_alone = target_account == caller_account && names_caller;
    if !(identity_ok || trusted_alone) {
        return identity_denied();
    }
    let allowed = trust.as_ref().is_some_and(|trust| {
        trust_allows(
            trust,
            &caller_arn,
            caller_account,
            call.external_id.as_deref(),
        )
    });
    if allowed {
        return None;
    }
    deny(format!(
        "User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: {target}"
    ))
}

/// Request parts for the proxy's own calls to moto on no caller's behalf (moto acts in
/// the account `x-moto-account-id` names and checks no signature).
fn bed_parts() -> hyper::http::request::Parts {
    let mut parts = Request::new(()).into_parts().0;
    parts.headers.insert(
        "authorization",
        hyper::http::HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=ORGCONNECTTESTBED/20260101/us-east-1/iam/aws4_request, \
             SignedHeaders=host, Signature=0",
        ),
    );
    parts
}

/// The IAM OIDC provider of `issuer` in `account`: its client ids, or `None` when IAM
/// holds no provider for that issuer there.
async fn oidc_client_ids(shared: &Shared, account: &str, issuer: &str) -> Option<Vec<String>> {
    let host = issuer.trim_start_matches("https://");
    let parts = bed_parts();
    let upstream = Upstream {
        shared,
        parts: &parts,
        account: Some(account),
    };
    let answer = upstream
        .call(
            "iam",
            None,
            format!(
                "Action=GetOpenIDConnectProvider&Version=2010-05-08&\
                 OpenIDConnectProviderArn=arn%3Aaws%3Aiam%3A%3A{account}%3Aoidc-provider%2F{}",
                host.replace('/', "%2F")
            ),
        )
        .await?;
    if !answer.contains("<GetOpenIDConnectProviderResult>") {
        return None;
    }
    Some(xml_values(&answer, "member"))
}

/// Refuses an AssumeRoleWithWebIdentity as STS does: the token must verify against its
/// issuer's keys and not be expired, the role's account must hold an IAM OIDC provider
/// for the issuer listing the token's audience, and the role's trust policy must let that
/// provider in for this token (`<issuer>:sub` and `<issuer>:aud` conditions).
async fn web_identity_refusal(shared: &Shared, call: &Call, form: &str) -> Option<Response<Body>> {
    let refuse = |status: StatusCode, code: &str, message: String| {
        lock(&shared.stats).iam_denials.push(message.clone());
        Some(error_response(call.protocol, status, code, &message))
    };
    let invalid =
        |message: String| refuse(StatusCode::BAD_REQUEST, "InvalidIdentityToken", message);
    let token = form_value(form, "WebIdentityToken").unwrap_or_default();
    let (Some(role), Some(account)) = (call.role_arn.as_deref(), call.target_account.as_deref())
    else {
        return invalid("RoleArn is required".to_owned());
    };
    let Some(issuer) = super::oidc::issuer_of(&token) else {
        return invalid("The web identity token is not a valid JWT".to_owned());
    };
    let keys = lock(&shared.faults).oidc_issuers.get(&issuer).cloned();
    let client_ids = oidc_client_ids(shared, account, &issuer).await;
    let (Some(keys), Some(client_ids)) = (keys, client_ids) else {
        return invalid(format!(
            "No OpenIDConnect provider found in your account for {issuer}"
        ));
    };
    let claims = match super::oidc::verify(&token, &issuer, &keys) {
        Ok(claims) => claims,
        Err(super::oidc::Refusal::Expired) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "ExpiredTokenException",
                "Token expired".to_owned(),
            );
        }
        Err(super::oidc::Refusal::Invalid(why)) => return invalid(why),
    };
    let Some(audience) = claims.aud.iter().find(|a| client_ids.contains(a)) else {
        return invalid("Incorrect token audience".to_owned());
    };
    let host = issuer.trim_start_matches("https://");
    let provider = format!("arn:aws:iam::{account}:oidc-provider/{host}");
    let context = Context::from([
        (format!("{host}:sub").to_lowercase(), claims.sub.clone()),
        (format!("{host}:aud").to_lowercase(), audience.clone()),
    ]);
    let parts = bed_parts();
    let trust = trust_policy(shared, &parts, role, account).await;
    let allowed = trust.as_ref().is_some_and(|trust| {
        let applies = |s: &serde_json::Value| {
            strings(&s["Principal"]["Federated"]).contains(&provider)
                && strings(&s["Action"])
                    .iter()
                    .any(|a| glob_match(&a.to_lowercase(), "sts:assumerolewithwebidentity"))
                && conditions_hold(s, &context)
        };
        let statements = one_or_many_statements(&trust["Statement"]);
        let effect = |s: &serde_json::Value| s["Effect"].as_str().unwrap_or_default().to_owned();
        !statements.iter().any(|s| effect(s) == "Deny" && applies(s))
            && statements
                .iter()
                .any(|s| effect(s) == "Allow" && applies(s))
    });
    if allowed {
        return None;
    }
    refuse(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        format!(
            "Not authorized to perform sts:AssumeRoleWithWebIdentity on {role} as {}",
            claims.sub
        ),
    )
}

/// The service EKS Pod Identity assumes roles as: their trust policies name it.
pub const POD_IDENTITY_SERVICE: &str = "pods.eks.amazonaws.com";

/// What EKS's Pod Identity service does behind the agent: verifies a pod's service account
/// token and mints a session of the role associated with the service account, which then
/// acts as that role on the strict bed.
#[derive(Clone)]
pub struct SessionIssuer(Arc<Shared>);

/// A role session the Pod Identity agent hands a pod.
#[derive(Clone, Debug)]
pub struct PodSession {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: String,
}

impl SessionIssuer {
    /// Verifies a Pod Identity token (its issuer's keys, expiry, audience
    /// `pods.eks.amazonaws.com`): its claims.
    pub fn verify(&self, token: &str) -> Result<super::oidc::Claims, String> {
        let issuer = super::oidc::issuer_of(token).ok_or("the token is not a valid JWT")?;
        let keys = lock(&self.0.faults)
            .oidc_issuers
            .get(&issuer)
            .cloned()
            .ok_or_else(|| format!("{issuer} is not this cluster's issuer"))?;
        let claims = super::oidc::verify(token, &issuer, &keys).map_err(|e| format!("{e:?}"))?;
        if !claims.aud.iter().any(|a| a == POD_IDENTITY_SERVICE) {
            return Err(format!(
                "the token's audience is not {POD_IDENTITY_SERVICE}"
            ));
        }
        Ok(claims)
    }

    /// A session of `role`, whose trust policy must let `pods.eks.amazonaws.com` call
    /// `sts:AssumeRole` and `sts:TagSession`, as EKS Pod Identity requires.
    pub async fn pod_session(&self, role: &str) -> Result<PodSession, String> {
        let shared = &self.0;
        let account = role.split(':').nth(4).ok_or("not a role ARN")?;
        let parts = bed_parts();
        let trust = trust_policy(shared, &parts, role, account)
            .await
            .ok_or_else(|| format!("role {role} does not exist"))?;
        let allows = |action: &str| {
            one_or_many_statements(&trust["Statement"]).iter().any(|s| {
                s["Effect"].as_str() == Some("Allow")
                    && strings(&s["Principal"]["Service"])
                        .iter()
                        .any(|p| p == POD_IDENTITY_SERVICE)
                    && strings(&s["Action"])
                        .iter()
                        .any(|a| glob_match(&a.to_lowercase(), action))
            })
        };
        if !(allows("sts:assumerole") && allows("sts:tagsession")) {
            return Err(format!(
                "the trust policy of {role} does not let {POD_IDENTITY_SERVICE} call \
                 sts:AssumeRole and sts:TagSession"
            ));
        }
        let upstream = Upstream {
            shared,
            parts: &parts,
            account: Some(account),
        };
        let answer = upstream
            .call(
                "sts",
                None,
                format!(
                    "Action=AssumeRole&Version=2011-06-15&RoleSessionName=eks-pod-identity&\
                     RoleArn={}",
                    role.replace(':', "%3A").replace('/', "%2F")
                ),
            )
            .await
            .ok_or("moto did not answer")?;
        remember_session(shared, answer.as_bytes(), role);
        let value = |tag: &str| {
            xml_value(answer.as_bytes(), tag).ok_or_else(|| format!("no {tag} in {answer}"))
        };
        Ok(PodSession {
            access_key_id: value("AccessKeyId")?,
            secret_access_key: value("SecretAccessKey")?,
            session_token: value("SessionToken")?,
            expiration: value("Expiration")?,
        })
    }
}

/// The ARN of the role a GetRole call names, as IAM holds it (`*` when there is none).
async fn role_arn_named(upstream: &Upstream<'_>, call: &Call) -> String {
    let Some(name) = &call.role_name else {
        return "*".to_owned();
    };
    let answer = upstream
        .call(
            "iam",
            None,
            format!("Action=GetRole&Version=2010-05-08&RoleName={name}"),
        )
        .await
        .unwrap_or_default();
    xml_value(answer.as_bytes(), "Arn").unwrap_or_else(|| "*".to_owned())
}

/// The condition keys an identity policy of the caller is evaluated against: the
/// principal's account, ARN and organization, and for AssumeRole the role's account and
/// organization. Organizations are looked up only when a policy names one.
async fn request_context(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    call: &Call,
    caller_account: &str,
    caller_arn: &str,
    policies: &[serde_json::Value],
) -> Context {
    let mut context = Context::from([
        ("aws:principalaccount".to_owned(), caller_account.to_owned()),
        ("aws:principalarn".to_owned(), role_of(caller_arn)),
    ]);
    if let Some(target) = &call.target_account {
        context.insert("aws:resourceaccount".to_owned(), target.clone());
    }
    let names_org = policies
        .iter()
        .any(|p| p.to_string().to_lowercase().contains("orgid"));
    if !names_org {
        return context;
    }
    if let Some(org) = organization_of(shared, parts, caller_account).await {
        context.insert("aws:principalorgid".to_owned(), org);
    }
    if let Some(target) = &call.target_account
        && let Some(org) = organization_of(shared, parts, target).await
    {
        context.insert("aws:resourceorgid".to_owned(), org);
    }
    context
}

/// The organization account `account` belongs to, if any (cached).
async fn organization_of(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    account: &str,
) -> Option<String> {
    if let Some(known) = lock(&shared.faults).organization_of.get(account) {
        return known.clone();
    }
    let upstream = Upstream {
        shared,
        parts,
        account: Some(account),
    };
    let answer = upstream
        .call(
            "organizations",
            Some("AWSOrganizationsV20161128.DescribeOrganization"),
            "{}".to_owned(),
        )
        .await
        .and_then(|answer| serde_json::from_str::<serde_json::Value>(&answer).ok());
    let org = answer
        .as_ref()
        .and_then(|a| a["Organization"]["Id"].as_str())
        .map(str::to_owned);
    lock(&shared.faults)
        .organization_of
        .insert(account.to_owned(), org.clone());
    org
}

/// The trust policy of role `target` in `account`, read at the role's first use; `None`
/// when the role does not exist.
async fn trust_policy(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    target: &str,
    account: &str,
) -> Option<serde_json::Value> {
    if let Some(cached) = lock(&shared.faults).trust_policies.get(target).cloned() {
        return cached;
    }
    let role_name = target.rsplit('/').next()?;
    let as_target = Upstream {
        shared,
        parts,
        account: Some(account),
    };
    let answer = as_target
        .call(
            "iam",
            None,
            format!("Action=GetRole&Version=2010-05-08&RoleName={role_name}"),
        )
        .await
        .unwrap_or_default();
    let trust = xml_value(answer.as_bytes(), "AssumeRolePolicyDocument")
        .and_then(|raw| policy_document(&raw));
    // A role that does not exist yet may be made later: ask again then.
    if trust.is_some() {
        lock(&shared.faults)
            .trust_policies
            .insert(target.to_owned(), trust.clone());
    }
    trust
}

/// Whether `arn` is an IAM user's (`arn:aws:iam::<account>:user/<name>`).
fn is_user(arn: &str) -> bool {
    arn.contains(":iam::") && arn.contains(":user/")
}

/// Whether an Allow statement of `trust` names `caller` (or, for a role session, its role)
/// itself, rather than its account.
fn trust_names(trust: &serde_json::Value, caller: &str) -> bool {
    let role = role_of(caller);
    one_or_many_statements(&trust["Statement"]).iter().any(|s| {
        s["Effect"].as_str() == Some("Allow")
            && strings(&s["Principal"]["AWS"])
                .iter()
                .any(|p| *p == caller || *p == role)
    })
}

/// The ARN an IAM user's key acts as, as GetCallerIdentity names it (cached).
async fn caller_arn(upstream: &Upstream<'_>, key: &str) -> Option<String> {
    if let Some(known) = lock(&upstream.shared.faults).caller_arns.get(key) {
        return Some(known.clone());
    }
    let answer = upstream
        .call(
            "sts",
            None,
            "Action=GetCallerIdentity&Version=2011-06-15".to_owned(),
        )
        .await?;
    let arn = xml_value(answer.as_bytes(), "Arn")?;
    lock(&upstream.shared.faults)
        .caller_arns
        .insert(key.to_owned(), arn.clone());
    Some(arn)
}

/// The inline policies of `role` (`arn:…:iam::<account>:role/<name>`), as IAM holds them.
async fn role_policies(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    role: &str,
) -> Vec<serde_json::Value> {
    if let Some(known) = lock(&shared.faults).role_policies.get(role) {
        return known.clone();
    }
    let Some(account) = role.split(':').nth(4) else {
        return Vec::new();
    };
    let name = role.rsplit('/').next().unwrap_or_default();
    let upstream = Upstream {
        shared,
        parts,
        account: Some(account),
    };
    let policies = inline_policies(&upstream, "Role", name)
        .await
        .unwrap_or_default();
    lock(&shared.faults)
        .role_policies
        .insert(role.to_owned(), policies.clone());
    policies
}

/// The inline policies IAM holds for `kind` (`Role` or `User`) `name`, read with
/// List{kind}Policies and Get{kind}Policy; `None` when IAM holds no such principal.
async fn inline_policies(
    upstream: &Upstream<'_>,
    kind: &str,
    name: &str,
) -> Option<Vec<serde_json::Value>> {
    let listed = upstream
        .call(
            "iam",
            None,
            format!("Action=List{kind}Policies&Version=2010-05-08&{kind}Name={name}"),
        )
        .await
        .unwrap_or_default();
    if !listed.contains(&format!("<List{kind}PoliciesResult")) {
        return None;
    }
    let mut policies = Vec::new();
    for policy in xml_values(&listed, "member") {
        let answer = upstream
            .call(
                "iam",
                None,
                format!(
                    "Action=Get{kind}Policy&Version=2010-05-08&{kind}Name={name}&PolicyName={policy}"
                ),
            )
            .await
            .unwrap_or_default();
        if let Some(document) =
            xml_value(answer.as_bytes(), "PolicyDocument").and_then(|raw| policy_document(&raw))
        {
            policies.push(document);
        }
    }
    Some(policies)
}

/// The inline policies of IAM user `user` (`arn:…:iam::<account>:user/<name>`), as IAM
/// holds them; `None` when IAM holds no such user.
async fn user_policies(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    user: &str,
) -> Option<Vec<serde_json::Value>> {
    if let Some(known) = lock(&shared.faults).user_policies.get(user) {
        return known.clone();
    }
    let account = user.split(':').nth(4)?;
    let name = user.rsplit('/').next().unwrap_or_default();
    let upstream = Upstream {
        shared,
        parts,
        account: Some(account),
    };
    let policies = inline_policies(&upstream, "User", name).await;
    lock(&shared.faults)
        .user_policies
        .insert(user.to_owned(), policies.clone());
    policies
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::String(one) => vec![one.clone()],
        serde_json::Value::Array(many) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether identity `policies` allow `action` on `resource`.
/// What the conditions of a policy are evaluated against: condition keys (lower case) and
/// their values for the request at hand.
type Context = BTreeMap<String, String>;

/// Whether every condition of `statement` holds in `context` (`StringEquals` and
/// `StringLike`, with `${key}` policy variables in the wanted values). A key the context
/// lacks fails its condition, as on AWS without `IfExists`.
fn conditions_hold(statement: &serde_json::Value, context: &Context) -> bool {
    let Some(conditions) = statement.get("Condition").and_then(|c| c.as_object()) else {
        return true;
    };
    let resolve = |wanted: &str| -> Option<String> {
        let mut out = wanted.to_owned();
        while let Some(start) = out.find("${") {
            let end = start + out[start..].find('}')?;
            let value = context.get(&out[start + 2..end].to_lowercase())?.clone();
            out.replace_range(start..=end, &value);
        }
        Some(out)
    };
    conditions.iter().all(|(operator, keys)| {
        keys.as_object().is_some_and(|keys| {
            keys.iter().all(|(key, wanted)| {
                let Some(value) = context.get(&key.to_lowercase()) else {
                    return false;
                };
                strings(wanted)
                    .iter()
                    .filter_map(|w| resolve(w))
                    .any(|w| match operator.as_str() {
                        "StringEquals" => w == *value,
                        "StringLike" => glob_match(&w, value),
                        _ => false,
                    })
            })
        })
    })
}

fn identity_allows(
    policies: &[serde_json::Value],
    action: &str,
    resource: &str,
    context: &Context,
) -> bool {
    let matches = |statement: &serde_json::Value| {
        let action_ok = strings(&statement["Action"])
            .iter()
            .any(|p| glob_match(&p.to_lowercase(), &action.to_lowercase()));
        let resource_ok = strings(&statement["Resource"])
            .iter()
            .any(|p| p == "*" || glob_match(p, resource));
        action_ok && resource_ok && conditions_hold(statement, context)
    };
    let statements: Vec<serde_json::Value> = policies
        .iter()
        .flat_map(|p| one_or_many_statements(&p["Statement"]))
        .collect();
    let effect = |s: &serde_json::Value| s["Effect"].as_str().unwrap_or_default().to_owned();
    !statements.iter().any(|s| effect(s) == "Deny" && matches(s))
        && statements
            .iter()
            .any(|s| effect(s) == "Allow" && matches(s))
}

/// Whether a trust policy lets `caller` (an IAM user or role ARN, in `account`) assume
/// the role, presenting `external_id`.
fn trust_allows(
    trust: &serde_json::Value,
    caller: &str,
    account: &str,
    external_id: Option<&str>,
) -> bool {
    let role = role_of(caller);
    let root = format!("arn:aws:iam::{account}:root");
    let principal_ok = |statement: &serde_json::Value| {
        let principals = match &statement["Principal"] {
            serde_json::Value::String(any) => vec![any.clone()],
            other => strings(&other["AWS"]),
        };
        principals
            .iter()
            .any(|p| p == "*" || *p == caller || *p == role || *p == root || p == account)
    };
    let mut context = Context::from([
        ("aws:principalarn".to_owned(), role.clone()),
        ("aws:principalaccount".to_owned(), account.to_owned()),
    ]);
    if let Some(id) = external_id {
        context.insert("sts:externalid".to_owned(), id.to_owned());
    }
    let action_ok = |statement: &serde_json::Value| {
        strings(&statement["Action"])
            .iter()
            .any(|a| glob_match(&a.to_lowercase(), "sts:assumerole"))
    };
    let statements = one_or_many_statements(&trust["Statement"]);
    let effect = |s: &serde_json::Value| s["Effect"].as_str().unwrap_or_default().to_owned();
    let applies =
        |s: &serde_json::Value| principal_ok(s) && action_ok(s) && conditions_hold(s, &context);
    !statements.iter().any(|s| effect(s) == "Deny" && applies(s))
        && statements
            .iter()
            .any(|s| effect(s) == "Allow" && applies(s))
}

/// The service principal StackSets delegated administrators are registered for.
const STACK_SETS_PRINCIPAL: &str = "member.org.stacksets.cloudformation.amazonaws.com";

/// What a member account may do on AWS that moto does not check: the Organizations calls
/// its organization's delegation policy allows (moto lets any member list nothing, or
/// the whole organization), and StackSet calls as a registered delegated administrator.
/// The account the call then acts in upstream, or AWS's refusal.
async fn member_access(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    call: &Call,
    body: &Bytes,
    account: Option<String>,
) -> Result<Option<String>, Response<Body>> {
    let Some(caller) = account.clone() else {
        return Ok(account);
    };
    let form = String::from_utf8_lossy(body);
    let organizations = parts
        .headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.starts_with("AWSOrganizationsV20161128."));
    let as_admin = call.call_as.as_deref() == Some("DELEGATED_ADMIN");
    let service_managed = call.operation == "CreateStackSet"
        && form_value(&form, "PermissionModel").as_deref() == Some("SERVICE_MANAGED");
    if !(organizations || as_admin || service_managed)
        || (organizations && call.operation == "DescribeOrganization")
    {
        return Ok(account);
    }
    let upstream = Upstream {
        shared,
        parts,
        account: Some(&caller),
    };
    let management = management_account(&upstream, &caller).await;
    if organizations && call.operation.ends_with("ResourcePolicy") {
        return Err(resource_policy(
            shared,
            call,
            body,
            &caller,
            management.as_deref(),
        ));
    }
    if organizations
        && call.operation == "RegisterDelegatedAdministrator"
        && management.as_deref() == Some(caller.as_str())
    {
        let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        if request["ServicePrincipal"].as_str() == Some(STACK_SETS_PRINCIPAL)
            && let Some(admin) = request["AccountId"].as_str()
        {
            lock(&shared.faults)
                .stack_set_admins
                .insert(admin.to_owned());
            return Err(Response::builder()
                .header("content-type", "application/x-amz-json-1.1")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))));
        }
    }
    let Some(management) = management.filter(|m| *m != caller) else {
        return Ok(account);
    };
    if organizations {
        let principal = call
            .access_key_id
            .as_ref()
            .and_then(|key| lock(&shared.faults).principal_arns.get(key).cloned())
            .unwrap_or_else(|| format!("arn:aws:iam::{caller}:root"));
        let policy = lock(&shared.faults)
            .delegation_policies
            .get(&management)
            .cloned();
        let action = format!("organizations:{}", call.operation);
        return match policy {
            Some(policy) if policy_allows(&policy, &principal, &caller, &action) => {
                Ok(Some(management))
            }
            _ => Err(error_response(
                Protocol::Json,
                StatusCode::BAD_REQUEST,
                "AccessDeniedException",
                "You don't have permissions to access this resource.",
            )),
        };
    }
    if as_admin && lock(&shared.faults).stack_set_admins.contains(&caller) {
        return Ok(Some(management));
    }
    Err(error_response(
        Protocol::Query,
        StatusCode::BAD_REQUEST,
        "ValidationError",
        if as_admin {
            "Account used is not a delegated administrator"
        } else {
            "StackSets with SERVICE_MANAGED permission model can only be created by the \
             management account or, with CallAs DELEGATED_ADMIN, a delegated administrator"
        },
    ))
}

/// The management account of `caller`'s organization (`None`: it has none), cached.
async fn management_account(upstream: &Upstream<'_>, caller: &str) -> Option<String> {
    if let Some(known) = lock(&upstream.shared.faults).management_of.get(caller) {
        return Some(known.clone());
    }
    let answer = upstream
        .call(
            "organizations",
            Some("AWSOrganizationsV20161128.DescribeOrganization"),
            "{}".to_owned(),
        )
        .await?;
    let answer: serde_json::Value = serde_json::from_str(&answer).ok()?;
    let management = answer["Organization"]["MasterAccountId"]
        .as_str()?
        .to_owned();
    lock(&upstream.shared.faults)
        .management_of
        .insert(caller.to_owned(), management.clone());
    Some(management)
}

/// Put, Describe and DeleteResourcePolicy: the organization's delegation policy, which
/// only its management account may change.
fn resource_policy(
    shared: &Shared,
    call: &Call,
    body: &Bytes,
    caller: &str,
    management: Option<&str>,
) -> Response<Body> {
    let json = |value: serde_json::Value| {
        Response::builder()
            .header("content-type", "application/x-amz-json-1.1")
            .body(Full::new(Bytes::from(value.to_string())))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    };
    let Some(management) = management else {
        return error_response(
            Protocol::Json,
            StatusCode::BAD_REQUEST,
            "AWSOrganizationsNotInUseException",
            "Your account is not a member of an organization.",
        );
    };
    if caller != management && call.operation != "DescribeResourcePolicy" {
        return error_response(
            Protocol::Json,
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            "You don't have permissions to access this resource.",
        );
    }
    let described = |content: &serde_json::Value| {
        serde_json::json!({ "ResourcePolicy": {
            "ResourcePolicySummary": {
                "Id": "rp-orgconnect",
                "Arn": format!("arn:aws:organizations::{management}:resourcepolicy/rp-orgconnect"),
            },
            "Content": content.to_string(),
        }})
    };
    let mut faults = lock(&shared.faults);
    match call.operation.as_str() {
        "PutResourcePolicy" => {
            let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let Some(content) = request["Content"]
                .as_str()
                .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
            else {
                return error_response(
                    Protocol::Json,
                    StatusCode::BAD_REQUEST,
                    "MalformedPolicyDocumentException",
                    "The provided policy document doesn't meet the requirements of the specified policy type.",
                );
            };
            let answer = described(&content);
            faults
                .delegation_policies
                .insert(management.to_owned(), content);
            json(answer)
        }
        "DescribeResourcePolicy" => match faults.delegation_policies.get(management) {
            Some(content) => json(described(content)),
            None => error_response(
                Protocol::Json,
                StatusCode::BAD_REQUEST,
                "ResourcePolicyNotFoundException",
                "We can't find a resource policy request with the parameter that you specified.",
            ),
        },
        _ => {
            faults.delegation_policies.remove(management);
            json(serde_json::json!({}))
        }
    }
}

/// Whether a resource-based `policy` allows `principal` (in account `account`) `action`:
/// an Allow statement names the principal, its account's root or the account, and the
/// action (with `*` wildcards); no Deny statement does.
fn policy_allows(policy: &serde_json::Value, principal: &str, account: &str, action: &str) -> bool {
    let one_or_many = |value: &serde_json::Value| -> Vec<String> {
        match value {
            serde_json::Value::String(one) => vec![one.clone()],
            serde_json::Value::Array(many) => many
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    let root = format!("arn:aws:iam::{account}:root");
    let matching = |statement: &serde_json::Value| {
        let principals = match &statement["Principal"] {
            serde_json::Value::String(any) => vec![any.clone()],
            other => one_or_many(&other["AWS"]),
        };
        let who = principals
            .iter()
            .any(|p| p == "*" || p == principal || *p == root || p == account);
        let what = one_or_many(&statement["Action"])
            .iter()
            .any(|pattern| glob_match(&pattern.to_lowercase(), &action.to_lowercase()));
        who && what
    };
    let statements = one_or_many_statements(&policy["Statement"]);
    let effect = |s: &serde_json::Value| s["Effect"].as_str().unwrap_or_default().to_owned();
    !statements
        .iter()
        .any(|s| effect(s) == "Deny" && matching(s))
        && statements
            .iter()
            .any(|s| effect(s) == "Allow" && matching(s))
}

fn one_or_many_statements(value: &serde_json::Value) -> Vec<serde_json::Value> {
    match value {
        serde_json::Value::Array(many) => many.clone(),
        serde_json::Value::Object(_) => vec![value.clone()],
        _ => Vec::new(),
    }
}

/// IAM's action matching: `*` matches any run of characters, `?` any one.
fn glob_match(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((star_p, star_v)) = star {
            pi = star_p + 1;
            vi = star_v + 1;
            star = Some((star_p, star_v + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_fault_fails_the_exact_share() {
        let mut half = RateFault::new(0.5);
        let fired = (0..100).filter(|_| half.fire()).count();
        assert_eq!(fired, 50);
        let mut never = RateFault::new(0.0);
        assert!((0..100).all(|_| !never.fire()));
        let mut always = RateFault::new(1.0);
        assert!((0..100).all(|_| always.fire()));
    }

    #[test]
    fn reads_list_parameters_in_order() {
        let body = "Action=DeleteStackInstances&Regions.member.2=eu-west-1&Regions.member.1=us-east-1\
                    &DeploymentTargets.OrganizationalUnitIds.member.1=ou-ab12-cdef3456";
        assert_eq!(form_list(body, "Regions"), ["us-east-1", "eu-west-1"]);
        assert_eq!(
            form_list(body, "DeploymentTargets.OrganizationalUnitIds"),
            ["ou-ab12-cdef3456"]
        );
        assert!(form_list(body, "Accounts").is_empty());
    }

    #[test]
    fn reports_the_deployment_targets_of_a_stack_set() {
        let body = Bytes::from(
            "<DescribeStackSetResult><StackSet><StackSetName>s</StackSetName></StackSet>",
        );
        let ous = BTreeSet::from(["ou-a".to_owned(), "r-b".to_owned()]);
        assert_eq!(
            with_organizational_units(&body, &ous),
            Bytes::from(
                "<DescribeStackSetResult><StackSet><OrganizationalUnitIds><member>ou-a</member>\
                 <member>r-b</member></OrganizationalUnitIds><StackSetName>s</StackSetName></StackSet>"
            )
        );
    }

    #[test]
    fn delegation_policies_allow_what_they_name() {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "AWS": "arn:aws:iam::222222222222:role/orgconnect" },
                "Action": ["organizations:List*", "organizations:DescribeOrganization"],
                "Resource": "*",
            }],
        });
        let role = "arn:aws:iam::222222222222:role/orgconnect";
        assert!(policy_allows(
            &policy,
            role,
            "222222222222",
            "organizations:ListAccounts"
        ));
        assert!(!policy_allows(
            &policy,
            role,
            "222222222222",
            "organizations:DescribeAccount"
        ));
        let other = "arn:aws:iam::222222222222:role/other";
        assert!(!policy_allows(
            &policy,
            other,
            "222222222222",
            "organizations:ListRoots"
        ));
        assert!(glob_match("organizations:list*", "organizations:listroots"));
        assert!(!glob_match(
            "organizations:list*",
            "organizations:describeaccount"
        ));
    }

    #[test]
    fn trust_policies_check_the_principal_and_the_external_id() {
        let trust = serde_json::json!({ "Statement": [{
            "Effect": "Allow",
            "Principal": { "AWS": "arn:aws:iam::111111111111:role/operator" },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "sts:ExternalId": "the-id" } },
        }]});
        let session = "arn:aws:sts::111111111111:assumed-role/operator/s";
        assert!(trust_allows(
            &trust,
            session,
            "111111111111",
            Some("the-id")
        ));
        assert!(!trust_allows(
            &trust,
            session,
            "111111111111",
            Some("other")
        ));
        assert!(!trust_allows(&trust, session, "111111111111", None));
        let other = "arn:aws:sts::111111111111:assumed-role/other/s";
        assert!(!trust_allows(&trust, other, "111111111111", Some("the-id")));
        let root = serde_json::json!({ "Statement": {
            "Effect": "Allow",
            "Principal": { "AWS": "arn:aws:iam::111111111111:root" },
            "Action": "sts:AssumeRole",
        }});
        assert!(trust_allows(&root, other, "111111111111", None));
        assert!(!trust_allows(&root, other, "222222222222", None));
    }

    #[test]
    fn identity_policies_match_actions_and_resources() {
        let policy = serde_json::json!({ "Statement": [
            { "Effect": "Allow", "Action": ["organizations:List*"], "Resource": "*" },
            { "Effect": "Allow", "Action": "sts:AssumeRole",
              "Resource": "arn:aws:iam::*:role/OrganizationAccountAccessRole" },
        ]});
        let policies = [policy];
        let none = Context::new();
        assert!(identity_allows(
            &policies,
            "organizations:ListAccounts",
            "*",
            &none
        ));
        assert!(!identity_allows(
            &policies,
            "organizations:DescribeOrganization",
            "*",
            &none
        ));
        assert!(identity_allows(
            &policies,
            "sts:AssumeRole",
            "arn:aws:iam::222222222222:role/OrganizationAccountAccessRole",
            &none
        ));
        assert!(!identity_allows(
            &policies,
            "sts:AssumeRole",
            "arn:aws:iam::222222222222:role/Other",
            &none
        ));
        // The organization scope of the managing-role template, with its policy variable.
        let scoped = [serde_json::json!({ "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*",
            "Condition": { "StringEquals": { "aws:ResourceOrgID": "${aws:PrincipalOrgID}" } },
        }]})];
        let context = |resource_org: &str| {
            Context::from([
                ("aws:principalorgid".to_owned(), "o-mine".to_owned()),
                ("aws:resourceorgid".to_owned(), resource_org.to_owned()),
            ])
        };
        let role = "arn:aws:iam::222222222222:role/X";
        assert!(identity_allows(
            &scoped,
            "sts:AssumeRole",
            role,
            &context("o-mine")
        ));
        assert!(!identity_allows(
            &scoped,
            "sts:AssumeRole",
            role,
            &context("o-other")
        ));
        assert!(!identity_allows(&scoped, "sts:AssumeRole", role, &none));
        assert_eq!(
            with_service(
                "AWS4-HMAC-SHA256 Credential=AKIA/20261201/us-east-1/sts/aws4_request, SignedHeaders=host",
                "iam"
            ),
            "AWS4-HMAC-SHA256 Credential=AKIA/20261201/us-east-1/iam/aws4_request, SignedHeaders=host"
        );
    }

    #[test]
    fn decodes_form_values() {
        let body = "Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2FX&Version=2011-06-15";
        assert_eq!(form_value(body, "Action").as_deref(), Some("AssumeRole"));
        assert_eq!(
            form_value(body, "RoleArn").as_deref(),
            Some("arn:aws:iam::123456789012:role/X")
        );
    }
}
