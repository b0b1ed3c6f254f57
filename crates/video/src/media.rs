//! Running the external tools (`ffmpeg`, `espeak-ng`, `ffprobe`) so that they die with the
//! job: each child gets its own process group (a Ctrl-C at the terminal reaches the worker,
//! which decides, not ffmpeg directly), is killed when the job's token fires, and is killed
//! if its future is dropped (`kill_on_drop`: a job aborted after its grace period leaves no
//! child behind). Neither tool forks, so killing the child ends the group.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::StageError;

/// How much of a failing tool's stderr goes into the error message.
const STDERR_TAIL: usize = 2000;

/// How running an external tool went wrong, by what happened rather than by what the tool
/// printed: callers that know what they asked for (espeak-ng and its voice) decide from
/// this whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The binary is not there (or not executable): the deployment's fault.
    #[error("cannot start {tool}: {source}; install it (apt-get install ffmpeg espeak-ng)")]
    Missing {
        /// The tool.
        tool: &'static str,
        /// Why the start failed.
        source: std::io::Error,
    },
    /// Starting or waiting for the child failed otherwise (out of processes, memory).
    #[error("{tool}: {source}")]
    Io {
        /// The tool.
        tool: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// It exited with a non-zero status.
    #[error("{tool} exited with status {code}: {stderr}")]
    Exited {
        /// The tool.
        tool: &'static str,
        /// The exit status.
        code: i32,
        /// The end of its stderr, for people.
        stderr: String,
    },
    /// A signal ended it (the OOM killer, a timeout's kill).
    #[error("{tool} was killed by signal {signal}: {stderr}")]
    Killed {
        /// The tool.
        tool: &'static str,
        /// The signal, when the platform tells.
        signal: i32,
        /// The end of its stderr, for people.
        stderr: String,
    },
    /// The job's token fired first.
    #[error("canceled")]
    Canceled,
}

impl From<ToolError> for StageError {
    /// Without more context every failure is retryable: another instance, with the binary
    /// installed or more memory, may succeed. Cancel stays cancel.
    fn from(e: ToolError) -> Self {
        match e {
            ToolError::Canceled => StageError::Canceled,
            ToolError::Missing { .. } => StageError::retryable("tool_unavailable", e.to_string()),
            other => StageError::retryable("tool_failed", other.to_string()),
        }
    }
}

/// Runs `cmd` to completion unless `cancel` fires first. `tool` names it in errors.
/// A missing binary or a failure is retryable (another instance may be fine); cancel is
/// [`StageError::Canceled`].
pub async fn run(
    cmd: Command,
    tool: &'static str,
    cancel: &CancellationToken,
) -> Result<Vec<u8>, StageError> {
    Ok(run_tool(cmd, tool, None, cancel).await?)
}

/// [`run`], writing `input` to the child's stdin (then closing it) while its output is read.
pub async fn run_with_input(
    cmd: Command,
    tool: &'static str,
    input: Option<&[u8]>,
    cancel: &CancellationToken,
) -> Result<Vec<u8>, StageError> {
    Ok(run_tool(cmd, tool, input, cancel).await?)
}

/// [`run_with_input`] with the failure typed, for callers that classify it themselves.
pub async fn run_tool(
    cmd: Command,
    tool: &'static str,
    input: Option<&[u8]>,
    cancel: &CancellationToken,
) -> Result<Vec<u8>, ToolError> {
    run_reading(cmd, tool, input.map(Input::Bytes), cancel, read_all).await
}

/// Reads a child's whole stdout.
async fn read_all(stdout: Option<tokio::process::ChildStdout>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(mut s) = stdout {
        let _ = s.read_to_end(&mut out).await;
    }
    out
}

/// [`run_tool`] for a child that reports progress on stdout: each line it writes (without
/// the line break) is sent to `lines` as soon as it is written, not at the end. A receiver
/// that is gone is not an error; the child runs on.
pub async fn run_tool_lines(
    cmd: Command,
    tool: &'static str,
    input: Option<&[u8]>,
    cancel: &CancellationToken,
    lines: tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<(), ToolError> {
    run_reading(
        cmd,
        tool,
        input.map(Input::Bytes),
        cancel,
        |stdout| async move {
            let Some(stdout) = stdout else { return };
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = lines.send(line);
            }
        },
    )
    .await
}

/// What goes to a child's stdin.
enum Input<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// Chunks as they come, until the sender is dropped: a large input made on the fly is
    /// never held whole.
    Stream(tokio::sync::mpsc::Receiver<Vec<u8>>),
}

/// Spawns `cmd`, writes `input` and reads stderr while `read_out` reads stdout, and types
/// how it ended; the child dies with the returned future or when `cancel` fires.
async fn run_reading<T, F, Fut>(
    mut cmd: Command,
    tool: &'static str,
    input: Option<Input<'_>>,
    cancel: &CancellationToken,
    read_out: F,
) -> Result<T, ToolError>
where
    F: FnOnce(Option<tokio::process::ChildStdout>) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn().map_err(|source| {
        if matches!(
            source.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
        ) {
            ToolError::Missing { tool, source }
        } else {
            ToolError::Io { tool, source }
        }
    })?;
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    // Write, read stdout and read stderr together: done one after another, a full pipe
    // would deadlock the child.
    let write_in = async {
        match (stdin.as_mut(), input) {
            (Some(pipe), Some(Input::Bytes(bytes))) => {
                let _ = pipe.write_all(bytes).await;
            }
            (Some(pipe), Some(Input::Stream(mut chunks))) => {
                while let Some(chunk) = chunks.recv().await {
                    if pipe.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            }
            _ => {}
        }
        drop(stdin.take());
    };
    let read_err = async {
        let mut err = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut err).await;
        }
        err
    };
    let work = async {
        let ((), out, err) = tokio::join!(write_in, read_out(stdout), read_err);
        let status = child.wait().await;
        (status, out, err)
    };
    tokio::select! {
        (status, out, err) = work => {
            let status = status.map_err(|source| ToolError::Io { tool, source })?;
            if status.success() {
                return Ok(out);
            }
            let text = String::from_utf8_lossy(&err);
            let tail: String = text.chars().rev().take(STDERR_TAIL).collect::<Vec<_>>().into_iter().rev().collect();
            let stderr = tail.trim().to_owned();
            match status.code() {
                Some(code) => Err(ToolError::Exited { tool, code, stderr }),
                None => Err(ToolError::Killed { tool, signal: signal_of(&status), stderr }),
            }
        }
        () = cancel.cancelled() => {
            // Dropping `work` dropped the child: kill_on_drop sends SIGKILL and tokio reaps it.
            Err(ToolError::Canceled)
        }
    }
}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.signal().unwrap_or(0)
}

#[cfg(not(unix))]
fn signal_of(_: &std::process::ExitStatus) -> i32 {
    0
}

/// Runs `cmd` holding one of `slots` (at most as many encoders as cores).
pub async fn run_limited(
    cmd: Command,
    tool: &'static str,
    cancel: &CancellationToken,
    slots: &Arc<Semaphore>,
) -> Result<Vec<u8>, StageError> {
    let _slot = tokio::select! {
        permit = slots.acquire() => permit.map_err(|_| StageError::Canceled)?,
        () = cancel.cancelled() => return Err(StageError::Canceled),
    };
    run(cmd, tool, cancel).await
}

/// [`run_limited`], writing the chunks from `input` to the child's stdin as they come
/// (until its sender is dropped) while its output is read.
pub async fn run_limited_streaming(
    cmd: Command,
    tool: &'static str,
    input: tokio::sync::mpsc::Receiver<Vec<u8>>,
    cancel: &CancellationToken,
    slots: &Arc<Semaphore>,
) -> Result<Vec<u8>, StageError> {
    let _slot = tokio::select! {
        permit = slots.acquire() => permit.map_err(|_| StageError::Canceled)?,
        () = cancel.cancelled() => return Err(StageError::Canceled),
    };
    Ok(run_reading(cmd, tool, Some(Input::Stream(input)), cancel, read_all).await?)
}

/// The first line of `tool -version`, for cache keys (a different encoder makes different
/// bytes). `None` when the tool is missing.
pub fn version(program: &Path, flag: &str) -> Option<String> {
    let out = std::process::Command::new(program)
        .arg(flag)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_owned())
}

/// What `ffprobe` says about a media file.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// `(codec_type, codec_name)` per stream.
    pub streams: Vec<(String, String)>,
    /// Container duration, seconds.
    pub duration: f64,
    /// Video frames, if counted.
    pub video_frames: Option<u64>,
    /// Video stream duration, seconds.
    pub video_duration: Option<f64>,
    /// Audio stream duration, seconds.
    pub audio_duration: Option<f64>,
}

/// Probes `path` with `ffprobe` (counting video frames exactly).
pub async fn probe(ffprobe: &Path, path: &Path) -> Result<Probe, StageError> {
    let mut cmd = Command::new(ffprobe);
    cmd.args(["-v", "error", "-count_frames", "-show_entries"])
        .arg("stream=codec_type,codec_name,nb_read_frames,duration:format=duration")
        .args(["-of", "json"])
        .arg(path);
    let out = run(cmd, "ffprobe", &CancellationToken::new()).await?;
    let bad = |what: &str| {
        StageError::retryable("tool_failed", format!("ffprobe {}: {what}", path.display()))
    };
    let json: serde_json::Value = serde_json::from_slice(&out).map_err(|e| bad(&e.to_string()))?;
    let num = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    let mut probe = Probe {
        streams: Vec::new(),
        duration: num(&json["format"]["duration"]).ok_or_else(|| bad("no duration"))?,
        video_frames: None,
        video_duration: None,
        audio_duration: None,
    };
    for s in json["streams"].as_array().into_iter().flatten() {
        let kind = s["codec_type"].as_str().unwrap_or_default().to_owned();
        let codec = s["codec_name"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "video" => {
                probe.video_frames = s["nb_read_frames"].as_str().and_then(|n| n.parse().ok());
                probe.video_duration = num(&s["duration"]);
            }
            "audio" => probe.audio_duration = num(&s["duration"]),
            _ => {}
        }
        probe.streams.push((kind, codec));
    }
    Ok(probe)
}
