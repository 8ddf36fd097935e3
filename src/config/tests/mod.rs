//! Tests of the configuration: every config snippet of the seeds loads, layering order, secrets,
//! and one-line errors. Helpers here write YAML to temp files and load with a given environment.
#![allow(clippy::unwrap_used)]

mod errors;
mod layering;
mod secrets;
mod seeds;

use std::io::Write;
use std::path::PathBuf;

use super::{load_with_env, Config, ConfigError};

/// A YAML file that lives as long as the value.
pub(super) struct YamlFile(tempfile::NamedTempFile);

impl YamlFile {
    pub(super) fn new(yaml: &str) -> Self {
        let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        file.write_all(yaml.as_bytes()).unwrap();
        Self(file)
    }

    pub(super) fn path(&self) -> PathBuf {
        self.0.path().to_path_buf()
    }
}

/// Loads `yaml` as the config file, with exactly `env` as the environment.
pub(super) fn load_yaml(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = YamlFile::new(yaml);
    load_with_env(Some(&file.path()), env.iter().copied())
}

/// Loads with no file and exactly `env` as the environment.
pub(super) fn load_env(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let vars = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    super::load::load_in(None, vars.collect(), dir.path())
}

/// The error's one line; fails the test if loading succeeded or the message spans lines.
pub(super) fn error_line(result: Result<Config, ConfigError>) -> String {
    let line = result.err().unwrap().to_string();
    assert!(!line.contains('\n'), "error spans lines: {line}");
    assert!(line.starts_with("invalid config: "), "{line}");
    line
}
