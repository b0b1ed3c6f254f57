//! Slide drawing: turns one storyboard [`Slide`] into a frame of raw RGBA pixels that the
//! compose stage pipes into ffmpeg (`-f rawvideo -pix_fmt rgba`).
//!
//! Text is shaped and laid out with cosmic-text and rasterised with its swash cache, shapes
//! are filled with tiny-skia. The fonts ([`fonts`]) are compiled into the binary and no
//! system font is ever looked at, so the same slide gives the same bytes on every machine;
//! that is what lets [`SlideRenderer::fingerprint`] stand in for "everything but the slide"
//! in the render cache key.
//!
//! Look: a near-white background, a bold heading with an accent rule under it, bullet
//! points with a hanging indent, the body paragraph, and a footer with the video's title
//! and the slide number. Where each goes and at what size is decided by
//! [`layout::layout_slide`], the same function validation uses, so a slide that passed
//! validation is drawn whole, every character with a real glyph.

pub mod fonts;
pub mod layout;

use std::fmt::Write as _;
use std::sync::OnceLock;

use cosmic_text::{
    Buffer, FontSystem, Metrics, Shaping, SwashCache, SwashContent, SwashImage, Wrap,
};
use sha2::{Digest, Sha256};
use tiny_skia::{FillRule, Paint, PathBuilder, Pixmap, Rect, Transform};

use self::fonts::FONTS;
use self::layout::{Area, Disc, FrameGeometry, Placed, SlideLayout, block_width, metrics, size};
use crate::storyboard::Slide;

/// Bump whenever the pixels change for the same slide and fonts: layout, colours, blending,
/// or an upgrade of cosmic-text, swash, tiny-skia, typst or mitex (the math font and
/// MiTeX's definitions are hashed in already). It is hashed into
/// [`SlideRenderer::fingerprint`], so a bump invalidates cached renders.
const RENDERER_VERSION: &str = "slide-renderer/3";

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

/// One slide to draw: what it shows, where it stands in the video, and the frame size.
#[derive(Debug, Clone, Copy)]
pub struct SlideFrame<'a> {
    /// The video's title, shown in the footer.
    pub title: &'a str,
    /// The slide.
    pub slide: &'a Slide,
    /// Counts from 0; the footer shows `index+1 / total`.
    pub index: usize,
    /// Slides in the video.
    pub total: usize,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Which bullets show, and which is current ([`Reveal::all`]: the whole slide).
    pub reveal: Reveal,
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
    /// Loads the embedded fonts (and nothing else) into a font system with the locale
    /// `en-US`. Takes a while (the fonts are parsed); keep the renderer.
    pub fn new() -> Self {
        Self::with_fonts(&FONTS)
    }

    /// A renderer that knows only `fonts`; the tests use it to show what a missing font
    /// looks like.
    fn with_fonts(fonts: &[&'static [u8]]) -> Self {
        Self {
            fonts: fonts::font_system(fonts),
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
            for part in FONTS.into_iter().chain(math::identity()) {
                // Length-prefixed, so moving bytes from one part to the next changes the hash.
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
            let mut hex = String::with_capacity(64);
            for byte in hasher.finalize() {
                // Writing to a String cannot fail.
                let _ = write!(hex, "{byte:02x}");
            }
            hex
        })
    }

    /// Lays a slide out as [`SlideRenderer::draw`] would, with this renderer's fonts.
    pub fn layout(&mut self, slide: &Slide, width: u32, height: u32) -> SlideLayout {
        layout::layout_slide(&mut self.fonts, slide, width, height)
    }

    /// Draws one slide into straight (non-premultiplied) RGBA8 bytes, `width*height*4` long,
    /// row-major, for ffmpeg `-f rawvideo -pix_fmt rgba`.
    ///
    /// Never panics. A slide that validation would refuse (see
    /// [`layout::SlideLayout::problems`]) is still drawn, at the smallest size, clipped
    /// above the footer and with missing-glyph boxes, and a warning is logged. Sizes are
    /// expected within the storyboard limits (320..=3840 × 180..=2160); a zero side gives
    /// an empty vector.
    pub fn draw(&mut self, frame: &SlideFrame<'_>) -> Vec<u8> {
        let (width, height) = (frame.width, frame.height);
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

        let layout = layout::layout_slide(&mut self.fonts, frame.slide, width, height);
        if !layout.problems().is_empty() {
            let problems: Vec<String> = layout
                .problems()
                .iter()
                .map(|p| format!("{}: {}", p.field(), p.reason()))
                .collect();
            tracing::warn!(?problems, "drawing a slide that validation refuses");
        }
        let mut canvas = Canvas {
            pixmap: &mut pixmap,
            fonts: &mut self.fonts,
            glyphs: &mut self.glyphs,
        };
        paint_content(&mut canvas, &layout, frame.reveal);
        paint_footer(&mut canvas, &layout.frame, frame);

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

/// The pixmap being drawn and what text needs for drawing.
struct Canvas<'a> {
    pixmap: &'a mut Pixmap,
    fonts: &'a mut FontSystem,
    glyphs: &'a mut SwashCache,
}

/// A glyph image placed on the pixmap, in a colour.
struct GlyphInk<'a> {
    image: &'a SwashImage,
    /// Pixmap column of the image's left edge.
    left: i32,
    /// Pixmap row of the image's top edge.
    top: i32,
    rgb: [u8; 3],
}

impl Canvas<'_> {
    fn fill_rect(&mut self, area: Area, rgb: [u8; 3]) {
        if let Some(rect) = Rect::from_xywh(area.x, area.y, area.w, area.h) {
            self.pixmap
                .fill_rect(rect, &solid(rgb), Transform::identity(), None);
        }
    }

    fn fill_circle(&mut self, disc: Disc, rgb: [u8; 3]) {
        if let Some(path) = PathBuilder::from_circle(disc.cx, disc.cy, disc.r) {
            self.pixmap.fill_path(
                &path,
                &solid(rgb),
                FillRule::Winding,
                Transform::identity(),
                None,
            );
        }
    }

    /// Paints the coverage `mask` in `rgb` with its top-left corner at `origin` (whole
    /// pixels), clipped to the frame.
    fn mask(&mut self, mask: &math::Mask, origin: (f32, f32), rgb: [u8; 3]) {
        let (x0, y0) = (origin.0.round() as i64, origin.1.round() as i64);
        let (pw, ph) = (self.pixmap.width() as i64, self.pixmap.height() as i64);
        let width = (mask.width as usize).max(1);
        let data = self.pixmap.data_mut();
        for (row, line) in mask.alpha.chunks_exact(width).enumerate() {
            let y = y0 + row as i64;
            if y < 0 || y >= ph {
                continue;
            }
            for (col, &alpha) in line.iter().enumerate() {
                let x = x0 + col as i64;
                if alpha == 0 || x < 0 || x >= pw {
                    continue;
                }
                let dst = ((y * pw + x) * 4) as usize;
                if let Some(out) = data.get_mut(dst..dst + 4) {
                    blend_pixel(out, rgb, alpha);
                }
            }
        }
    }

    /// Draws `buffer` with its top-left corner at `origin`. Lines whose box would end below
    /// `bottom` are left out whole; only a slide that validation refuses has any.
    fn text(&mut self, buffer: &Buffer, origin: (f32, f32), rgb: [u8; 3], bottom: f32) {
        let (x, y) = origin;
        for run in buffer.layout_runs() {
            if y + run.line_top + run.line_height > bottom + 0.5 {
                break;
            }
            for glyph in run.glyphs {
                let physical = glyph.physical((x, y + run.line_y), 1.0);
                if let Some(image) = self.glyphs.get_image(self.fonts, physical.cache_key) {
                    blend_glyph(
                        self.pixmap,
                        &GlyphInk {
                            image,
                            left: physical.x + image.placement.left,
                            top: physical.y - image.placement.top,
                            rgb,
                        },
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
fn blend_glyph(pixmap: &mut Pixmap, glyph: &GlyphInk<'_>) {
    let GlyphInk {
        image,
        left,
        top,
        rgb,
    } = *glyph;
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
            blend_pixel(out, colour, alpha);
        }
    }
}

/// Source-over of `colour` at coverage `alpha` onto one premultiplied RGBA pixel.
fn blend_pixel(out: &mut [u8], colour: [u8; 3], alpha: u8) {
    let a = u32::from(alpha);
    let inv = 255 - a;
    for (o, c) in out.iter_mut().zip([colour[0], colour[1], colour[2], 255]) {
        *o = ((u32::from(c) * a + u32::from(*o) * inv + 127) / 255) as u8;
    }
}

/// Paints the laid-out heading, rule, bullets and body.
fn paint_content(canvas: &mut Canvas<'_>, layout: &SlideLayout, reveal: Reveal) {
    let bottom = layout.frame.content_bottom;
    let text = |canvas: &mut Canvas<'_>, block: &Placed, rgb| match &block.math {
        Some(math) => {
            if let Ok(set) = &math.set {
                canvas.mask(&set.mask(), (block.x, block.y), rgb);
            }
        }
        None => canvas.text(&block.buffer, (block.x, block.y), rgb, bottom),
    };
    if let Some(heading) = &layout.heading {
        text(canvas, heading, colour::HEADING);
    }
    if let Some(rule) = layout.rule
        && rule.y + rule.h <= bottom
    {
        canvas.fill_rect(rule, colour::ACCENT);
    }
    for (i, bullet) in layout.bullets.iter().enumerate() {
        // Bullets not shown yet keep their place, so nothing moves as they appear.
        if i >= reveal.visible {
            continue;
        }
        let dim = |rgb: [u8; 3]| match reveal.emphasised {
            Some(e) if e != i => colour::dimmed(rgb),
            _ => rgb,
        };
        // The disc goes with the bullet's first line: drawn only if that line is.
        let first_line_bottom = bullet.text.first_line_bottom().map(|b| bullet.text.y + b);
        if first_line_bottom.is_some_and(|b| b <= bottom + 0.5) {
            canvas.fill_circle(bullet.disc, dim(colour::ACCENT));
        }
        text(canvas, &bullet.text, dim(colour::BULLET_TEXT));
    }
    if let Some(body) = &layout.body {
        text(canvas, body, colour::BODY);
    }
}

/// The footer: a hairline, the title on the left (cut with an ellipsis when long), the
/// slide number on the right. It has a fixed size and never shrinks with the content.
fn paint_footer(canvas: &mut Canvas<'_>, frame: &FrameGeometry, slide: &SlideFrame<'_>) {
    let u = frame.unit;
    let line = metrics(size::FOOTER * u, size::FOOTER_LINE);
    let band = frame.height - frame.footer_top;
    let text_y = frame.footer_top + (band - line.line_height) / 2.0;
    canvas.fill_rect(
        Area {
            x: frame.margin_x,
            y: frame.footer_top,
            w: frame.content_width,
            h: (size::FOOTER_RULE * u).max(1.0),
        },
        colour::FOOTER_RULE,
    );

    let number = format!("{} / {}", slide.index.saturating_add(1), slide.total);
    let number = single_line(canvas.fonts, &number, line, f32::INFINITY);
    let number_w = block_width(&number);
    let right = frame.margin_x + frame.content_width;
    canvas.text(
        &number,
        (right - number_w, text_y),
        colour::FOOTER_TEXT,
        frame.height,
    );

    let room = frame.content_width - number_w - 2.0 * size::FOOTER * u;
    if room > 0.0 {
        let title = single_line(canvas.fonts, &footer_title(slide.title), line, room);
        canvas.text(
            &title,
            (frame.margin_x, text_y),
            colour::FOOTER_TEXT,
            frame.height,
        );
    }
}

/// The title as the footer shows it: one line, line breaks and other controls as spaces.
fn footer_title(title: &str) -> String {
    title
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The characters of a video title that no embedded font draws (the footer shows it).
pub fn title_missing_chars(fonts: &mut FontSystem, title: &str) -> Vec<char> {
    let line = metrics(16.0, 1.25);
    fonts::missing_chars(&single_line(
        fonts,
        &footer_title(title),
        line,
        f32::INFINITY,
    ))
}

/// `text` on one unwrapped line no wider than `max_width`: cut at a glyph boundary with an
/// ellipsis appended if it is wider.
fn single_line(fonts: &mut FontSystem, text: &str, line: Metrics, max_width: f32) -> Buffer {
    let regular = layout::regular();
    let mut buffer = Buffer::new_empty(line);
    buffer.set_wrap(fonts, Wrap::None);
    buffer.set_text(fonts, text, &regular, Shaping::Advanced, None);
    if block_width(&buffer) <= max_width {
        return buffer;
    }
    let ellipsis = "…";
    let mut probe = Buffer::new_empty(line);
    probe.set_wrap(fonts, Wrap::None);
    probe.set_text(fonts, ellipsis, &regular, Shaping::Advanced, None);
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
    buffer.set_text(fonts, &cut_text, &regular, Shaping::Advanced, None);
    buffer
}

#[cfg(test)]
mod tests {
    use super::fonts::{LIBERATION_BOLD, LIBERATION_REGULAR, NANUM_REGULAR};
    use super::layout::{MIN_BODY_PX_AT_1080, MIN_SCALE, Problem, SlideField};
    use super::*;

    fn slide(heading: &str, bullets: &[&str], body: &str) -> Slide {
        Slide {
            heading: heading.into(),
            bullets: bullets.iter().map(|b| (*b).into()).collect(),
            body: body.into(),
        }
    }

    /// Draws `slide` as slide 1 of 1 of a video titled "Title".
    fn draw(r: &mut SlideRenderer, slide: &Slide, width: u32, height: u32) -> Vec<u8> {
        r.draw(&SlideFrame {
            title: "Title",
            slide,
            index: 0,
            total: 1,
            width,
            height,
            reveal: Reveal::all(),
        })
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

    fn arabic() -> Slide {
        slide(
            "البناء الضوئي",
            &[
                "يمتص الكلوروفيل الضوء الأحمر والأزرق",
                "ينقسم الماء ويخرج الأكسجين",
                "Calvin cycle: يتحول ثاني أكسيد الكربون إلى سكر",
            ],
            "يحدث البناء الضوئي في البلاستيدات الخضراء لخلايا الورقة.",
        )
    }

    fn hebrew() -> Slide {
        slide(
            "פוטוסינתזה",
            &[
                "הכלורופיל בולע אור אדום וכחול",
                "המים מתפרקים והחמצן משתחרר",
            ],
            "הפוטוסינתזה מתרחשת בכלורופלסטים של תאי העלה.",
        )
    }

    fn emoji() -> Slide {
        slide(
            "Science 🎉 time",
            &["🌱 plants grow ☀️", "💧 water 👍 ✅ ❤️", "Math → ∑ ≤ ∞ π"],
            "😀 Emoji are drawn in one colour, like the text.",
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
        assert!(format!("{r:?}").contains("faces: 7"));
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
            let a = draw(&mut r, &english(), w, h);
            assert_eq!(a.len(), (w * h * 4) as usize, "{w}x{h}");
            let b = draw(&mut r, &english(), w, h);
            assert!(a == b, "{w}x{h}: two draws differ");
            assert!(
                a.chunks_exact(4).all(|p| p[3] == 255),
                "{w}x{h}: not opaque"
            );
        }
        // A fresh renderer (empty caches) draws the same bytes too.
        let a = draw(&mut r, &korean(), 1280, 720);
        let b = draw(&mut SlideRenderer::new(), &korean(), 1280, 720);
        assert!(a == b);
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        let mut r = SlideRenderer::new();
        assert!(draw(&mut r, &english(), 0, 720).is_empty());
        assert!(draw(&mut r, &english(), 1280, 0).is_empty());
        assert_eq!(draw(&mut r, &english(), 2, 2).len(), 16);
    }

    #[test]
    fn heading_area_has_dark_pixels_and_empty_slide_is_background() {
        let mut r = SlideRenderer::new();
        let (w, h) = (1280, 720);
        let bytes = draw(&mut r, &english(), w, h);
        // The heading's first line sits in the top ~160 px at 720p.
        let dark = bytes[..(160 * w * 4) as usize]
            .chunks_exact(4)
            .filter(|p| p[0] < 80 && p[1] < 80 && p[2] < 80)
            .count();
        assert!(dark > 1000, "only {dark} dark pixels in the heading area");

        let empty = r.draw(&SlideFrame {
            title: "",
            slide: &Slide::default(),
            index: 0,
            total: 0,
            width: w,
            height: h,
            reveal: Reveal::all(),
        });
        assert_eq!(empty.len(), (w * h * 4) as usize);
        // Nothing above the footer but background.
        let content = ink(&empty, w, 0..h - 70);
        assert_eq!(count(&content), 0);
    }

    /// Renders `text` as a heading alone and returns the ink of the heading area.
    fn heading_ink(r: &mut SlideRenderer, text: &str) -> Vec<bool> {
        let bytes = draw(r, &slide(text, &[], ""), 1280, 720);
        ink(&bytes, 1280, 40..150)
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
    fn every_script_is_laid_out_with_real_glyphs() {
        let mut r = SlideRenderer::new();
        let hanja = slide("數學 (Korean Hanja)", &["中 日 本 語"], "");
        for (name, s) in [
            ("English", english()),
            ("Korean", korean()),
            ("Arabic", arabic()),
            ("Hebrew", hebrew()),
            ("emoji", emoji()),
            ("Hanja", hanja),
            (
                "joiners and marks",
                slide(
                    "👩\u{200D}🔬 ❤\u{FE0F} 👍🏽",
                    &[
                        "e\u{301} Z\u{337}\u{322}a\u{335} עִברִית",
                        "½ ⅓ × ÷ √ ∫ °C µ “…”",
                    ],
                    "a\u{200B}b",
                ),
            ),
        ] {
            for (w, h) in [(1280, 720), (1920, 1080)] {
                let layout = r.layout(&s, w, h);
                assert_eq!(layout.problems(), &[], "{name} {w}x{h}");
                assert_eq!(layout.missing_chars(), Vec::<char>::new(), "{name}");
            }
            let bytes = draw(&mut r, &s, 1280, 720);
            assert!(
                count(&ink(&bytes, 1280, 0..600)) > 2000,
                "{name} drew nothing"
            );
        }
    }

    #[test]
    fn the_coverage_check_sees_the_box() {
        // Without the fonts that draw them, these scripts are boxes, and the check on the
        // laid-out glyphs says which characters.
        let mut latin_only = SlideRenderer::with_fonts(&[LIBERATION_REGULAR, LIBERATION_BOLD]);
        // (Liberation Sans draws Hebrew itself.)
        for (s, c) in [(arabic(), 'ا'), (korean(), '광'), (emoji(), '🎉')] {
            let layout = latin_only.layout(&s, 1280, 720);
            assert!(layout.missing_chars().contains(&c), "{c}");
        }
        // A glyph of each script draws differently from the box; the box is the same.
        let mut full = SlideRenderer::new();
        let tofu = heading_ink(&mut full, "\u{10FFFD}");
        for c in ["ش", "ש", "광", "🎉", "數"] {
            let real = heading_ink(&mut full, c);
            let n = count(&real);
            assert!(n > 150, "{c}: only {n} pixels of ink");
            assert!(
                difference(&real, &tofu) > n.max(count(&tofu)) / 2,
                "{c} looks like tofu"
            );
        }
    }

    #[test]
    fn arabic_is_shaped_into_joined_forms() {
        // Letters in a word take their joined (initial/medial/final) forms: the shaped
        // word is narrower than its letters set apart, and uses other glyphs.
        let mut r = SlideRenderer::new();
        let word = r.layout(&slide("بيت", &[], ""), 1280, 720);
        let apart = r.layout(&slide("ب ي ت", &[], ""), 1280, 720);
        let glyphs = |l: &SlideLayout| -> Vec<u16> {
            l.heading
                .iter()
                .flat_map(|h| h.buffer.layout_runs())
                .flat_map(|run| run.glyphs.iter().filter(|g| g.w > 0.0).map(|g| g.glyph_id))
                .collect()
        };
        let (joined, isolated) = (glyphs(&word), glyphs(&apart));
        assert_eq!(joined.len(), 3);
        assert!(isolated.len() >= 3);
        for g in &joined {
            assert!(!isolated.contains(g), "glyph {g} is an isolated form");
        }
    }

    #[test]
    fn rtl_paragraphs_are_right_aligned_with_the_disc_on_the_right() {
        let mut r = SlideRenderer::new();
        let s = slide("عنوان", &["نقطة قصيرة", "A short point"], "فقرة قصيرة.");
        let layout = r.layout(&s, 1280, 720);
        assert_eq!(layout.problems(), &[]);
        let frame = layout.frame;
        let middle = frame.margin_x + frame.content_width / 2.0;
        let right = frame.margin_x + frame.content_width;
        let [rtl, ltr] = &layout.bullets[..] else {
            panic!("two bullets");
        };
        assert!(
            rtl.disc.cx > middle && rtl.disc.cx < right,
            "RTL disc at {}",
            rtl.disc.cx
        );
        assert!(ltr.disc.cx < middle, "LTR disc at {}", ltr.disc.cx);
        // The RTL bullet's text ends just left of its disc; the LTR one starts right of it.
        let extent = |p: &Placed| {
            let run = p.buffer.layout_runs().next().unwrap();
            let xs = run.glyphs.iter().map(|g| (p.x + g.x, p.x + g.x + g.w));
            xs.fold((f32::MAX, f32::MIN), |(a, b), (l, r)| (a.min(l), b.max(r)))
        };
        let (_, rtl_end) = extent(&rtl.text);
        assert!(
            rtl_end < rtl.disc.cx - rtl.disc.r && rtl_end > middle,
            "RTL text ends at {rtl_end}"
        );
        let (ltr_start, _) = extent(&ltr.text);
        assert!(ltr_start > ltr.disc.cx + ltr.disc.r && ltr_start < middle);
        // The RTL heading and body hug the right margin; so does the accent rule.
        for block in [
            layout.heading.as_ref().unwrap(),
            layout.body.as_ref().unwrap(),
        ] {
            let (start, end) = extent(block);
            assert!(
                end > right - 2.0 && start > middle,
                "{:?}: {start}..{end}",
                block.field
            );
        }
        let rule = layout.rule.unwrap();
        assert!((rule.x + rule.w - right).abs() < 0.5);
        // And the pixels follow: the right half of the RTL bullet's line has the ink.
        let bytes = draw(&mut r, &s, 1280, 720);
        let y = rtl.text.y as u32;
        let line_height = rtl.text.buffer.metrics().line_height as u32;
        let row = ink(&bytes, 1280, y..y + line_height);
        let left_ink = row
            .iter()
            .enumerate()
            .filter(|(i, k)| **k && (*i as u32 % 1280) < 640)
            .count();
        let right_ink = row
            .iter()
            .enumerate()
            .filter(|(i, k)| **k && (*i as u32 % 1280) >= 640)
            .count();
        assert!(
            right_ink > 100 && left_ink == 0,
            "left {left_ink}, right {right_ink}"
        );
    }

    #[test]
    fn uncovered_characters_are_problems_naming_field_and_character() {
        let mut r = SlideRenderer::new();
        let s = slide("Fine", &["fine", "a test tube 🧪 and 数"], "\u{10FFFD}");
        let layout = r.layout(&s, 1280, 720);
        assert_eq!(
            layout.problems(),
            &[
                Problem::Uncovered {
                    field: SlideField::Bullet(1),
                    chars: vec!['🧪', '数']
                },
                Problem::Uncovered {
                    field: SlideField::Body,
                    chars: vec!['\u{10FFFD}']
                },
            ]
        );
        assert_eq!(
            layout.problems()[0].reason(),
            "U+1F9EA 🧪, U+6570 数 cannot be drawn with the embedded fonts"
        );
        let mut fonts = fonts::font_system(&FONTS);
        assert_eq!(
            title_missing_chars(&mut fonts, "Title 🧪\nline"),
            vec!['🧪']
        );
        assert!(title_missing_chars(&mut fonts, "광합성 — שלום 🎉").is_empty());
    }

    #[test]
    fn one_bullet_is_set_large_and_ten_shrink_to_fit() {
        let mut r = SlideRenderer::new();
        let one = r.layout(
            &slide("Fractions", &["A half is one of two equal parts"], ""),
            1280,
            720,
        );
        assert_eq!(one.scale(), 1.0);
        // One bullet at full scale is 6 % of the height: 43 px at 720p.
        let bullet = &one.bullets[0].text.buffer;
        assert!((bullet.metrics().font_size - 43.2).abs() < 0.1);
        let ten_texts: Vec<String> = (1..=10)
            .map(|i| format!("Point number {i} has a few words in it"))
            .collect();
        let ten: Vec<&str> = ten_texts.iter().map(String::as_str).collect();
        let ten = r.layout(&slide("Fractions", &ten, "And a body line."), 1280, 720);
        assert_eq!(ten.problems(), &[]);
        assert!(
            ten.scale() < 0.8 && ten.scale() > MIN_SCALE,
            "scale {}",
            ten.scale()
        );
        // Heading > bullets > body at every scale.
        for l in [&one, &ten] {
            let size = |p: &Placed| p.buffer.metrics().font_size;
            let h = size(l.heading.as_ref().unwrap());
            let b = size(&l.bullets[0].text);
            assert!(h > b * 1.3, "{h} vs {b}");
        }
        assert!(ten.body_px() < ten.bullets[0].text.buffer.metrics().font_size);
        // Everything is above the footer gap.
        let last = ten.body.as_ref().unwrap();
        assert!(last.y + layout::block_height(&last.buffer) <= ten.frame.content_bottom);
    }

    #[test]
    fn text_that_just_fits_is_drawn_and_one_word_more_is_refused() {
        let mut r = SlideRenderer::new();
        let (w, h) = (1280, 720);
        let body = |n: usize| {
            (0..n)
                .map(|i| if i % 7 == 6 { "fraction." } else { "equal" })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let bullets = ["Halves", "Thirds", "Quarters"];
        let with = |n: usize| slide("Fractions", &bullets, &body(n));
        // The most words that fit, by bisection: 10 always fit, 2000 never do.
        let (mut fits, mut too_many) = (10, 2000);
        while too_many - fits > 1 {
            let mid = (fits + too_many) / 2;
            if r.layout(&with(mid), w, h).problems().is_empty() {
                fits = mid;
            } else {
                too_many = mid;
            }
        }
        let just = r.layout(&with(fits), w, h);
        assert_eq!(just.problems(), &[]);
        // Just fitting means the smallest size, or the rung above it: 28 px at 1080p is
        // 18.7 px at 720p.
        let min_px = MIN_BODY_PX_AT_1080 * 720.0 / 1080.0;
        assert!(
            just.body_px() >= min_px - 0.01 && just.body_px() <= min_px / 0.96 + 0.01,
            "{}",
            just.body_px()
        );
        let body_block = just.body.as_ref().unwrap();
        let bottom = body_block.y + layout::block_height(&body_block.buffer);
        assert!(bottom <= just.frame.content_bottom);
        // Every word of it is drawn: the last line has ink.
        let bytes = draw(&mut r, &with(fits), w, h);
        let last_line = ink(&bytes, w, (bottom - min_px) as u32..bottom as u32);
        assert!(count(&last_line) > 50, "the last line is not drawn");

        let over = r.layout(&with(fits + 1), w, h);
        assert_eq!(
            over.problems(),
            &[Problem::DoesNotFit {
                field: SlideField::Body,
                min_body_px: over.body_px()
            }]
        );
        assert!((over.body_px() - min_px).abs() < 0.01);
        assert!(over.problems()[0].reason().contains("28 px at 1080p"));

        // Too many bullets: the first that crosses the bottom is named.
        let long = "A bullet that goes on and on and on about fractions and their parts ".repeat(3);
        let many = slide("Fractions", &[long.as_str(); 10], "");
        let layout = r.layout(&many, w, h);
        let [
            Problem::DoesNotFit {
                field: SlideField::Bullet(i),
                ..
            },
        ] = layout.problems()
        else {
            panic!("{:?}", layout.problems());
        };
        assert!((3..10).contains(i), "bullet {i}");
    }

    #[test]
    fn validation_and_drawing_use_the_same_layout() {
        // The layout validation computes (on the shared font system) is the one drawn.
        let mut r = SlideRenderer::new();
        let texts: Vec<String> = (1..=8)
            .map(|i| format!("Point {i}: a third is one of three equal parts"))
            .collect();
        let bullets: Vec<&str> = texts.iter().map(String::as_str).collect();
        let s = slide(
            "Fractions and their parts",
            &bullets,
            "Body text under the points.",
        );
        let (w, h) = (1280, 720);
        let lines = |l: &SlideLayout| -> Vec<(String, u32, u32, u32)> {
            l.blocks()
                .flat_map(|b| {
                    b.buffer.layout_runs().map(move |run| {
                        let first = run.glyphs.first().map_or(0, |g| g.start);
                        let last = run.glyphs.last().map_or(0, |g| g.end);
                        (
                            run.text[first..last].to_owned(),
                            (b.x * 100.0) as u32,
                            ((b.y + run.line_y) * 100.0) as u32,
                            (b.buffer.metrics().font_size * 100.0) as u32,
                        )
                    })
                })
                .collect()
        };
        let validated =
            fonts::with_shared_fonts(|fonts| lines(&layout::layout_slide(fonts, &s, w, h)));
        let drawn_layout = r.layout(&s, w, h);
        assert_eq!(validated, lines(&drawn_layout));
        assert!(validated.len() >= 10);
        // The pixels end where the layout's last line ends.
        let bytes = draw(&mut r, &s, w, h);
        let body = drawn_layout.body.as_ref().unwrap();
        let bottom = body.y + layout::block_height(&body.buffer);
        let frame = drawn_layout.frame;
        let below = ink(
            &bytes,
            w,
            bottom.ceil() as u32 + 2..frame.footer_top as u32 - 1,
        );
        assert_eq!(count(&below), 0);
        let last_line = ink(
            &bytes,
            w,
            (bottom - body.buffer.metrics().line_height) as u32..bottom as u32,
        );
        assert!(count(&last_line) > 50);
    }

    #[test]
    fn refused_slides_still_draw_without_panic_and_stay_above_the_footer() {
        let mut r = SlideRenderer::new();
        let (w, h) = (1280u32, 720u32);
        let word = "Pneumonoultramicroscopicsilicovolcanoconiosis".repeat(6);
        let long = slide(
            &format!("{word} {} 🧪 \u{10FFFD}", "heading ".repeat(20)),
            &["A bullet that goes on and on and on and on and on "
                .repeat(6)
                .as_str(); 10],
            &"The body is far too long for one slide. ".repeat(38),
        );
        let layout = r.layout(&long, w, h);
        assert!((layout.scale() - MIN_SCALE).abs() < 1e-6);
        assert!(
            layout
                .problems()
                .iter()
                .any(|p| matches!(p, Problem::DoesNotFit { .. }))
        );
        assert!(layout.problems().iter().any(|p| matches!(
            p,
            Problem::Uncovered {
                field: SlideField::Heading,
                ..
            }
        )));
        let frame = layout.frame;
        let bytes = r.draw(&SlideFrame {
            title: "A title that is also much too long to fit in the footer of the slide, so it ends in an ellipsis instead of running into the number",
            slide: &long,
            index: 9,
            total: 10,
            width: w,
            height: h,
            reveal: Reveal::all(),
        });
        assert_eq!(bytes.len(), (w * h * 4) as usize);
        let gap = ink(
            &bytes,
            w,
            frame.content_bottom.ceil() as u32 + 1..frame.footer_top as u32 - 1,
        );
        assert_eq!(count(&gap), 0, "content ran into the footer gap");
        let footer = ink(&bytes, w, frame.footer_top as u32 + 3..h);
        assert!(count(&footer) > 200);
        let margin_x = frame.margin_x + frame.content_width;
        let all = ink(&bytes, w, 0..h);
        let right_margin_ink = all
            .iter()
            .enumerate()
            .filter(|(i, inked)| **inked && (*i as u32 % w) as f32 > margin_x + 2.0)
            .count();
        assert_eq!(right_margin_ink, 0, "text in the right margin");
        // Odd input does not panic either.
        let odd = slide(
            "Emoji 🎉🧪 and \u{10FFFD}\u{E000}",
            &["👩‍🔬 science", "\u{0}\u{7}\t control", "RTL שלום עולם", ""],
            "Zalgo: Z̷̢a̵l̶g̴o̸ ‍ ‌ and a lone \u{FE0F}",
        );
        let bytes = r.draw(&SlideFrame {
            title: "🎬 title\nwith newline",
            slide: &odd,
            index: 4,
            total: 5,
            width: 1280,
            height: 720,
            reveal: Reveal::all(),
        });
        assert_eq!(bytes.len(), 1280 * 720 * 4);
    }

    #[test]
    fn formulas_are_typeset_in_the_bullets_place_and_colour() {
        let mut r = SlideRenderer::new();
        let plain = slide("Fractions", &["1/2 + 1/3 = ?", "next"], "");
        let typeset = slide(
            "Fractions",
            &[r"$\frac{1}{2} + \frac{1}{3} = ?$", "next"],
            "",
        );
        let (lp, lt) = (r.layout(&plain, 1280, 720), r.layout(&typeset, 1280, 720));
        assert!(lt.problems().is_empty(), "{:?}", lt.problems());
        let height = |l: &SlideLayout| l.bullets[0].text.height();
        assert!(
            height(&lt) > 1.5 * height(&lp),
            "stacked fractions make the line taller: {} vs {}",
            height(&lt),
            height(&lp)
        );
        assert!(lt.bullets[0].text.math.is_some() && lt.bullets[1].text.math.is_none());

        // Where the formula is drawn, its darkest ink is the bullet's colour: full when it
        // is the current bullet, dimmed when another is; nothing before it is revealed.
        let text = &lt.bullets[0].text;
        let x0 = text.x as usize;
        let x1 = ((text.x + text.buffer.size().0.unwrap_or(0.0)) as usize).min(1280);
        let (y0, y1) = (text.y as usize, (text.y + text.height()) as usize);
        let mut darkest = |reveal: Reveal| {
            let bytes = r.draw(&SlideFrame {
                title: "T",
                slide: &typeset,
                index: 0,
                total: 1,
                width: 1280,
                height: 720,
                reveal,
            });
            (y0..y1)
                .flat_map(|y| (x0..x1).map(move |x| (y * 1280 + x) * 4))
                .map(|at| [bytes[at], bytes[at + 1], bytes[at + 2]])
                .min_by_key(|p| p.iter().map(|c| u32::from(*c)).sum::<u32>())
                .unwrap()
        };
        let near = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 12);
        let current = darkest(Reveal {
            visible: 2,
            emphasised: Some(0),
        });
        let other = darkest(Reveal {
            visible: 2,
            emphasised: Some(1),
        });
        let hidden = darkest(Reveal {
            visible: 0,
            emphasised: None,
        });
        assert!(near(current, colour::BULLET_TEXT), "{current:?}");
        let dimmed = colour::dimmed(colour::BULLET_TEXT);
        assert!(
            near(other, dimmed) && !near(other, colour::BULLET_TEXT),
            "{other:?}"
        );
        assert_eq!(
            hidden,
            colour::BACKGROUND,
            "an unrevealed bullet leaves its place empty"
        );
    }

    #[test]
    fn save_sample_pngs() {
        let mut r = SlideRenderer::new();
        let samples = [
            ("en", "Photosynthesis for Beginners", english()),
            ("ko", "광합성 입문 — Photosynthesis", korean()),
            ("ar", "البناء الضوئي", arabic()),
            ("he", "פוטוסינתזה", hebrew()),
            ("emoji", "Emoji", emoji()),
            (
                "one",
                "Fractions",
                slide("What is a half?", &["One of two equal parts"], ""),
            ),
            (
                "math",
                "Fractions",
                slide(
                    r"Adding $\frac{1}{2}$ and $\frac{1}{3}$",
                    &[
                        "Find a common denominator: 6",
                        r"$$\frac{1}{2} + \frac{1}{3} = \frac{3}{6} + \frac{2}{6} = \frac{5}{6}$$",
                        r"Check: $\gcd(5, 6) = 1$, and $\sqrt{x^2} = |x|$",
                    ],
                    "",
                ),
            ),
        ];
        for (name, title, s) in samples {
            for (w, h) in [(1280, 720), (1920, 1080)] {
                let bytes = r.draw(&SlideFrame {
                    title,
                    slide: &s,
                    index: 1,
                    total: 8,
                    width: w,
                    height: h,
                    reveal: Reveal::all(),
                });
                to_png(&bytes, w, h, &format!("/tmp/slide-{name}-{h}.png"));
            }
        }
    }

    #[test]
    fn draw_time() {
        let mut r = SlideRenderer::new();
        // Warm the glyph cache as a video's second slide would find it.
        draw(&mut r, &english(), 1280, 720);
        let started = std::time::Instant::now();
        let n = 5;
        for _ in 0..n {
            draw(&mut r, &english(), 1280, 720);
        }
        let warm = started.elapsed() / n as u32;
        let started = std::time::Instant::now();
        draw(&mut SlideRenderer::new(), &korean(), 1280, 720);
        let cold = started.elapsed();
        // The worst case: every field at its storyboard limit.
        let full = slide(
            &"Heading ".repeat(25),
            &[&*"Bullet text ".repeat(25); 10],
            &"Body text. ".repeat(136),
        );
        let started = std::time::Instant::now();
        let layout = r.layout(&full, 1280, 720);
        let crowded = started.elapsed();
        assert!(!layout.problems().is_empty());
        println!(
            "one 1280x720 draw: {warm:?} warm; new renderer + first draw: {cold:?}; \
             layout of a slide at the size limits: {crowded:?}"
        );
    }
}
