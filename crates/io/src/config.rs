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
        format_err(
            origin,
            format!("invalid config: {}", e.to_string().trim_end()),
        )
    })
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
    fn resolved_config_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        let c = Config::default();
        write_toml(&p, &c).unwrap();
        assert_eq!(load_toml::<Config>(&p).unwrap(), c);
    }
}
