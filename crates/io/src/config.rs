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
    toml::from_str(text).map_err(|e| {
        let detail = data_section_error(text).unwrap_or_else(|| e.to_string().trim_end().into());
        format_err(origin, format!("invalid config: {detail}"))
    })
}

/// The precise error inside `[data]`: serde buffers an internally tagged section before it
/// reads `kind`, so toml's own error points at the section header and omits the key
/// (regression, issue 20); deserialising the section as its kind's struct names the key, and
/// its line is found in the text.
fn data_section_error(text: &str) -> Option<String> {
    use gud_core::config::{FreeFieldDataConfig, ImageDataConfig, NpyDataConfig, Phi4DataConfig};
    let table: toml::Table = toml::from_str(text).ok()?;
    let mut data = table.get("data")?.as_table()?.clone();
    let kind = data.remove("kind")?;
    let value = toml::Value::Table(data);
    let err = match kind.as_str()? {
        "phi4" => value.try_into::<Phi4DataConfig>().err(),
        "free-field" => value.try_into::<FreeFieldDataConfig>().err(),
        "npy" => value.try_into::<NpyDataConfig>().err(),
        "images" => value.try_into::<ImageDataConfig>().err(),
        _ => None,
    }?;
    let msg = err.to_string().trim().replace('\n', " ");
    let key = msg
        .rsplit_once("in `")
        .and_then(|(_, k)| k.split('`').next());
    let line = key.and_then(|k| key_line(text, "data", k));
    Some(match line {
        Some(n) => format!("[data] line {n}: {msg}"),
        None => format!("[data]: {msg}"),
    })
}

/// The 1-based line of `key = ...` inside the section `[section]` of `text`.
fn key_line(text: &str, section: &str, key: &str) -> Option<usize> {
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
    use gud_core::config::Config;

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
    fn an_error_inside_data_names_the_key_and_its_line() {
        // regression (issue 20): errors inside [data] pointed at the section, without the key
        let text = "# comment\n\n[data]\nkind = 'free-field'\nm2 = 0.5\nsize = 'eight'\n";
        let e = parse_toml::<Config>(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.toml") && e.contains("`size`") && e.contains("line 6"),
            "{e}"
        );
        let e = parse_toml::<Config>("[data]\nkind = 'phi4'\nsizes = 4\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sizes"), "{e}");
    }

    #[test]
    fn resolved_config_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        let c = Config::default();
        write_toml(&p, &c).unwrap();
        assert_eq!(load_toml::<Config>(&p).unwrap(), c);
    }
}
