//! No function over [`LIMIT`] lines in `runtime/`, `runner/` and `xtask/`, counted from
//! the line of `fn` to the line of its closing brace (attributes and doc comments not
//! counted), nested functions on their own; exceptions in [`ALLOWED`], each with why.

use super::source::{blank, rust_files, shown, tokens, Token};
use std::path::Path;

/// The longest a function may be, in lines.
pub const LIMIT: usize = 120;

/// The folders checked.
const DIRS: &[&str] = &["runtime", "runner", "xtask"];

/// The functions allowed to be longer: (file, function, why).
pub const ALLOWED: &[(&str, &str, &str)] = &[];

/// A function: its name, the line of `fn` and its length in lines.
#[derive(Debug, PartialEq, Eq)]
pub struct Function {
    /// Its name.
    pub name: String,
    /// The line of its `fn` keyword, from 1.
    pub line: usize,
    /// Lines from `fn` to the closing brace, both counted.
    pub lines: usize,
}

/// Every function with a body in `src` (nested ones too; declarations without a body,
/// `fn` pointer types and macro fragments such as `fn $name` are not functions).
pub fn functions(src: &str) -> Vec<Function> {
    let t = tokens(&blank(src));
    let mut out = Vec::new();
    for i in 0..t.len() {
        if t[i].text != "fn" || !t.get(i + 1).is_some_and(|n| starts_ident(&n.text)) {
            continue;
        }
        if let Some(end) = body_end(&t, i + 2) {
            out.push(Function {
                name: t[i + 1].text.clone(),
                line: t[i].line,
                lines: end - t[i].line + 1,
            });
        }
    }
    out
}

fn starts_ident(s: &str) -> bool {
    s.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

/// The line of the brace closing the body that follows the signature starting at `from`,
/// or None for a declaration (`;` outside parentheses and brackets first).
fn body_end(t: &[Token], from: usize) -> Option<usize> {
    let mut nest = 0i32;
    let mut k = from;
    while k < t.len() {
        match t[k].text.as_str() {
            "(" | "[" => nest += 1,
            ")" | "]" => nest -= 1,
            ";" if nest == 0 => return None,
            "{" if nest == 0 => break,
            _ => {}
        }
        k += 1;
    }
    let mut depth = 0;
    for tok in &t[k..] {
        match tok.text.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return Some(tok.line);
                }
            }
            _ => {}
        }
    }
    None
}

/// The problems: each function over the limit that is not allowed, and each allowance
/// that no longer matches a long function (so the list only shrinks).
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    let mut used = vec![false; ALLOWED.len()];
    for file in rust_files(root, DIRS) {
        let src = std::fs::read_to_string(root.join(&file))
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let path = shown(&file);
        for f in functions(&src).into_iter().filter(|f| f.lines > LIMIT) {
            match ALLOWED
                .iter()
                .position(|(p, n, _)| *p == path && *n == f.name)
            {
                Some(k) => used[k] = true,
                None => problems.push(format!(
                    "{path}:{}: fn {} is {} lines (limit {LIMIT})",
                    f.line, f.name, f.lines
                )),
            }
        }
    }
    for (k, (p, n, _)) in ALLOWED.iter().enumerate() {
        if !used[k] {
            problems.push(format!(
                "{p}: fn {n} is allowed to be long but is not (or is gone): drop it from ALLOWED"
            ));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_fn_to_the_closing_brace() {
        let src = "/// doc\n#[inline]\npub fn a(x: [u8; 4]) -> u8 {\n    let s = \"}\";\n    '}';\n    // }\n    x[0]\n}\nfn decl();\n";
        assert_eq!(
            functions(src),
            vec![Function {
                name: "a".into(),
                line: 3,
                lines: 6
            }]
        );
    }

    #[test]
    fn nested_functions_and_pointer_types() {
        let src =
            "fn outer(f: fn(u8) -> u8) {\n    fn inner() {\n    }\n    let r = r#\"{\"#;\n}\n";
        let f = functions(src);
        let got: Vec<_> = f.iter().map(|f| (f.name.as_str(), f.lines)).collect();
        assert_eq!(got, [("outer", 5), ("inner", 2)]);
    }

    #[test]
    fn a_long_function_is_found() {
        let body = "    x += 1;\n".repeat(LIMIT);
        let src = format!("fn long(mut x: u8) {{\n{body}}}\n");
        let f = functions(&src);
        assert_eq!(f[0].lines, LIMIT + 2);
        assert!(f[0].lines > LIMIT);
    }
}
