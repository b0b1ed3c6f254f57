//! The video stages behind the stage contract of the `pipeline` crate: a storyboard is
//! validated, spoken by a TTS backend, drawn slide by slide, composed with ffmpeg and
//! published to an object store with its captions, with finished segments kept in a content-addressed cache
//! so a retried job resumes. [`video::video_pipeline`] puts them together.

pub mod cache;
pub mod captions;
pub mod compose;
pub mod media;
pub mod publish;
pub mod render;
pub mod storyboard;
pub mod timeline;
pub mod tts;
pub mod video;

// The contract the stages implement, under the paths these modules have always used.
pub(crate) use pipeline::{Pipeline, Published, Stage, StageContext, StageData, StageError};
