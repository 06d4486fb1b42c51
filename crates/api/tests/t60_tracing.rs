//! Every request runs in its own `api` span carrying the cluster, the member, the request and
//! its status (STYLE rule 11).

mod common;

use std::sync::{Arc, Mutex, PoisonError};

use axum::http::Method;
use common::*;
use patroni_api::FakeBackend;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

/// Records every span's name and fields as `name key=value ...`.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<String>>>);

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S>
    for Spans
{
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut line = attrs.metadata().name().to_owned();
        attrs.record(&mut Fields(&mut line));
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    fn on_record(&self, _id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = spans.last_mut() {
            values.record(&mut Fields(last));
        }
    }
}

/// Two requests make two `api` spans with scope, member, method, path and status.
#[tokio::test(flavor = "current_thread")]
async fn each_request_gets_one_span_with_its_fields() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let backend = Arc::new(FakeBackend::new(primary_status(), ha(true)).with_cluster(cluster()));
    let app = app(&backend);
    get(&app, "/patroni").await;
    send(&app, request(Method::HEAD, "/replica")).await;
    let recorded = spans
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let api: Vec<&String> = recorded.iter().filter(|s| s.starts_with("api ")).collect();
    assert_eq!(api.len(), 2, "{recorded:?}");
    for (span, (method, path, status)) in api
        .iter()
        .zip([("GET", "/patroni", 200), ("HEAD", "/replica", 503)])
    {
        for field in [
            "scope=demo".to_owned(),
            "member=pg-0".to_owned(),
            format!("method={method}"),
            format!("path={path}"),
            format!("status={status}"),
        ] {
            assert!(span.contains(&field), "{span} lacks {field}");
        }
    }
}
