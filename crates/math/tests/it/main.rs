//! The typesetter end to end: MiTeX reads the LaTeX, Typst sets it in the closed world, the
//! mask is what a slide paints.

use math::{
    MAX_FORMULA_CHARS, Mask, MathError, Part, SplitError, TextStyle, Typeset, Typesetter, split,
};

fn typesetter() -> &'static Typesetter {
    static TYPESETTER: std::sync::OnceLock<Typesetter> = std::sync::OnceLock::new();
    TYPESETTER.get_or_init(|| {
        Typesetter::new(
            &[
                include_bytes!("../../../video/fonts/LiberationSans-Regular.ttf"),
                include_bytes!("../../../video/fonts/LiberationSans-Bold.ttf"),
            ],
            &["Liberation Sans"],
        )
    })
}

const STYLE: TextStyle = TextStyle {
    size: 40.0,
    width: 1000.0,
    line_height: 1.3,
    bold: false,
    rtl: false,
};

fn set(text: &str) -> Result<Typeset, MathError> {
    let parts = split(text).map_err(MathError::Split)?;
    typesetter().typeset(&parts, &STYLE)
}

/// Rows and columns that hold ink: (top, bottom, left, right), inclusive.
fn ink_box(mask: &Mask) -> Option<(u32, u32, u32, u32)> {
    let w = mask.width as usize;
    let inked: Vec<(u32, u32)> = mask
        .alpha
        .iter()
        .enumerate()
        .filter(|(_, a)| **a > 64)
        .map(|(i, _)| ((i % w) as u32, (i / w) as u32))
        .collect();
    let top = inked.iter().map(|p| p.1).min()?;
    let bottom = inked.iter().map(|p| p.1).max()?;
    let left = inked.iter().map(|p| p.0).min()?;
    let right = inked.iter().map(|p| p.0).max()?;
    Some((top, bottom, left, right))
}

fn formula_error(text: &str) -> (String, String) {
    match set(text) {
        Err(MathError::Formula { latex, reason }) => (latex, reason),
        other => panic!("{text}: expected a formula error, got {other:?}"),
    }
}

#[test]
fn a_stacked_fraction_is_taller_than_the_same_digits_on_a_line() {
    let fraction = set(r"$\frac{3}{6}$").unwrap().mask();
    let slash = set("3/6").unwrap().mask();
    let (ft, fb, ..) = ink_box(&fraction).unwrap();
    let (st, sb, ..) = ink_box(&slash).unwrap();
    let (fh, sh) = (fb - ft, sb - st);
    assert!(
        fh as f32 > 1.6 * sh as f32,
        "a stacked fraction is about two digits tall: {fh} px vs {sh} px"
    );
}

#[test]
fn roots_exponents_greek_and_display_formulas_are_typeset_with_real_glyphs() {
    for text in [
        r"$\sqrt{x^2 + 1}$",
        r"$x^{2}_{i} + e^{i\pi} = 0$",
        r"$\alpha + \beta = \gamma$, $\Delta x \to 0$",
        r"Therefore $$\frac{3}{6} + \frac{2}{6} = \frac{5}{6}$$ in sixths",
        r"$\sum_{k=1}^{n} k = \frac{n(n+1)}{2}$",
        r"$\left( \frac{a}{b} \right)^2 \le \int_0^1 f(x)\,dx$",
    ] {
        let typeset = set(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(typeset.missing_chars(), Vec::<char>::new(), "{text}");
        assert!(ink_box(&typeset.mask()).is_some(), "{text} drew nothing");
    }
}

#[test]
fn a_displayed_formula_gets_a_line_of_its_own() {
    let inline = set(r"We add $\frac{1}{2}$ here").unwrap();
    let display = set(r"We add $$\frac{1}{2}$$ here").unwrap();
    assert!(
        display.height() > inline.height() * 2.0,
        "three lines ({}) vs one ({})",
        display.height(),
        inline.height()
    );
    // Centred: the formula's ink is in the middle of the line width.
    let only = set(r"$$x$$").unwrap().mask();
    let (.., left, right) = ink_box(&only).unwrap();
    let middle = (left + right) / 2;
    assert!(
        (middle as i64 - 500).abs() < 20,
        "centre of a displayed formula at {middle} of 1000 px"
    );
}

#[test]
fn text_is_data_never_markup() {
    // Typst markup and code in the plain runs are shown as written.
    let typeset = set(r#"#read("/etc/passwd") *bold* _x_ = [link] @ref $x$"#).unwrap();
    let plain = set("*bold*").unwrap();
    assert!(typeset.width() > 0.0);
    let (.., left, right) = ink_box(&plain.mask()).unwrap();
    assert!(
        right - left > 60,
        "the asterisks are drawn, not bold markup"
    );
    // Inside a formula, MiTeX escapes what is not LaTeX; `\text` is text.
    assert!(set(r"$\text{#import}$").is_ok());
    assert!(set("$#import$").is_ok());
}

#[test]
fn a_formula_can_run_no_code_define_no_macro_and_reach_no_file() {
    // Each of these reached Typst as code through MiTeX (or hung MiTeX) before the guard.
    for (latex, says) in [
        (
            r"\begin{figure}\includegraphics{/etc/passwd}\end{figure}",
            "not mathematics",
        ),
        (r"\includegraphics{/etc/passwd}", "not allowed"),
        (
            r#"\includegraphics{" + str(range(200000000).len()) + "}"#,
            "not allowed",
        ),
        (r"\iftypst #{range(200000000).len()} \fi", "not allowed"),
        (
            r"\text{\label{x> #range(200000000).len() <y}}",
            "not allowed",
        ),
        (r"\newcommand{\a}{\a}\a", "not allowed"),
        (r"{\def\a{\a\a}\a}", "not allowed"),
    ] {
        let (_, reason) = formula_error(&format!("${latex}$"));
        assert!(reason.contains(says), "{latex}: {reason}");
    }
}

#[test]
fn formulas_that_do_not_parse_are_errors_naming_the_formula() {
    for (text, latex, says) in [
        (r"Add $\frac{1$ now", r"\frac{1", "missing argument"),
        (r"$\foo{x}$", r"\foo{x}", r"unknown command: \foo"),
        ("$x}$", "x}", "unexpected"),
        (r"$\left( x$", r"\left( x", "unclosed delimiter"),
    ] {
        let (got_latex, reason) = formula_error(text);
        assert_eq!(got_latex, latex, "{text}");
        assert!(reason.contains(says), "{text}: {reason}");
    }
    // In a text with several formulas, the one at fault is named.
    let (latex, _) = formula_error(r"$\frac{1}{2}$ and $\frac{1$");
    assert_eq!(latex, r"\frac{1");
}

#[test]
fn oversized_and_deeply_nested_formulas_are_refused_before_typesetting() {
    let long = format!("${}$", "x+".repeat(MAX_FORMULA_CHARS));
    let (_, reason) = formula_error(&long);
    assert!(reason.contains("longer than"), "{reason}");
    let deep = format!("${}x{}$", r"\frac{".repeat(20), "}{2}".repeat(20));
    let (_, reason) = formula_error(&deep);
    assert!(reason.contains("nested deeper"), "{reason}");
}

#[test]
fn unpaired_display_dollars_are_an_error_and_prices_are_text() {
    assert_eq!(
        set(r"$$\frac{1}{2}").unwrap_err(),
        MathError::Split(SplitError::UnclosedDisplay)
    );
    assert_eq!(
        split("costs $5 and $10").unwrap(),
        vec![Part::Text("costs $5 and $10".into())]
    );
}

#[test]
fn characters_no_font_has_are_reported() {
    // Only Liberation Sans is loaded here: it has no Han.
    let typeset = set(r"数 $x$").unwrap();
    assert_eq!(typeset.missing_chars(), vec!['数']);
}

#[test]
fn right_to_left_text_is_right_aligned_and_wraps_at_the_width() {
    let style = TextStyle { rtl: true, ..STYLE };
    let parts = split(r"x $y$").unwrap();
    let rtl = typesetter().typeset(&parts, &style).unwrap().mask();
    let (.., left, right) = ink_box(&rtl).unwrap();
    assert!(left > 800 && right > 950, "ink at {left}..{right} of 1000");

    let narrow = TextStyle {
        width: 200.0,
        ..STYLE
    };
    let words = split(r"one two three four five $x$").unwrap();
    let wrapped = typesetter().typeset(&words, &narrow).unwrap();
    let wide = typesetter().typeset(&words, &STYLE).unwrap();
    assert!(wrapped.height() > 2.0 * wide.height(), "wraps at 200 px");
    assert!(wrapped.mask().width <= 200);
}

#[test]
fn the_first_baseline_is_on_the_first_line() {
    let one = set("Plain text").unwrap();
    let baseline = one.first_baseline();
    assert!(
        baseline > 0.6 * 40.0 && baseline < one.height(),
        "baseline {baseline} of a {} px line",
        one.height()
    );
    // A fraction on the first line pushes its baseline down, not up.
    let fraction = set(r"Half is $\frac{1}{2}$").unwrap();
    assert!(
        fraction.first_baseline() > baseline,
        "{} vs {baseline}",
        fraction.first_baseline()
    );
}

#[test]
fn a_formula_alone_keeps_its_baseline() {
    // A bullet that is only a formula puts its disc on the formula's baseline, the same as
    // when text comes first: not on a numerator, an exponent or a radicand.
    for formula in [r"$\sqrt{2}$", "$x^2$", r"$\frac{5}{6}$"] {
        let alone = set(formula).unwrap().first_baseline();
        let after_text = set(&format!("x {formula}")).unwrap().first_baseline();
        assert!(
            (alone - after_text).abs() < 1.0,
            "{formula}: {alone} alone vs {after_text} after text"
        );
    }
}
