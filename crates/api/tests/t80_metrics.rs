//! `GET /metrics` through the router, checked by Prometheus's own `promtool`.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::*;
use patroni_api::FakeBackend;

/// The metrics endpoint answers 200 `text/plain` with Patroni's metric names.
#[tokio::test]
async fn metrics_are_plain_text_with_patronis_names() {
    let b = Arc::new(FakeBackend::new(primary_status(), ha(true)).with_cluster(cluster()));
    let a = get(&app(&b), "/metrics").await;
    assert_eq!(a.status, axum::http::StatusCode::OK);
    assert_eq!(a.headers["content-type"], "text/plain; charset=utf-8");
    let text = a.text();
    assert!(
        text.contains("patroni_primary{scope=\"demo\",name=\"pg-0\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("patroni_xlog_location{scope=\"demo\",name=\"pg-0\"} 67395656\n"));
    assert!(text.contains("patroni_version{scope=\"demo\",name=\"pg-0\"} 040000\n"));
}

/// `promtool check metrics` accepts the output of a primary and of a replica, lint included.
#[tokio::test]
async fn promtool_accepts_the_output() {
    let Ok(version) = Command::new("promtool").arg("--version").output() else {
        // CI installs it (.ci/run); there a missing promtool is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is not installed (Debian package `prometheus`)"
        );
        println!("skipped: promtool is not installed (Debian package `prometheus`)");
        return;
    };
    assert!(version.status.success(), "promtool --version failed");
    for status in [primary_status(), replica_status(LEADER_LSN - 1000)] {
        let b = Arc::new(FakeBackend::new(status, ha(false)).with_cluster(cluster()));
        let text = get(&app(&b), "/metrics").await.text();
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run promtool");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(text.as_bytes())
            .expect("write metrics to promtool");
        let out = child.wait_with_output().expect("promtool finishes");
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool objects:\n{}{}\n--- input:\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
