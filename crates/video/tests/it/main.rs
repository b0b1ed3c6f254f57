//! The video crate's integration tests, one binary: each file below was its own test binary
//! and each linked the whole crate graph again; as modules of one they link once.
//!
//! What the modules share (a voice, the class of a stage error, a stand-in program, the lock
//! around the process-wide cache-hit counter) is in [`common`].
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod captions;
mod common;
mod encode;
mod espeak;
mod piper;
mod resume;
mod tts_batch;
mod tts_http;
mod video_pipeline;
