//! Where the machine's CPU went during a run: each process's CPU time (the gateway or the
//! proxy, the mock, this generator) from /proc/PID/stat, and how busy all cores were from
//! /proc/stat. Printed so that a latency figure can be read against the machine's load (a
//! queue forms long before every core is busy). Linux only; elsewhere every reading is `None`
//! and nothing is printed.

/// Linux's USER_HZ, the unit of /proc's CPU times.
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// User + system CPU time of a process so far, in clock ticks (/proc/PID/stat fields 14, 15);
/// `pid` may be `self`.
pub fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// (busy, total) clock ticks of all cores so far, from the first line of /proc/stat; idle and
/// iowait count as not busy.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((total - idle, total))
}

/// The CPU readings at the start of a run.
pub struct Meter {
    processes: Vec<(&'static str, String, Option<u64>)>,
    machine: Option<(u64, u64)>,
}

impl Meter {
    /// Starts measuring the named processes (`(name, pid)`) and the whole machine.
    pub fn start(processes: &[(&'static str, &str)]) -> Meter {
        Meter {
            processes: processes
                .iter()
                .map(|(name, pid)| (*name, (*pid).to_owned(), process_ticks(pid)))
                .collect(),
            machine: machine_ticks(),
        }
    }

    /// CPU per request of each process over `requests`, in microseconds, by name.
    pub fn per_request_us(&self, requests: f64) -> Vec<(&'static str, f64)> {
        self.processes
            .iter()
            .filter_map(|(name, pid, before)| {
                let ticks = process_ticks(pid)?.saturating_sub((*before)?);
                Some((
                    *name,
                    ticks as f64 / CLOCK_TICKS_PER_S / requests.max(1.0) * 1e6,
                ))
            })
            .collect()
    }

    /// CPU per request of each process over `requests`, and the cores busy meanwhile, as one line.
    pub fn report(&self, requests: f64) -> Option<String> {
        let parts: Vec<String> = self
            .per_request_us(requests)
            .iter()
            .map(|(name, us)| format!("{name} {us:.0} µs"))
            .collect();
        let (busy, total) = machine_ticks()
            .zip(self.machine)
            .map(|((busy, total), (busy0, total0))| (busy - busy0, total - total0))?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let share = busy as f64 / (total as f64).max(1.0);
        Some(format!(
            "CPU per request: {}; all cores {:.0} % busy ({:.2} of {cores:.0})",
            parts.join(", "),
            share * 100.0,
            share * cores
        ))
    }
}
