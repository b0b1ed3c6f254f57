//! Where the formulas are in a slide's text: `$…$` inline, `$$…$$` displayed.
//!
//! The dollar rules are pandoc's (`tex_math_dollars`), so prices stay prices: an opening `$`
//! must be followed by a non-space character, and a closing `$` must follow a non-space
//! character and must not be followed by a digit; a `$` that opens nothing is plain text
//! (`costs $5 and $10` has no formula). `\$` is always a literal dollar. A `$$` opens a
//! displayed formula, which must be closed by `$$`.

use std::fmt;

/// One run of a text: plain text, or the LaTeX source of a formula (without its dollars).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Plain text, shown as it is written (`\$` already turned into `$`).
    Text(String),
    /// `$…$`: a formula set inside the line.
    Inline(String),
    /// `$$…$$`: a formula set on a line of its own, centred.
    Display(String),
}

impl Part {
    /// The LaTeX source, for a formula.
    pub fn formula(&self) -> Option<&str> {
        match self {
            Part::Text(_) => None,
            Part::Inline(latex) | Part::Display(latex) => Some(latex),
        }
    }
}

/// Why a text's dollars do not make sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// A `$$` with no `$$` after it.
    UnclosedDisplay,
    /// `$$$$` or `$$ $$`: a displayed formula with nothing in it.
    EmptyDisplay,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::UnclosedDisplay => {
                f.write_str("a displayed formula opened with $$ is not closed with $$")
            }
            SplitError::EmptyDisplay => f.write_str("a displayed formula ($$…$$) is empty"),
        }
    }
}

impl std::error::Error for SplitError {}

/// Whether `text` holds a formula (cheap: no allocation for text without `$`).
pub fn has_math(text: &str) -> bool {
    text.contains('$') && split(text).is_ok_and(|parts| parts.iter().any(|p| p.formula().is_some()))
}

/// Splits `text` into plain runs and formulas (see the module doc). Adjacent plain runs are
/// merged; empty ones are left out.
pub fn split(text: &str) -> Result<Vec<Part>, SplitError> {
    let chars: Vec<char> = text.chars().collect();
    let mut parts = Vec::new();
    let mut plain = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if chars.get(i + 1) == Some(&'$') => {
                plain.push('$');
                i += 2;
            }
            '$' if chars.get(i + 1) == Some(&'$') => {
                let start = i + 2;
                let end = find_display_end(&chars, start).ok_or(SplitError::UnclosedDisplay)?;
                let latex: String = chars[start..end].iter().collect();
                if latex.trim().is_empty() {
                    return Err(SplitError::EmptyDisplay);
                }
                flush(&mut plain, &mut parts);
                parts.push(Part::Display(latex.trim().to_owned()));
                i = end + 2;
            }
            '$' => match find_inline_end(&chars, i + 1) {
                Some(end) => {
                    flush(&mut plain, &mut parts);
                    parts.push(Part::Inline(chars[i + 1..end].iter().collect()));
                    i = end + 1;
                }
                None => {
                    plain.push('$');
                    i += 1;
                }
            },
            c => {
                plain.push(c);
                i += 1;
            }
        }
    }
    flush(&mut plain, &mut parts);
    Ok(parts)
}

fn flush(plain: &mut String, parts: &mut Vec<Part>) {
    if !plain.is_empty() {
        parts.push(Part::Text(std::mem::take(plain)));
    }
}

/// The index of the `$$` closing a display formula whose source starts at `from`.
fn find_display_end(chars: &[char], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '$' if chars[i + 1] == '$' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The index of the `$` closing an inline formula whose source starts at `from`, if the
/// `$` before `from` opens one at all.
fn find_inline_end(chars: &[char], from: usize) -> Option<usize> {
    let first = *chars.get(from)?;
    if first.is_whitespace() || first == '$' {
        return None;
    }
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '$' => {
                let after_space = chars[i - 1].is_whitespace();
                let before_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
                if !after_space && !before_digit {
                    return Some(i);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Part {
        Part::Text(s.to_owned())
    }

    #[test]
    fn inline_and_display_formulas_are_found() {
        assert_eq!(
            split(r"Add $\frac{3}{6}$ and $$\frac{2}{6}$$ now").unwrap(),
            vec![
                text("Add "),
                Part::Inline(r"\frac{3}{6}".into()),
                text(" and "),
                Part::Display(r"\frac{2}{6}".into()),
                text(" now"),
            ]
        );
        assert_eq!(split("$x$").unwrap(), vec![Part::Inline("x".into())]);
    }

    #[test]
    fn prices_and_escaped_dollars_stay_text() {
        for plain in [
            "costs $5 and $10",
            "a $ alone",
            "$ x$",
            "ends with $",
            "pay $5",
        ] {
            assert_eq!(split(plain).unwrap(), vec![text(plain)], "{plain}");
            assert!(!has_math(plain), "{plain}");
        }
        assert_eq!(split(r"\$5 and \$6").unwrap(), vec![text("$5 and $6")]);
        assert_eq!(
            split(r"$a\$b$").unwrap(),
            vec![Part::Inline(r"a\$b".into())],
            "an escaped dollar inside a formula does not close it"
        );
        assert_eq!(split("").unwrap(), vec![]);
        assert!(!has_math("no dollars here"));
        assert!(has_math("$x^2$"));
    }

    #[test]
    fn an_unclosed_or_empty_display_formula_is_an_error() {
        assert_eq!(split(r"$$\frac{1}{2}"), Err(SplitError::UnclosedDisplay));
        assert_eq!(split("a $$ $$ b"), Err(SplitError::EmptyDisplay));
        assert_eq!(split("$$$$"), Err(SplitError::EmptyDisplay));
        assert!(!has_math(r"$$\frac{1}{2}"));
    }
}
