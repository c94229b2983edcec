//! Reading the TOML files the commands take (rules, daemon config): one
//! error line naming the file, line, column and what is wrong.

use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads `path` and parses it as `T`; `what` names the file's role in errors
/// ("rules", "config").
pub fn read_toml<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {what} file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let message = one_line(e.message());
        match e.span() {
            Some(span) => {
                let (line, column) = line_column(&text, span.start);
                anyhow!(
                    "{}:{line}:{column}: invalid {what}: {message}",
                    path.display()
                )
            }
            None => anyhow!("{}: invalid {what}: {message}", path.display()),
        }
    })
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// `message` with every run of whitespace (newlines too) as one space.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
