//! What a formula may be: mathematics, and nothing that runs.
//!
//! MiTeX converts LaTeX to Typst math and escapes what it reads as text, but a few LaTeX
//! forms reach its output verbatim (`\iftypst … \fi` is pasted in as Typst code, the
//! argument of `\includegraphics` lands in a Typst string, `\label` in a label) and its
//! macro engine expands `\newcommand`s without a bound. So a formula is checked twice:
//!
//! 1. **Before MiTeX** ([`check_latex`]): no macro definition, no `\iftypst`, no command
//!    that copies its argument into Typst code (`\includegraphics`, `\label`, `\ref`, …),
//!    no environment that is not mathematics (`figure`, `table`, `tabular`, lists).
//! 2. **After MiTeX** ([`check_typst`]): the Typst it made is parsed and walked. Embedded
//!    code (`#…`) may only be a call of MiTeX's text functions on content; no loop, binding,
//!    closure, import, label, reference or operator on values exists anywhere; a call in
//!    math may not name a function that reads, evaluates or makes values (`eval`, `read`,
//!    `range`, `plugin`, …); and the tree may not be deeper than [`MAX_TREE_DEPTH`], which
//!    bounds the typesetter's recursion however the nesting is written (`\sqrt\sqrt…`,
//!    `x^x^…`, `a \over b \over …`).
//!
//! What passes both is a tree of math calls on escaped text, which Typst sets in time
//! linear in its size.

use typst::syntax::{SyntaxKind, SyntaxNode};

/// The deepest syntax tree of MiTeX's output accepted. `\frac{\frac{a}{b}}{\sqrt{c^{2}}}`
/// is about 15 deep; 60 leaves room for real formulas and keeps Typst's recursion far from
/// a thread's stack.
pub const MAX_TREE_DEPTH: usize = 60;

/// LaTeX commands refused before MiTeX sees them: definitions (which MiTeX expands without
/// a bound), Typst pass-through, and commands whose argument it copies into code.
const REFUSED_COMMANDS: &[&str] = &[
    "newcommand",
    "renewcommand",
    "providecommand",
    "DeclareRobustCommand",
    "DeclareTextCommandDefault",
    "ProvideTextCommandDefault",
    "DeclareMathOperator",
    "newenvironment",
    "renewenvironment",
    "def",
    "gdef",
    "edef",
    "xdef",
    "let",
    "iftypst",
    "includegraphics",
    "label",
    "ref",
    "eqref",
    "cite",
    "footnote",
    "input",
    "include",
    "url",
    "href",
];

/// Environments allowed: MiTeX's mathematical ones.
const MATH_ENVIRONMENTS: &[&str] = &[
    "matrix",
    "pmatrix",
    "bmatrix",
    "Bmatrix",
    "vmatrix",
    "Vmatrix",
    "smallmatrix",
    "cases",
    "rcases",
    "aligned",
    "align",
    "align*",
    "alignedat",
    "gathered",
    "gather",
    "gather*",
    "split",
    "array",
    "subarray",
    "equation",
    "equation*",
];

/// Functions a math call may not name: whatever reads, evaluates, loops over or builds
/// values rather than mathematics.
const REFUSED_CALLS: &[&str] = &[
    "eval",
    "read",
    "json",
    "yaml",
    "toml",
    "csv",
    "xml",
    "cbor",
    "plugin",
    "image",
    "range",
    "panic",
    "assert",
    "query",
    "here",
    "locate",
    "state",
    "counter",
    "metadata",
    "include",
    "import",
    "str",
    "repr",
    "array",
    "dictionary",
    "bytes",
    "decimal",
    "int",
    "float",
    "type",
    "calc",
    "sys",
    "label",
    "ref",
    "link",
    "figure",
    "bibliography",
    "cite",
    "footnote",
    "outline",
    "page",
    "pagebreak",
    "document",
    "set",
    "show",
    "context",
];

/// Embedded-code functions allowed: MiTeX's wrappers for text inside a formula.
const CODE_CALLS: &[&str] = &["textmath", "mitexmathrm", "mitextext"];

/// Checks a formula's LaTeX before conversion (see the module doc).
pub fn check_latex(latex: &str) -> Result<(), String> {
    let mut chars = latex.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c != '\\' {
            continue;
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|(_, c)| c.is_ascii_alphabetic()))
            .map(|(_, c)| c)
            .collect();
        if name.is_empty() {
            chars.next(); // `\{`, `\\`, `\$`: an escaped character
            continue;
        }
        if REFUSED_COMMANDS.contains(&name.as_str()) || name.starts_with("if") {
            return Err(format!("\\{name} is not allowed in a formula"));
        }
        if name == "begin" || name == "end" {
            let rest = &latex[at + 1 + name.len()..];
            let env = rest
                .trim_start()
                .strip_prefix('{')
                .and_then(|r| r.split_once('}'))
                .map(|(env, _)| env.trim());
            if let Some(env) = env
                && !MATH_ENVIRONMENTS.contains(&env)
            {
                return Err(format!(
                    "the environment {{{env}}} is not mathematics (allowed: {})",
                    MATH_ENVIRONMENTS.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Checks the Typst math MiTeX made of a formula (see the module doc).
pub fn check_typst(math: &str) -> Result<(), String> {
    let root = typst::syntax::parse_math(math);
    if let Some(error) = root.errors_and_warnings().0.first() {
        return Err(error.message.to_string());
    }
    walk(&root, 0)
}

fn refused(what: &str) -> String {
    format!("it uses {what}, which is not mathematics")
}

fn walk(node: &SyntaxNode, depth: usize) -> Result<(), String> {
    if depth > MAX_TREE_DEPTH {
        return Err(format!(
            "it is nested too deeply (more than {MAX_TREE_DEPTH} levels once read)"
        ));
    }
    match node.kind() {
        // Embedded code: only `#textmath[…]`-like calls on content.
        SyntaxKind::FuncCall => {
            let mut children = node.children();
            let callee = children.next();
            let allowed = callee.is_some_and(|c| {
                c.kind() == SyntaxKind::Ident && CODE_CALLS.contains(&c.leaf_text().as_str())
            });
            if !allowed {
                return Err(refused("code"));
            }
            for child in children {
                walk_code_args(child, depth + 1)?;
            }
            return Ok(());
        }
        SyntaxKind::MathCall => {
            if let Some(callee) = node.children().next() {
                let name = callee.full_text();
                if callee.kind() != SyntaxKind::MathIdent || REFUSED_CALLS.contains(&name.as_str())
                {
                    return Err(refused(&format!("the function {name}")));
                }
            }
        }
        SyntaxKind::Label | SyntaxKind::Ref | SyntaxKind::RefMarker => {
            return Err(refused("a label or reference"));
        }
        SyntaxKind::Error => return Err("it could not be read as mathematics".to_owned()),
        kind if is_code(kind) => return Err(refused("code")),
        _ => {}
    }
    for child in node.children() {
        walk(child, depth + 1)?;
    }
    Ok(())
}

/// The arguments of an allowed embedded call: content blocks of plain markup only.
fn walk_code_args(node: &SyntaxNode, depth: usize) -> Result<(), String> {
    match node.kind() {
        SyntaxKind::Args
        | SyntaxKind::LeftParen
        | SyntaxKind::RightParen
        | SyntaxKind::LeftBracket
        | SyntaxKind::RightBracket
        | SyntaxKind::ContentBlock => {
            for child in node.children() {
                walk_code_args(child, depth + 1)?;
            }
            Ok(())
        }
        SyntaxKind::Markup => {
            for child in node.children() {
                walk_markup(child, depth + 1)?;
            }
            Ok(())
        }
        _ => Err(refused("code")),
    }
}

/// Markup inside text in a formula: text, spaces, escapes, and formulas.
fn walk_markup(node: &SyntaxNode, depth: usize) -> Result<(), String> {
    match node.kind() {
        SyntaxKind::Text
        | SyntaxKind::Space
        | SyntaxKind::Escape
        | SyntaxKind::Shorthand
        | SyntaxKind::SmartQuote
        | SyntaxKind::Linebreak => Ok(()),
        SyntaxKind::Equation => walk(node, depth),
        _ => Err(refused("markup")),
    }
}

/// Kinds that only code has: values, operators on them, bindings and control flow.
fn is_code(kind: SyntaxKind) -> bool {
    use SyntaxKind as K;
    matches!(
        kind,
        K::Code
            | K::CodeBlock
            | K::ContentBlock
            | K::Markup
            | K::Let
            | K::Set
            | K::Show
            | K::Context
            | K::If
            | K::Else
            | K::For
            | K::In
            | K::While
            | K::Break
            | K::Continue
            | K::Return
            | K::Import
            | K::Include
            | K::As
            | K::Closure
            | K::Params
            | K::LetBinding
            | K::SetRule
            | K::ShowRule
            | K::Contextual
            | K::Conditional
            | K::WhileLoop
            | K::ForLoop
            | K::ModuleImport
            | K::ImportItems
            | K::ImportItemPath
            | K::RenamedImportItem
            | K::ModuleInclude
            | K::LoopBreak
            | K::LoopContinue
            | K::FuncReturn
            | K::Destructuring
            | K::DestructAssignment
            | K::Unary
            | K::Binary
            | K::FieldAccess
            | K::Spread
            | K::Array
            | K::Dict
            | K::Keyed
            | K::Parenthesized
            | K::Raw
            | K::Link
            | K::Heading
            | K::Strong
            | K::Emph
            | K::ListItem
            | K::EnumItem
            | K::TermItem
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mathematics_passes_both_checks() {
        for latex in [
            r"\frac{3}{6} + \frac{2}{6} = \frac{5}{6}",
            r"\sqrt{x^2 + 1}",
            r"\text{if } x > 0",
            r"\begin{pmatrix} a & b \\ c & d \end{pmatrix}",
            r"f(x) = \begin{cases} 1 & x > 0 \\ 0 & \text{otherwise} \end{cases}",
            r"\left( \frac{a}{b} \right)^2 \le \int_0^1 f(x)\,dx",
            r"\mathrm{d}x \cdot \operatorname{curl} F",
            r"\sum_{k=1}^{n} k = \frac{n(n+1)}{2}",
            r"\alpha, \beta, \Gamma, \infty, \pm, \neq, \leq",
        ] {
            check_latex(latex).unwrap_or_else(|e| panic!("{latex}: {e}"));
            let typst = mitex::convert_math(latex, None).unwrap();
            check_typst(&typst).unwrap_or_else(|e| panic!("{latex} → {typst}: {e}"));
        }
    }

    #[test]
    fn definitions_pass_through_and_copying_commands_are_refused_before_mitex() {
        for latex in [
            r"\newcommand{\a}{\a}\a",
            r"\def\a{\a}\a",
            r"\iftypst #{range(200000000).len()} \fi",
            r#"\includegraphics{" + str(range(9)) + "}"#,
            r"\text{\label{x> #range(9).len() <y}}",
            r"\begin{figure} x \end{figure}",
            r"\begin{tabular}{c} x \end{tabular}",
            r"\ifx a b \fi",
        ] {
            assert!(check_latex(latex).is_err(), "{latex} passed");
        }
        assert!(
            check_latex(r"\{ \\ \$ \iota").is_ok(),
            "escapes and \\iota are fine"
        );
    }

    #[test]
    fn code_in_the_converted_math_is_refused() {
        for typst in [
            "#range(200000000).len()",
            "#{ let x = 1 }",
            r#"#image("/etc/passwd")"#,
            "eval(\"1 + 1\")",
            "range(9)",
            "#for x in (1, 2) [x]",
            "#textmath[x <label>]",
            "#textmath[@ref]",
            "#textmath[#read(\"/input.json\")]",
            "#textmath[ok] #panic(1)",
        ] {
            assert!(check_typst(typst).is_err(), "{typst} passed");
        }
        assert!(check_typst("frac(1, 2) + #textmath[if ] x").is_ok());
    }

    #[test]
    fn nesting_is_bounded_however_it_is_written() {
        for latex in [
            r"\sqrt ".repeat(70) + "x",
            "x^".repeat(140) + "x",
            r"a \over ".repeat(60) + "b",
        ] {
            let typst = mitex::convert_math(&latex, None).unwrap();
            assert!(
                check_typst(&typst).is_err(),
                "{latex} passed: {}",
                typst.len()
            );
        }
    }
}
