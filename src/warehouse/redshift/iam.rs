//! iam: the Redshift warehouse's sign-in with `auth = "iam"` — temporary database
//! credentials from the Redshift API (a provisioned cluster's `GetClusterCredentials`
//! for the URL's user and database, or a Serverless workgroup's `GetCredentials` for
//! the database, as the user the caller's IAM identity maps to), asked for when a new
//! connection needs them and reused until shortly before they expire — and what a
//! failure to get them means.
//!
//! A temporary password only admits new connections: one already open outlives it, so
//! only connections opened later (a reconnect after a lost connection) need fresh ones.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_redshift::config::http::HttpResponse;
use aws_sdk_redshift::error::{ProvideErrorMetadata, SdkError};
use tokio::sync::{Mutex, OnceCell};

use crate::config::RedshiftFile;
use crate::warehouse::FailureClass;

/// Credentials are asked for again once they expire within this margin, so a
/// connection never signs in with a password about to lapse mid-handshake.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How long the credentials asked for stay valid: the API's longest (900 to 3600 s),
/// so a steady run asks about once an hour.
const DURATION_SECONDS: i32 = 3600;

/// Why credentials could not be had, with its class: refused or pointing at nothing is
/// configuration; throttled, unreachable or a server fault is transient.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct IamError {
    pub message: String,
    pub class: FailureClass,
}

/// A temporary database user and password, and when the password lapses.
#[derive(Clone, PartialEq, Eq)]
pub struct DbCredentials {
    /// The user to connect as: `IAM:<user>` (`IAMA:<user>` when created at sign-in).
    pub user: String,
    pub password: String,
    pub expiration: SystemTime,
}

impl std::fmt::Debug for DbCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("DbCredentials")
            .field("user", &self.user)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

impl DbCredentials {
    /// Whether a connection opened at `now` may still sign in with these.
    pub fn usable_at(&self, now: SystemTime) -> bool {
        self.expiration > now + REFRESH_MARGIN
    }
}

/// The credentials last obtained, handed out while [`DbCredentials::usable_at`] holds.
#[derive(Debug, Default)]
pub struct CredentialCache {
    held: Mutex<Option<DbCredentials>>,
}

impl CredentialCache {
    /// The held credentials if usable at `now`, else those `fetch` obtains (kept for
    /// the next connection). Concurrent callers wait for one fetch.
    pub async fn get<F, Fut>(&self, now: SystemTime, fetch: F) -> Result<DbCredentials, IamError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<DbCredentials, IamError>>,
    {
        let mut held = self.held.lock().await;
        if let Some(credentials) = held.as_ref().filter(|held| held.usable_at(now)) {
            return Ok(credentials.clone());
        }
        let fresh = fetch().await?;
        *held = Some(fresh.clone());
        Ok(fresh)
    }
}

/// What is asked for the credentials, from the pipeline file.
#[derive(Debug, Clone)]
enum Request {
    /// A provisioned cluster's `GetClusterCredentials`.
    Cluster(ClusterRequest),
    /// A Serverless workgroup's `GetCredentials`: the user is the one the caller's IAM
    /// identity maps to (`IAM:<user>`, `IAMR:<role>`), not the URL's.
    Workgroup {
        workgroup: String,
        database: Option<String>,
    },
}

#[derive(Debug, Clone)]
struct ClusterRequest {
    cluster: String,
    user: String,
    database: Option<String>,
    auto_create: bool,
    groups: Vec<String>,
}

impl Request {
    /// The API action asked, as an IAM policy names it.
    fn action(&self) -> &'static str {
        match self {
            Request::Cluster(_) => "redshift:GetClusterCredentials",
            Request::Workgroup { .. } => "redshift-serverless:GetCredentials",
        }
    }

    /// What the credentials are for, as a failure names it.
    fn target(&self) -> String {
        match self {
            Request::Cluster(request) => format!(
                "for user {:?} on Redshift cluster {:?} (GetClusterCredentials)",
                request.user, request.cluster
            ),
            Request::Workgroup { workgroup, .. } => {
                format!("on Redshift Serverless workgroup {workgroup:?} (GetCredentials)")
            }
        }
    }

    /// The fix for a refused request: the IAM permissions the request needs.
    fn policy_hint(&self) -> String {
        match self {
            Request::Cluster(request) => request.policy_hint(),
            Request::Workgroup { workgroup, .. } => format!(
                "allow redshift-serverless:GetCredentials on \
                 arn:aws:redshift-serverless:REGION:ACCOUNT:workgroup/WORKGROUP_ID (the ID of \
                 workgroup {workgroup:?}); and check warehouse.workgroup and warehouse.region"
            ),
        }
    }
}

impl ClusterRequest {
    /// The IAM permissions `GetClusterCredentials` needs for this user, database and
    /// groups.
    fn policy_hint(&self) -> String {
        let arn = |kind: &str, name: &str| {
            format!(
                "arn:aws:redshift:REGION:ACCOUNT:{kind}:{}/{name}",
                self.cluster
            )
        };
        let mut hint = format!(
            "allow redshift:GetClusterCredentials on {} and {}",
            arn("dbuser", &self.user),
            arn("dbname", self.database.as_deref().unwrap_or("*"))
        );
        if self.auto_create {
            hint.push_str(", redshift:CreateClusterUser on the same dbuser ARN");
        }
        for group in &self.groups {
            hint.push_str(&format!(
                ", redshift:JoinGroup on {}",
                arn("dbgroup", group)
            ));
        }
        hint.push_str("; and check warehouse.cluster_identifier and warehouse.region");
        hint
    }
}

/// `auth = "iam"`: the Redshift API client (made on first use: it needs the tokio
/// runtime) and the credentials it last gave.
#[derive(Debug)]
pub struct IamAuth {
    request: Request,
    region: Option<String>,
    endpoint_url: Option<String>,
    client: OnceCell<aws_sdk_redshift::Client>,
    serverless: OnceCell<aws_sdk_redshiftserverless::Client>,
    cache: CredentialCache,
}

impl IamAuth {
    /// `None` for `auth = "password"`. The file was validated: a cluster and a user, or
    /// a workgroup.
    pub fn new(file: &RedshiftFile) -> Result<Option<IamAuth>, IamError> {
        if file.auth != crate::config::RedshiftAuth::Iam {
            return Ok(None);
        }
        let config = |problem: &str| IamError {
            message: format!("warehouse: {problem}"),
            class: FailureClass::Config,
        };
        let url: tokio_postgres::Config = file
            .url
            .parse()
            .map_err(|_| config("warehouse.url is not a PostgreSQL URL"))?;
        let database = url.get_dbname().map(str::to_owned);
        let request = match (&file.cluster_identifier, &file.workgroup) {
            (Some(cluster), None) => {
                let user = url
                    .get_user()
                    .ok_or_else(|| config("warehouse.url names no user to ask credentials for"))?;
                Request::Cluster(ClusterRequest {
                    cluster: cluster.clone(),
                    user: user.to_owned(),
                    database,
                    auto_create: file.auto_create,
                    groups: file.db_groups.clone(),
                })
            }
            (None, Some(workgroup)) => Request::Workgroup {
                workgroup: workgroup.clone(),
                database,
            },
            _ => {
                return Err(config(
                    "auth = \"iam\" needs exactly one of cluster_identifier and workgroup",
                ));
            }
        };
        Ok(Some(IamAuth {
            request,
            region: file.region.clone().or_else(|| {
                url.get_hosts().iter().find_map(|host| match host {
                    tokio_postgres::config::Host::Tcp(name) => {
                        region_of_host(name).map(str::to_owned)
                    }
                    tokio_postgres::config::Host::Unix(_) => None,
                })
            }),
            endpoint_url: file.endpoint_url.clone(),
            client: OnceCell::new(),
            serverless: OnceCell::new(),
            cache: CredentialCache::default(),
        }))
    }

    /// Asks a provisioned cluster's credentials through `client` instead of one made
    /// from the AWS default chain (for credentials the chain cannot find, such as an
    /// emulator's).
    pub fn with_client(&self, client: aws_sdk_redshift::Client) -> IamAuth {
        IamAuth {
            request: self.request.clone(),
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            client: OnceCell::new_with(Some(client)),
            serverless: OnceCell::new(),
            cache: CredentialCache::default(),
        }
    }

    /// Asks a Serverless workgroup's credentials through `client` instead of one made
    /// from the AWS default chain.
    pub fn with_serverless_client(&self, client: aws_sdk_redshiftserverless::Client) -> IamAuth {
        IamAuth {
            request: self.request.clone(),
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            client: OnceCell::new(),
            serverless: OnceCell::new_with(Some(client)),
            cache: CredentialCache::default(),
        }
    }

    /// The API action the credentials are asked with, as an IAM policy names it:
    /// `redshift:GetClusterCredentials` or `redshift-serverless:GetCredentials`.
    pub fn action(&self) -> &'static str {
        self.request.action()
    }

    /// Credentials for a new connection: those held, unless they expire within
    /// [`REFRESH_MARGIN`].
    pub async fn credentials(&self) -> Result<DbCredentials, IamError> {
        self.cache.get(SystemTime::now(), || self.fetch()).await
    }

    async fn shared_config(&self) -> aws_config::SdkConfig {
        crate::source::aws::shared_config(self.region.as_deref(), self.endpoint_url.as_deref())
            .await
    }

    async fn fetch(&self) -> Result<DbCredentials, IamError> {
        let credentials = match &self.request {
            Request::Cluster(request) => self.fetch_cluster(request).await?,
            Request::Workgroup {
                workgroup,
                database,
            } => self.fetch_workgroup(workgroup, database.as_deref()).await?,
        };
        tracing::info!(
            user = %credentials.user,
            expires = %humantime::format_rfc3339_seconds(credentials.expiration),
            "obtained temporary Redshift credentials {}",
            self.request.target()
        );
        Ok(credentials)
    }

    async fn fetch_cluster(&self, request: &ClusterRequest) -> Result<DbCredentials, IamError> {
        let client = self
            .client
            .get_or_init(|| async { aws_sdk_redshift::Client::new(&self.shared_config().await) })
            .await;
        let output = client
            .get_cluster_credentials()
            .cluster_identifier(&request.cluster)
            .db_user(&request.user)
            .set_db_name(request.database.clone())
            .auto_create(request.auto_create)
            .set_db_groups((!request.groups.is_empty()).then(|| request.groups.clone()))
            .duration_seconds(DURATION_SECONDS)
            .send()
            .await
            .map_err(|error| self.failure(&error))?;
        self.answered(output.db_user(), output.db_password(), output.expiration())
    }

    async fn fetch_workgroup(
        &self,
        workgroup: &str,
        database: Option<&str>,
    ) -> Result<DbCredentials, IamError> {
        let client = self
            .serverless
            .get_or_init(|| async {
                aws_sdk_redshiftserverless::Client::new(&self.shared_config().await)
            })
            .await;
        let output = client
            .get_credentials()
            .workgroup_name(workgroup)
            .set_db_name(database.map(str::to_owned))
            .duration_seconds(DURATION_SECONDS)
            .send()
            .await
            .map_err(|error| self.failure(&error))?;
        self.answered(output.db_user(), output.db_password(), output.expiration())
    }

    /// The credentials in an answer, or which part it lacked (transient: the next
    /// connection asks again).
    fn answered(
        &self,
        user: Option<&str>,
        password: Option<&str>,
        expiration: Option<&aws_sdk_redshift::primitives::DateTime>,
    ) -> Result<DbCredentials, IamError> {
        let incomplete = |what: &str| IamError {
            message: format!(
                "the temporary credentials {} came without {what}",
                self.request.target()
            ),
            class: FailureClass::Transient,
        };
        Ok(DbCredentials {
            user: user.ok_or_else(|| incomplete("a user"))?.to_owned(),
            password: password.ok_or_else(|| incomplete("a password"))?.to_owned(),
            expiration: expiration
                .and_then(|at| SystemTime::try_from(*at).ok())
                .ok_or_else(|| incomplete("an expiration"))?,
        })
    }

    fn failure<E>(&self, error: &SdkError<E, HttpResponse>) -> IamError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let request = &self.request;
        let status = error
            .raw_response()
            .map(|response| response.status().as_u16());
        let code = error.code();
        let outcome = match error {
            SdkError::ServiceError(_) => Outcome::Refused,
            SdkError::ConstructionFailure(_) => Outcome::NotSent,
            _ => Outcome::NoAnswer,
        };
        let what = format!(
            "cannot get temporary credentials {}: {}",
            request.target(),
            crate::source::aws::sdk_error(error)
        );
        // The request is signed before it is sent: an AWS identity that could not be
        // found fails there, and is classed as the staging keys' chain is.
        if let Some(chain) = chain_error(error) {
            let class = super::session::chain_failure_class(chain);
            let message = match class {
                FailureClass::Config => format!(
                    "{what}: give tracktable an AWS identity (environment, profile, SSO, \
                     instance or task role) allowed {}",
                    request.action()
                ),
                _ => what,
            };
            return IamError { message, class };
        }
        let class = failure_class(outcome, code, status);
        let message = match (class, outcome) {
            (FailureClass::Config, Outcome::Refused) => {
                format!("{what}: {}", request.policy_hint())
            }
            (FailureClass::Config, _) => {
                format!("{what}: check warehouse.region and warehouse.endpoint_url")
            }
            _ => what,
        };
        IamError { message, class }
    }
}

/// The credentials provider's own failure, if that is what stopped the request.
fn chain_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a CredentialsError> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(chain) = error.downcast_ref::<CredentialsError>() {
            return Some(chain);
        }
        next = error.source();
    }
    None
}

/// The region of a Redshift endpoint (`NAME.ID.REGION.redshift.amazonaws.com`, or
/// `WORKGROUP.ACCOUNT.REGION.redshift-serverless.amazonaws.com`), for a file that names
/// none: the API is asked in the warehouse's region.
fn region_of_host(host: &str) -> Option<&str> {
    let rest = [
        ".redshift.amazonaws.com",
        ".redshift.amazonaws.com.cn",
        ".redshift-serverless.amazonaws.com",
        ".redshift-serverless.amazonaws.com.cn",
    ]
    .iter()
    .find_map(|suffix| host.strip_suffix(suffix))?;
    let region = rest.rsplit('.').next()?;
    let valid = !region.is_empty()
        && region.contains('-')
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then_some(region)
}

/// How far a failed request got.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// The service answered with an error.
    Refused,
    /// It could not be built (no region, a bad endpoint): never sent.
    NotSent,
    /// Sent, with no usable answer (timeout, network, a garbled response).
    NoAnswer,
}

/// The class of a failed `GetClusterCredentials` or `GetCredentials`: the service
/// refusing the request (access denied, no such cluster or workgroup, a bad parameter)
/// is configuration, except throttling, a cluster busy changing state and server
/// faults; a request that could not be built is configuration; one that got no answer
/// is transient.
fn failure_class(outcome: Outcome, code: Option<&str>, status: Option<u16>) -> FailureClass {
    match outcome {
        Outcome::Refused => {}
        Outcome::NotSent => return FailureClass::Config,
        Outcome::NoAnswer => return FailureClass::Transient,
    }
    let transient_codes = [
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServerException",
        "InvalidClusterState",
    ];
    if code.is_some_and(|code| transient_codes.contains(&code))
        || status.is_some_and(|status| status >= 500)
    {
        FailureClass::Transient
    } else {
        FailureClass::Config
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, SystemTime};

    use super::Outcome::{NoAnswer, NotSent, Refused};
    use super::{CredentialCache, DbCredentials, IamError, REFRESH_MARGIN, failure_class};
    use crate::warehouse::FailureClass::{Config, Transient};

    /// Credentials numbered by the fetch that made them, valid 15 minutes from `start`.
    async fn fetched(
        cache: &CredentialCache,
        calls: &AtomicUsize,
        start: SystemTime,
        at: SystemTime,
    ) -> DbCredentials {
        cache
            .get(at, || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, IamError>(DbCredentials {
                    user: format!("IAM:loader{n}"),
                    password: format!("secret{n}"),
                    expiration: start
                        + Duration::from_secs(15 * 60)
                        + Duration::from_secs(3600 * n as u64),
                })
            })
            .await
            .expect("credentials")
    }

    #[tokio::test]
    async fn credentials_are_reused_until_five_minutes_before_they_expire() {
        let cache = CredentialCache::default();
        let calls = AtomicUsize::new(0);
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let expiry = start + Duration::from_secs(15 * 60);
        let first = fetched(&cache, &calls, start, start).await;
        assert_eq!(first.user, "IAM:loader0");
        // Up to the margin before expiry the held ones serve every new connection.
        let just_before = expiry - REFRESH_MARGIN - Duration::from_secs(1);
        let again = fetched(&cache, &calls, start, just_before).await;
        assert_eq!((again, calls.load(Ordering::SeqCst)), (first.clone(), 1));
        // From the margin on, a new connection gets fresh ones, kept in turn.
        let later = fetched(&cache, &calls, start, expiry - REFRESH_MARGIN).await;
        assert_eq!(later.user, "IAM:loader1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let reused = fetched(&cache, &calls, start, expiry).await;
        assert_eq!((reused, calls.load(Ordering::SeqCst)), (later, 2));
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_nothing_and_is_tried_again() {
        let cache = CredentialCache::default();
        let now = SystemTime::now();
        let error = cache
            .get(now, || async {
                Err(IamError {
                    message: "throttled".into(),
                    class: Transient,
                })
            })
            .await
            .expect_err("the fetch failed");
        assert_eq!(error.class, Transient);
        let calls = AtomicUsize::new(0);
        let got = fetched(&cache, &calls, now, now).await;
        assert_eq!((got.user.as_str(), calls.into_inner()), ("IAM:loader0", 1));
    }

    #[test]
    fn the_password_is_not_in_debug_output() {
        let credentials = DbCredentials {
            user: "IAM:loader".into(),
            password: "hunter2-temporary".into(),
            expiration: SystemTime::UNIX_EPOCH,
        };
        let shown = format!("{credentials:?}");
        assert!(
            shown.contains("IAM:loader") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn the_region_is_read_from_a_redshift_endpoint() {
        use super::region_of_host;
        assert_eq!(
            region_of_host("examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com"),
            Some("us-west-2")
        );
        assert_eq!(
            region_of_host("c.abc.cn-north-1.redshift.amazonaws.com.cn"),
            Some("cn-north-1")
        );
        assert_eq!(
            region_of_host(
                "default-wg.123456789012.eu-central-1.redshift-serverless.amazonaws.com"
            ),
            Some("eu-central-1")
        );
        assert_eq!(region_of_host("127.0.0.1"), None);
        assert_eq!(region_of_host("redshift.example.com"), None);
        assert_eq!(region_of_host("x.redshift.amazonaws.com"), None);
    }

    /// An identity the default chain cannot find fails as configuration, saying so;
    /// one whose provider timed out may answer later.
    #[tokio::test]
    async fn an_aws_identity_that_cannot_be_found_is_configuration() {
        use aws_credential_types::provider::error::CredentialsError;
        use aws_credential_types::provider::{ProvideCredentials, future};
        use aws_sdk_redshift::config::{BehaviorVersion, Region, SharedCredentialsProvider};

        #[derive(Debug)]
        struct Failing(fn() -> CredentialsError);
        impl ProvideCredentials for Failing {
            fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                future::ProvideCredentials::ready(Err((self.0)()))
            }
        }

        let file: crate::config::RedshiftFile = toml::from_str(
            "url = \"postgres://loader@c.abc.us-east-1.redshift.amazonaws.com:5439/db\"\n\
             schema = \"web\"\nauth = \"iam\"\ncluster_identifier = \"c\"\n\
             [staging]\nbucket = \"b\"\niam_role = \"default\"\n",
        )
        .expect("a Redshift warehouse");
        let auth = super::IamAuth::new(&file)
            .expect("valid")
            .expect("auth = \"iam\"");
        assert_eq!(auth.region.as_deref(), Some("us-east-1"), "from the host");
        for (failure, class) in [
            (
                (|| CredentialsError::not_loaded("no keys anywhere")) as fn() -> CredentialsError,
                Config,
            ),
            (
                || CredentialsError::provider_timed_out(Duration::from_secs(5)),
                Transient,
            ),
        ] {
            let config = aws_sdk_redshift::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                // Nothing is sent: signing fails first.
                .endpoint_url("http://127.0.0.1:9")
                .credentials_provider(SharedCredentialsProvider::new(Failing(failure)))
                .build();
            let auth = auth.with_client(aws_sdk_redshift::Client::from_conf(config));
            let error = auth.credentials().await.expect_err("no identity");
            assert_eq!(error.class, class, "{}", error.message);
            if class == Config {
                assert!(error.message.contains("AWS identity"), "{}", error.message);
            }
        }
    }

    #[test]
    fn a_workgroup_asks_serverless_in_the_region_of_its_host() {
        let file: crate::config::RedshiftFile = toml::from_str(
            "url = \"postgres://default-wg.123456789012.eu-central-1.redshift-serverless.amazonaws.com:5439/dev\"\n\
             schema = \"web\"\nauth = \"iam\"\nworkgroup = \"default-wg\"\n\
             [staging]\nbucket = \"b\"\niam_role = \"default\"\n",
        )
        .expect("a Redshift warehouse");
        let auth = super::IamAuth::new(&file)
            .expect("valid")
            .expect("auth = \"iam\"");
        assert_eq!(auth.action(), "redshift-serverless:GetCredentials");
        assert_eq!(auth.region.as_deref(), Some("eu-central-1"));
        let hint = auth.request.policy_hint();
        assert!(
            hint.starts_with(
                "allow redshift-serverless:GetCredentials on \
                 arn:aws:redshift-serverless:REGION:ACCOUNT:workgroup/WORKGROUP_ID"
            ) && hint.contains("\"default-wg\""),
            "{hint}"
        );
    }

    #[test]
    fn refusals_are_configuration_and_throttling_is_transient() {
        let cases = [
            (Refused, Some("AccessDenied"), Some(403), Config),
            (Refused, Some("ClusterNotFound"), Some(404), Config),
            (Refused, Some("ClusterNotFoundFault"), Some(400), Config),
            (Refused, Some("InvalidParameterValue"), Some(400), Config),
            (Refused, Some("Throttling"), Some(400), Transient),
            (Refused, Some("RequestLimitExceeded"), Some(400), Transient),
            (Refused, Some("InvalidClusterState"), Some(400), Transient),
            (
                Refused,
                Some("ResourceNotFoundException"),
                Some(400),
                Config,
            ),
            (Refused, Some("AccessDeniedException"), Some(400), Config),
            (Refused, Some("ThrottlingException"), Some(400), Transient),
            (
                Refused,
                Some("InternalServerException"),
                Some(500),
                Transient,
            ),
            (Refused, None, Some(503), Transient),
            (NotSent, None, None, Config),
            (NoAnswer, None, None, Transient),
        ];
        for (outcome, code, status, class) in cases {
            assert_eq!(
                failure_class(outcome, code, status),
                class,
                "{code:?} {status:?}"
            );
        }
    }
}
