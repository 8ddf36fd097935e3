//! How many bytes one fetch request asks the broker for, per partition: at most
//! `kafka.consumer.fetchRequestMaxBytes`, halved after a request that timed out and doubled
//! back after one answered in under a quarter of the request timeout. A broker that needs longer
//! than the timeout to serve a large fetch (tansu's sqlite engine reads each record's headers
//! apart: ~1 ms per record here) is then asked for less until it answers in time, instead of
//! being asked for the same bytes forever. A broker always answers with at least one whole batch,
//! so the smallest ask still moves the reader on. Owns the sizes only; knows nothing of fetching.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The smallest ask: one typical record batch.
const FLOOR_BYTES: i32 = 4_096;

pub(super) struct FetchSizes {
    cap: i32,
    sizes: Mutex<HashMap<(String, i32), i32>>,
}

impl FetchSizes {
    pub(super) fn new(cap_bytes: usize) -> FetchSizes {
        let cap = i32::try_from(cap_bytes)
            .unwrap_or(i32::MAX)
            .max(FLOOR_BYTES);
        FetchSizes {
            cap,
            sizes: Mutex::new(HashMap::new()),
        }
    }

    /// The bytes the next request for `topic`/`partition` asks for.
    pub(super) fn ask(&self, topic: &str, partition: i32) -> i32 {
        self.sizes
            .lock()
            .ok()
            .and_then(|s| s.get(&(topic.to_owned(), partition)).copied())
            .unwrap_or(self.cap)
    }

    /// A request was answered after `elapsed`: quick answers let the ask grow back to the cap.
    pub(super) fn answered(
        &self,
        topic: &str,
        partition: i32,
        elapsed: Duration,
        timeout: Duration,
    ) {
        if elapsed.saturating_mul(4) < timeout {
            self.update(topic, partition, |ask| ask.saturating_mul(2));
        }
    }

    /// A request was not answered within its timeout: ask for half as much next time.
    pub(super) fn timed_out(&self, topic: &str, partition: i32) {
        self.update(topic, partition, |ask| ask / 2);
        let ask = self.ask(topic, partition);
        tracing::warn!(
            topic,
            partition,
            ask_bytes = ask,
            "kafka fetch timed out; asking for fewer bytes per request"
        );
    }

    fn update(&self, topic: &str, partition: i32, change: impl Fn(i32) -> i32) {
        let (cap, key) = (self.cap, (topic.to_owned(), partition));
        if let Ok(mut sizes) = self.sizes.lock() {
            let ask = sizes.get(&key).copied().unwrap_or(cap);
            let next = change(ask).clamp(FLOOR_BYTES.min(cap), cap);
            if next == cap {
                sizes.remove(&key);
            } else {
                sizes.insert(key, next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    #[test]
    fn a_timeout_halves_the_ask_down_to_the_floor_and_quick_answers_double_it_back() {
        let sizes = FetchSizes::new(65_536);
        assert_eq!(sizes.ask("t", 0), 65_536);
        sizes.timed_out("t", 0);
        assert_eq!(sizes.ask("t", 0), 32_768);
        assert_eq!(sizes.ask("t", 1), 65_536, "other partitions keep theirs");
        for _ in 0..10 {
            sizes.timed_out("t", 0);
        }
        assert_eq!(sizes.ask("t", 0), FLOOR_BYTES);
        sizes.answered("t", 0, Duration::from_millis(100), TIMEOUT);
        assert_eq!(sizes.ask("t", 0), 2 * FLOOR_BYTES);
        for _ in 0..10 {
            sizes.answered("t", 0, Duration::from_millis(100), TIMEOUT);
        }
        assert_eq!(sizes.ask("t", 0), 65_536, "never above the cap");
    }

    #[test]
    fn a_slow_answer_within_the_timeout_keeps_the_ask() {
        let sizes = FetchSizes::new(65_536);
        sizes.timed_out("t", 0);
        sizes.answered("t", 0, Duration::from_millis(600), TIMEOUT);
        assert_eq!(sizes.ask("t", 0), 32_768);
    }

    #[test]
    fn a_cap_below_the_floor_is_raised_to_it() {
        let sizes = FetchSizes::new(100);
        assert_eq!(sizes.ask("t", 0), FLOOR_BYTES);
        sizes.timed_out("t", 0);
        assert_eq!(sizes.ask("t", 0), FLOOR_BYTES);
    }
}
