//! Typesetting a text with formulas into a coverage mask.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use typst::foundations::Bytes;
use typst::layout::{Abs, Frame, FrameItem, Point};
use typst::utils::Scalar;
use typst_layout::{Page, PagedDocument};

use crate::split::{Part, SplitError};
use crate::world::{OneDocument, Shared};

/// The longest formula accepted, in characters: a slide shows a line or two of
/// mathematics, and a bound keeps one formula from costing seconds of typesetting.
pub const MAX_FORMULA_CHARS: usize = 400;

/// The deepest nesting of groups (`{…}`, `\left…\right`) accepted in a formula. Deeper
/// nesting is unreadable on a slide, and the bound keeps the typesetter's recursion small.
pub const MAX_FORMULA_DEPTH: usize = 12;

/// How a block of text is set: all lengths in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextStyle {
    /// Font size.
    pub size: f32,
    /// Line width: text wraps at it.
    pub width: f32,
    /// Distance between baselines of plain lines, as a multiple of the size (taller
    /// formulas push their line apart).
    pub line_height: f32,
    /// Bold text (a heading); formulas stay regular.
    pub bold: bool,
    /// Right-to-left paragraph: right-aligned.
    pub rtl: bool,
}

/// Why a text cannot be typeset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MathError {
    /// The dollars do not make sense.
    Split(SplitError),
    /// A formula is not LaTeX the typesetter reads, or uses what it does not know.
    Formula {
        /// The formula, as written.
        latex: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for MathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MathError::Split(e) => e.fmt(f),
            MathError::Formula { latex, reason } => {
                write!(f, "the formula ${latex}$ cannot be typeset: {reason}")
            }
        }
    }
}

impl std::error::Error for MathError {}

/// A typeset text: its size, its first baseline, and its ink.
#[derive(Debug, Clone)]
pub struct Typeset {
    page: Page,
}

/// Coverage of a typeset text: `alpha[y * width + x]` is how much of pixel (x, y) is ink,
/// 0–255.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// Row-major coverage.
    pub alpha: Vec<u8>,
}

impl Typeset {
    /// Width of the text's box (the line width it was set at), in pixels.
    pub fn width(&self) -> f32 {
        self.page.frame.width().to_pt() as f32
    }

    /// Height of all its lines, in pixels.
    pub fn height(&self) -> f32 {
        self.page.frame.height().to_pt() as f32
    }

    /// The baseline of the first line, from the top, in pixels. A line's text runs sit on
    /// its baseline and so do its formulas' frames (each carries its baseline), so the first
    /// line's is the highest of them; a numerator inside a formula does not count.
    pub fn first_baseline(&self) -> f32 {
        let mut highest: Option<Abs> = None;
        baselines(&self.page.frame, Point::zero(), &mut |y| {
            highest = Some(highest.map_or(y, |h| h.min(y)));
        });
        highest.map_or(0.0, |y| y.to_pt() as f32)
    }

    /// Characters drawn with the missing-glyph box (no font has them), in order of first
    /// appearance.
    pub fn missing_chars(&self) -> Vec<char> {
        let mut missing = Vec::new();
        missing_in(&self.page.frame, &mut missing);
        missing
    }

    /// The ink, rasterised at one pixel per point.
    pub fn mask(&self) -> Mask {
        let options = typst_render::RenderOptions {
            pixel_per_pt: Scalar::new(1.0),
            render_bleed: false,
        };
        let pixmap = typst_render::render(&self.page, &options);
        Mask {
            width: pixmap.width(),
            height: pixmap.height(),
            // Black ink on nothing: the (premultiplied) alpha is the coverage.
            alpha: pixmap.data().chunks_exact(4).map(|px| px[3]).collect(),
        }
    }
}

/// Reports the baseline of every line-level item under `frame`: text runs, and frames that
/// carry a baseline (formulas), which are not looked into.
fn baselines(frame: &Frame, offset: Point, found: &mut impl FnMut(Abs)) {
    for (at, item) in frame.items() {
        let at = offset + *at;
        match item {
            FrameItem::Text(_) => found(at.y),
            FrameItem::Group(group) => {
                let at = at + Point::new(group.transform.tx, group.transform.ty);
                if group.frame.has_baseline() {
                    found(at.y + group.frame.baseline());
                } else {
                    baselines(&group.frame, at, found);
                }
            }
            _ => {}
        }
    }
}

fn missing_in(frame: &Frame, out: &mut Vec<char>) {
    for (_, item) in frame.items() {
        match item {
            FrameItem::Group(group) => missing_in(&group.frame, out),
            FrameItem::Text(text) => {
                for glyph in text.glyphs.iter().filter(|g| g.id == 0) {
                    let chars = text.text.get(glyph.range()).unwrap_or_default().chars();
                    for c in chars.filter(|c| !c.is_whitespace()) {
                        if !out.contains(&c) {
                            out.push(c);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

#[derive(Serialize)]
struct Input<'a> {
    width: f32,
    size: f32,
    leading: f32,
    bold: bool,
    rtl: bool,
    families: &'a [&'a str],
    parts: Vec<InputPart>,
}

#[derive(Serialize)]
struct InputPart {
    kind: &'static str,
    value: String,
}

/// Typesets texts with formulas. Build one per process ([`Typesetter::new`] loads the fonts
/// and MiTeX's definitions) and share it: typesetting takes `&self` and may run on many
/// threads at once.
#[derive(Debug)]
pub struct Typesetter {
    shared: Shared,
    families: Vec<&'static str>,
}

impl Typesetter {
    /// A typesetter whose text is set in `families` (first choice first, the rest as
    /// fallbacks for other scripts), found among `text_fonts`; formulas are set in New
    /// Computer Modern Math.
    pub fn new(text_fonts: &[&'static [u8]], families: &[&'static str]) -> Self {
        let shared = Shared::new(text_fonts);
        let families = families
            .iter()
            .copied()
            .filter(|f| shared.has_family(f))
            .collect();
        Self { shared, families }
    }

    /// Checks one formula on its own: whether it is LaTeX that MiTeX converts and Typst sets.
    pub fn check(&self, latex: &str) -> Result<(), MathError> {
        let style = TextStyle {
            size: 20.0,
            width: 10_000.0,
            line_height: 1.2,
            bold: false,
            rtl: false,
        };
        self.typeset(&[Part::Inline(latex.to_owned())], &style)
            .map(drop)
    }

    /// Typesets `parts` (see [`crate::split`]) in `style`.
    pub fn typeset(&self, parts: &[Part], style: &TextStyle) -> Result<Typeset, MathError> {
        let mut input = Input {
            width: style.width.max(1.0),
            size: style.size.max(1.0),
            leading: (style.line_height - 1.15).max(0.1) * style.size.max(1.0),
            bold: style.bold,
            rtl: style.rtl,
            families: &self.families,
            parts: Vec::with_capacity(parts.len()),
        };
        for (i, part) in parts.iter().enumerate() {
            let display = |at: Option<usize>| {
                at.and_then(|at| parts.get(at))
                    .is_some_and(|p| matches!(p, Part::Display(_)))
            };
            input.parts.push(match part {
                // A displayed formula is a line of its own: the spaces around it would
                // only indent the next line.
                Part::Text(text) => {
                    let mut text = text.as_str();
                    if display(i.checked_sub(1)) {
                        text = text.trim_start();
                    }
                    if display(Some(i + 1)) {
                        text = text.trim_end();
                    }
                    InputPart {
                        kind: "text",
                        value: text.to_owned(),
                    }
                }
                Part::Inline(latex) => InputPart {
                    kind: "inline",
                    value: convert(latex)?,
                },
                Part::Display(latex) => InputPart {
                    kind: "display",
                    value: convert(latex)?,
                },
            });
        }
        let json = serde_json::to_vec(&input).map_err(|e| MathError::Formula {
            latex: String::new(),
            reason: e.to_string(),
        })?;
        match self.compile(json) {
            Ok(page) => Ok(Typeset { page }),
            // Name the formula at fault: the first that fails on its own.
            Err(reason) => {
                let blamed = parts
                    .iter()
                    .filter_map(Part::formula)
                    .filter(|_| parts.len() > 1)
                    .find_map(|latex| self.check(latex).err());
                Err(blamed.unwrap_or_else(|| MathError::Formula {
                    latex: parts
                        .iter()
                        .filter_map(Part::formula)
                        .collect::<Vec<_>>()
                        .join("$, $"),
                    reason,
                }))
            }
        }
    }

    fn compile(&self, input: Vec<u8>) -> Result<Page, String> {
        let world = OneDocument {
            shared: &self.shared,
            input: Bytes::new(input),
        };
        // Typst is not expected to panic, but a panic on odd input must not take down the
        // server: it becomes an error like any other.
        let compiled = catch_unwind(AssertUnwindSafe(|| {
            typst::compile::<PagedDocument>(&world).output
        }))
        .map_err(|_| "the typesetter failed on it".to_owned());
        // Keep memoised results a few rounds (MiTeX's module is used by every run), so the
        // cache does not grow with every text ever set.
        typst::comemo::evict(30);
        let compiled = compiled?;
        let document = compiled.map_err(|errors| {
            errors.first().map_or_else(
                || "unknown error".to_owned(),
                // MiTeX's definitions report misuse with Typst's `panic`.
                |e| {
                    let message = e.message.as_str();
                    message
                        .strip_prefix("panicked with: ")
                        .map_or(message, |m| m.trim_matches('"'))
                        .to_owned()
                },
            )
        })?;
        document
            .pages()
            .first()
            .cloned()
            .ok_or_else(|| "nothing was typeset".to_owned())
    }
}

/// MiTeX's conversion of one formula to Typst math, after the size checks.
fn convert(latex: &str) -> Result<String, MathError> {
    let refuse = |reason: String| MathError::Formula {
        latex: latex.to_owned(),
        reason,
    };
    if latex.chars().count() > MAX_FORMULA_CHARS {
        return Err(refuse(format!(
            "it is longer than {MAX_FORMULA_CHARS} characters"
        )));
    }
    if nesting(latex) > MAX_FORMULA_DEPTH {
        return Err(refuse(format!(
            "groups are nested deeper than {MAX_FORMULA_DEPTH}"
        )));
    }
    crate::guard::check_latex(latex).map_err(refuse)?;
    // MiTeX recurses over the syntax tree; a panic on odd input is an error here too.
    let typst = catch_unwind(|| mitex::convert_math(latex, None))
        .map_err(|_| refuse("the LaTeX reader failed on it".to_owned()))?
        .map_err(|e| refuse(e.trim_start_matches("error: ").to_owned()))?;
    crate::guard::check_typst(&typst).map_err(refuse)?;
    Ok(typst)
}

/// The deepest nesting of `{`, `[`, `(` and `\left` in `latex`.
fn nesting(latex: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut chars = latex.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let name: String =
                    std::iter::from_fn(|| chars.next_if(char::is_ascii_alphabetic)).collect();
                if name.is_empty() {
                    chars.next(); // an escaped character: `\{` is not a group
                } else if name == "left" {
                    depth += 1;
                } else if name == "right" {
                    depth = depth.saturating_sub(1);
                }
            }
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        deepest = deepest.max(depth);
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_groups_and_left_right_but_not_escapes() {
        assert_eq!(nesting(r"\frac{1}{2}"), 1);
        assert_eq!(nesting(r"\sqrt{\frac{a}{b^{2}}}"), 3);
        assert_eq!(nesting(r"\left( x \right)"), 2);
        assert_eq!(nesting(r"\{ x \}"), 0);
        assert_eq!(nesting("x + y"), 0);
    }
}
