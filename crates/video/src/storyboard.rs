//! The job input: a versioned storyboard, validated with errors that name the field.
//!
//! ```json
//! {
//!   "version": 1,
//!   "title": "Fractions",
//!   "voice": {"language": "en", "rate_wpm": 160},
//!   "frame": {"width": 1280, "height": 720, "fps": 25, "transition": "fade"},
//!   "segments": [
//!     {"narration": "A fraction is …", "slide": {"heading": "What is a fraction?", "bullets": ["…"], "body": "…"}}
//!   ]
//! }
//! ```
//! `voice` and `frame`, and each of their fields, may be left out (English at 160 words a
//! minute; 1280×720 at 25 fps, a 0.3 s crossfade at every picture change — `"transition":
//! "cut"` turns it off).
//!
//! Version 2 adds **beats**: a segment may give `beats` instead of `narration`, its
//! narration in parts, each saying what appears on the slide when its part starts:
//!
//! ```json
//! {"slide": {"heading": "Adding fractions", "bullets": ["Same denominator", "Add the tops"]},
//!  "beats": [
//!    {"narration": "Let us add two fractions."},
//!    {"narration": "Both have the same denominator.", "show": "next_bullet"},
//!    {"narration": "So we add the numerators.", "show": "next_bullet"},
//!    {"narration": "Remember: the bottom stays.", "show": {"highlight": 0}}
//!  ]}
//! ```
//! `show` is `"next_bullet"` (reveal the next bullet and emphasise it), `{"highlight": i}`
//! (emphasise bullet `i`, counted from 0, which must be revealed already) or absent (the
//! picture stays). A segment reveals all of its bullets (one `next_bullet` beat each) or
//! none (then they are all shown from its start, as in version 1). A version 1 segment, or a
//! version 2 one with `narration`, is one beat showing every bullet.
//! A storyboard that fails validation is a permanent failure (`invalid_input`): no retry
//! can fix it. Besides limits and shapes, validation lays every slide out with the
//! renderer's own layout function ([`crate::render::slide::layout::layout_slide`]) and
//! refuses a character no embedded font draws and text that does not fit at the smallest
//! legible type size, naming the field: what passes is drawn whole.

use serde::{Deserialize, Serialize};

pub use crate::render::slide::Reveal;

/// Limits, so one job cannot take the worker down.
pub mod limits {
    /// Segments per storyboard.
    pub const MAX_SEGMENTS: usize = 200;
    /// Characters of narration per segment.
    pub const MAX_NARRATION_CHARS: usize = 2000;
    /// Characters of a title or heading.
    pub const MAX_HEADING_CHARS: usize = 200;
    /// Bullets per slide.
    pub const MAX_BULLETS: usize = 10;
    /// Characters per bullet.
    pub const MAX_BULLET_CHARS: usize = 300;
    /// Characters of a slide's body.
    pub const MAX_BODY_CHARS: usize = 1500;
    /// Frame width range (even numbers only: H.264 with 4:2:0 needs them).
    pub const WIDTH: std::ops::RangeInclusive<u32> = 320..=3840;
    /// Frame height range (even numbers only).
    pub const HEIGHT: std::ops::RangeInclusive<u32> = 180..=2160;
    /// Frames per second.
    pub const FPS: std::ops::RangeInclusive<u32> = 1..=60;
    /// Speech rate, words per minute (espeak-ng's range is 80–450).
    pub const RATE_WPM: std::ops::RangeInclusive<u32> = 80..=450;
    /// Sentences in all the narration: each is spoken on its own (one espeak-ng run or HTTP
    /// call each; Piper speaks them in one run but still one by one), so this bounds a job's
    /// speech within the execution limit.
    pub const MAX_SENTENCES: usize = 600;
    /// Formulas (`$…$`, `$$…$$`) on all the slides: each is typeset at submission, a few
    /// times while its slide is fitted, so this bounds what validating one storyboard costs.
    pub const MAX_FORMULAS: usize = 200;
}

/// The newest schema version this code reads (it reads every one from 1).
pub const VERSION: u32 = 2;

/// Beats per segment.
pub const MAX_BEATS: usize = 30;

/// A storyboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storyboard {
    /// Schema version: 1, or 2 for beats.
    pub version: u32,
    /// The video's title.
    pub title: String,
    /// How the narration is spoken.
    #[serde(default)]
    pub voice: Voice,
    /// Frame size and rate.
    #[serde(default)]
    pub frame: Frame,
    /// The segments, in order.
    pub segments: Vec<Segment>,
}

/// How the narration is spoken.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Voice {
    /// A BCP 47-like language tag: `en`, `ko`, `en-us`.
    #[serde(default = "Voice::default_language")]
    pub language: String,
    /// Words per minute.
    #[serde(default = "Voice::default_rate")]
    pub rate_wpm: u32,
}

impl Voice {
    fn default_language() -> String {
        "en".into()
    }
    fn default_rate() -> u32 {
        160
    }
}

impl Default for Voice {
    fn default() -> Self {
        Self {
            language: Self::default_language(),
            rate_wpm: Self::default_rate(),
        }
    }
}

/// Frame size, rate and how pictures change. Each field may be left out (its default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Frame {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// How one picture gives way to the next.
    pub transition: Transition,
}

impl Default for Frame {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 25,
            transition: Transition::Fade,
        }
    }
}

/// How one picture gives way to the next — between slides and when a beat changes the
/// slide: `"fade"` (the default) or `"cut"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// A short crossfade (0.3 s, [`crate::render::FADE_MILLIS`]) that starts on the frame
    /// where the new picture's voice does.
    #[default]
    Fade,
    /// The new picture at once.
    Cut,
    /// Anything else that was given: kept so validation can name the field, never valid.
    #[serde(skip_serializing)]
    Unknown,
}

impl<'de> Deserialize<'de> for Transition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Text(String),
            Other(serde::de::IgnoredAny),
        }
        Ok(match Given::deserialize(d)? {
            Given::Text(t) if t == "fade" => Self::Fade,
            Given::Text(t) if t == "cut" => Self::Cut,
            _ => Self::Unknown,
        })
    }
}

/// One narrated slide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// What is said, in one beat. Required unless `beats` is given (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub narration: Option<String>,
    /// What is said, in beats (version 2); instead of `narration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beats: Option<Vec<Beat>>,
    /// What is shown.
    pub slide: Slide,
}

/// A part of a segment's narration and what appears when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beat {
    /// What is said.
    pub narration: String,
    /// What changes on the slide as this part starts; nothing when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show: Option<Show>,
}

/// A change of the slide at a beat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Show {
    /// `"next_bullet"`: the next hidden bullet appears, emphasised.
    NextBullet,
    /// `{"highlight": i}`: bullet `i` (from 0, already revealed) is emphasised.
    Highlight(usize),
}

impl Segment {
    /// The beats as spoken: a segment with `narration` is one beat that changes nothing.
    pub fn spoken_beats(&self) -> Vec<Beat> {
        match (&self.beats, &self.narration) {
            (Some(beats), _) => beats.clone(),
            (None, Some(narration)) => vec![Beat {
                narration: narration.clone(),
                show: None,
            }],
            (None, None) => Vec::new(),
        }
    }

    /// What the slide shows during each beat (one entry per [`Segment::spoken_beats`]).
    /// Bullets are all visible unless some beat reveals one; then none is until it does.
    /// Call on a validated storyboard: out-of-range indices are clamped, never a panic.
    pub fn reveals(&self) -> Vec<Reveal> {
        let beats = self.spoken_beats();
        let total = self.slide.bullets.len();
        let stepwise = beats.iter().any(|b| b.show == Some(Show::NextBullet));
        let mut state = if stepwise {
            Reveal {
                visible: 0,
                emphasised: None,
            }
        } else {
            Reveal::all()
        };
        beats
            .iter()
            .map(|beat| {
                match beat.show {
                    Some(Show::NextBullet) if state.visible < total => {
                        state.emphasised = Some(state.visible);
                        state.visible += 1;
                    }
                    Some(Show::Highlight(i)) if i < total => state.emphasised = Some(i),
                    _ => {}
                }
                state
            })
            .collect()
    }
}

/// What a slide shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slide {
    /// The heading, in bold.
    pub heading: String,
    /// Bullet points.
    #[serde(default)]
    pub bullets: Vec<String>,
    /// A paragraph under the bullets.
    #[serde(default)]
    pub body: String,
}

/// One problem with a storyboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where: `segments[2].slide.heading`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Every problem found, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid storyboard: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct StoryboardError(pub Vec<FieldError>);

struct Checker(Vec<FieldError>);

impl Checker {
    fn fail(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            reason: reason.into(),
        });
    }

    fn text(&mut self, field: &str, value: &str, max: usize, required: bool) {
        let chars = value.chars().count();
        if required && value.trim().is_empty() {
            self.fail(field, "must not be empty");
        } else if chars > max {
            self.fail(
                field,
                format!("must be at most {max} characters, got {chars}"),
            );
        } else if value.chars().any(|c| c.is_control() && c != '\n') {
            self.fail(
                field,
                "must not contain control characters other than newlines",
            );
        }
    }
}

impl Checker {
    /// What drawing would get wrong: characters of the title and of each slide that no
    /// embedded font draws, and slides whose text does not fit at the smallest legible
    /// size. Slides are laid out by the renderer's own layout function.
    fn drawing(&mut self, board: &Storyboard, title_ok: bool, slides: &[(usize, &Slide)]) {
        use crate::render::slide::{fonts, layout, title_missing_chars};
        let Frame { width, height, .. } = board.frame;
        fonts::with_shared_fonts(|fonts| {
            if title_ok {
                let missing = title_missing_chars(fonts, &board.title);
                if !missing.is_empty() {
                    self.fail("title", fonts::cannot_draw(&missing));
                }
            }
            for (i, slide) in slides {
                let laid_out = layout::layout_slide(fonts, slide, width, height);
                for problem in laid_out.problems() {
                    self.fail(
                        format!("segments[{i}].slide.{}", problem.field()),
                        problem.reason(),
                    );
                }
            }
        });
    }

    fn narration(&mut self, field: &str, value: &str) {
        self.text(field, value, limits::MAX_NARRATION_CHARS, true);
        if !value.trim().is_empty() && !value.chars().any(char::is_alphanumeric) {
            self.fail(field, "must contain something to say");
        }
    }

    /// A segment's beats against its `bullets` bullets: every reveal has a bullet, every
    /// highlight a bullet already revealed, and all bullets are revealed or none.
    fn beats(&mut self, field: &str, beats: &[Beat], bullets: usize) {
        if beats.is_empty() {
            self.fail(field, "must have at least one beat");
            return;
        }
        if beats.len() > MAX_BEATS {
            self.fail(
                field,
                format!("must have at most {MAX_BEATS} beats, got {}", beats.len()),
            );
            return;
        }
        let chars: usize = beats.iter().map(|b| b.narration.chars().count()).sum();
        if chars > limits::MAX_NARRATION_CHARS {
            self.fail(
                field,
                format!(
                    "the beats' narration must be at most {} characters in all, got {chars}",
                    limits::MAX_NARRATION_CHARS
                ),
            );
        }
        let stepwise = beats.iter().any(|b| b.show == Some(Show::NextBullet));
        let mut revealed = 0;
        for (k, beat) in beats.iter().enumerate() {
            self.narration(&format!("{field}[{k}].narration"), &beat.narration);
            let show = format!("{field}[{k}].show");
            match beat.show {
                None => {}
                Some(Show::NextBullet) if revealed >= bullets => self.fail(
                    show,
                    format!("no bullet left to reveal: the slide has {bullets}"),
                ),
                Some(Show::NextBullet) => revealed += 1,
                Some(Show::Highlight(j)) if j >= bullets => self.fail(
                    show,
                    format!("there is no bullet {j}: the slide has {bullets}, counted from 0"),
                ),
                Some(Show::Highlight(j)) if stepwise && j >= revealed => {
                    self.fail(show, format!("bullet {j} is not revealed yet at this beat"))
                }
                Some(Show::Highlight(_)) => {}
            }
        }
        if stepwise && revealed < bullets {
            self.fail(
                field,
                format!(
                    "reveals {revealed} of the slide's {bullets} bullets: reveal every bullet (one \"next_bullet\" beat each) or none"
                ),
            );
        }
    }
}

impl Storyboard {
    /// Parses and validates a job's input.
    pub fn from_json(input: &serde_json::Value) -> Result<Self, StoryboardError> {
        let board: Self = serde_json::from_value(input.clone()).map_err(|e| {
            StoryboardError(vec![FieldError {
                field: "$".into(),
                reason: e.to_string(),
            }])
        })?;
        board.validate()?;
        Ok(board)
    }

    /// Checks every limit; reports all problems at once.
    pub fn validate(&self) -> Result<(), StoryboardError> {
        use limits::*;
        let mut c = Checker(Vec::new());
        if !(1..=VERSION).contains(&self.version) {
            c.fail(
                "version",
                format!(
                    "unsupported version {}; this worker reads 1 to {VERSION}",
                    self.version
                ),
            );
        }
        c.text("title", &self.title, MAX_HEADING_CHARS, true);
        let lang_ok = {
            let mut parts = self.voice.language.split('-');
            let primary = parts.next().unwrap_or_default();
            (2..=3).contains(&primary.len())
                && primary.bytes().all(|b| b.is_ascii_lowercase())
                && parts.all(|p| {
                    (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric())
                })
        };
        if !lang_ok {
            c.fail(
                "voice.language",
                format!(
                    "{:?} is not a language tag like en, ko or en-us",
                    self.voice.language
                ),
            );
        }
        if !RATE_WPM.contains(&self.voice.rate_wpm) {
            c.fail(
                "voice.rate_wpm",
                format!("must be in {}..={}", RATE_WPM.start(), RATE_WPM.end()),
            );
        }
        let f = self.frame;
        if !WIDTH.contains(&f.width) || !f.width.is_multiple_of(2) {
            c.fail(
                "frame.width",
                format!(
                    "must be an even number in {}..={}",
                    WIDTH.start(),
                    WIDTH.end()
                ),
            );
        }
        if !HEIGHT.contains(&f.height) || !f.height.is_multiple_of(2) {
            c.fail(
                "frame.height",
                format!(
                    "must be an even number in {}..={}",
                    HEIGHT.start(),
                    HEIGHT.end()
                ),
            );
        }
        if !FPS.contains(&f.fps) {
            c.fail(
                "frame.fps",
                format!("must be in {}..={}", FPS.start(), FPS.end()),
            );
        }
        if f.transition == Transition::Unknown {
            c.fail(
                "frame.transition",
                r#"must be "fade" (a short crossfade at every picture change, the default) or "cut""#,
            );
        }
        if self.segments.is_empty() {
            c.fail("segments", "must have at least one segment");
        }
        if self.segments.len() > MAX_SEGMENTS {
            c.fail(
                "segments",
                format!(
                    "must have at most {MAX_SEGMENTS} segments, got {}",
                    self.segments.len()
                ),
            );
        }
        // Segments whose text is within the limits, to be laid out below.
        let mut drawable = Vec::new();
        for (i, s) in self.segments.iter().enumerate().take(MAX_SEGMENTS) {
            let problems_before = c.0.len();
            let at = |field: &str| format!("segments[{i}].{field}");
            match (&s.narration, &s.beats) {
                (Some(narration), None) => c.narration(&at("narration"), narration),
                (None, None) => c.fail(at("narration"), "required, but missing"),
                (Some(_), Some(_)) => c.fail(
                    format!("segments[{i}]"),
                    "give either narration or beats, not both",
                ),
                (None, Some(_)) if self.version < 2 => c.fail(
                    at("beats"),
                    "beats need storyboard version 2; this one says version 1",
                ),
                (None, Some(beats)) => c.beats(&at("beats"), beats, s.slide.bullets.len()),
            }
            c.text(
                &at("slide.heading"),
                &s.slide.heading,
                MAX_HEADING_CHARS,
                true,
            );
            if s.slide.bullets.len() > MAX_BULLETS {
                c.fail(
                    at("slide.bullets"),
                    format!("must have at most {MAX_BULLETS} bullets"),
                );
            }
            for (j, b) in s.slide.bullets.iter().enumerate() {
                c.text(
                    &at(&format!("slide.bullets[{j}]")),
                    b,
                    MAX_BULLET_CHARS,
                    true,
                );
            }
            c.text(&at("slide.body"), &s.slide.body, MAX_BODY_CHARS, false);
            if c.0.len() == problems_before {
                drawable.push((i, &s.slide));
            }
        }
        let sentences: usize = self
            .segments
            .iter()
            .flat_map(Segment::spoken_beats)
            .map(|beat| crate::captions::sentences(&beat.narration).len())
            .sum();
        if sentences > MAX_SENTENCES {
            c.fail(
                "segments",
                format!(
                    "the narration has {sentences} sentences; at most {MAX_SENTENCES} (each is spoken on its own)"
                ),
            );
        }
        let formulas: usize = self
            .segments
            .iter()
            .flat_map(|s| {
                let slide = &s.slide;
                [&slide.heading, &slide.body]
                    .into_iter()
                    .chain(&slide.bullets)
            })
            .map(|text| {
                math::split(text).map_or(0, |parts| {
                    parts.iter().filter(|p| p.formula().is_some()).count()
                })
            })
            .sum();
        let too_many_formulas = formulas > MAX_FORMULAS;
        if too_many_formulas {
            c.fail(
                "segments",
                format!("the slides have {formulas} formulas; at most {MAX_FORMULAS}"),
            );
        }
        let frame_ok = c.0.iter().all(|e| !e.field.starts_with("frame."));
        let title_ok = c.0.iter().all(|e| e.field != "title");
        if frame_ok && !too_many_formulas {
            c.drawing(self, title_ok, &drawable);
        }
        if c.0.is_empty() {
            Ok(())
        } else {
            Err(StoryboardError(c.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> serde_json::Value {
        json!({
            "version": 1,
            "title": "T",
            "segments": [{"narration": "Hello there.", "slide": {"heading": "Hi", "bullets": ["a"], "body": ""}}]
        })
    }

    #[test]
    fn defaults_are_english_720p25() {
        let b = Storyboard::from_json(&good()).unwrap();
        assert_eq!(
            b.frame,
            Frame {
                width: 1280,
                height: 720,
                fps: 25,
                transition: Transition::Fade,
            }
        );
        assert_eq!(
            b.voice,
            Voice {
                language: "en".into(),
                rate_wpm: 160
            }
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let mut v = good();
        v["frame"] = json!({"width": 1281, "height": 720, "fps": 0});
        v["voice"] = json!({"language": "english!", "rate_wpm": 10});
        v["segments"][0]["narration"] = json!("   ");
        v["segments"][0]["slide"]["heading"] = json!("x".repeat(201));
        v["segments"][0]["slide"]["bullets"] = json!(["ok", ""]);
        let err = Storyboard::from_json(&v).unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        for expected in [
            "voice.language",
            "voice.rate_wpm",
            "frame.width",
            "frame.fps",
            "segments[0].narration",
            "segments[0].slide.heading",
            "segments[0].slide.bullets[1]",
        ] {
            assert!(
                fields.contains(&expected),
                "{expected} missing from {fields:?}"
            );
        }
    }

    #[test]
    fn the_transition_is_fade_or_cut_and_anything_else_names_the_field() {
        let mut v = good();
        v["frame"] = json!({"transition": "cut"});
        let b = Storyboard::from_json(&v).unwrap();
        assert_eq!(b.frame.transition, Transition::Cut);
        assert_eq!(
            (b.frame.width, b.frame.fps),
            (1280, 25),
            "the rest defaults"
        );
        v["frame"] = json!({"width": 640, "height": 360, "fps": 25, "transition": "fade"});
        assert_eq!(
            Storyboard::from_json(&v).unwrap().frame.transition,
            Transition::Fade
        );
        for bad in [
            json!("wipe"),
            json!("Fade"),
            json!(1),
            json!(null),
            json!({}),
        ] {
            v["frame"] = json!({ "transition": bad });
            let err = Storyboard::from_json(&v).unwrap_err();
            assert_eq!(err.0.len(), 1, "{bad}: {err}");
            assert_eq!(err.0[0].field, "frame.transition", "{bad}");
            assert!(err.0[0].reason.contains(r#""cut""#), "{}", err.0[0].reason);
        }
    }

    #[test]
    fn wrong_shapes_and_unknown_fields_are_refused() {
        for bad in [
            json!(null),
            json!("text"),
            json!({"version": 1, "title": "T"}),
            json!({"version": 3, "title": "T", "segments": []}),
            json!({"version": 1, "title": "T", "segments": [], "extra": 1}),
            json!({"version": 1, "title": "T", "segments": [{"narration": 5, "slide": {"heading": "h"}}]}),
        ] {
            assert!(Storyboard::from_json(&bad).is_err(), "{bad}");
        }
        let mut many = good();
        many["segments"] = json!(vec![
            good()["segments"][0].clone();
            limits::MAX_SEGMENTS + 1
        ]);
        let err = Storyboard::from_json(&many).unwrap_err();
        assert_eq!(err.0[0].field, "segments");
    }

    fn beats(beats: serde_json::Value) -> serde_json::Value {
        json!({
            "version": 2,
            "title": "T",
            "segments": [
                {"narration": "Plain.", "slide": {"heading": "H"}},
                {"beats": beats, "slide": {"heading": "H", "bullets": ["a", "b", "c"]}}
            ]
        })
    }

    fn fields(value: &serde_json::Value) -> Vec<String> {
        Storyboard::from_json(value)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn beats_reveal_bullets_one_by_one_and_highlight_revealed_ones() {
        let board = Storyboard::from_json(&beats(json!([
            {"narration": "Intro."},
            {"narration": "One.", "show": "next_bullet"},
            {"narration": "Two.", "show": "next_bullet"},
            {"narration": "Back to one.", "show": {"highlight": 0}},
            {"narration": "Three.", "show": "next_bullet"}
        ])))
        .unwrap();
        let r = |visible, emphasised| Reveal {
            visible,
            emphasised,
        };
        assert_eq!(
            board.segments[1].reveals(),
            [
                r(0, None),
                r(1, Some(0)),
                r(2, Some(1)),
                r(2, Some(0)),
                r(3, Some(2))
            ]
        );
        // A narration segment is one beat showing everything, in version 1 as in 2.
        assert_eq!(board.segments[0].reveals(), [Reveal::all()]);
        assert_eq!(board.segments[0].spoken_beats().len(), 1);
        // Beats without reveals show every bullet from the start.
        let still = Storyboard::from_json(&beats(json!([
            {"narration": "One."},
            {"narration": "Two.", "show": {"highlight": 2}}
        ])))
        .unwrap();
        assert_eq!(
            still.segments[1].reveals(),
            [Reveal::all(), r(usize::MAX, Some(2))]
        );
    }

    #[test]
    fn bad_beats_are_refused_with_their_field_paths() {
        let too_many = beats(json!([
            {"narration": "One.", "show": "next_bullet"},
            {"narration": "Two.", "show": "next_bullet"},
            {"narration": "Three.", "show": "next_bullet"},
            {"narration": "Four.", "show": "next_bullet"}
        ]));
        assert_eq!(fields(&too_many), ["segments[1].beats[3].show"]);
        let early = beats(json!([
            {"narration": "One.", "show": "next_bullet"},
            {"narration": "Two.", "show": {"highlight": 1}},
            {"narration": "Two.", "show": "next_bullet"},
            {"narration": "   ", "show": "next_bullet"}
        ]));
        assert_eq!(
            fields(&early),
            [
                "segments[1].beats[1].show",
                "segments[1].beats[3].narration"
            ]
        );
        let missing = beats(json!([{"narration": "One.", "show": {"highlight": 7}}]));
        assert_eq!(fields(&missing), ["segments[1].beats[0].show"]);
        let partial = beats(json!([{"narration": "One.", "show": "next_bullet"}]));
        assert_eq!(fields(&partial), ["segments[1].beats"]);
        assert_eq!(fields(&beats(json!([]))), ["segments[1].beats"]);
        let mut both = beats(json!([{"narration": "One."}]));
        both["segments"][1]["narration"] = json!("Also.");
        assert_eq!(fields(&both), ["segments[1]"]);
        let mut v1 = beats(json!([{"narration": "One."}]));
        v1["version"] = json!(1);
        assert_eq!(fields(&v1), ["segments[1].beats"]);
        let mut neither = good();
        neither["segments"][0]
            .as_object_mut()
            .unwrap()
            .remove("narration");
        assert_eq!(fields(&neither), ["segments[0].narration"]);
        for bad_show in [json!("sideways"), json!({"highlight": -1}), json!({"a": 1})] {
            let v = beats(json!([{"narration": "One.", "show": bad_show}]));
            assert!(Storyboard::from_json(&v).is_err(), "{v}");
        }
    }

    #[test]
    fn undrawable_characters_are_refused_with_field_and_character() {
        let mut v = good();
        v["title"] = json!("Lab 🧪");
        v["segments"][0]["slide"]["bullets"] = json!(["fine", "a test tube 🧪"]);
        v["segments"][0]["slide"]["body"] = json!("数");
        let err = Storyboard::from_json(&v).unwrap_err();
        let found: Vec<(&str, &str)> = err
            .0
            .iter()
            .map(|e| (e.field.as_str(), e.reason.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "title",
                    "U+1F9EA 🧪 cannot be drawn with the embedded fonts"
                ),
                (
                    "segments[0].slide.bullets[1]",
                    "U+1F9EA 🧪 cannot be drawn with the embedded fonts"
                ),
                (
                    "segments[0].slide.body",
                    "U+6570 数 cannot be drawn with the embedded fonts"
                ),
            ]
        );
        // A formula that does not parse names its field, as does an unpaired `$$`.
        v["title"] = json!("Lab");
        v["segments"][0]["slide"] = json!({
            "heading": r"$$\frac{1}{2}",
            "bullets": [r"$x^2$ is fine", r"$\sqrt$ is not", r"$\text{数} + 1$"],
            "body": "costs $5 and $10: no formula"
        });
        let err = Storyboard::from_json(&v).unwrap_err();
        let found: Vec<(&str, &str)> = err
            .0
            .iter()
            .map(|e| (e.field.as_str(), e.reason.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "segments[0].slide.heading",
                    "a displayed formula opened with $$ is not closed with $$"
                ),
                (
                    "segments[0].slide.bullets[1]",
                    r"the formula $\sqrt$ cannot be typeset: unexpected args in sqrt"
                ),
                (
                    "segments[0].slide.bullets[2]",
                    "U+6570 数 cannot be drawn with the embedded fonts"
                ),
            ]
        );
        // Every script the fonts draw passes.
        v["title"] = json!("광합성 — Photosynthesis 🎉");
        v["segments"][0]["slide"] = json!({
            "heading": "البناء الضوئي",
            "bullets": ["פוטוסינתזה", "광합성 數學", "☀️ 🌱 → 🍃"],
            "body": "Plants 🌿"
        });
        Storyboard::from_json(&v).unwrap();
    }

    #[test]
    fn text_that_does_not_fit_is_refused_with_the_field_named() {
        let mut v = good();
        let bullet = "A bullet that goes on and on about fractions and their parts ".repeat(4);
        v["segments"][0]["slide"]["bullets"] = json!(vec![bullet.trim(); 10]);
        let err = Storyboard::from_json(&v).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(
            err.0[0].field.starts_with("segments[0].slide.bullets["),
            "{err}"
        );
        assert!(err.0[0].reason.contains("does not fit"), "{err}");
        // The same text on a slide of its own fits (bigger frames give no more room: the
        // type scales with the frame).
        v["segments"][0]["slide"]["bullets"] = json!(vec![bullet.trim(); 3]);
        Storyboard::from_json(&v).unwrap();
        // Text over its limits is reported as such and not laid out.
        v["segments"][0]["slide"]["body"] = json!("x ".repeat(1000));
        let err = Storyboard::from_json(&v).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert!(err.0[0].reason.contains("at most"), "{err}");
    }

    #[test]
    fn a_full_storyboard_of_dense_slides_is_valid() {
        // 200 slides, each with a heading, five bullets and a body, all laid out by
        // validation; the time it takes is printed (it runs in the API's request path).
        let segments: Vec<serde_json::Value> = (0..limits::MAX_SEGMENTS)
            .map(|i| {
                json!({
                    "narration": format!("Slide {i} is spoken here."),
                    "slide": {
                        "heading": format!("Slide {i}: adding fractions with unlike denominators"),
                        "bullets": (0..5).map(|j| format!("Point {j} of slide {i}: find a common denominator first")).collect::<Vec<_>>(),
                        "body": format!("Slide {i}. ").repeat(20),
                    }
                })
            })
            .collect();
        let board = json!({"version": 1, "title": "Fractions", "segments": segments});
        let started = std::time::Instant::now();
        Storyboard::from_json(&board).unwrap();
        println!(
            "validating {} dense slides took {:?}",
            limits::MAX_SEGMENTS,
            started.elapsed()
        );
    }

    #[test]
    fn more_sentences_than_the_voice_can_speak_in_time_are_refused() {
        let segment =
            |n: usize| json!({"narration": "Go on. ".repeat(n), "slide": {"heading": "H"}});
        let board = |per: usize| json!({"version": 1, "title": "T", "segments": (0..4).map(|_| segment(per)).collect::<Vec<_>>()});
        Storyboard::from_json(&board(limits::MAX_SENTENCES / 4)).unwrap();
        let err = Storyboard::from_json(&board(limits::MAX_SENTENCES / 4 + 1)).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].field, "segments");
        assert!(err.0[0].reason.contains("sentences"), "{err}");
    }

    #[test]
    fn more_formulas_than_validation_can_afford_are_refused_before_typesetting() {
        let segment = |n: usize| json!({"narration": "Look.", "slide": {"heading": "H", "bullets": [r"$x$ ".repeat(n)]}});
        let board = |per: usize| json!({"version": 1, "title": "T", "segments": (0..4).map(|_| segment(per)).collect::<Vec<_>>()});
        Storyboard::from_json(&board(limits::MAX_FORMULAS / 4)).unwrap();
        let err = Storyboard::from_json(&board(limits::MAX_FORMULAS / 4 + 1)).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].field, "segments");
        assert!(err.0[0].reason.contains("formulas"), "{err}");
    }

    #[test]
    fn the_examples_are_valid() {
        for path in [
            "../../examples/en-fractions.json",
            "../../examples/ko-photosynthesis.json",
            "../../examples/en-fractions-beats.json",
        ] {
            let text = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path),
            )
            .unwrap();
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            Storyboard::from_json(&value).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }
}
