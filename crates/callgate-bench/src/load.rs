//! The load generator: N HTTP/1.1 keep-alive connections (one hyper connection each, no pool),
//! each sending requests back to back (closed loop) or on a fixed schedule (open loop) for a
//! fixed time after a warm-up. Every response body is read to the end; latency is send →
//! last body byte, recorded in microseconds in an HDR histogram (3 significant digits).
//! Only responses that complete inside the measurement window count.

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// A request is abandoned (and counted as an error) after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection sends: bodies are used round-robin.
pub struct RequestTemplate {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub bodies: Vec<Bytes>,
    /// The only status that counts as success.
    pub expect: StatusCode,
}

/// How to drive the target.
#[derive(Clone)]
pub struct Plan {
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Open loop: each connection starts a request every `interval` (it falls behind if the
    /// server is slower). `None` is a closed loop: the next request leaves when the last ends.
    pub interval: Option<Duration>,
    /// Stop after this many requests in total (warm-up included).
    pub max_requests: Option<u64>,
}

/// The result of one run of a plan.
pub struct Outcome {
    /// Responses with the expected status completed inside the measurement window.
    pub ok: u64,
    /// Unexpected statuses, transport errors and timeouts inside the window.
    pub errors: u64,
    /// Error counts by kind (`HTTP 500`, `connect`, `timeout`, ...).
    pub error_kinds: BTreeMap<String, u64>,
    /// Latency of the successful responses, in microseconds.
    pub hist: Histogram<u64>,
    pub measured: Duration,
    /// Wall-clock start and end of the measurement window.
    pub window: (SystemTime, SystemTime),
}

impl Outcome {
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    /// A percentile in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.hist.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.hist.max() as f64 / 1000.0
    }

    /// `"HTTP 500 ×3, timeout ×1"`, or `"0"`.
    pub fn error_summary(&self) -> String {
        if self.errors == 0 {
            return "0".into();
        }
        let kinds: Vec<String> = self
            .error_kinds
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        format!("{} ({})", self.errors, kinds.join(", "))
    }
}

pub fn new_histogram() -> Result<Histogram<u64>> {
    // 1 µs to 10 min at 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).context("cannot create a histogram")
}

/// Runs `plan` against `addr` and returns when every connection has finished.
pub async fn run(addr: SocketAddr, req: Arc<RequestTemplate>, plan: Plan) -> Result<Outcome> {
    let start = Instant::now();
    let measure_start = start + plan.warmup;
    let end = measure_start + plan.measure;
    let wall_start = SystemTime::now() + plan.warmup;
    let tickets = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(plan.connections);
    for idx in 0..plan.connections {
        let ctx = Worker {
            addr,
            req: req.clone(),
            plan: plan.clone(),
            idx,
            measure_start,
            end,
            tickets: tickets.clone(),
        };
        tasks.push(tokio::spawn(ctx.run()));
    }
    let mut total = Stats::new()?;
    for t in tasks {
        let s = t.await.context("a load connection panicked")??;
        total.merge(s)?;
    }
    Ok(Outcome {
        ok: total.ok,
        errors: total.errors.values().sum(),
        error_kinds: total.errors,
        hist: total.hist,
        measured: plan.measure,
        window: (wall_start, wall_start + plan.measure),
    })
}

struct Stats {
    ok: u64,
    errors: BTreeMap<String, u64>,
    hist: Histogram<u64>,
}

impl Stats {
    fn new() -> Result<Self> {
        Ok(Self {
            ok: 0,
            errors: BTreeMap::new(),
            hist: new_histogram()?,
        })
    }

    fn merge(&mut self, other: Stats) -> Result<()> {
        self.ok += other.ok;
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        self.hist
            .add(&other.hist)
            .context("cannot merge histograms")?;
        Ok(())
    }

    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

struct Worker {
    addr: SocketAddr,
    req: Arc<RequestTemplate>,
    plan: Plan,
    idx: usize,
    measure_start: Instant,
    end: Instant,
    tickets: Arc<AtomicU64>,
}

impl Worker {
    async fn run(self) -> Result<Stats> {
        let mut stats = Stats::new()?;
        let mut sender: Option<SendRequest<Full<Bytes>>> = None;
        let mut next_body = self.idx;
        // Spread open-loop connections over one interval so they do not fire together.
        let mut next_at = self.plan.interval.map(|i| {
            Instant::now() + i.mul_f64(self.idx as f64 / self.plan.connections.max(1) as f64)
        });
        loop {
            if let (Some(at), Some(interval)) = (next_at.as_mut(), self.plan.interval) {
                if *at >= self.end {
                    break;
                }
                tokio::time::sleep_until((*at).into()).await;
                *at += interval;
            }
            if Instant::now() >= self.end {
                break;
            }
            if let Some(max) = self.plan.max_requests {
                if self.tickets.fetch_add(1, Ordering::Relaxed) >= max {
                    break;
                }
            } else {
                self.tickets.fetch_add(1, Ordering::Relaxed);
            }
            let conn = match sender.as_mut() {
                Some(s) => s,
                None => match connect(self.addr).await {
                    Ok(s) => sender.insert(s),
                    Err(_) => {
                        if self.in_window(Instant::now()) {
                            stats.error("connect".into());
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let body = self.req.bodies[next_body % self.req.bodies.len()].clone();
            next_body += 1;
            let request = self.build(body)?;
            let sent = Instant::now();
            let result = tokio::time::timeout(REQUEST_TIMEOUT, send(conn, request)).await;
            let done = Instant::now();
            let counted = self.in_window(done);
            match result {
                Ok(Ok(status)) if status == self.req.expect => {
                    if counted {
                        stats.ok += 1;
                        let us = done.duration_since(sent).as_micros() as u64;
                        stats.hist.saturating_record(us.max(1));
                    }
                }
                Ok(Ok(status)) => {
                    if counted {
                        stats.error(format!("HTTP {}", status.as_u16()));
                    }
                }
                Ok(Err(e)) => {
                    if counted {
                        stats.error(format!("transport: {e}"));
                    }
                    sender = None;
                }
                Err(_) => {
                    if counted {
                        stats.error("timeout".into());
                    }
                    sender = None;
                }
            }
        }
        Ok(stats)
    }

    fn in_window(&self, t: Instant) -> bool {
        t >= self.measure_start && t < self.end
    }

    fn build(&self, body: Bytes) -> Result<hyper::Request<Full<Bytes>>> {
        let mut b = hyper::Request::builder()
            .method(self.req.method.clone())
            .uri(self.req.path.as_str())
            .header(hyper::header::HOST, self.addr.to_string());
        for (k, v) in &self.req.headers {
            b = b.header(k, v);
        }
        b.body(Full::new(body)).context("cannot build a request")
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends with an error when the server closes the connection; the next request notices.
        let _ = conn.await;
    });
    Ok(sender)
}

async fn send(
    conn: &mut SendRequest<Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
) -> Result<StatusCode, hyper::Error> {
    conn.ready().await?;
    let res = conn.send_request(req).await?;
    let status = res.status();
    res.into_body().collect().await?;
    Ok(status)
}
