//! `ConfigError`: one line naming the key path and where its value came from (file or env var).
//! Owns the translation of figment/serde errors; must never put a secret's value in a message.

use std::fmt;
use std::path::PathBuf;

use figment::error::{Actual, Kind};
use figment::Source;

/// Where a configuration value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The YAML configuration file at this path.
    File(PathBuf),
    /// The environment variable of this name.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "in {}", path.display()),
            Origin::Env(name) => write!(f, "(from env {name})"),
        }
    }
}

/// Why the configuration could not be loaded. `Display` is one line, starts with
/// `invalid config:`, names the key (`gateway.config.maxConcurrentRequests`) and the origin of
/// the value, and never contains a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("invalid config: cannot read config file {}: {reason}", .path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The configuration file is not valid YAML.
    #[error("invalid config: {}{}: {message}", .path.display(), line_col(*.line, *.column))]
    Yaml {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error, when known.
        line: Option<usize>,
        /// 1-based column of the error, when known.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A key that the configuration does not have (strict: typos are errors).
    #[error("invalid config: unknown key \"{key}\" {origin}{hint}")]
    UnknownKey {
        /// The key path as written (`gateway.foo`).
        key: String,
        /// Where it was written.
        origin: Origin,
        /// A hint (` (did you mean "authMode"?)`) or empty.
        hint: String,
    },
    /// A value of the wrong type or out of its allowed range, or keys that contradict.
    #[error("invalid config: {key}: {message}{}", origin_suffix(.origin))]
    Invalid {
        /// The key path (`gateway.config.maxConcurrentRequests`).
        key: String,
        /// What is wrong, without the value when the key is a secret.
        message: String,
        /// Where the value came from, when it did not come from the defaults.
        origin: Option<Origin>,
    },
    /// A `...File` secret (or credential file) could not be read.
    #[error("invalid config: {key}: cannot read secret file {}{}: {reason}", .path.display(), origin_suffix(.origin))]
    SecretFile {
        /// The key naming the file (`postgresql.passwordFile`).
        key: String,
        /// The file.
        path: PathBuf,
        /// Where the key was set.
        origin: Option<Origin>,
        /// Why (I/O error, empty, not UTF-8); never the content.
        reason: String,
    },
}

impl ConfigError {
    /// The key path the error is about, when it is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::Invalid { key, .. }
            | ConfigError::SecretFile { key, .. } => Some(key),
            ConfigError::ReadFile { .. } | ConfigError::Yaml { .. } => None,
        }
    }

    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: one_line(&message.into()),
            origin: None,
        }
    }
}

fn line_col(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

fn origin_suffix(origin: &Option<Origin>) -> String {
    origin.as_ref().map(|o| format!(" {o}")).unwrap_or_default()
}

/// Collapses a multi-line message onto one line.
pub(crate) fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Joins path segments as `a.b[0].c`.
pub(crate) fn join_path<S: AsRef<str>>(segments: &[S]) -> String {
    let mut out = String::new();
    for seg in segments {
        let seg = seg.as_ref();
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// Last path segments whose values are secrets: their values are never quoted in errors.
const SECRET_KEYS: &[&str] = &["password", "saslPassword", "token", "url"];

/// Translates the first error figment reports into a `ConfigError`.
pub(crate) fn from_figment(err: figment::Error) -> ConfigError {
    let Some(err) = err.into_iter().next() else {
        return ConfigError::invalid("", "unknown error");
    };
    let origin = err.metadata.as_ref().and_then(|m| match &m.source {
        Some(Source::File(path)) => Some(Origin::File(path.clone())),
        Some(Source::Custom(name)) => Some(Origin::Env(name.clone())),
        _ => None,
    });
    let mut path = err.path.clone();
    if let Kind::UnknownField(field, _) = &err.kind {
        path.push(field.clone());
        if let Some(origin) = origin {
            return ConfigError::UnknownKey {
                key: join_path(&path),
                origin,
                hint: String::new(),
            };
        }
    }
    let secret = path
        .last()
        .is_some_and(|last| SECRET_KEYS.contains(&last.as_str()));
    ConfigError::Invalid {
        key: join_path(&path),
        message: one_line(&describe(&err.kind, secret)),
        origin,
    }
}

fn describe(kind: &Kind, secret: bool) -> String {
    let actual = |a: &Actual| match a {
        Actual::Bool(_)
        | Actual::Unsigned(_)
        | Actual::Signed(_)
        | Actual::Float(_)
        | Actual::Char(_)
        | Actual::Str(_)
        | Actual::Bytes(_)
        | Actual::Other(_)
            if secret =>
        {
            "a value of another type".to_owned()
        }
        _ => a.to_string(),
    };
    match kind {
        Kind::Message(_) if secret => "invalid value".to_owned(),
        Kind::Message(m) => m.clone(),
        Kind::InvalidType(a, exp) | Kind::InvalidValue(a, exp) => {
            format!("expected {}, found {}", expected(exp), actual(a))
        }
        Kind::InvalidLength(n, exp) => format!("expected {}, found {n} items", expected(exp)),
        Kind::UnknownVariant(v, exp) => {
            let list: Vec<String> = exp.iter().map(|e| format!("\"{e}\"")).collect();
            format!("unknown value \"{v}\", expected one of {}", list.join(", "))
        }
        Kind::UnknownField(f, _) => format!("unknown key \"{f}\""),
        Kind::MissingField(f) => format!("missing required key \"{f}\""),
        Kind::DuplicateField(f) => format!("key \"{f}\" given twice"),
        Kind::ISizeOutOfRange(v) => format!("{v} is out of range"),
        Kind::USizeOutOfRange(v) => format!("{v} is out of range"),
        Kind::Unsupported(a) => format!("unsupported value {}", actual(a)),
        Kind::UnsupportedKey(a, exp) => format!("unsupported key {a}, expected {exp}"),
    }
}

/// Serde's names for expected types, in words an operator reads.
fn expected(exp: &str) -> String {
    let words = match exp {
        "u8" => "an integer from 0 to 255",
        "u16" => "an integer from 0 to 65535",
        "u32" => "an integer from 0 to 4294967295",
        "u64" | "u128" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "bool" | "a boolean" => "a boolean (true or false)",
        "option" => "a value",
        _ if exp.starts_with("struct ") => "a mapping of keys",
        _ if exp.starts_with("enum ") => "one of the listed values",
        _ => exp,
    };
    words.to_owned()
}
