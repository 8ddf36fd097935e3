//! Glob matching for policy allowlists over `provider:model` and `mcp:server/tool` resources:
//! `*` matches any run of characters (including `/` and `:`), `?` exactly one character.
//! No escapes, no character classes, no recursion, no allocation for ASCII input.
//!
//! The algorithm is the iterative two-pointer match that remembers only the last `*`: when a
//! literal fails, the last `*` absorbs one more character and matching resumes after it. Earlier
//! stars never need revisiting (a later star can absorb whatever they would have), so there is
//! no exponential backtracking: the worst case is O(|pattern| · |text|) steps, and linear in the
//! text for a fixed pattern. Allow patterns are at most 256 bytes (`ALLOW_PATTERN_BYTES_MAX`).

/// Whether `text` matches `pattern` as a whole (anchored at both ends).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        match_tokens(pattern.as_bytes(), text.as_bytes(), b'*', b'?')
    } else {
        let pattern: Vec<char> = pattern.chars().collect();
        let text: Vec<char> = text.chars().collect();
        match_tokens(&pattern, &text, '*', '?')
    }
}

/// Whether `text` matches any of `patterns`.
pub fn glob_match_any<S: AsRef<str>>(patterns: &[S], text: &str) -> bool {
    patterns.iter().any(|p| glob_match(p.as_ref(), text))
}

fn match_tokens<T: Copy + Eq>(pattern: &[T], text: &[T], star: T, any: T) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // After the last `*` seen: where its continuation starts in the pattern, and the text index
    // that continuation was last tried at.
    let mut resume: Option<(usize, usize)> = None;
    while let Some(&c) = text.get(t) {
        match pattern.get(p) {
            Some(&token) if token == star => {
                p += 1;
                resume = Some((p, t));
                continue;
            }
            Some(&token) if token == any || token == c => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match resume {
            // Let the last star absorb one more character and retry what follows it.
            Some((after_star, tried_at)) => {
                p = after_star;
                t = tried_at + 1;
                resume = Some((after_star, t));
            }
            None => return false,
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&token| token == star))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    /// Obviously-correct reference: dynamic programming over (pattern prefix, text prefix).
    fn reference(pattern: &str, text: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        let mut dp = vec![vec![false; t.len() + 1]; p.len() + 1];
        dp[0][0] = true;
        for i in 1..=p.len() {
            for j in 0..=t.len() {
                dp[i][j] = match p[i - 1] {
                    '*' => dp[i - 1][j] || (j > 0 && dp[i][j - 1]),
                    '?' => j > 0 && dp[i - 1][j - 1],
                    c => j > 0 && t[j - 1] == c && dp[i - 1][j - 1],
                };
            }
        }
        dp[p.len()][t.len()]
    }

    #[test]
    fn matches_the_allowlist_shapes_of_the_seeds() {
        let table = [
            ("openai:gpt-4o*", "openai:gpt-4o", true),
            ("openai:gpt-4o*", "openai:gpt-4o-mini-2024-07-18", true),
            ("openai:gpt-4o*", "openai:gpt-4.1", false),
            ("openai:*", "openai:o3", true),
            ("openai:*", "anthropic:claude-sonnet-4", false),
            ("*:claude-*", "anthropic:claude-opus-4", true),
            ("mcp:search/*", "mcp:search/web", true),
            ("mcp:search/*", "mcp:searcher/web", false),
            ("mcp:*", "mcp:files/read/deep", true),
            ("*", "anything:at/all", true),
            ("openai:gpt-?o", "openai:gpt-4o", true),
            ("openai:gpt-?o", "openai:gpt-40o", false),
            ("openai:gpt-4o", "openai:gpt-4o-mini", false),
            ("openai:gpt-4o", "xopenai:gpt-4o", false),
        ];
        for (pattern, text, expected) in table {
            assert_eq!(
                glob_match(pattern, text),
                expected,
                "{pattern:?} vs {text:?}"
            );
        }
    }

    #[test]
    fn a_star_spans_slashes_and_colons() {
        assert!(glob_match("a*z", "a:/b/c:z"));
        assert!(glob_match("mcp:*/read", "mcp:fs/deep/read"));
    }

    #[test]
    fn empty_pattern_and_empty_text_behave() {
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("*", ""));
        assert!(glob_match("**", ""));
        assert!(!glob_match("?", ""));
        assert!(!glob_match("a", ""));
    }

    #[test]
    fn question_mark_matches_one_character_not_one_byte() {
        assert!(glob_match("local:mod?l", "local:modél"));
        assert!(glob_match("local:*é", "local:café"));
        assert!(!glob_match("local:mod??l", "local:modél"));
    }

    #[test]
    fn any_of_a_list_matches() {
        let allow = vec!["openai:gpt-4o*".to_owned(), "mcp:search/*".to_owned()];
        assert!(glob_match_any(&allow, "mcp:search/web"));
        assert!(!glob_match_any(&allow, "mcp:files/read"));
        assert!(!glob_match_any::<String>(&[], "openai:gpt-4o"));
    }

    #[test]
    fn pathological_patterns_finish_in_linear_time() {
        let long = "a".repeat(100_000);
        let started = Instant::now();
        assert!(!glob_match("a*a*a*a*b", &long));
        assert!(!glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*b", &long));
        assert!(glob_match("a*a*a*a*a", &long));
        let mut ends_in_b = long.clone();
        ends_in_b.push('b');
        assert!(glob_match("a*a*a*a*b", &ends_in_b));
        let worst = format!("*{}b", "a".repeat(200));
        assert!(!glob_match(&worst, &"a".repeat(10_000)));
        // Exponential backtracking would take longer than the age of the universe here.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn agrees_with_the_reference_matcher(pattern in "[ab*?:/]{0,8}", text in "[ab:/]{0,12}") {
            prop_assert_eq!(glob_match(&pattern, &text), reference(&pattern, &text));
        }

        #[test]
        fn agrees_with_the_reference_on_unicode(pattern in "[aé*?]{0,6}", text in "[aé]{0,8}") {
            prop_assert_eq!(glob_match(&pattern, &text), reference(&pattern, &text));
        }

        #[test]
        fn a_text_matches_itself_and_a_lone_star(text in "[ -~]{0,40}") {
            let literal = !text.contains('*') && !text.contains('?');
            prop_assert!(!literal || glob_match(&text, &text));
            prop_assert!(glob_match("*", &text));
        }
    }
}
