//! The open-loop engine: a wall-clock dispatcher thread schedules requests at a fixed rate,
//! keep-alive HTTP/1.1 connections take them in turn, latency runs from the scheduled time.
//! Knows nothing of the gateway or the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, Mutex};

/// Requests scheduled but not yet picked up by a connection; past it they count as errors.
const BACKLOG_REQUESTS_MAX: usize = 100_000;

/// One target: where to send and with which credential.
pub struct Target {
    pub name: &'static str,
    pub uri: Uri,
    /// Value of the `Authorization` header.
    pub authorization: String,
}

/// How to load: the rates (requests per second), and per run its length and shape.
#[derive(Clone)]
pub struct Plan {
    pub rates: Vec<f64>,
    /// Rates of the streaming case (the same runs with a streaming request body).
    pub stream_rates: Vec<f64>,
    pub duration: Duration,
    /// Sent at the same rate before `duration`, not measured (connections, caches, JIT-free
    /// but allocator- and pool-warm).
    pub warmup: Duration,
    pub connections: usize,
    pub body: Bytes,
    pub timeout: Duration,
}

/// What one run (one rate, one target) measured.
#[derive(Default)]
pub struct Run {
    /// Latencies of measured requests that succeeded, sorted, in nanoseconds.
    pub latencies_ns: Vec<u64>,
    /// Scheduled time to hand-off to a free connection, sorted: the generator's own delay
    /// (timer wake-up, every connection busy); already part of `latencies_ns`.
    pub lags_ns: Vec<u64>,
    pub scheduled: u64,
    pub errors: Errors,
    /// From the first measured scheduled send to the last answer.
    pub elapsed: Duration,
}

#[derive(Default, Clone, Copy)]
pub struct Errors {
    /// Non-2xx answers.
    pub status: u64,
    /// Connection failures, resets, malformed answers.
    pub io: u64,
    pub timeout: u64,
    /// Scheduled while `BACKLOG_REQUESTS_MAX` requests were already waiting.
    pub backlog: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.status + self.io + self.timeout + self.backlog
    }

    fn add(&mut self, other: &Errors) {
        self.status += other.status;
        self.io += other.io;
        self.timeout += other.timeout;
        self.backlog += other.backlog;
    }
}

/// The `q` quantile (nearest rank) of sorted samples, or `None` without samples.
pub fn quantile(sorted_ns: &[u64], q: f64) -> Option<Duration> {
    let n = sorted_ns.len();
    if n == 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted_ns.get(rank - 1).map(|ns| Duration::from_nanos(*ns))
}

impl Run {
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.latencies_ns, q)
    }

    pub fn achieved_per_s(&self) -> f64 {
        self.latencies_ns.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A scheduled request: when it should have been sent, and whether it is past the warm-up.
#[derive(Clone, Copy)]
struct Job {
    at: Instant,
    measured: bool,
}

/// One open-loop run at `rate` against `target`.
pub async fn run(plan: &Plan, target: &Target, rate: f64) -> Run {
    let warmup_jobs = (plan.warmup.as_secs_f64() * rate).round() as u64;
    let measured_jobs = (plan.duration.as_secs_f64() * rate).round() as u64;
    let (tx, rx) = mpsc::channel::<Job>(BACKLOG_REQUESTS_MAX);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        let rx = Arc::clone(&rx);
        let request = RequestTemplate::of(target, plan);
        workers.push(tokio::spawn(worker(rx, request)));
    }
    let backlog = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(50);
    let dispatcher = {
        let backlog = Arc::clone(&backlog);
        let total = warmup_jobs + measured_jobs;
        std::thread::spawn(move || dispatch(&tx, start, rate, total, warmup_jobs, &backlog))
    };
    let mut result = Run {
        scheduled: measured_jobs,
        ..Run::default()
    };
    let mut last_done = start;
    for worker in workers {
        if let Ok(done) = worker.await {
            result.latencies_ns.extend(done.latencies_ns);
            result.lags_ns.extend(done.lags_ns);
            result.errors.add(&done.errors);
            last_done = last_done.max(done.last_done.unwrap_or(start));
        }
    }
    let _ = dispatcher.join();
    result.errors.backlog = backlog.load(Ordering::Relaxed);
    let measured_start = start + Duration::from_secs_f64(warmup_jobs as f64 / rate);
    result.elapsed = last_done.saturating_duration_since(measured_start);
    result.latencies_ns.sort_unstable();
    result.lags_ns.sort_unstable();
    result
}

/// Sends job `i` at `start + i / rate` by the wall clock, whether or not earlier ones are done.
/// Runs on its own OS thread: `thread::sleep` wakes within tens of microseconds, a tokio timer
/// only within a millisecond. Lateness still counts: latency runs from the scheduled time.
fn dispatch(
    tx: &mpsc::Sender<Job>,
    start: Instant,
    rate: f64,
    total: u64,
    warmup: u64,
    backlog: &AtomicU64,
) {
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        let job = Job {
            at,
            measured: i >= warmup,
        };
        if tx.try_send(job).is_err() && job.measured {
            backlog.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The request every connection of a run sends.
#[derive(Clone)]
struct RequestTemplate {
    uri: Uri,
    host: String,
    authorization: String,
    body: Bytes,
    timeout: Duration,
}

impl RequestTemplate {
    fn of(target: &Target, plan: &Plan) -> RequestTemplate {
        RequestTemplate {
            uri: target.uri.clone(),
            host: target
                .uri
                .authority()
                .map_or(String::new(), |a| a.to_string()),
            authorization: target.authorization.clone(),
            body: plan.body.clone(),
            timeout: plan.timeout,
        }
    }

    fn build(&self) -> Result<hyper::Request<Full<Bytes>>, hyper::http::Error> {
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        hyper::Request::post(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::AUTHORIZATION, &self.authorization)
            .body(Full::new(self.body.clone()))
    }
}

/// What one connection measured.
#[derive(Default)]
struct WorkerResult {
    latencies_ns: Vec<u64>,
    lags_ns: Vec<u64>,
    errors: Errors,
    last_done: Option<Instant>,
}

/// One keep-alive connection: takes the next scheduled job, sends it, reads the whole answer,
/// reconnects after a failure.
async fn worker(rx: Arc<Mutex<mpsc::Receiver<Job>>>, request: RequestTemplate) -> WorkerResult {
    let mut out = WorkerResult::default();
    let mut sender: Option<http1::SendRequest<Full<Bytes>>> = None;
    loop {
        let job = { rx.lock().await.recv().await };
        let Some(job) = job else {
            break;
        };
        if job.measured {
            out.lags_ns.push(nanos(job.at.elapsed()));
        }
        let outcome = tokio::time::timeout(request.timeout, send(&mut sender, &request)).await;
        let done = Instant::now();
        out.last_done = Some(out.last_done.map_or(done, |d| d.max(done)));
        let failed = match outcome {
            Ok(Ok(true)) => None,
            Ok(Ok(false)) => Some(&mut out.errors.status),
            Ok(Err(_)) => Some(&mut out.errors.io),
            Err(_) => Some(&mut out.errors.timeout),
        };
        if !job.measured {
            continue;
        }
        match failed {
            None => out.latencies_ns.push(nanos(done - job.at)),
            Some(counter) => *counter += 1,
        }
    }
    out
}

/// Sends one request on the connection (opening it first if needed); `Ok(true)` for a 2xx
/// whose body was read to the end.
async fn send(
    sender: &mut Option<http1::SendRequest<Full<Bytes>>>,
    request: &RequestTemplate,
) -> anyhow::Result<bool> {
    let result = async {
        let connection = match sender {
            Some(s) if !s.is_closed() => s,
            _ => sender.insert(connect(&request.uri).await?),
        };
        connection.ready().await?;
        let response = connection.send_request(request.build()?).await?;
        let ok = response.status().is_success();
        response.into_body().collect().await?;
        anyhow::Ok(ok)
    }
    .await;
    if result.is_err() {
        *sender = None;
    }
    result
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

async fn connect(uri: &Uri) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let host = uri.host().context("URL has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}
