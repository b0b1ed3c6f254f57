//! The embedded fonts, the font system built from them, and glyph coverage: whether the
//! fonts draw a text with real glyphs rather than the missing-glyph box (`.notdef`).
//!
//! Which font draws what (see `fonts/README.md`): Liberation Sans is the face every run asks
//! for (Latin, Greek, Cyrillic); Nanum Gothic draws Hangul and the Hanja of KS X 1001;
//! DejaVu Sans draws Arabic and Hebrew (with their shaping tables) and many symbols; Symbola
//! draws monochrome emoji (Unicode 9) and the remaining symbols. cosmic-text's fallback finds
//! them: its common list names "DejaVu Sans", and after that it tries every loaded face in
//! load order, so the order below decides ties (Nanum's Hanja before Symbola's few CJK).
//!
//! Han characters outside Korean Hanja (simplified Chinese `数`, Japanese-only forms) are
//! refused on purpose: a full CJK font is 16 MB or more per weight, and Chinese and
//! Japanese need their own regional glyph forms, which a Korean face drawing them would get
//! wrong. Korean and English are the product's languages.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use cosmic_text::{Buffer, FontSystem, fontdb};

pub(super) const LIBERATION_REGULAR: &[u8] =
    include_bytes!("../../../fonts/LiberationSans-Regular.ttf");
pub(super) const LIBERATION_BOLD: &[u8] = include_bytes!("../../../fonts/LiberationSans-Bold.ttf");
pub(super) const NANUM_REGULAR: &[u8] = include_bytes!("../../../fonts/NanumGothic.ttf");
pub(super) const NANUM_BOLD: &[u8] = include_bytes!("../../../fonts/NanumGothicBold.ttf");
pub(super) const DEJAVU_REGULAR: &[u8] = include_bytes!("../../../fonts/DejaVuSans.ttf");
pub(super) const DEJAVU_BOLD: &[u8] = include_bytes!("../../../fonts/DejaVuSans-Bold.ttf");
pub(super) const SYMBOLA: &[u8] = include_bytes!("../../../fonts/Symbola.ttf");

/// Every font the renderer knows. Latin first: the load order fixes fontdb's face ids, and
/// those order the fallback candidates, so it must not depend on anything at run time.
pub(super) const FONTS: [&[u8]; 7] = [
    LIBERATION_REGULAR,
    LIBERATION_BOLD,
    NANUM_REGULAR,
    NANUM_BOLD,
    DEJAVU_REGULAR,
    DEJAVU_BOLD,
    SYMBOLA,
];

/// The family every text run asks for. Other scripts are not in it, so cosmic-text's
/// fallback goes on to the other loaded faces; with bold asked for, a family's bold face
/// is the closest weight and wins.
pub(super) const LATIN_FAMILY: &str = "Liberation Sans";

/// A font system that knows only `fonts` (and nothing of the system's fonts), with the
/// locale fixed to `en-US`. The bytes are shared, not copied.
pub(super) fn font_system(fonts: &[&'static [u8]]) -> FontSystem {
    // `Default` gives an empty database. Unlike `FontSystem::new`, nothing here scans the
    // system's fonts, and the locale is fixed rather than read from the environment.
    let mut font_system =
        FontSystem::new_with_locale_and_db("en-US".to_owned(), fontdb::Database::default());
    let db = font_system.db_mut();
    for font in fonts {
        db.load_font_source(fontdb::Source::Binary(Arc::new(*font)));
    }
    db.set_sans_serif_family(LATIN_FAMILY);
    font_system
}

/// Runs `f` with a process-wide font system of all embedded fonts, built on first use.
/// Validation uses it; renderers keep their own so that drawing never waits on a lock.
pub(crate) fn with_shared_fonts<R>(f: impl FnOnce(&mut FontSystem) -> R) -> R {
    static SHARED: OnceLock<Mutex<FontSystem>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| Mutex::new(font_system(&FONTS)));
    // A panic while holding the lock leaves a font system that is still consistent
    // (shaping caches at worst), so a poisoned lock is simply taken over.
    let mut fonts = shared.lock().unwrap_or_else(PoisonError::into_inner);
    f(&mut fonts)
}

/// The process-wide typesetter of fields with formulas: their text in the same fonts, in
/// the same fallback order as cosmic-text's, their formulas in New Computer Modern Math.
/// Typesetting takes `&self`, so validation and every renderer share it without a lock.
pub(super) fn typesetter() -> &'static math::Typesetter {
    static TYPESETTER: OnceLock<math::Typesetter> = OnceLock::new();
    TYPESETTER.get_or_init(|| {
        math::Typesetter::new(
            &FONTS,
            &[LATIN_FAMILY, "NanumGothic", "DejaVu Sans", "Symbola"],
        )
    })
}

/// The characters of a shaped, laid-out `buffer` that no loaded font draws: those whose
/// glyph is the `.notdef` box (glyph id 0) after shaping and fallback. Each is listed once,
/// in order of first appearance.
pub(super) fn missing_chars(buffer: &Buffer) -> Vec<char> {
    let mut missing = Vec::new();
    for run in buffer.layout_runs() {
        for glyph in run.glyphs.iter().filter(|g| g.glyph_id == 0) {
            // Glyph ranges are byte ranges into the line, on char boundaries; a cluster's
            // first char is the one that has no glyph (marks follow their base).
            if let Some(c) = run.text.get(glyph.start..).and_then(|t| t.chars().next())
                && !missing.contains(&c)
            {
                missing.push(c);
            }
        }
    }
    missing
}

/// The reason given for characters the fonts cannot draw:
/// `U+1F9EA 🧪 cannot be drawn with the embedded fonts`.
pub(crate) fn cannot_draw(chars: &[char]) -> String {
    let named: Vec<String> = chars.iter().map(|c| describe(*c)).collect();
    format!(
        "{} cannot be drawn with the embedded fonts",
        named.join(", ")
    )
}

/// How a character is named in an error: `U+1F9EA 🧪`. Invisible and combining characters
/// get their code point only, since printing them shows nothing or mangles the message.
fn describe(c: char) -> String {
    let visible = !c.is_whitespace()
        && !c.is_control()
        && !matches!(c, '\u{300}'..='\u{36F}' | '\u{200B}'..='\u{200F}' | '\u{FE00}'..='\u{FE0F}');
    if visible {
        format!("U+{:04X} {c}", u32::from(c))
    } else {
        format!("U+{:04X}", u32::from(c))
    }
}
