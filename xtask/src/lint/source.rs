//! Just enough of Rust's lexical grammar for the structure checks: comments, string,
//! raw-string and char literals blanked out (so a brace or a `fn` inside them counts for
//! nothing), and the repository's `.rs` files listed.

use std::path::{Path, PathBuf};

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `src` with every comment and every string, raw-string and char literal replaced by
/// spaces; line breaks are kept, so lines and columns stay where they were. Lifetimes and
/// labels (`'a`) are kept.
pub fn blank(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let end = literal_or_comment_end(&c, i);
        if end > i {
            out.extend(
                c[i..end]
                    .iter()
                    .map(|&x| if x == '\n' { '\n' } else { ' ' }),
            );
            i = end;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Where the comment or literal starting at `i` ends (one past it), or `i` when none
/// starts there.
fn literal_or_comment_end(c: &[char], i: usize) -> usize {
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    match (at(i), at(i + 1)) {
        ('/', '/') => (i..c.len()).find(|&k| c[k] == '\n').unwrap_or(c.len()),
        ('/', '*') => {
            let (mut depth, mut k) = (1, i + 2);
            while k < c.len() && depth > 0 {
                match (at(k), at(k + 1)) {
                    ('/', '*') => (depth, k) = (depth + 1, k + 2),
                    ('*', '/') => (depth, k) = (depth - 1, k + 2),
                    _ => k += 1,
                }
            }
            k
        }
        ('r', _) if raw_prefix_ok(c, i) => raw_string_end(c, i).unwrap_or(i),
        ('"', _) => {
            let mut k = i + 1;
            while k < c.len() && c[k] != '"' {
                k += if c[k] == '\\' { 2 } else { 1 };
            }
            (k + 1).min(c.len())
        }
        ('\'', '\\') => (i + 3..c.len())
            .find(|&k| c[k] == '\'')
            .map_or(c.len(), |k| k + 1),
        ('\'', x) if x != '\0' && at(i + 2) == '\'' => i + 3,
        _ => i,
    }
}

/// An `r` that may open a raw string: not inside an identifier, except as `br`/`cr`.
fn raw_prefix_ok(c: &[char], i: usize) -> bool {
    let before = |k: usize| k.checked_sub(1).map(|j| c[j]);
    match before(i) {
        None => true,
        Some(p) if !is_ident(p) => true,
        Some('b' | 'c') => before(i - 1).is_none_or(|p| !is_ident(p)),
        _ => false,
    }
}

/// `r"…"`, `r#"…"#`, …: one past the closing quote and hashes.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let hashes = c[i + 1..].iter().take_while(|&&x| x == '#').count();
    if c.get(i + 1 + hashes) != Some(&'"') {
        return None;
    }
    let mut k = i + 2 + hashes;
    while k < c.len() {
        if c[k] == '"'
            && c[k + 1..]
                .iter()
                .take(hashes)
                .filter(|&&x| x == '#')
                .count()
                == hashes
        {
            return Some(k + 1 + hashes);
        }
        k += 1;
    }
    Some(c.len())
}

/// A token of blanked source: an identifier (keywords included) or one punctuation
/// character (`::` is one token), with its line (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The token's text.
    pub text: String,
    /// Its line, counted from 1.
    pub line: usize,
}

/// The tokens of blanked source (whitespace dropped; numbers come out as identifiers).
pub fn tokens(blanked: &str) -> Vec<Token> {
    let c: Vec<char> = blanked.chars().collect();
    let (mut out, mut line, mut i) = (Vec::new(), 1, 0);
    while i < c.len() {
        let x = c[i];
        if x == '\n' {
            line += 1;
            i += 1;
        } else if x.is_whitespace() {
            i += 1;
        } else if is_ident(x) {
            let j = (i..c.len()).find(|&k| !is_ident(c[k])).unwrap_or(c.len());
            out.push(Token {
                text: c[i..j].iter().collect(),
                line,
            });
            i = j;
        } else if x == ':' && c.get(i + 1) == Some(&':') {
            out.push(Token {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                text: x.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

/// `#[cfg(test)]` at `i`: the index after it and its line.
pub fn cfg_test(t: &[Token], i: usize) -> Option<(usize, usize)> {
    let want = ["#", "[", "cfg", "(", "test", ")", "]"];
    let got = t.get(i..i + want.len())?;
    got.iter()
        .zip(want)
        .all(|(a, b)| a.text == b)
        .then(|| (i + want.len(), t[i].line))
}

/// Past any further attributes (`#[…]`, `pub`): (the index of what follows, same).
pub fn skip_attributes(t: &[Token], mut i: usize) -> (usize, usize) {
    loop {
        match t.get(i).map(|x| x.text.as_str()) {
            Some("#") if t.get(i + 1).is_some_and(|x| x.text == "[") => {
                let mut depth = 0;
                while i < t.len() {
                    match t[i].text.as_str() {
                        "[" => depth += 1,
                        "]" => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
            }
            Some("pub") => i += 1,
            _ => return (i, i),
        }
    }
}

/// The index of the brace closing the one at `open`.
pub fn close(t: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (k, x) in t.iter().enumerate().skip(open) {
        match x.text.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    t.len() - 1
}

/// Every `.rs` file under `dirs` (relative to `root`), sorted; `target/` and hidden
/// folders skipped. Paths come back relative to `root`.
pub fn rust_files(root: &Path, dirs: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        walk(root, &root.join(d), &mut out);
    }
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk(root, &p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
        }
    }
}

/// A path as the reports write it: relative, with `/`.
pub fn shown(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_literals_are_blanked_lines_kept() {
        let src = "a // {\nb /* { /* } */ } */ c\n\"{\\\"}\" '{' '\\'' 'a r#\"}\"# br\"{\" x'";
        let b = blank(src);
        assert_eq!(b.lines().count(), src.lines().count());
        assert!(!b.contains('{') && !b.contains('}'), "{b:?}");
        assert!(b.contains("'a"), "a lifetime stays: {b:?}");
        assert!(b.contains(" c\n") && b.starts_with("a "), "{b:?}");
        // A raw string's quote inside is no end; an identifier ending in r is no prefix.
        let b = blank("r##\"a\"#{\"## {} for\"}\"");
        assert_eq!(b.matches('{').count(), 1, "{b:?}");
    }

    #[test]
    fn tokens_carry_lines() {
        let t = tokens("use crate::a;\nfn f() {}");
        let text: Vec<_> = t.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            text,
            ["use", "crate", "::", "a", ";", "fn", "f", "(", ")", "{", "}"]
        );
        assert_eq!(t[5].line, 2);
    }
}
