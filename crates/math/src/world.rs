//! The closed world a formula is typeset in: the embedded fonts, MiTeX's definitions and
//! one document that reads its text from a JSON file. Nothing else exists in it — no file
//! system, no packages, no clock — so a formula can read or fetch nothing.

use std::sync::LazyLock;

use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Datetime, Duration};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};

/// The math face: New Computer Modern Math (GUST Font License, see `fonts/README.md`).
const MATH_FONT: &[u8] = include_bytes!("../fonts/NewCMMath-Regular.otf");

/// MiTeX's Typst definitions of the LaTeX commands its converter emits (Apache-2.0, see
/// `mitex/README.md`), as paths in the world.
const MITEX: [(&str, &str); 3] = [
    ("/mitex/mod.typ", include_str!("../mitex/mod.typ")),
    ("/mitex/prelude.typ", include_str!("../mitex/prelude.typ")),
    (
        "/mitex/latex/standard.typ",
        include_str!("../mitex/latex/standard.typ"),
    ),
];

/// The one document. Every run of text and every formula comes from `/input.json`: text runs
/// are placed as strings (data, never markup) and formulas are MiTeX's conversion of the
/// LaTeX, evaluated in math mode with MiTeX's definitions only. Inline formulas are set in
/// display style, as on a blackboard: a fraction in a line of slide text at text style
/// would have digits too small to read in a video.
const MAIN: &str = r#"#import "/mitex/mod.typ": mitex-scope
#let input = json("/input.json")
// A little room above and below: ink of tall formulas may overshoot the font's metrics.
#set page(width: input.width * 1pt, height: auto, margin: (x: 0pt, y: input.size * 0.1pt), fill: none)
#set text(
  font: input.families,
  size: input.size * 1pt,
  weight: if input.bold { "bold" } else { "regular" },
  fill: black,
  dir: if input.rtl { rtl } else { ltr },
  top-edge: "ascender",
  bottom-edge: "descender",
  hyphenate: false,
)
#set par(leading: input.leading * 1pt, spacing: input.leading * 1pt)
#show math.equation: set text(font: "New Computer Modern Math", weight: "regular")
// Inline formulas in display style, each in a box so that it keeps its own baseline.
#show math.equation.where(block: false): it => box(math.display(it))
#show math.equation.where(block: true): set block(above: input.leading * 1pt, below: input.leading * 1pt)
#set align(if input.rtl { right } else { left })
#for part in input.parts {
  if part.kind == "text" {
    part.value
  } else {
    math.equation(
      block: part.kind == "display",
      eval(part.value, mode: "math", scope: mitex-scope),
    )
  }
}
"#;

/// Everything besides the Typst and MiTeX crates that decides how a formula looks: the
/// math font, MiTeX's definitions and the document. A renderer hashes these into its cache
/// fingerprint.
pub fn identity() -> impl Iterator<Item = &'static [u8]> {
    [MATH_FONT, MAIN.as_bytes()]
        .into_iter()
        .chain(MITEX.iter().map(|(_, text)| text.as_bytes()))
}

/// The id of one of the world's fixed paths (the constants above, never outside input).
#[allow(clippy::expect_used)] // the paths are constants, all exercised by every test
fn file_id(path: &str) -> FileId {
    let vpath = VirtualPath::new(path).expect("the world's paths are valid");
    FileId::new(RootedPath::new(VirtualRoot::Project, vpath))
}

/// What every typesetting shares: built once per process.
pub(crate) struct Shared {
    library: LazyHash<Library>,
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
    main: Source,
    mitex: Vec<Source>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("fonts", &self.fonts.len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(text_fonts: &[&'static [u8]]) -> Self {
        let fonts: Vec<Font> = text_fonts
            .iter()
            .copied()
            .chain([MATH_FONT])
            .flat_map(|data| Font::iter(Bytes::new(data)))
            .collect();
        Self {
            library: LazyHash::new(Library::builder().build()),
            book: LazyHash::new(FontBook::from_fonts(&fonts)),
            fonts,
            main: Source::new(file_id("/main.typ"), MAIN.to_owned()),
            mitex: MITEX
                .iter()
                .map(|(path, text)| Source::new(file_id(path), (*text).to_owned()))
                .collect(),
        }
    }

    /// Whether the fonts hold a face of `family` (case as Typst matches it).
    pub(crate) fn has_family(&self, family: &str) -> bool {
        self.book.contains_family(&family.to_lowercase())
    }
}

/// One typesetting: the shared parts and this run's `/input.json`.
pub(crate) struct OneDocument<'a> {
    pub shared: &'a Shared,
    pub input: Bytes,
}

static INPUT: LazyLock<FileId> = LazyLock::new(|| file_id("/input.json"));

impl World for OneDocument<'_> {
    fn library(&self) -> &LazyHash<Library> {
        &self.shared.library
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &self.shared.book
    }

    fn main(&self) -> FileId {
        self.shared.main.id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        std::iter::once(&self.shared.main)
            .chain(&self.shared.mitex)
            .find(|s| s.id() == id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == *INPUT {
            return Ok(self.input.clone());
        }
        self.source(id)
            .map(|s| Bytes::from_string(s.text().to_owned()))
    }

    fn font(&self, index: usize) -> Option<Font> {
        self.shared.fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        None
    }
}

fn not_found(id: FileId) -> FileError {
    FileError::NotFound(id.vpath().get_without_slash().into())
}
