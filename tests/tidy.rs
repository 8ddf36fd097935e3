//! Tidy: the architecture invariants that hold only by care, checked mechanically over the
//! source tree (rust-analyzer's tidy test). Every source file says what it owns (`//!` first);
//! `core/` is pure (no other part of the crate, no I/O crate, no clock); only `roles/` names a
//! concrete adapter (tests, conformance suites and the adapters' own folders aside).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// Concrete adapters: chosen once, in `roles/`, from configuration.
const ADAPTERS: &[&str] = &[
    "LocalSpend",
    "LocalBus",
    "SqliteStore",
    "PgStore",
    "RedisSpend",
    "KafkaBus",
    "RedisAggregates",
];
/// Where an adapter may be named besides `roles/`: its own folder.
const ADAPTER_HOMES: &[&str] = &[
    "src/spend/local/",
    "src/bus/local/",
    "src/store/sqlite/",
    "src/store/postgres/",
    "src/spend/redis/",
    "src/bus/kafka/",
    "src/aggregate/redis/",
];
/// What `core/` must not use: the rest of the crate, I/O, async runtimes, clocks.
const CORE_FORBIDDEN: &[&str] = &[
    "crate::{",
    "super::super",
    "crate::store",
    "crate::bus",
    "crate::spend",
    "crate::roles",
    "crate::admission",
    "crate::cli",
    "crate::config",
    "crate::http",
    "crate::telemetry",
    "crate::consume",
    "crate::ledger",
    "crate::audit",
    "crate::ops",
    "crate::mock",
    "crate::embedded_db",
    "tokio",
    "hyper",
    "rusqlite",
    "tokio_postgres",
    "deadpool",
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "Utc::now",
    "Local::now",
    "SystemTime::now",
    "Instant::now",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `src/**/*.rs`, as (path relative to the crate, text).
fn tree() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, text)
        })
        .collect()
}

/// Test-only code (unit test modules, conformance suites) may use anything.
fn is_test_code(path: &str) -> bool {
    path.contains("/tests/") || path.ends_with("/tests.rs") || path.contains("/conformance")
}

/// The production part of a file: everything before its inline unit-test module.
fn production(text: &str) -> &str {
    let mut end = text.len();
    for pattern in [
        "#[cfg(test)]\nmod tests {",
        "#[cfg(test)]\n#[allow(clippy::unwrap_used)]\nmod tests {",
        "#[cfg(test)]\npub(super) mod tests {",
    ] {
        if let Some(i) = text.find(pattern) {
            end = end.min(i);
        }
    }
    &text[..end]
}

/// The code of a line, without its `//` comment.
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// Whether `word` occurs in `line` as a whole path segment or identifier.
fn names(line: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(word).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

fn report(rule: &str, breaks: Vec<String>) {
    assert!(breaks.is_empty(), "{rule}:\n  {}", breaks.join("\n  "));
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let breaks = tree()
        .into_iter()
        .filter(|(_, text)| {
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            !first.starts_with("//!")
        })
        .map(|(path, _)| format!("{path}: the first line is not a `//!` module doc"))
        .collect();
    report("every file says what it owns", breaks);
}

#[test]
fn core_uses_nothing_of_the_crate_no_io_and_no_clock() {
    let mut breaks = Vec::new();
    for (path, text) in tree() {
        if !path.starts_with("src/core/") || is_test_code(&path) {
            continue;
        }
        for (n, line) in production(&text).lines().enumerate() {
            for word in CORE_FORBIDDEN {
                if names(code(line), word) {
                    breaks.push(format!("{path}:{}: uses {word}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    report("core is pure", breaks);
}

#[test]
fn only_roles_names_a_concrete_adapter() {
    let mut breaks = Vec::new();
    for (path, text) in tree() {
        let home =
            path.starts_with("src/roles/") || ADAPTER_HOMES.iter().any(|h| path.starts_with(h));
        if home || is_test_code(&path) {
            continue;
        }
        for (n, line) in production(&text).lines().enumerate() {
            for adapter in ADAPTERS {
                if names(code(line), adapter) {
                    breaks.push(format!(
                        "{path}:{}: names {adapter}: {}",
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    report("only roles/ chooses adapters", breaks);
}

#[test]
fn the_checks_see_what_they_check() {
    // Each rule fails on the break it exists for (so an empty tree cannot pass them all).
    assert!(names("use tokio::sync::Mutex;", "tokio"));
    assert!(!names("use tokio_util::x;", "tokio"));
    assert!(names("let now = chrono::Utc::now();", "Utc::now"));
    assert!(names("use crate::store::Store;", "crate::store"));
    assert!(!names("use crate::storefront;", "crate::store"));
    assert!(names("let s = LocalSpend::open(dir)?;", "LocalSpend"));
    assert!(!names("let s = LocalSpendLimits::default();", "LocalSpend"));
    assert_eq!(code("x // Utc::now() in a comment"), "x ");
    assert!(is_test_code("src/spend/local/tests/mod.rs"));
    let file = "use a;\n#[cfg(test)]\nmod x;\nuse b;\n#[cfg(test)]\nmod tests {\n use tokio;\n}\n";
    assert_eq!(production(file), "use a;\n#[cfg(test)]\nmod x;\nuse b;\n");
    assert!(!is_test_code("src/spend/mod.rs"));
    assert!(tree().len() > 100, "the source tree was not found");
}
