//! The README stays a map: at most [`LIMIT`] lines, and the example it shows is the one
//! the tests build (`examples/hello/src/main.rs`, its leading doc comment aside), word
//! for word.

use std::path::Path;

/// The longest the README may be, in lines.
pub const LIMIT: usize = 200;

/// The example the README shows, relative to the root.
const EXAMPLE: &str = "examples/hello/src/main.rs";

/// The problems with a README's text, given the example's source.
pub fn problems(readme: &str, example: &str) -> Vec<String> {
    let mut out = Vec::new();
    let n = readme.lines().count();
    if n > LIMIT {
        out.push(format!(
            "README.md: {n} lines (limit {LIMIT}): move text into docs/"
        ));
    }
    let code: String = example
        .lines()
        .skip_while(|l| l.starts_with("//!"))
        .map(|l| format!("{l}\n"))
        .collect();
    if !readme.contains(&format!("```rust\n{code}```")) {
        out.push(format!(
            "README.md does not show {EXAMPLE} exactly (a ```rust block of it, doc comment aside)"
        ));
    }
    out
}

/// The problems in the repository.
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).map_err(|e| format!("{p}: {e}"));
    Ok(problems(&read("README.md")?, &read(EXAMPLE)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_must_be_shown_exactly_and_the_readme_short() {
        let ex = "//! Doc.\n#![no_std]\nfn main() {}\n";
        let good = "# R\n```rust\n#![no_std]\nfn main() {}\n```\n";
        assert!(problems(good, ex).is_empty());
        let drifted = good.replace("main()", "main(x)");
        assert_eq!(problems(&drifted, ex).len(), 1);
        let long = format!("{good}{}", "line\n".repeat(LIMIT));
        let p = problems(&long, ex);
        assert!(p.len() == 1 && p[0].contains("limit 200"), "{p:?}");
    }
}
