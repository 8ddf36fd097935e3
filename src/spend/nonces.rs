//! Replay protection's memory: nonces seen within the window, each kept until its expiry, with
//! an explicit cap. Pure data; the cache that owns it decides where it lives (in-process here,
//! Redis keys in production) so every replica sees every nonce.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::SpendError;

/// Longest nonce accepted, in bytes.
pub const NONCE_BYTES_MAX: usize = 128;
/// Shortest nonce accepted, in bytes (enough randomness to be unique).
pub const NONCE_BYTES_MIN: usize = 16;

pub struct NonceSet {
    seen: HashMap<String, DateTime<Utc>>,
    entries_max: usize,
}

impl NonceSet {
    pub fn new(entries_max: usize) -> NonceSet {
        NonceSet {
            seen: HashMap::new(),
            entries_max: entries_max.max(1),
        }
    }

    /// Records `nonce` until `expires_at`; false when it was already seen and has not expired.
    pub fn remember(
        &mut self,
        nonce: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, SpendError> {
        if let Some(until) = self.seen.get(nonce) {
            if *until > now {
                return Ok(false);
            }
        }
        if self.seen.len() >= self.entries_max {
            self.seen.retain(|_, until| *until > now);
            if self.seen.len() >= self.entries_max {
                return Err(SpendError::Full {
                    what: "nonces",
                    max: self.entries_max,
                });
            }
        }
        self.seen.insert(nonce.to_owned(), expires_at);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_nonce_is_accepted_once_per_window_and_the_set_stays_bounded() {
        let now = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000);
        let mut set = NonceSet::new(2);
        assert!(set
            .remember("a", now + Duration::seconds(300), now)
            .unwrap());
        assert!(!set
            .remember("a", now + Duration::seconds(300), now)
            .unwrap());
        assert!(set.remember("b", now + Duration::seconds(1), now).unwrap());
        assert!(set
            .remember("c", now + Duration::seconds(300), now)
            .is_err());
        let later = now + Duration::seconds(2);
        assert!(set
            .remember("c", later + Duration::seconds(300), later)
            .unwrap());
        assert!(!set
            .remember("a", later + Duration::seconds(300), later)
            .unwrap());
    }
}
