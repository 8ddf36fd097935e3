//! The version of this build: the crate version and, when the build knew it, the git commit.
//! Shown by `caracal --version`, the startup log line and every `/health` body.

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit this binary was built from, when known (see `build.rs`).
pub const COMMIT: Option<&str> = option_env!("CARACAL_GIT_COMMIT");

/// `caracal 0.1.0 (commit 0123456789ab)`, or `caracal 0.1.0` when the commit is unknown.
pub fn long() -> String {
    match COMMIT {
        Some(commit) => format!("caracal {VERSION} (commit {commit})"),
        None => format!("caracal {VERSION}"),
    }
}

/// The `/health` body of every listener: status, version and commit (`null` when unknown).
pub fn health_body() -> serde_json::Value {
    serde_json::json!({ "status": "ok", "version": VERSION, "commit": COMMIT })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_version_names_the_crate_version_and_the_commit_when_known() {
        let long = long();
        assert!(long.starts_with(&format!("caracal {VERSION}")), "{long}");
        if let Some(commit) = COMMIT {
            assert!(long.ends_with(&format!("(commit {commit})")), "{long}");
        }
        assert_eq!(health_body()["version"], VERSION);
    }
}
