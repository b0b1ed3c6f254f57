//! Mathematics on slides: finds the formulas in a text (`$…$` inline, `$$…$$` displayed,
//! [`split`]), reads their LaTeX with MiTeX and sets the whole text — plain runs as data,
//! formulas as mathematics — with Typst, into a coverage mask the slide renderer paints
//! ([`Typesetter`]).
//!
//! Typst runs in a closed world ([`world`]): the embedded fonts, MiTeX's definitions and one
//! fixed document that reads the text from a JSON file, so a storyboard's text is never
//! markup and a formula can reach no file, package or clock.

mod guard;
pub mod split;
mod typeset;
mod world;

pub use guard::MAX_TREE_DEPTH;
pub use world::identity;

pub use split::{Part, SplitError, has_math, split};
pub use typeset::{
    MAX_FORMULA_CHARS, MAX_FORMULA_DEPTH, Mask, MathError, TextStyle, Typeset, Typesetter,
};
