//! The executor's side of the Prometheus exposition (crate feature `prometheus`): what a
//! scrape reads, handed to [`crate::metrics`] to render.

use flujo_core::context::Context;

use super::{Executor, Inner};
use crate::metrics::{self, Readings};
use crate::Priority;

impl<P, C> Inner<P, C>
where
    P: Clone + Send + Sync + 'static,
    C: Context + Send + Sync + 'static,
{
    /// See [`Executor::render_metrics`].
    pub(super) fn render_metrics(&self, out: &mut String) {
        let mut histograms = String::new();
        self.poll_monitor(true);
        let (report, breaker_states) = self.report_with(|collected| {
            let (run, steps) = collected.latency_histograms();
            metrics::render_histograms(run, steps, &mut histograms);
            metrics::render_queue_waits(collected.queue_wait_histograms(), &mut histograms);
        });
        let readings = Readings {
            queue_depth: Priority::ALL.map(|p| self.queues.len_of(p)),
            queue_capacity: Priority::ALL.map(|p| self.queues.capacity_of(p)),
            cache_entries: self.cache.len(),
            cache_bytes: self.cache.bytes(),
            breaker_states,
        };
        metrics::render(&report, &readings, &histograms, out);
    }
}

impl<P, C> Executor<P, C>
where
    P: Clone + Send + Sync + 'static,
    C: Context + Send + Sync + 'static,
{
    /// Appends the executor's metrics to `out` in the Prometheus text format (version 0.0.4;
    /// answer with [`metrics::CONTENT_TYPE`]): the exact counts of [`report`](Self::report),
    /// the run and step latency histograms, queue depths, breaker states and transitions,
    /// cache and memory readings. The names, labels and histogram buckets are in the
    /// [`metrics`] module's docs.
    ///
    /// Rendered from what the executor keeps anyway, at the cost of a report plus one pass
    /// over each latency histogram; it never waits for a running step or stops a worker.
    /// This is the handler a host mounts in its own HTTP server.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::graph::Graph;
    /// use flujo_runtime::config::OptimizationConfig;
    /// use flujo_runtime::Executor;
    ///
    /// let g = Graph::<u64, ()>::build(|b| b.task("a", |x, _| Ok(x + 1))).unwrap();
    /// let ex = Executor::new(OptimizationConfig::throughput()).unwrap();
    /// ex.run(&g, 1, ()).unwrap();
    /// let mut body = String::new();
    /// ex.render_metrics(&mut body);
    /// assert!(body.contains("# TYPE flujo_run_latency_seconds histogram\n"));
    /// assert!(body.contains("flujo_run_latency_seconds_count 1\n"));
    /// ```
    pub fn render_metrics(&self, out: &mut String) {
        self.inner.render_metrics(out);
    }

    /// Serves [`render_metrics`](Self::render_metrics) at `GET /metrics` on `addr` (crate
    /// feature `metrics-http`), from a thread of its own; anything else is answered 404.
    /// One connection at a time, requests of at most 8 KiB, 2 s to send one. The server
    /// stops, and its thread ends, when the returned handle is dropped; it answers 503 once
    /// the executor is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    ///
    /// use flujo_runtime::config::OptimizationConfig;
    /// use flujo_runtime::Executor;
    ///
    /// let ex = Executor::<u64, ()>::new(OptimizationConfig::latency()).unwrap();
    /// let server = ex.serve_metrics("127.0.0.1:0").unwrap();
    /// let mut conn = std::net::TcpStream::connect(server.local_addr()).unwrap();
    /// conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    /// let mut answer = String::new();
    /// conn.read_to_string(&mut answer).unwrap();
    /// assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
    /// assert!(answer.contains("flujo_runs_submitted_total 0\n"));
    /// drop(server); // stops the server thread
    /// ```
    #[cfg(feature = "metrics-http")]
    pub fn serve_metrics(
        &self,
        addr: impl std::net::ToSocketAddrs,
    ) -> std::io::Result<metrics::MetricsServer> {
        let inner = std::sync::Arc::downgrade(&self.inner);
        metrics::serve(addr, move |out: &mut String| match inner.upgrade() {
            Some(inner) => {
                inner.render_metrics(out);
                true
            }
            None => false,
        })
    }
}
