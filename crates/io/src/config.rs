//! TOML config files: parse with errors that name the file, the key and the line, and write
//! the resolved config of a run next to its outputs.

use crate::atomic::write_atomic;
use crate::{format_err, io_err, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// Parses a TOML config file; unknown keys, wrong types and bad kinds are errors that name
/// the file and the offending key (the toml error carries line and column).
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    parse_toml(&text, path)
}

/// Parses TOML text that came from `origin` (used in error messages).
pub fn parse_toml<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T> {
    parse_toml_with(text, origin, |_| None)
}

/// As [`load_toml`], with `refine` as in [`parse_toml_with`].
pub fn load_toml_with<T: DeserializeOwned>(
    path: &Path,
    refine: impl Fn(&str) -> Option<String>,
) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    parse_toml_with(&text, path, refine)
}

/// Parses TOML text that came from `origin`; on failure `refine(text)` may give a more precise
/// message than toml's (e.g. the key inside an internally tagged section, which serde buffers
/// before it reads `kind`, so that toml's own error points at the section header).
pub fn parse_toml_with<T: DeserializeOwned>(
    text: &str,
    origin: &Path,
    refine: impl Fn(&str) -> Option<String>,
) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let detail = refine(text).unwrap_or_else(|| e.to_string().trim_end().into());
        format_err(origin, format!("invalid config: {detail}"))
    })
}

/// The 1-based line of `key = ...` inside the section `[section]` of `text`.
pub fn key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            inside = l.trim_start_matches('[').trim_end_matches(']').trim() == section;
        } else if inside
            && l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        {
            return Some(i + 1);
        }
    }
    None
}

/// Writes `value` as TOML to `path` atomically.
pub fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = toml::to_string_pretty(value)
        .map_err(|e| format_err(path, format!("cannot serialise config: {e}")))?;
    let header = "# Resolved config written by gud: every default and fitted value filled in.\n";
    write_atomic(path, format!("{header}{text}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gud_core::config::DesignConfig;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Config {
        design: DesignConfig,
    }

    #[test]
    fn errors_name_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(
            &p,
            "[design]\nbasis = { kind = \"fourier\" }\nprior = { kind = \"free\", mass = 1 }\n",
        )
        .unwrap();
        let e = load_toml::<Config>(&p).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("mass"), "{e}");
        std::fs::write(&p, "[design\n").unwrap();
        let e = load_toml::<Config>(&p).unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");
        let e = load_toml::<Config>(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.toml"), "{e}");
    }

    #[test]
    fn key_line_finds_the_key_inside_its_section() {
        let text = "# c\n[data]\nkind = 'x'\nsize = 4\n[design]\nsize = 5\n";
        assert_eq!(key_line(text, "data", "size"), Some(4));
        assert_eq!(key_line(text, "design", "size"), Some(6));
        assert_eq!(key_line(text, "data", "seed"), None);
    }
}
