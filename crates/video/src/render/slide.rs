//! Slide drawing: turns one storyboard [`Slide`] into a frame of raw RGBA pixels that the
//! compose stage pipes into ffmpeg (`-f rawvideo -pix_fmt rgba`).
//!
//! Text is shaped and laid out with cosmic-text and rasterised with its swash cache, shapes
//! are filled with tiny-skia. The four fonts are compiled into the binary and no system font
//! is ever looked at, so the same slide gives the same bytes on every machine; that is what
//! lets [`SlideRenderer::fingerprint`] stand in for "everything but the slide" in the render
//! cache key.
//!
//! Layout: a near-white background, a bold heading with an accent rule under it, bullet
//! points with a hanging indent, the body paragraph, and a footer with the video's title
//! and the slide number. Every size is a fraction of one unit (the frame height, or less on
//! frames narrower than 16:9), so 1280×720 and 1920×1080 look alike. Content that does not
//! fit is shrunk step by step down to a floor, and past the floor cut off at whole lines
//! above the footer.

use std::fmt::Write as _;
use std::sync::OnceLock;

use cosmic_text::{
    Attrs, Buffer, Family, FontSystem, Metrics, Shaping, SwashCache, SwashContent, SwashImage,
    Weight, Wrap,
};
use sha2::{Digest, Sha256};
use tiny_skia::{FillRule, Paint, PathBuilder, Pixmap, Rect, Transform};

use crate::storyboard::Slide;

const LIBERATION_REGULAR: &[u8] = include_bytes!("../../fonts/LiberationSans-Regular.ttf");
const LIBERATION_BOLD: &[u8] = include_bytes!("../../fonts/LiberationSans-Bold.ttf");
const NANUM_REGULAR: &[u8] = include_bytes!("../../fonts/NanumGothic.ttf");
const NANUM_BOLD: &[u8] = include_bytes!("../../fonts/NanumGothicBold.ttf");

/// Every font the renderer knows. Latin first: the load order fixes fontdb's face ids, and
/// those order the fallback candidates, so it must not depend on anything at run time.
const FONTS: [&[u8]; 4] = [
    LIBERATION_REGULAR,
    LIBERATION_BOLD,
    NANUM_REGULAR,
    NANUM_BOLD,
];

/// Bump whenever the pixels change for the same slide and fonts: layout, colours, blending,
/// or an upgrade of cosmic-text, swash or tiny-skia. It is hashed into
/// [`SlideRenderer::fingerprint`], so a bump invalidates cached renders.
const RENDERER_VERSION: &str = "slide-renderer/1";

/// The family every text run asks for. Hangul is not in it, so cosmic-text's fallback goes
/// on to the other loaded faces and finds Nanum Gothic (the only other family there is);
/// with bold asked for, the bold Nanum face is the closest weight and wins.
const LATIN_FAMILY: &str = "Liberation Sans";

/// Swash keeps every rasterised glyph (per size and subpixel offset). Slides shrink to many
/// different sizes, so a long-lived renderer would grow without end; past this many glyph
/// images the cache is simply emptied before the next slide.
const GLYPH_CACHE_LIMIT: usize = 4096;

/// Colours, as straight RGB.
mod colour {
    pub const BACKGROUND: [u8; 3] = [0xF8, 0xFA, 0xFC];
    pub const HEADING: [u8; 3] = [0x0F, 0x17, 0x2A];
    pub const ACCENT: [u8; 3] = [0x25, 0x63, 0xEB];
    pub const BULLET_TEXT: [u8; 3] = [0x1E, 0x29, 0x3B];
    pub const BODY: [u8; 3] = [0x47, 0x55, 0x69];
    pub const FOOTER_TEXT: [u8; 3] = [0x64, 0x74, 0x8B];
    pub const FOOTER_RULE: [u8; 3] = [0xE2, 0xE8, 0xF0];

    /// A bullet that is not the current one: 60 % of the way to the background.
    pub fn dimmed(rgb: [u8; 3]) -> [u8; 3] {
        let mix = |c: u8, bg: u8| ((u16::from(c) * 2 + u16::from(bg) * 3) / 5) as u8;
        [
            mix(rgb[0], BACKGROUND[0]),
            mix(rgb[1], BACKGROUND[1]),
            mix(rgb[2], BACKGROUND[2]),
        ]
    }
}

/// Which bullets a picture of a slide shows (storyboard beats): the first `visible` ones,
/// with `emphasised` in full colour and the other visible ones dimmed (all in full colour
/// when `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reveal {
    /// How many bullets are drawn, from the first.
    pub visible: usize,
    /// The current bullet, if one is.
    pub emphasised: Option<usize>,
}

impl Reveal {
    /// Every bullet, none emphasised: the whole slide.
    pub fn all() -> Self {
        Self {
            visible: usize::MAX,
            emphasised: None,
        }
    }
}

/// Sizes as fractions of the layout unit (see [`unit`]). Font sizes and the gaps between
/// blocks shrink with the content scale; margins and the footer do not, so a crowded slide
/// keeps its frame.
mod size {
    pub const MARGIN_X: f32 = 0.09;
    pub const MARGIN_TOP: f32 = 0.08;
    pub const HEADING: f32 = 0.072;
    pub const HEADING_LINE: f32 = 1.2;
    pub const RULE_GAP_ABOVE: f32 = 0.02;
    pub const RULE_HEIGHT: f32 = 0.0065;
    pub const RULE_WIDTH: f32 = 0.1;
    pub const RULE_GAP_BELOW: f32 = 0.045;
    pub const BULLET: f32 = 0.044;
    pub const BULLET_LINE: f32 = 1.3;
    /// Hanging indent of bullet text, in bullet font sizes.
    pub const BULLET_INDENT: f32 = 1.15;
    /// Radius of the bullet disc, in bullet font sizes.
    pub const BULLET_RADIUS: f32 = 0.15;
    /// Height of the disc's centre over the baseline, in bullet font sizes: about half the
    /// x-height, where the eye expects it.
    pub const BULLET_RAISE: f32 = 0.3;
    pub const BULLET_GAP: f32 = 0.016;
    pub const BODY_GAP: f32 = 0.04;
    pub const BODY: f32 = 0.037;
    pub const BODY_LINE: f32 = 1.45;
    pub const FOOTER_BAND: f32 = 0.085;
    pub const FOOTER: f32 = 0.026;
    pub const FOOTER_LINE: f32 = 1.25;
    pub const FOOTER_RULE: f32 = 0.0018;
    /// Space kept free between the content and the footer rule.
    pub const FOOTER_GAP: f32 = 0.03;
    /// Content scales tried in order until everything fits; the last is the floor.
    pub const SCALES: [f32; 9] = [1.0, 0.92, 0.85, 0.78, 0.72, 0.66, 0.6, 0.55, 0.5];
}

/// Draws slides; holds the font system (expensive to build: build once, reuse).
pub struct SlideRenderer {
    fonts: FontSystem,
    glyphs: SwashCache,
}

impl std::fmt::Debug for SlideRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The font system's own Debug lists every face; the count says enough.
        f.debug_struct("SlideRenderer")
            .field("faces", &self.fonts.db().len())
            .field("cached_glyphs", &self.glyphs.image_cache.len())
            .finish()
    }
}

impl Default for SlideRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl SlideRenderer {
    /// Loads the four embedded fonts (and nothing else) into a font system with the
    /// locale `en-US`. Takes a while (the fonts are parsed); keep the renderer.
    pub fn new() -> Self {
        Self::with_fonts(&FONTS)
    }

    /// A renderer that knows only `fonts`; the tests use it to show what a missing font
    /// looks like.
    fn with_fonts(fonts: &[&[u8]]) -> Self {
        // fontdb is not a dependency of ours, so the database is named by inference:
        // `Default` gives an empty one. Unlike `FontSystem::new`, nothing here scans the
        // system's fonts, and the locale is fixed rather than read from the environment.
        let mut font_system =
            FontSystem::new_with_locale_and_db("en-US".to_owned(), Default::default());
        let db = font_system.db_mut();
        for font in fonts {
            db.load_font_data(font.to_vec());
        }
        db.set_sans_serif_family(LATIN_FAMILY);
        Self {
            fonts: font_system,
            glyphs: SwashCache::new(),
        }
    }

    /// SHA-256 hex of everything that shapes the pixels besides the slide itself: the font
    /// bytes and a renderer version constant. Part of the render cache key.
    pub fn fingerprint() -> &'static str {
        static FINGERPRINT: OnceLock<String> = OnceLock::new();
        FINGERPRINT.get_or_init(|| {
            let mut hasher = Sha256::new();
            hasher.update(RENDERER_VERSION.as_bytes());
            for font in FONTS {
                // Length-prefixed, so moving bytes from one font to the next changes the hash.
                hasher.update((font.len() as u64).to_le_bytes());
                hasher.update(font);
            }
            let mut hex = String::with_capacity(64);
            for byte in hasher.finalize() {
                // Writing to a String cannot fail.
                let _ = write!(hex, "{byte:02x}");
            }
            hex
        })
    }

    /// Draws one slide into straight (non-premultiplied) RGBA8 bytes, `width*height*4` long,
    /// row-major, for ffmpeg `-f rawvideo -pix_fmt rgba`.
    ///
    /// `index` counts from 0; the footer shows `index+1 / total`. Never panics: text that
    /// does not fit is shrunk and then cut off, characters in no font are drawn as the
    /// font's missing-glyph box. Sizes are expected within the storyboard limits
    /// (320..=3840 × 180..=2160); a zero side gives an empty vector.
    pub fn draw(
        &mut self,
        title: &str,
        slide: &Slide,
        index: usize,
        total: usize,
        width: u32,
        height: u32,
    ) -> Vec<u8> {
        self.draw_revealed(title, slide, Reveal::all(), [index, total], width, height)
    }

    /// [`SlideRenderer::draw`] showing only the bullets `reveal` says, the emphasised one
    /// in full colour and the others dimmed; hidden bullets keep their place, so the layout
    /// does not move as they appear. `[index, total]` is the footer's slide number.
    pub fn draw_revealed(
        &mut self,
        title: &str,
        slide: &Slide,
        reveal: Reveal,
        [index, total]: [usize; 2],
        width: u32,
        height: u32,
    ) -> Vec<u8> {
        let Some(mut pixmap) = Pixmap::new(width, height) else {
            // Only a zero side (or one beyond tiny-skia's limits, which validated sizes
            // never are) gets here; return what the caller asked for, in background colour.
            tracing::warn!(width, height, "slide size cannot be drawn");
            let pixels = (width as usize).saturating_mul(height as usize);
            let [r, g, b] = colour::BACKGROUND;
            return [r, g, b, 255].repeat(pixels);
        };
        if self.glyphs.image_cache.len() > GLYPH_CACHE_LIMIT {
            self.glyphs.image_cache.clear();
        }
        let [r, g, b] = colour::BACKGROUND;
        pixmap.fill(tiny_skia::Color::from_rgba8(r, g, b, 255));

        let frame = FrameGeometry::new(width, height);
        let mut canvas = Canvas {
            pixmap: &mut pixmap,
            fonts: &mut self.fonts,
            glyphs: &mut self.glyphs,
        };
        let mut content = Content::new(canvas.fonts, slide, &frame);
        content.paint(&mut canvas, &frame, reveal);
        paint_footer(&mut canvas, &frame, title, index, total);

        // The background is opaque and every blend below keeps alpha at 255, so the
        // premultiplied pixmap already is straight RGBA. Demultiply anyway should a pixel
        // ever be translucent, rather than hand ffmpeg darkened colours.
        let mut bytes = pixmap.take();
        for px in bytes.chunks_exact_mut(4) {
            let a = px[3];
            if a != 255 {
                for c in &mut px[..3] {
                    *c = if a == 0 {
                        0
                    } else {
                        ((u16::from(*c) * 255 + u16::from(a) / 2) / u16::from(a)).min(255) as u8
                    };
                }
            }
        }
        bytes
    }
}

/// Where things go on a frame of a given size.
struct FrameGeometry {
    height: f32,
    /// The layout unit: the frame height, or the height of a 16:9 frame of this width
    /// when the frame is narrower than 16:9 (otherwise a tall narrow frame would get
    /// headings wider than itself).
    unit: f32,
    margin_x: f32,
    content_top: f32,
    content_width: f32,
    /// The lowest y content may reach: just above the footer.
    content_bottom: f32,
    footer_top: f32,
}

impl FrameGeometry {
    fn new(width: u32, height: u32) -> Self {
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

/// The pixmap being drawn and what text needs for drawing.
struct Canvas<'a> {
    pixmap: &'a mut Pixmap,
    fonts: &'a mut FontSystem,
    glyphs: &'a mut SwashCache,
}

impl Canvas<'_> {
    fn fill_rect(&mut self, x: f32, y: f32, w: f32, h: f32, rgb: [u8; 3]) {
        if let Some(rect) = Rect::from_xywh(x, y, w, h) {
            self.pixmap
                .fill_rect(rect, &solid(rgb), Transform::identity(), None);
        }
    }

    fn fill_circle(&mut self, cx: f32, cy: f32, r: f32, rgb: [u8; 3]) {
        if let Some(path) = PathBuilder::from_circle(cx, cy, r) {
            self.pixmap.fill_path(
                &path,
                &solid(rgb),
                FillRule::Winding,
                Transform::identity(),
                None,
            );
        }
    }

    /// Draws `buffer` with its top-left corner at (x, y). Lines whose box would end below
    /// `bottom` are left out whole, so clipped text never shows half a line.
    fn text(&mut self, buffer: &Buffer, x: f32, y: f32, rgb: [u8; 3], bottom: f32) {
        for run in buffer.layout_runs() {
            if y + run.line_top + run.line_height > bottom + 0.5 {
                break;
            }
            for glyph in run.glyphs {
                let physical = glyph.physical((x, y + run.line_y), 1.0);
                if let Some(image) = self.glyphs.get_image(self.fonts, physical.cache_key) {
                    blend_glyph(
                        self.pixmap,
                        image,
                        physical.x + image.placement.left,
                        physical.y - image.placement.top,
                        rgb,
                    );
                }
            }
        }
    }
}

fn solid(rgb: [u8; 3]) -> Paint<'static> {
    let mut paint = Paint::default();
    paint.set_color_rgba8(rgb[0], rgb[1], rgb[2], 255);
    paint.anti_alias = true;
    paint
}

/// Source-over of one glyph image onto the premultiplied pixmap, clipped to the pixmap.
/// Mask glyphs are coverage in `rgb`; colour glyphs (none of our fonts has any) carry
/// their own colour.
fn blend_glyph(pixmap: &mut Pixmap, image: &SwashImage, left: i32, top: i32, rgb: [u8; 3]) {
    let (pw, ph) = (pixmap.width() as i64, pixmap.height() as i64);
    let (gw, gh) = (
        i64::from(image.placement.width),
        i64::from(image.placement.height),
    );
    let stride = match image.content {
        SwashContent::Mask => 1,
        SwashContent::SubpixelMask | SwashContent::Color => 4,
    };
    let data = pixmap.data_mut();
    for gy in 0..gh {
        let y = i64::from(top) + gy;
        if y < 0 || y >= ph {
            continue;
        }
        for gx in 0..gw {
            let x = i64::from(left) + gx;
            if x < 0 || x >= pw {
                continue;
            }
            let src = ((gy * gw + gx) * stride) as usize;
            let Some(px) = image.data.get(src..src + stride as usize) else {
                continue;
            };
            let (colour, alpha) = match image.content {
                SwashContent::Mask => (rgb, px[0]),
                // Subpixel coverage is not asked for (cosmic-text renders plain alpha);
                // should it come, its mean is the coverage.
                SwashContent::SubpixelMask => (
                    rgb,
                    ((u16::from(px[0]) + u16::from(px[1]) + u16::from(px[2])) / 3) as u8,
                ),
                SwashContent::Color => ([px[0], px[1], px[2]], px[3]),
            };
            if alpha == 0 {
                continue;
            }
            let dst = ((y * pw + x) * 4) as usize;
            let Some(out) = data.get_mut(dst..dst + 4) else {
                continue;
            };
            let a = u32::from(alpha);
            let inv = 255 - a;
            for (o, c) in out.iter_mut().zip([colour[0], colour[1], colour[2], 255]) {
                *o = ((u32::from(c) * a + u32::from(*o) * inv + 127) / 255) as u8;
            }
        }
    }
}

fn regular() -> Attrs<'static> {
    Attrs::new().family(Family::Name(LATIN_FAMILY))
}

fn bold() -> Attrs<'static> {
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
fn block_height(buffer: &Buffer) -> f32 {
    buffer.layout_runs().map(|run| run.line_height).sum()
}

/// Width of the widest laid-out line.
fn block_width(buffer: &Buffer) -> f32 {
    buffer
        .layout_runs()
        .map(|run| run.line_w)
        .fold(0.0, f32::max)
}

fn metrics(size: f32, line: f32) -> Metrics {
    // cosmic-text asserts non-zero sizes; validated frames never come near 1 px.
    let size = size.max(1.0);
    Metrics::new(size, size * line)
}

/// The slide's text blocks, laid out at one content scale.
struct Content {
    heading: Option<Buffer>,
    bullets: Vec<Buffer>,
    body: Option<Buffer>,
    /// The content scale the blocks are laid out at.
    scale: f32,
}

impl Content {
    fn new(fonts: &mut FontSystem, slide: &Slide, frame: &FrameGeometry) -> Self {
        let present = |s: &str| !s.trim().is_empty();
        let mut content = Self {
            heading: present(&slide.heading)
                .then(|| text_block(fonts, slide.heading.trim(), &bold())),
            bullets: slide
                .bullets
                .iter()
                .filter(|b| present(b))
                .map(|b| text_block(fonts, b.trim(), &regular()))
                .collect(),
            body: present(&slide.body).then(|| text_block(fonts, slide.body.trim(), &regular())),
            scale: 1.0,
        };
        // The largest scale at which everything fits; the floor if none does.
        let room = frame.content_bottom - frame.content_top;
        for scale in size::SCALES {
            if content.layout(fonts, frame, scale) <= room {
                break;
            }
        }
        content
    }

    /// Lays every block out at `scale` and returns the total height.
    fn layout(&mut self, fonts: &mut FontSystem, frame: &FrameGeometry, scale: f32) -> f32 {
        self.scale = scale;
        let u = frame.unit * scale;
        let mut height = 0.0;
        if let Some(heading) = &mut self.heading {
            heading.set_metrics_and_size(
                fonts,
                metrics(size::HEADING * u, size::HEADING_LINE),
                Some(frame.content_width),
                None,
            );
            height += block_height(heading)
                + (size::RULE_GAP_ABOVE + size::RULE_HEIGHT + size::RULE_GAP_BELOW) * u;
        }
        let indent = size::BULLET_INDENT * size::BULLET * u;
        for (i, bullet) in self.bullets.iter_mut().enumerate() {
            bullet.set_metrics_and_size(
                fonts,
                metrics(size::BULLET * u, size::BULLET_LINE),
                Some((frame.content_width - indent).max(1.0)),
                None,
            );
            if i > 0 {
                height += size::BULLET_GAP * u;
            }
            height += block_height(bullet);
        }
        if let Some(body) = &mut self.body {
            body.set_metrics_and_size(
                fonts,
                metrics(size::BODY * u, size::BODY_LINE),
                Some(frame.content_width),
                None,
            );
            if !self.bullets.is_empty() {
                height += size::BODY_GAP * u;
            }
            height += block_height(body);
        }
        height
    }

    /// Paints the blocks top-down as laid out; whatever lies below the content area is
    /// left out (whole lines at a time).
    fn paint(&mut self, canvas: &mut Canvas<'_>, frame: &FrameGeometry, reveal: Reveal) {
        let u = frame.unit * self.scale;
        let bottom = frame.content_bottom;
        let x = frame.margin_x;
        let mut y = frame.content_top;
        if let Some(heading) = &self.heading {
            canvas.text(heading, x, y, colour::HEADING, bottom);
            y += block_height(heading) + size::RULE_GAP_ABOVE * u;
            let rule_h = (size::RULE_HEIGHT * u).max(1.0);
            if y + rule_h <= bottom {
                canvas.fill_rect(x, y, size::RULE_WIDTH * u, rule_h, colour::ACCENT);
            }
            y += (size::RULE_HEIGHT + size::RULE_GAP_BELOW) * u;
        }
        let bullet_size = size::BULLET * u;
        let indent = size::BULLET_INDENT * bullet_size;
        for (i, bullet) in self.bullets.iter().enumerate() {
            if i > 0 {
                y += size::BULLET_GAP * u;
            }
            if i >= reveal.visible {
                y += block_height(bullet);
                continue;
            }
            let dim = |rgb: [u8; 3]| match reveal.emphasised {
                Some(e) if e != i => colour::dimmed(rgb),
                _ => rgb,
            };
            // The disc goes with the bullet's first line: drawn only if that line is.
            let first_line = bullet
                .layout_runs()
                .next()
                .map(|run| (run.line_y, run.line_top + run.line_height));
            if let Some((baseline, line_bottom)) = first_line
                && y + line_bottom <= bottom + 0.5
            {
                canvas.fill_circle(
                    x + size::BULLET_RADIUS * bullet_size,
                    y + baseline - size::BULLET_RAISE * bullet_size,
                    size::BULLET_RADIUS * bullet_size,
                    dim(colour::ACCENT),
                );
            }
            canvas.text(bullet, x + indent, y, dim(colour::BULLET_TEXT), bottom);
            y += block_height(bullet);
        }
        if let Some(body) = &self.body {
            if !self.bullets.is_empty() {
                y += size::BODY_GAP * u;
            }
            canvas.text(body, x, y, colour::BODY, bottom);
        }
    }
}

/// The footer: a hairline, the title on the left (cut with an ellipsis when long), the
/// slide number on the right. It has a fixed size and never shrinks with the content.
fn paint_footer(
    canvas: &mut Canvas<'_>,
    frame: &FrameGeometry,
    title: &str,
    index: usize,
    total: usize,
) {
    let u = frame.unit;
    let line = metrics(size::FOOTER * u, size::FOOTER_LINE);
    let band = frame.height - frame.footer_top;
    let text_y = frame.footer_top + (band - line.line_height) / 2.0;
    canvas.fill_rect(
        frame.margin_x,
        frame.footer_top,
        frame.content_width,
        (size::FOOTER_RULE * u).max(1.0),
        colour::FOOTER_RULE,
    );

    let number = format!("{} / {}", index.saturating_add(1), total);
    let number = single_line(canvas.fonts, &number, line, f32::INFINITY);
    let number_w = block_width(&number);
    let right = frame.margin_x + frame.content_width;
    canvas.text(
        &number,
        right - number_w,
        text_y,
        colour::FOOTER_TEXT,
        frame.height,
    );

    let room = frame.content_width - number_w - 2.0 * size::FOOTER * u;
    if room > 0.0 {
        // A title is one line: line breaks in it become spaces.
        let title: String = title
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let title = single_line(canvas.fonts, &title, line, room);
        canvas.text(
            &title,
            frame.margin_x,
            text_y,
            colour::FOOTER_TEXT,
            frame.height,
        );
    }
}

/// `text` on one unwrapped line no wider than `max_width`: cut at a glyph boundary with an
/// ellipsis appended if it is wider.
fn single_line(fonts: &mut FontSystem, text: &str, line: Metrics, max_width: f32) -> Buffer {
    let mut buffer = Buffer::new_empty(line);
    buffer.set_wrap(fonts, Wrap::None);
    buffer.set_text(fonts, text, &regular(), Shaping::Advanced, None);
    if block_width(&buffer) <= max_width {
        return buffer;
    }
    let ellipsis = "…";
    let mut probe = Buffer::new_empty(line);
    probe.set_wrap(fonts, Wrap::None);
    probe.set_text(fonts, ellipsis, &regular(), Shaping::Advanced, None);
    let limit = max_width - block_width(&probe);
    // The first glyph (in logical order) that reaches past the limit; the text is cut
    // there. Glyph offsets are byte offsets into the line, always on char boundaries.
    let cut = buffer
        .layout_runs()
        .next()
        .and_then(|run| {
            run.glyphs
                .iter()
                .filter(|g| g.x + g.w > limit)
                .map(|g| g.start)
                .min()
        })
        .unwrap_or(0);
    let kept = text.get(..cut).unwrap_or("").trim_end();
    let cut_text = format!("{kept}{ellipsis}");
    buffer.set_text(fonts, &cut_text, &regular(), Shaping::Advanced, None);
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slide(heading: &str, bullets: &[&str], body: &str) -> Slide {
        Slide {
            heading: heading.into(),
            bullets: bullets.iter().map(|b| (*b).into()).collect(),
            body: body.into(),
        }
    }

    fn english() -> Slide {
        slide(
            "How plants turn light into food",
            &[
                "Chlorophyll absorbs red and blue light, and reflects green",
                "Water is split, releasing oxygen into the air",
                "The Calvin cycle fixes carbon dioxide into sugar — glucose, C₆H₁₂O₆",
            ],
            "Photosynthesis happens in the chloroplasts of leaf cells. The light reactions \
             make ATP and NADPH; the Calvin cycle spends them to build sugars that feed the \
             whole plant.",
        )
    }

    fn korean() -> Slide {
        slide(
            "광합성",
            &[
                "엽록소는 빛 에너지를 흡수합니다",
                "물이 분해되어 산소(O₂)가 나옵니다",
                "이산화탄소가 포도당으로 바뀝니다 (Calvin cycle)",
            ],
            "광합성은 잎의 엽록체에서 일어납니다. 명반응에서 만든 ATP와 NADPH로 \
             캘빈 회로가 당을 만들고, 이 당이 식물 전체의 양분이 됩니다.",
        )
    }

    fn to_png(bytes: &[u8], width: u32, height: u32, path: &str) {
        let size = tiny_skia::IntSize::from_wh(width, height).unwrap();
        let pixmap = Pixmap::from_vec(bytes.to_vec(), size).unwrap();
        pixmap.save_png(path).unwrap();
    }

    /// Pixels in rows `rows` that differ clearly from the background.
    fn ink(bytes: &[u8], width: u32, rows: std::ops::Range<u32>) -> Vec<bool> {
        let [r, g, b] = colour::BACKGROUND;
        let start = (rows.start * width * 4) as usize;
        let end = (rows.end * width * 4) as usize;
        bytes[start..end]
            .chunks_exact(4)
            .map(|p| {
                let d = i32::from(p[0]).abs_diff(i32::from(r))
                    + i32::from(p[1]).abs_diff(i32::from(g))
                    + i32::from(p[2]).abs_diff(i32::from(b));
                d > 96
            })
            .collect()
    }

    fn count(ink: &[bool]) -> usize {
        ink.iter().filter(|&&i| i).count()
    }

    /// Pixels inked in exactly one of the two.
    fn difference(a: &[bool], b: &[bool]) -> usize {
        a.iter().zip(b).filter(|(x, y)| x != y).count()
    }

    #[test]
    fn renderer_is_send_and_debug() {
        fn send<T: Send + std::fmt::Debug>() {}
        send::<SlideRenderer>();
        let r = SlideRenderer::new();
        assert!(format!("{r:?}").contains("faces: 4"));
    }

    #[test]
    fn fingerprint_is_stable_hex() {
        let f = SlideRenderer::fingerprint();
        assert_eq!(f.len(), 64);
        assert!(f.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(f, SlideRenderer::fingerprint());
    }

    #[test]
    fn sizes_and_determinism() {
        let mut r = SlideRenderer::new();
        for (w, h) in [
            (1280, 720),
            (1920, 1080),
            (320, 180),
            (3840, 180),
            (320, 2160),
            (854, 480),
        ] {
            let a = r.draw("Title", &english(), 0, 3, w, h);
            assert_eq!(a.len(), (w * h * 4) as usize, "{w}x{h}");
            let b = r.draw("Title", &english(), 0, 3, w, h);
            assert!(a == b, "{w}x{h}: two draws differ");
            assert!(
                a.chunks_exact(4).all(|p| p[3] == 255),
                "{w}x{h}: not opaque"
            );
        }
        // A fresh renderer (empty caches) draws the same bytes too.
        let a = r.draw("Title", &korean(), 1, 3, 1280, 720);
        let b = SlideRenderer::new().draw("Title", &korean(), 1, 3, 1280, 720);
        assert!(a == b);
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        let mut r = SlideRenderer::new();
        assert!(r.draw("t", &english(), 0, 1, 0, 720).is_empty());
        assert!(r.draw("t", &english(), 0, 1, 1280, 0).is_empty());
        assert_eq!(r.draw("t", &english(), 0, 1, 2, 2).len(), 16);
    }

    #[test]
    fn heading_area_has_dark_pixels_and_empty_slide_is_background() {
        let mut r = SlideRenderer::new();
        let (w, h) = (1280, 720);
        let bytes = r.draw("Title", &english(), 0, 1, w, h);
        // The heading's first line sits in the top ~160 px at 720p.
        let dark = bytes[..(160 * w * 4) as usize]
            .chunks_exact(4)
            .filter(|p| p[0] < 80 && p[1] < 80 && p[2] < 80)
            .count();
        assert!(dark > 1000, "only {dark} dark pixels in the heading area");

        let empty = r.draw("", &Slide::default(), 0, 0, w, h);
        assert_eq!(empty.len(), (w * h * 4) as usize);
        // Nothing above the footer but background.
        let content = ink(&empty, w, 0..h - 70);
        assert_eq!(count(&content), 0);
    }

    /// Renders `text` as a heading alone and returns the ink of the heading area.
    fn heading_ink(r: &mut SlideRenderer, text: &str) -> Vec<bool> {
        let bytes = r.draw("", &slide(text, &[], ""), 0, 1, 1280, 720);
        ink(&bytes, 1280, 40..140)
    }

    #[test]
    fn hangul_is_not_tofu() {
        let mut full = SlideRenderer::new();
        let gwang = heading_ink(&mut full, "광");
        let hap = heading_ink(&mut full, "합");
        let tofu = heading_ink(&mut full, "\u{10FFFD}");
        let (g, t) = (count(&gwang), count(&tofu));
        assert!(g > 200 && t > 50, "ink: 광 {g}, tofu {t}");
        // A real glyph differs from the missing-glyph box in most of its ink…
        assert!(
            difference(&gwang, &tofu) > g.max(t) / 2,
            "광 looks like tofu"
        );
        // …and two syllables differ from each other (tofu would be the same box twice).
        assert!(difference(&gwang, &hap) > g / 4, "광 and 합 look alike");
        let word = heading_ink(&mut full, "광합성");
        assert!(count(&word) > 2 * g);

        // The check itself works: without Nanum Gothic, Hangul is exactly the tofu box.
        let mut latin_only = SlideRenderer::with_fonts(&[LIBERATION_REGULAR, LIBERATION_BOLD]);
        let gwang = heading_ink(&mut latin_only, "광");
        let hap = heading_ink(&mut latin_only, "합");
        let tofu = heading_ink(&mut latin_only, "\u{10FFFD}");
        assert_eq!(difference(&gwang, &tofu), 0);
        assert_eq!(difference(&gwang, &hap), 0);
    }

    #[test]
    fn bold_hangul_uses_the_bold_face() {
        // The heading is bold. Without NanumGothicBold its Hangul would fall back to the
        // regular face, with thinner strokes and so less ink.
        let mut full = SlideRenderer::new();
        let mut no_bold =
            SlideRenderer::with_fonts(&[LIBERATION_REGULAR, LIBERATION_BOLD, NANUM_REGULAR]);
        let bold = count(&heading_ink(&mut full, "광합성"));
        let regular = count(&heading_ink(&mut no_bold, "광합성"));
        assert!(
            bold as f32 > regular as f32 * 1.15,
            "bold {bold} vs regular {regular}"
        );
    }

    #[test]
    fn emoji_and_unknown_characters_do_not_panic() {
        let mut r = SlideRenderer::new();
        let s = slide(
            "Emoji 🎉🧪 and \u{10FFFD}\u{E000}",
            &["👩‍🔬 science", "\u{0}\u{7}\t control", "RTL שלום עולם", ""],
            "Zalgo: Z̷̢a̵l̶g̴o̸ ‍ ‌ and a lone \u{FE0F}",
        );
        let bytes = r.draw("🎬 title\nwith newline", &s, 4, 5, 1280, 720);
        assert_eq!(bytes.len(), 1280 * 720 * 4);
    }

    #[test]
    fn long_text_shrinks_and_is_clipped_above_the_footer() {
        let mut r = SlideRenderer::new();
        let (w, h) = (1280u32, 720u32);
        let word = "Pneumonoultramicroscopicsilicovolcanoconiosis".repeat(6);
        let long = slide(
            &format!("{word} {}", "heading ".repeat(20)),
            &["A bullet that goes on and on and on and on and on "
                .repeat(6)
                .as_str(); 10],
            &"The body is far too long for one slide. ".repeat(38),
        );
        let frame = FrameGeometry::new(w, h);
        let mut fonts = SlideRenderer::new();
        let content = Content::new(&mut fonts.fonts, &long, &frame);
        assert_eq!(
            content.scale,
            *size::SCALES.last().unwrap(),
            "should hit the floor"
        );

        let bytes = r.draw("A title that is also much too long to fit in the footer of the slide, so it ends in an ellipsis instead of running into the number", &long, 9, 10, w, h);
        assert_eq!(bytes.len(), (w * h * 4) as usize);
        // The band between the content area and the footer rule stays clear.
        let gap = ink(
            &bytes,
            w,
            frame.content_bottom.ceil() as u32 + 1..frame.footer_top as u32 - 1,
        );
        assert_eq!(count(&gap), 0, "content ran into the footer gap");
        // The footer (title and number) is still drawn.
        let footer = ink(&bytes, w, frame.footer_top as u32 + 3..h);
        assert!(count(&footer) > 200);
        // Nothing to the right of the footer number's right edge (the margin).
        let margin_x = frame.margin_x + frame.content_width;
        let all = ink(&bytes, w, 0..h);
        let right_margin_ink = all
            .iter()
            .enumerate()
            .filter(|(i, inked)| **inked && (*i as u32 % w) as f32 > margin_x + 2.0)
            .count();
        assert_eq!(right_margin_ink, 0, "text in the right margin");

        // A shorter text fits at a larger scale.
        let content = Content::new(&mut fonts.fonts, &english(), &frame);
        assert_eq!(content.scale, 1.0);
    }

    #[test]
    fn save_sample_pngs() {
        let mut r = SlideRenderer::new();
        let (w, h) = (1280, 720);
        let en = r.draw("Photosynthesis for Beginners", &english(), 1, 8, w, h);
        to_png(&en, w, h, "/tmp/slide-en.png");
        let ko = r.draw("광합성 입문 — Photosynthesis", &korean(), 0, 8, w, h);
        to_png(&ko, w, h, "/tmp/slide-ko.png");
        let (w, h) = (1920, 1080);
        let big = r.draw("Photosynthesis for Beginners", &english(), 1, 8, w, h);
        to_png(&big, w, h, "/tmp/slide-en-1080.png");
        let small = r.draw("Photosynthesis for Beginners", &korean(), 1, 8, 320, 180);
        to_png(&small, 320, 180, "/tmp/slide-ko-180.png");
        let word = "Pneumonoultramicroscopicsilicovolcanoconiosis".repeat(3);
        let long = slide(
            &format!("{word} 광합성 🎉 \u{10FFFD}"),
            &["A bullet that goes on and on and on and on and on "
                .repeat(6)
                .as_str(); 10],
            &"The body is far too long for one slide. ".repeat(38),
        );
        let (w, h) = (1280, 720);
        let long = r.draw(&"A very long title ".repeat(20), &long, 9, 10, w, h);
        to_png(&long, w, h, "/tmp/slide-long.png");
    }

    #[test]
    fn draw_time() {
        let mut r = SlideRenderer::new();
        // Warm the glyph cache as a video's second slide would find it.
        r.draw("Photosynthesis", &english(), 0, 8, 1280, 720);
        let started = std::time::Instant::now();
        let n = 5;
        for i in 0..n {
            r.draw("Photosynthesis", &english(), i, 8, 1280, 720);
        }
        let warm = started.elapsed() / n as u32;
        let started = std::time::Instant::now();
        SlideRenderer::new().draw("광합성", &korean(), 0, 8, 1280, 720);
        let cold = started.elapsed();
        // The worst case: every field at its storyboard limit, shrunk to the floor.
        let full = slide(
            &"Heading ".repeat(25),
            &[&*"Bullet text ".repeat(25); 10],
            &"Body text. ".repeat(136),
        );
        let started = std::time::Instant::now();
        r.draw(&"Title ".repeat(33), &full, 0, 8, 1280, 720);
        let crowded = started.elapsed();
        println!(
            "one 1280x720 draw: {warm:?} warm; new renderer + first draw: {cold:?}; \
             slide at the size limits: {crowded:?}"
        );
    }
}
