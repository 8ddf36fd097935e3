//! The side-by-side comparison of one run: each proxy's added latency (its run minus the direct
//! run at the same percentile, same rate, same minutes), its CPU per request and RSS, and
//! Caracal as a ratio to the no-logic proxy (the limit of one proxy hop on this machine), with
//! issue 27's targets; and the line of each run. Knows nothing of how the runs are made.

use std::time::Duration;

use crate::load::{quantile, Run};

/// The largest added p99 latency that still counts as "sustainable".
pub const ADDED_P99_BUDGET: Duration = Duration::from_millis(1);
/// Targets (issue 27): Caracal's added p99 (and a stream's) within this of the limit's ...
const P99_DIFF_TARGET_MS: f64 = 0.25;
/// ... its added p50 within this ...
const P50_DIFF_TARGET_MS: f64 = 0.1;
/// ... at every rate up to this one, where its CPU per request is at most this multiple ...
const TARGET_RATE_MAX: f64 = 5000.0;
const CPU_RATIO_TARGET: f64 = 2.0;
/// ... and its RSS under this.
const RSS_TARGET_KB: u64 = 50 * 1024;

/// One proxy's run at one rate, with what its process cost.
pub struct Sample {
    pub name: &'static str,
    pub run: Run,
    /// Its process's CPU (user + system) per request of the run, warm-up included.
    pub cpu_us: Option<f64>,
    pub rss_kb: Option<u64>,
}

/// One rate of one kind of request: the direct run and every proxy's.
pub struct Case {
    /// `plain` (one JSON answer) or `stream` (SSE, latency to the last byte).
    pub kind: &'static str,
    pub rate: f64,
    pub direct: Run,
    pub samples: Vec<Sample>,
}

impl Case {
    fn sample(&self, name: &str) -> Option<&Sample> {
        self.samples.iter().find(|s| s.name == name)
    }

    /// Added latency of `name` at quantile `q`, in ms.
    pub fn added_ms(&self, name: &str, q: f64) -> Option<f64> {
        let sample = self.sample(name)?;
        Some(signed_ms(sample.run.quantile(q)?) - signed_ms(self.direct.quantile(q)?))
    }

    fn clean(&self, name: &str) -> bool {
        self.direct.errors.total() == 0
            && self.sample(name).is_some_and(|s| s.run.errors.total() == 0)
    }

    /// Whether `name` sustained this rate: no errors, added p99 under the budget.
    pub fn sustained(&self, name: &str) -> bool {
        self.clean(name)
            && self
                .added_ms(name, 0.99)
                .is_some_and(|added| added < signed_ms(ADDED_P99_BUDGET))
    }

    /// `subject` against `limit` at this rate, two lines under the runs.
    pub fn print_comparison(&self, subject: &str, limit: &str) {
        let cell = |q| match (self.added_ms(subject, q), self.added_ms(limit, q)) {
            (Some(s), Some(l)) => format!("{:+.3}", s - l),
            _ => "-".to_owned(),
        };
        println!(
            "{:>7}  {:<8} {:>46} {:>9} {:>9}   ({subject} added − {limit} added)",
            format!("{:.0}", self.rate),
            "diff",
            cell(0.5),
            cell(0.99),
            cell(0.999)
        );
        let cpu = |name| self.sample(name).and_then(|s| s.cpu_us);
        if let (Some(s), Some(l)) = (cpu(subject), cpu(limit)) {
            println!(
                "{:>7}  CPU per request: {subject} {s:.0} µs, {limit} {l:.0} µs, ratio {:.2}",
                "",
                s / l.max(1e-9)
            );
        }
    }
}

/// The summary table: per case, both proxies' added latency, the difference, CPU and RSS,
/// then the highest sustained rate of each and the targets.
pub fn print_summary(cases: &[Case], subject: &str, limit: &str) {
    println!(
        "\nsummary: added latency = proxy − direct at the same percentile (ms); limit = {limit}"
    );
    println!(
        "{:<7} {:>7}  {:>26}  {:>26}  {:>20}  {:>17}  {:>8}",
        "case",
        "rate/s",
        format!("{subject} p50/p99/p99.9"),
        format!("{limit} p50/p99/p99.9"),
        "diff p50/p99/p99.9",
        "CPU µs (ratio)",
        "RSS MB"
    );
    let triple = |f: &dyn Fn(f64) -> Option<f64>| {
        [0.5, 0.99, 0.999]
            .iter()
            .map(|q| f(*q).map_or("-".to_owned(), |v| format!("{v:+.2}")))
            .collect::<Vec<_>>()
            .join("/")
    };
    for case in cases {
        let diff = |q| Some(case.added_ms(subject, q)? - case.added_ms(limit, q)?);
        let cpu = |name| case.sample(name).and_then(|s| s.cpu_us);
        let cpu_cell = match (cpu(subject), cpu(limit)) {
            (Some(s), Some(l)) => format!("{s:.0}/{l:.0} ({:.2})", s / l.max(1e-9)),
            _ => "-".to_owned(),
        };
        let rss = |name| {
            case.sample(name)
                .and_then(|s| s.rss_kb)
                .map_or("-".to_owned(), |kb| format!("{:.1}", kb as f64 / 1024.0))
        };
        println!(
            "{:<7} {:>7.0}  {:>26}  {:>26}  {:>20}  {:>17}  {:>8}",
            case.kind,
            case.rate,
            triple(&|q| case.added_ms(subject, q)),
            triple(&|q| case.added_ms(limit, q)),
            triple(&diff),
            cpu_cell,
            format!("{}/{}", rss(subject), rss(limit))
        );
    }
    for name in [subject, limit] {
        let best = cases
            .iter()
            .filter(|c| c.kind == "plain" && c.sustained(name))
            .map(|c| c.rate)
            .fold(None, |best: Option<f64>, r| {
                Some(best.map_or(r, |b| b.max(r)))
            });
        match best {
            Some(rate) => println!(
                "max rate with p99 added < {} ms (and no errors), {name}: {rate:.0}/s",
                ADDED_P99_BUDGET.as_millis()
            ),
            None => println!(
                "max rate with p99 added < {} ms, {name}: none of the rates",
                ADDED_P99_BUDGET.as_millis()
            ),
        }
    }
    print_targets(cases, subject, limit);
}

/// Each target of issue 27, met or not, with the figure that decides it.
fn print_targets(cases: &[Case], subject: &str, limit: &str) {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    for case in cases.iter().filter(|c| c.rate <= TARGET_RATE_MAX) {
        let diff = |q| Some(case.added_ms(subject, q)? - case.added_ms(limit, q)?);
        if let (Some(p50), Some(p99)) = (diff(0.5), diff(0.99)) {
            let ok =
                p99 <= P99_DIFF_TARGET_MS && (case.kind != "plain" || p50 <= P50_DIFF_TARGET_MS);
            println!(
                "target {} {:.0}/s: added p99 within {P99_DIFF_TARGET_MS} ms of {limit}'s \
                 (p50 within {P50_DIFF_TARGET_MS}): {p99:+.3} (p50 {p50:+.3}) — {}",
                case.kind,
                case.rate,
                verdict(ok)
            );
        }
    }
    let at_max = cases
        .iter()
        .filter(|c| c.kind == "plain" && c.rate <= TARGET_RATE_MAX)
        .max_by(|a, b| a.rate.total_cmp(&b.rate));
    if let Some(case) = at_max {
        let cpu = |name| case.sample(name).and_then(|s| s.cpu_us);
        if let (Some(s), Some(l)) = (cpu(subject), cpu(limit)) {
            let ratio = s / l.max(1e-9);
            println!(
                "target CPU per request at {:.0}/s ≤ {CPU_RATIO_TARGET}× {limit}'s: {ratio:.2}× — {}",
                case.rate,
                verdict(ratio <= CPU_RATIO_TARGET)
            );
        }
    }
    let peak = cases
        .iter()
        .filter_map(|c| c.sample(subject).and_then(|s| s.rss_kb))
        .max();
    if let Some(kb) = peak {
        println!(
            "target {subject} RSS < {} MB: {:.1} MB — {}",
            RSS_TARGET_KB / 1024,
            kb as f64 / 1024.0,
            verdict(kb < RSS_TARGET_KB)
        );
    }
}

pub fn print_added(case: &Case, name: &str) {
    let cell = |q| {
        case.added_ms(name, q)
            .map_or("-".to_owned(), |ms| format!("{ms:+.3}"))
    };
    println!(
        "{:>7.0}  {:<8} {:>46} {:>9} {:>9}   ({name} − direct)",
        case.rate,
        "added",
        cell(0.5),
        cell(0.99),
        cell(0.999)
    );
}

pub fn signed_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn print_run(rate: f64, name: &str, run: &Run) {
    let ms_of = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.3}", signed_ms(d)));
    let ms = |q| ms_of(run.quantile(q));
    let e = run.errors;
    println!(
        "{rate:>7.0}  {name:<8} {:>8} {:>8} {:>7} {:>10.1} {:>9} {:>9} {:>9} {:>9} {:>9}",
        run.scheduled,
        run.latencies_ns.len(),
        e.total(),
        run.achieved_per_s(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        ms(1.0),
        ms_of(quantile(&run.lags_ns, 0.99))
    );
    let lag = quantile(&run.lags_ns, 0.99).unwrap_or_default();
    if lag > ADDED_P99_BUDGET {
        println!(
            "{:>7}  note: the generator itself fell behind (lag p99 {:.3} ms > {} ms): \
             these latencies measure this machine's CPU contention as much as the target",
            "",
            signed_ms(lag),
            ADDED_P99_BUDGET.as_millis()
        );
    }
    if e.total() > 0 {
        println!(
            "{:>7}  errors: {} non-2xx, {} i/o, {} timeout, {} backlog overflow",
            "", e.status, e.io, e.timeout, e.backlog
        );
    }
}

/// `VmRSS` of a process in kB, from /proc/PID/status.
pub fn rss_kb(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// `VmRSS` (and peak `VmHWM`) of a process, from /proc/PID/status.
pub fn rss(pid: &str) -> String {
    let status = match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => status,
        Err(e) => return format!("cannot read /proc/{pid}/status: {e}"),
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map_or("?".to_owned(), |l| {
                l.trim_start_matches(name).trim().to_owned()
            })
    };
    format!(
        "VmRSS {} (peak VmHWM {}) pid {pid}",
        field("VmRSS:"),
        field("VmHWM:")
    )
}
