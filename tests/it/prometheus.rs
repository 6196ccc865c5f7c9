//! A real Prometheus server (the Debian `prometheus` package, which `scripts/test`
//! installs) scraping a server's metrics on loopback, for tests that show a metric reaches
//! one as an operator would see it, not only in our own parse of the exposition.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running Prometheus, stopped when dropped.
pub(crate) struct Prometheus {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `metrics` (`http://host:port`, as `metrics_url` gives
    /// it) every 200 ms, and waits until it is ready.
    pub(crate) async fn scraping(metrics: &str) -> Prometheus {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let target = metrics.trim_start_matches("http://");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\n\
                 scrape_configs:\n  - job_name: numguard\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/test installs it)");
        let prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest::get(format!("{}/-/ready", prometheus.url)).await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return prometheus;
            }
            assert!(Instant::now() < deadline, "prometheus did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of the instant query `query` (PromQL), if a series answers it.
    pub(crate) async fn value(&self, query: &str) -> Option<f64> {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/query", self.url))
            .form(&[("query", query)])
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = response.json().await.ok()?;
        assert_eq!(body["status"], "success", "{body}");
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` gives a value above `floor`; returns it.
    pub(crate) async fn wait_above(&self, query: &str, floor: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = self.value(query).await.filter(|&v| v > floor) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never saw {query} above {floor} (last: {:?})",
                self.value(query).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
