//! The one slide layout: type sizes, line breaks and positions of a slide's heading,
//! bullets and body on a frame, plus what is wrong with them. Validation
//! ([`crate::storyboard`]) refuses a storyboard whose [`SlideLayout::problems`] are not
//! empty; drawing ([`super::SlideRenderer::draw`]) paints the same [`SlideLayout`]. Both call
//! [`layout_slide`], so what is checked is what is drawn.
//!
//! **Type scale.** Sizes are fractions of the layout unit (the frame height, or less on
//! frames narrower than 16:9) times one content scale: heading 8.5 %, bullets 6 %, body 5 %
//! of the unit at scale 1, so a single bullet fills a frame. The scale is the largest of a
//! fixed ladder (1, 0.96, 0.96², …) at which everything fits above the footer; the ladder
//! ends at the legible minimum, [`MIN_BODY_PX_AT_1080`] px body text at 1080p (bullets
//! 34 px, heading 48 px), scaled with the frame. Text that does not fit there is a
//! [`Problem::DoesNotFit`], never cut off.
//!
//! **Scripts.** Paragraph direction follows the text (Unicode bidi, first strong
//! character): right-to-left paragraphs are right-aligned and an RTL bullet has its disc
//! on the right. A character that no embedded font draws is a [`Problem::Uncovered`].
//!
//! **Formulas.** A field with `$…$` or `$$…$$` ([`math::split`]) is set by the
//! [`math::Typesetter`] instead of cosmic-text, at the same size, width and line height, in
//! the same fonts: its height, first baseline and ink come from Typst. A formula that does
//! not parse is a [`Problem::Formula`].

use cosmic_text::{Attrs, Buffer, Family, FontSystem, Metrics, Shaping, Weight, Wrap};

use super::fonts::{LATIN_FAMILY, missing_chars, typesetter};
use crate::storyboard::Slide;

/// The legible minimum: body text is never set smaller than this many pixels on a 1080-line
/// frame (and proportionally on others).
pub const MIN_BODY_PX_AT_1080: f32 = 28.0;

/// Sizes as fractions of the layout unit. Type sizes and the gaps between blocks are
/// multiplied by the content scale; margins and the footer are not, so a crowded slide keeps
/// its frame.
pub(super) mod size {
    pub const MARGIN_X: f32 = 0.09;
    pub const MARGIN_TOP: f32 = 0.08;
    pub const HEADING: f32 = 0.085;
    pub const HEADING_LINE: f32 = 1.2;
    pub const RULE_GAP_ABOVE: f32 = 0.022;
    pub const RULE_HEIGHT: f32 = 0.007;
    pub const RULE_WIDTH: f32 = 0.11;
    pub const RULE_GAP_BELOW: f32 = 0.05;
    pub const BULLET: f32 = 0.06;
    pub const BULLET_LINE: f32 = 1.3;
    /// Hanging indent of bullet text, in bullet font sizes.
    pub const BULLET_INDENT: f32 = 1.15;
    /// Radius of the bullet disc, in bullet font sizes.
    pub const BULLET_RADIUS: f32 = 0.15;
    /// Height of the disc's centre over the baseline, in bullet font sizes: about half the
    /// x-height, where the eye expects it.
    pub const BULLET_RAISE: f32 = 0.3;
    pub const BULLET_GAP: f32 = 0.024;
    pub const BODY_GAP: f32 = 0.045;
    pub const BODY: f32 = 0.05;
    pub const BODY_LINE: f32 = 1.45;
    pub const FOOTER_BAND: f32 = 0.085;
    pub const FOOTER: f32 = 0.026;
    pub const FOOTER_LINE: f32 = 1.25;
    pub const FOOTER_RULE: f32 = 0.0018;
    /// Space kept free between the content and the footer rule.
    pub const FOOTER_GAP: f32 = 0.03;
    /// Each rung of the scale ladder is this much smaller than the one above.
    pub const SCALE_STEP: f32 = 0.96;
    /// The share of the free space left above the bullets and body when they are short,
    /// the rest going below: content sits a little above the middle, where it looks
    /// centred.
    pub const CENTRE_BIAS: f32 = 0.4;
}

/// The smallest content scale: the one that sets body text at [`MIN_BODY_PX_AT_1080`].
pub const MIN_SCALE: f32 = MIN_BODY_PX_AT_1080 / 1080.0 / size::BODY;

/// The ladder of content scales, largest first; the last is [`MIN_SCALE`].
fn scales() -> Vec<f32> {
    let mut ladder = vec![1.0f32];
    while let Some(&last) = ladder.last()
        && last * size::SCALE_STEP > MIN_SCALE
    {
        ladder.push(last * size::SCALE_STEP);
    }
    ladder.push(MIN_SCALE);
    ladder
}

/// Where things go on a frame of a given size.
#[derive(Debug, Clone, Copy)]
pub(super) struct FrameGeometry {
    pub height: f32,
    /// The layout unit: the frame height, or the height of a 16:9 frame of this width when
    /// the frame is narrower than 16:9 (otherwise a tall narrow frame would get headings
    /// wider than itself).
    pub unit: f32,
    pub margin_x: f32,
    pub content_top: f32,
    pub content_width: f32,
    /// The lowest y content may reach: just above the footer.
    pub content_bottom: f32,
    pub footer_top: f32,
}

impl FrameGeometry {
    pub fn new(width: u32, height: u32) -> Self {
        let (w, h) = (width as f32, height as f32);
        let unit = h.min(w * 9.0 / 16.0).max(1.0);
        let margin_x = size::MARGIN_X * unit;
        let footer_top = h - size::FOOTER_BAND * unit;
        Self {
            height: h,
            unit,
            margin_x,
            content_top: size::MARGIN_TOP * unit,
            content_width: (w - 2.0 * margin_x).max(1.0),
            content_bottom: footer_top - size::FOOTER_GAP * unit,
            footer_top,
        }
    }
}

/// Which text of a slide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlideField {
    /// `heading`.
    Heading,
    /// `bullets[i]`, `i` counting every bullet of the storyboard.
    Bullet(usize),
    /// `body`.
    Body,
}

impl std::fmt::Display for SlideField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Heading => f.write_str("heading"),
            Self::Bullet(i) => write!(f, "bullets[{i}]"),
            Self::Body => f.write_str("body"),
        }
    }
}

/// What keeps a slide from being drawn as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// These characters of the field have no glyph in any embedded font.
    Uncovered { field: SlideField, chars: Vec<char> },
    /// The slide's text does not fit even at [`MIN_SCALE`]; `field` is the first block
    /// that reaches below the content area there.
    DoesNotFit {
        field: SlideField,
        /// Body size at the minimum scale on this frame, in pixels.
        min_body_px: f32,
    },
    /// A formula of the field cannot be typeset (or its dollars do not pair up).
    Formula {
        field: SlideField,
        error: math::MathError,
    },
}

impl Problem {
    /// The field, as a path below the slide: `bullets[2]`.
    pub fn field(&self) -> SlideField {
        match self {
            Self::Uncovered { field, .. }
            | Self::DoesNotFit { field, .. }
            | Self::Formula { field, .. } => *field,
        }
    }

    /// What is wrong, for a person.
    pub fn reason(&self) -> String {
        match self {
            Self::Uncovered { chars, .. } => super::fonts::cannot_draw(chars),
            Self::DoesNotFit { min_body_px, .. } => format!(
                "the slide's text does not fit even at the smallest legible type size \
                 (body {min_body_px:.0} px on this frame, {MIN_BODY_PX_AT_1080:.0} px at \
                 1080p); from this field on it would be cut off: shorten the slide or split \
                 it into two"
            ),
            Self::Formula { error, .. } => error.to_string(),
        }
    }
}

/// A laid-out text block and where its top-left corner goes.
#[derive(Debug)]
pub(super) struct Placed {
    /// The text, shaped by cosmic-text. For a field with formulas it holds the plain runs
    /// only, to find the paragraph's direction; `math` is what is drawn.
    pub buffer: Buffer,
    /// The field's text and formulas as Typst set them, when it has formulas.
    pub math: Option<MathText>,
    pub x: f32,
    pub y: f32,
    pub field: SlideField,
}

/// A field with formulas: its runs and how they were last set.
#[derive(Debug)]
pub(super) struct MathText {
    /// The field's runs, or why its dollars do not pair up.
    parts: Result<Vec<math::Part>, math::SplitError>,
    bold: bool,
    /// The result at the current size: the set text, or why it cannot be set.
    pub set: Result<math::Typeset, math::MathError>,
}

impl MathText {
    fn new(parts: Result<Vec<math::Part>, math::SplitError>, bold: bool) -> Self {
        let set = match &parts {
            Err(e) => Err(math::MathError::Split(e.clone())),
            // Replaced by the first layout, which always comes before any use.
            Ok(_) => Err(math::MathError::Formula {
                latex: String::new(),
                reason: "not laid out yet".to_owned(),
            }),
        };
        Self { parts, bold, set }
    }
}

impl Placed {
    /// Lays the block out at `metrics` in a box `width` wide.
    fn relayout(&mut self, fonts: &mut FontSystem, metrics: Metrics, width: f32) {
        self.buffer
            .set_metrics_and_size(fonts, metrics, Some(width), None);
        if let Some(math) = &mut self.math {
            let style = math::TextStyle {
                size: metrics.font_size,
                width,
                line_height: metrics.line_height / metrics.font_size,
                bold: math.bold,
                rtl: is_rtl(&self.buffer),
            };
            math.set = match &math.parts {
                Ok(parts) => typesetter().typeset(parts, &style),
                Err(e) => Err(math::MathError::Split(e.clone())),
            };
        }
    }

    /// Height of all its lines.
    pub fn height(&self) -> f32 {
        match &self.math {
            Some(math) => math.set.as_ref().map_or(0.0, math::Typeset::height),
            None => block_height(&self.buffer),
        }
    }

    /// The first line's baseline below the block's top (`fallback` when it has no line).
    pub fn first_baseline(&self, fallback: f32) -> f32 {
        match &self.math {
            Some(math) => math
                .set
                .as_ref()
                .map_or(fallback, math::Typeset::first_baseline),
            None => self
                .buffer
                .layout_runs()
                .next()
                .map_or(fallback, |run| run.line_y),
        }
    }

    /// The first line's bottom below the block's top, if it has a line.
    pub fn first_line_bottom(&self) -> Option<f32> {
        match &self.math {
            Some(math) => math.set.as_ref().ok().map(math::Typeset::height),
            None => self
                .buffer
                .layout_runs()
                .next()
                .map(|run| run.line_top + run.line_height),
        }
    }

    /// Characters drawn as the missing-glyph box.
    fn missing_chars(&self) -> Vec<char> {
        match &self.math {
            Some(math) => math
                .set
                .as_ref()
                .map_or_else(|_| Vec::new(), math::Typeset::missing_chars),
            None => missing_chars(&self.buffer),
        }
    }
}

/// A filled circle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Disc {
    pub cx: f32,
    pub cy: f32,
    pub r: f32,
}

/// An axis-aligned rectangle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Area {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

/// A bullet: its text and its disc (left of the first line, or right for RTL).
#[derive(Debug)]
pub(super) struct PlacedBullet {
    pub text: Placed,
    pub disc: Disc,
}

/// A slide laid out on a frame: everything drawing needs, and everything validation
/// checks.
#[derive(Debug)]
pub struct SlideLayout {
    pub(super) frame: FrameGeometry,
    /// The content scale chosen (see the module doc).
    pub(super) scale: f32,
    pub(super) heading: Option<Placed>,
    /// The accent rule under the heading.
    pub(super) rule: Option<Area>,
    pub(super) bullets: Vec<PlacedBullet>,
    pub(super) body: Option<Placed>,
    problems: Vec<Problem>,
}

impl SlideLayout {
    /// What keeps the slide from being drawn as written; empty for a valid slide.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The content scale chosen.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Every text block, top to bottom.
    pub(super) fn blocks(&self) -> impl Iterator<Item = &Placed> {
        self.heading
            .iter()
            .chain(self.bullets.iter().map(|b| &b.text))
            .chain(self.body.iter())
    }

    /// The characters drawn as the missing-glyph box (none when `problems` is empty).
    pub fn missing_chars(&self) -> Vec<char> {
        let mut all = Vec::new();
        for block in self.blocks() {
            for c in block.missing_chars() {
                if !all.contains(&c) {
                    all.push(c);
                }
            }
        }
        all
    }

    /// Font size of the body at the chosen scale, in pixels.
    pub fn body_px(&self) -> f32 {
        size::BODY * self.frame.unit * self.scale
    }
}

pub(super) fn regular() -> Attrs<'static> {
    Attrs::new().family(Family::Name(LATIN_FAMILY))
}

pub(super) fn bold() -> Attrs<'static> {
    regular().weight(Weight::BOLD)
}

/// A wrapped text block, shaped once; relaying it out at another size is cheap.
fn text_block(fonts: &mut FontSystem, text: &str, attrs: &Attrs) -> Buffer {
    let mut buffer = Buffer::new_empty(Metrics::new(16.0, 20.0));
    buffer.set_wrap(fonts, Wrap::WordOrGlyph);
    buffer.set_text(fonts, text, attrs, Shaping::Advanced, None);
    buffer
}

/// Height of all laid-out lines of a buffer.
pub(super) fn block_height(buffer: &Buffer) -> f32 {
    buffer.layout_runs().map(|run| run.line_height).sum()
}

/// Width of the widest laid-out line.
pub(super) fn block_width(buffer: &Buffer) -> f32 {
    buffer
        .layout_runs()
        .map(|run| run.line_w)
        .fold(0.0, f32::max)
}

pub(super) fn metrics(size: f32, line: f32) -> Metrics {
    // cosmic-text asserts non-zero sizes; validated frames never come near 1 px.
    let size = size.max(1.0);
    Metrics::new(size, size * line)
}

/// Whether the first line of `buffer` runs right to left.
fn is_rtl(buffer: &Buffer) -> bool {
    buffer.layout_runs().next().is_some_and(|run| run.rtl)
}

/// Lays `slide` out on a `width`×`height` frame: the one layout function (see the module
/// doc). Never fails: a slide with problems is laid out at the minimum scale, and the
/// problems say what is wrong.
pub fn layout_slide(fonts: &mut FontSystem, slide: &Slide, width: u32, height: u32) -> SlideLayout {
    let frame = FrameGeometry::new(width, height);
    let present = |s: &str| !s.trim().is_empty();
    let block = |fonts: &mut FontSystem, text: &str, attrs: &Attrs, field| {
        let text = text.trim();
        let bold = attrs.weight == Weight::BOLD;
        let (plain, math) = match math::split(text) {
            Ok(parts) => {
                // The plain runs, `\$` read as `$`: all of the text when it has no formula,
                // else what cosmic-text shapes to find the paragraph's direction.
                let plain = parts
                    .iter()
                    .filter_map(|p| match p {
                        math::Part::Text(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect::<String>();
                let has_formula = parts.iter().any(|p| p.formula().is_some());
                (plain, has_formula.then(|| MathText::new(Ok(parts), bold)))
            }
            Err(e) => (text.to_owned(), Some(MathText::new(Err(e), bold))),
        };
        Placed {
            buffer: text_block(fonts, &plain, attrs),
            math,
            x: frame.margin_x,
            y: 0.0,
            field,
        }
    };
    let heading =
        present(&slide.heading).then(|| block(fonts, &slide.heading, &bold(), SlideField::Heading));
    let bullets = slide
        .bullets
        .iter()
        .enumerate()
        .filter(|(_, b)| present(b))
        .map(|(i, b)| PlacedBullet {
            text: block(fonts, b, &regular(), SlideField::Bullet(i)),
            disc: Disc {
                cx: 0.0,
                cy: 0.0,
                r: 0.0,
            },
        })
        .collect();
    let body =
        present(&slide.body).then(|| block(fonts, &slide.body, &regular(), SlideField::Body));
    let mut layout = SlideLayout {
        frame,
        scale: 1.0,
        heading,
        rule: None,
        bullets,
        body,
        problems: Vec::new(),
    };

    // The largest rung at which everything fits. Taller text never fits where shorter did
    // not, near enough, so a binary search over the ladder finds it in a few layouts.
    let ladder = scales();
    let last = ladder.len() - 1;
    let fits = |layout: &mut SlideLayout, fonts: &mut FontSystem, k: usize| {
        layout.place(fonts, ladder[k]);
        layout.overflow().is_none()
    };
    let chosen = if fits(&mut layout, fonts, 0) {
        0
    } else if !fits(&mut layout, fonts, last) {
        last
    } else {
        let (mut low, mut high) = (0, last); // low does not fit, high fits
        while high - low > 1 {
            let mid = (low + high) / 2;
            if fits(&mut layout, fonts, mid) {
                high = mid;
            } else {
                low = mid;
            }
        }
        high
    };
    layout.place(fonts, ladder[chosen]);
    if let Some(field) = layout.overflow() {
        layout.problems.push(Problem::DoesNotFit {
            field,
            min_body_px: layout.body_px(),
        });
    }
    let uncovered: Vec<Problem> = layout
        .blocks()
        .filter_map(|b| {
            let chars = b.missing_chars();
            (!chars.is_empty()).then_some(Problem::Uncovered {
                field: b.field,
                chars,
            })
        })
        .collect();
    layout.problems.extend(uncovered);
    let formulas: Vec<Problem> = layout
        .blocks()
        .filter_map(|b| match &b.math {
            Some(MathText {
                set: Err(error), ..
            }) => Some(Problem::Formula {
                field: b.field,
                error: error.clone(),
            }),
            _ => None,
        })
        .collect();
    layout.problems.extend(formulas);
    layout.problems.sort_by_key(|p| match p.field() {
        SlideField::Heading => 0,
        SlideField::Bullet(i) => i.saturating_add(1),
        SlideField::Body => usize::MAX,
    });
    layout
}

impl SlideLayout {
    /// Lays every block out at `scale` and places it: the heading at the top, the bullets
    /// and body below it, moved down into the free space when there is some.
    fn place(&mut self, fonts: &mut FontSystem, scale: f32) {
        self.scale = scale;
        let frame = self.frame;
        let u = frame.unit * scale;
        let x = frame.margin_x;
        let mut y = frame.content_top;
        self.rule = None;
        if let Some(heading) = &mut self.heading {
            heading.relayout(
                fonts,
                metrics(size::HEADING * u, size::HEADING_LINE),
                frame.content_width,
            );
            heading.y = y;
            y += heading.height() + size::RULE_GAP_ABOVE * u;
            let w = size::RULE_WIDTH * u;
            self.rule = Some(Area {
                x: if is_rtl(&heading.buffer) {
                    x + frame.content_width - w
                } else {
                    x
                },
                y,
                w,
                h: (size::RULE_HEIGHT * u).max(1.0),
            });
            y += (size::RULE_HEIGHT + size::RULE_GAP_BELOW) * u;
        }
        let below_heading = y;
        let bullet_size = size::BULLET * u;
        let indent = size::BULLET_INDENT * bullet_size;
        let radius = size::BULLET_RADIUS * bullet_size;
        for (i, bullet) in self.bullets.iter_mut().enumerate() {
            let text = &mut bullet.text;
            text.relayout(
                fonts,
                metrics(bullet_size, size::BULLET_LINE),
                (frame.content_width - indent).max(1.0),
            );
            if i > 0 {
                y += size::BULLET_GAP * u;
            }
            text.y = y;
            let baseline = text.first_baseline(bullet_size);
            let rtl = is_rtl(&text.buffer);
            // RTL text is right-aligned in its box, so the box starts at the margin and
            // the disc sits in the indent on the right.
            text.x = if rtl { x } else { x + indent };
            bullet.disc = Disc {
                cx: if rtl {
                    x + frame.content_width - radius
                } else {
                    x + radius
                },
                cy: y + baseline - size::BULLET_RAISE * bullet_size,
                r: radius,
            };
            y += text.height();
        }
        if let Some(body) = &mut self.body {
            body.relayout(
                fonts,
                metrics(size::BODY * u, size::BODY_LINE),
                frame.content_width,
            );
            if !self.bullets.is_empty() {
                y += size::BODY_GAP * u;
            }
            body.y = y;
            y += body.height();
        }

        // Short content: move what is under the heading down into the free space.
        let free = frame.content_bottom - y;
        if free > 0.0 && self.heading.is_some() && below_heading < y {
            let shift = free * size::CENTRE_BIAS;
            for bullet in &mut self.bullets {
                bullet.text.y += shift;
                bullet.disc.cy += shift;
            }
            if let Some(body) = &mut self.body {
                body.y += shift;
            }
        }
    }

    /// The first block that reaches below the content area, if any.
    fn overflow(&self) -> Option<SlideField> {
        let bottom = self.frame.content_bottom + 0.01;
        self.blocks()
            .find(|b| b.y + b.height() > bottom)
            .map(|b| b.field)
    }
}
