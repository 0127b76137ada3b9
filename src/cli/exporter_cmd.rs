//! `sigma exporter`: the doctor's metrics over HTTP for Prometheus (what
//! the Kubernetes DaemonSet runs).
//!
//! A thread checks the node every `--interval` seconds; `/metrics` serves
//! the latest result at once, so a scrape never waits on a probe (a hung
//! NVML shows as `sigma_source_unavailable{source="nvml"}`, not as a
//! scrape timeout). Before the first check completes `/metrics` answers
//! 503.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::report::{DoctorReport, prom};
use crate::session::Node;

/// Arguments of `sigma exporter`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address and port to serve /metrics on.
    #[arg(long, default_value = "0.0.0.0:9835", value_name = "ADDR:PORT")]
    pub listen: String,
    /// Seconds between checks of the node.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub interval: u64,
}

/// Content type of the Prometheus text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Runs `sigma exporter` until killed.
pub fn run(sim: Option<&str>, args: &Args) -> anyhow::Result<i32> {
    let node = Node::open(sim)?;
    let server = tiny_http::Server::http(&args.listen).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {}: {e}; pick a free port with --listen ADDR:PORT",
            args.listen
        )
    })?;
    let latest: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let interval = Duration::from_secs(args.interval.max(1));
    {
        let latest = Arc::clone(&latest);
        std::thread::Builder::new()
            .name("sigma-exporter-probe".into())
            .spawn(move || {
                loop {
                    let text = prom::metrics(&DoctorReport::new(node.snapshot()));
                    if let Ok(mut slot) = latest.lock() {
                        *slot = Some(text);
                    }
                    std::thread::sleep(interval);
                }
            })
            .context("cannot start the probe thread")?;
    }
    eprintln!("sigma: serving metrics on http://{}/metrics", args.listen);
    for request in server.incoming_requests() {
        let current = latest.lock().ok().and_then(|slot| slot.clone());
        let response = match (request.url(), current) {
            ("/metrics", Some(text)) => tiny_http::Response::from_string(text).with_header(
                tiny_http::Header::from_bytes("Content-Type", TEXT_FORMAT).expect("a valid header"),
            ),
            ("/metrics", None) => {
                tiny_http::Response::from_string("the first check of the node is still running\n")
                    .with_status_code(503)
            }
            _ => tiny_http::Response::from_string("sigma exporter: metrics are at /metrics\n")
                .with_status_code(404),
        };
        // A scraper that hung up is its problem, not the exporter's.
        let _ = request.respond(response);
    }
    Ok(0)
}
