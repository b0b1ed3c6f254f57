//! `video-worker demo`: the whole product on one machine with no database and no
//! configuration. An in-memory repository, the real `/jobs/run` on a loopback listener, and
//! an in-process queue ([`queue::loopback`]) that pushes to it the way Cloud Tasks does
//! (headers, retries with backoff on any non-2xx), while a progress bar follows the job.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use domain::{InstanceId, JobId, JobRepository, JobStatus, NewJob};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use queue::loopback::LoopbackQueue;
use repo_mem::MemRepository;
use runner::RunnerConfig;
use runner::scratch::{ClaimError, WorkDirClaim};
use video::storyboard::Storyboard;
use video::video::PipelineStats;

use crate::config::MediaSettings;
use crate::{AppParts, Application, Readiness};

/// The storyboard shown when none is given.
pub const DEFAULT_STORYBOARD: &str = include_str!("../../../examples/en-fractions-beats.json");

/// Follows a job on the terminal: an overall bar and a bar for the stage's segments. Where
/// stderr is not a terminal, it prints a line per stage instead.
struct Progress {
    overall: ProgressBar,
    stage: ProgressBar,
    plain: bool,
    last_stage: Option<domain::Stage>,
}

impl Progress {
    fn new() -> Self {
        let multi = MultiProgress::new();
        let plain = ProgressDrawTarget::stderr().is_hidden();
        let overall = multi.add(ProgressBar::new(100));
        overall.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:40.green/white}] {pos:>3}%  {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        overall.set_prefix("overall");
        let stage = multi.add(ProgressBar::new(1));
        stage.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:40.cyan/white}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self {
            overall,
            stage,
            plain,
            last_stage: None,
        }
    }

    fn show(&mut self, job: &domain::Job) {
        let Some(p) = &job.progress else { return };
        self.overall.set_position(u64::from(p.percent.get()));
        if self.last_stage != Some(p.stage) {
            self.last_stage = Some(p.stage);
            self.stage.set_prefix(p.stage.as_str());
            self.stage.set_position(0);
            self.stage.set_length(1);
            if self.plain {
                eprintln!("{:>3}%  {}", p.percent.get(), p.stage);
            }
        }
        if let Some(segment) = p.segment {
            self.stage.set_length(u64::from(segment.total()));
            self.stage.set_position(u64::from(segment.index()) + 1);
        }
        if let Some(message) = &p.message {
            self.stage.set_message(message.clone());
        }
    }

    fn finish(&self) {
        self.overall.finish();
        self.stage.finish_and_clear();
    }
}

/// Options of `demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// A storyboard file; the built-in English example if `None`.
    pub storyboard: Option<PathBuf>,
    /// Where the MP4 goes.
    pub out: PathBuf,
    /// The voice; `None`: Piper when it is installed, else espeak-ng.
    pub voice: Option<DemoVoice>,
}

/// The offline voices the demo can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoVoice {
    /// Piper's natural English voice (`scripts/setup --voices` installs it).
    Piper,
    /// espeak-ng: every language, robotic.
    Espeak,
}

/// Runs the demo; returns the path of the MP4.
pub async fn run(options: DemoOptions) -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    let text = match &options.storyboard {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => DEFAULT_STORYBOARD.to_owned(),
    };
    let input: serde_json::Value =
        serde_json::from_str(&text).context("the storyboard is not JSON")?;
    let board = Storyboard::from_json(&input).map_err(|e| {
        let lines: Vec<String> = e.0.iter().map(|f| format!("  {f}")).collect();
        anyhow::anyhow!("the storyboard is invalid:\n{}", lines.join("\n"))
    })?;
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let out = options.out.canonicalize().unwrap_or(options.out.clone());
    let env = |var: &str| std::env::var(var).ok();
    let (piper_bin, piper_model) = MediaSettings::piper_paths(&env);
    let installed = piper_bin.exists() && piper_model.exists();
    let voice = match options.voice {
        Some(DemoVoice::Piper) if !installed => bail!(
            "--voice piper: piper is not installed at {} with the voice {}; run \
             scripts/setup --voices (or set VIDEO_PIPER_BIN and VIDEO_PIPER_MODEL)",
            piper_bin.display(),
            piper_model.display()
        ),
        Some(voice) => voice,
        None if installed => DemoVoice::Piper,
        None => DemoVoice::Espeak,
    };
    let media = MediaSettings {
        artifact_store_url: out.display().to_string(),
        tts_backend: match voice {
            DemoVoice::Piper => "piper",
            DemoVoice::Espeak => "espeak",
        }
        .into(),
        tts_url: String::new(),
        tts_api_key: None,
        tts_voice: None,
        tts_model: None,
        piper_bin,
        piper_model,
    };
    // Shared by demo runs, so a second run reuses the first one's segments; a demo started
    // while another runs works in a directory of its own, removed when it ends.
    let shared = std::env::temp_dir().join("video-worker-demo");
    let (work, _own) = match WorkDirClaim::acquire(&shared) {
        Ok(claim) => (claim, None),
        Err(ClaimError::InUse { .. }) => {
            let own =
                std::env::temp_dir().join(format!("video-worker-demo-{}", std::process::id()));
            (WorkDirClaim::acquire(&own)?, Some(RemovedOnDrop(own)))
        }
        Err(other) => return Err(other.into()),
    };
    let pipeline = crate::media::video_pipeline(
        &media,
        &work,
        crate::config::DEFAULT_SCRATCH_MAX_BYTES,
        Arc::new(PipelineStats::default()),
    )?;
    let repo = Arc::new(MemRepository::new());
    let runner = RunnerConfig {
        instance_id: InstanceId::new(format!("demo-{:08x}", fastrand::u32(..)))?,
        lease_ttl: Duration::from_secs(60),
        heartbeat_interval: Duration::from_secs(15),
        max_runtime: Duration::from_secs(1200),
        max_attempts: 5,
        drain_grace: Duration::from_secs(8),
        progress_interval: Duration::from_millis(200),
        work_root: work.root().to_path_buf(),
    };
    let parts = AppParts {
        repo: repo.clone(),
        pipeline,
        auth: push_auth::Authenticator::disabled(),
        runner,
        readiness: Readiness::Always,
        max_body_bytes: 65_536,
        listen_for_cancels: true,
    };
    let app = Application::build(parts, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    let url = format!("http://127.0.0.1:{}/jobs/run", app.port());
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());

    let id = JobId::new();
    repo.create(NewJob { id, input }).await?;
    eprintln!(
        "rendering \"{}\": {} segments at {}x{} {} fps (job {id})",
        board.title,
        board.segments.len(),
        board.frame.width,
        board.frame.height,
        board.frame.fps
    );
    eprintln!(
        "voice: {}",
        describe(voice, installed, &media, &board.voice)?
    );
    let mut queue = LoopbackQueue::new(url);
    queue.queue = "demo".into();
    let delivery = tokio::spawn(async move { queue.deliver(id).await });
    let mut progress = Progress::new();
    while !delivery.is_finished() {
        if let Some(job) = repo.get(id).await? {
            progress.show(&job);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(job) = repo.get(id).await? {
        progress.show(&job);
    }
    progress.finish();
    let delivered = delivery.await??;
    stop.cancel();
    let _ = server.await;
    let job = repo.get(id).await?.context("the job vanished")?;
    match (job.status, job.artifact_key) {
        (JobStatus::Succeeded, Some(key)) => {
            let film = out.join(Path::new(&key));
            eprintln!(
                "done in {:.1} s ({} delivery{})",
                started.elapsed().as_secs_f64(),
                delivered.attempts,
                if delivered.attempts == 1 { "" } else { "ies" }
            );
            let captions = out.join(video::publish::captions_key(&key));
            eprintln!("captions: {}", captions.display());
            println!("{}", film.display());
            Ok(film)
        }
        (status, _) => {
            let why = job
                .error
                .map(|e| format!("{}: {}", e.code, e.message))
                .unwrap_or_default();
            bail!("the job ended {status}: {why}")
        }
    }
}

/// Which engine speaks `spoken`, for the person watching the demo.
fn describe(
    voice: DemoVoice,
    installed: bool,
    media: &MediaSettings,
    spoken: &video::storyboard::Voice,
) -> anyhow::Result<String> {
    if voice == DemoVoice::Espeak {
        return Ok(if installed {
            "espeak-ng".into()
        } else {
            "espeak-ng (for a natural English voice: scripts/setup --voices)".into()
        });
    }
    let piper = crate::media::piper(media)?;
    let primary = spoken.language.split(['-', '_']).next().unwrap_or_default();
    Ok(if primary.eq_ignore_ascii_case(piper.language()) {
        format!("piper ({})", piper.voice_name())
    } else {
        format!(
            "espeak-ng (piper's voice {} speaks only {}, the storyboard is {})",
            piper.voice_name(),
            piper.language(),
            spoken.language
        )
    })
}

/// A directory removed when this is dropped, however the function holding it returns.
#[derive(Debug)]
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
