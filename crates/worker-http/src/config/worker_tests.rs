//! `Settings::from_env`: defaults, refusals that name their variable, instance ids.

use super::*;
use std::collections::HashMap;
use std::path::Path;

fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::from_env(&move |k: &str| map.get(k).cloned())
}

const BASE: [(&str, &str); 2] = [
    ("DATABASE_URL", "postgres://u@h/db"),
    ("VIDEO_WORKER_AUTH_TOKEN", "0123456789abcdef"),
];

#[test]
fn defaults_match_the_documented_table() {
    let s = settings(&BASE).unwrap();
    assert_eq!(s.port, 8080);
    assert_eq!(s.lease_ttl, Duration::from_secs(60));
    assert_eq!(s.heartbeat_interval, Duration::from_secs(15));
    assert_eq!(s.max_runtime, Duration::from_secs(1200));
    assert_eq!(s.max_attempts, 5);
    assert_eq!(s.shutdown_grace, Duration::from_secs(8));
}

#[test]
fn the_piper_backend_defaults_to_the_setup_scripts_install_and_takes_other_paths() {
    let s = settings(&BASE).unwrap();
    assert_eq!(s.media.tts_backend, "espeak", "espeak-ng needs nothing");
    assert_eq!(s.media.piper_bin, Path::new(".voices/bin/piper"));
    assert_eq!(
        s.media.piper_model,
        Path::new(".voices/en_US-joe-medium.onnx")
    );
    let mut vars = BASE.to_vec();
    vars.extend([
        ("VIDEO_TTS_BACKEND", "piper"),
        ("VIDEO_PIPER_BIN", "/opt/voices/bin/piper"),
        ("VIDEO_PIPER_MODEL", "/v/x.onnx"),
    ]);
    let s = settings(&vars).unwrap();
    assert_eq!(s.media.tts_backend, "piper");
    assert_eq!(s.media.piper_bin, Path::new("/opt/voices/bin/piper"));
    assert_eq!(s.media.piper_model, Path::new("/v/x.onnx"));
    vars[2] = ("VIDEO_TTS_BACKEND", "festival");
    assert_eq!(settings(&vars).unwrap_err().var, "VIDEO_TTS_BACKEND");
}

#[test]
fn database_url_is_required_with_no_in_memory_fallback() {
    let e = settings(&[BASE[1]]).unwrap_err();
    assert_eq!(e.var, "DATABASE_URL");
    let e = settings(&[("DATABASE_URL", "mysql://x"), BASE[1]]).unwrap_err();
    assert_eq!(e.var, "DATABASE_URL");
}

#[test]
fn serve_refuses_to_start_without_auth() {
    let e = settings(&[BASE[0]]).unwrap_err();
    assert_eq!(e.var, "VIDEO_WORKER_AUTH_TOKEN");
    let e = settings(&[BASE[0], ("VIDEO_WORKER_OIDC_AUDIENCE", "https://w")]).unwrap_err();
    assert_eq!(e.var, "VIDEO_WORKER_OIDC_ALLOWED_EMAILS");
    let s = settings(&[
        BASE[0],
        ("VIDEO_WORKER_OIDC_AUDIENCE", "https://w"),
        (
            "VIDEO_WORKER_OIDC_ALLOWED_EMAILS",
            "a@x.iam.gserviceaccount.com, b@x",
        ),
    ])
    .unwrap();
    let oidc = s.oidc.unwrap();
    assert_eq!(oidc.allowed_emails, ["a@x.iam.gserviceaccount.com", "b@x"]);
    assert_eq!(oidc.issuers, push_auth::OidcConfig::google_issuers());
}

#[test]
fn heartbeat_must_be_below_half_the_ttl() {
    let mut vars = BASE.to_vec();
    vars.push(("VIDEO_JOB_LEASE_TTL_SECONDS", "30"));
    vars.push(("VIDEO_JOB_HEARTBEAT_INTERVAL_SECONDS", "15"));
    assert_eq!(
        settings(&vars).unwrap_err().var,
        "VIDEO_JOB_HEARTBEAT_INTERVAL_SECONDS"
    );
    vars.pop();
    vars.push(("VIDEO_JOB_HEARTBEAT_INTERVAL_SECONDS", "14"));
    assert!(settings(&vars).is_ok());
}

#[test]
fn bad_numbers_name_their_variable() {
    for (var, value) in [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("VIDEO_JOB_MAX_ATTEMPTS", "0"),
        ("VIDEO_JOB_MAX_RUNTIME_SECONDS", "-5"),
        ("VIDEO_JOB_LEASE_TTL_SECONDS", "1.5"),
        ("VIDEO_WORKER_PIPELINE", "magic"),
        ("VIDEO_WORKER_INSTANCE_ID", "has space"),
        ("VIDEO_WORKER_AUTH_TOKEN", "short"),
    ] {
        let mut vars = BASE.to_vec();
        vars.retain(|(k, _)| *k != var);
        vars.push((var, value));
        assert_eq!(settings(&vars).unwrap_err().var, var, "{var}={value}");
    }
}

#[test]
fn a_configured_instance_id_still_gets_a_suffix_per_start() {
    let mut vars = BASE.to_vec();
    vars.push(("VIDEO_WORKER_INSTANCE_ID", "worker-a"));
    let (a, b) = (settings(&vars).unwrap(), settings(&vars).unwrap());
    assert!(a.instance_id.as_str().starts_with("worker-a-"));
    assert_ne!(a.instance_id, b.instance_id);
    vars.pop();
    vars.push(("VIDEO_WORKER_SHUTDOWN_GRACE_SECONDS", "30"));
    assert_eq!(
        settings(&vars).unwrap_err().var,
        "VIDEO_WORKER_SHUTDOWN_GRACE_SECONDS"
    );
}

#[test]
fn default_instance_ids_differ_per_start() {
    let env = |k: &str| (k == "K_REVISION").then(|| "worker-00042-abc".to_owned());
    let (a, b) = (default_instance_id(&env), default_instance_id(&env));
    assert!(a.as_str().starts_with("worker-00042-abc-"));
    assert_ne!(a, b);
}

#[test]
fn the_scratch_budget_defaults_to_512_mib_and_refuses_what_cannot_work() {
    assert_eq!(settings(&BASE).unwrap().scratch_max_bytes, 512 << 20);
    let mut vars = BASE.to_vec();
    vars.push(("VIDEO_WORKER_SCRATCH_MAX_BYTES", "1073741824"));
    assert_eq!(settings(&vars).unwrap().scratch_max_bytes, 1 << 30);
    for bad in ["1000", "512MiB", "-1"] {
        vars.pop();
        vars.push(("VIDEO_WORKER_SCRATCH_MAX_BYTES", bad));
        assert_eq!(
            settings(&vars).unwrap_err().var,
            "VIDEO_WORKER_SCRATCH_MAX_BYTES",
            "{bad}"
        );
    }
}
