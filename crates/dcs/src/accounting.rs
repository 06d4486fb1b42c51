//! Counting Kubernetes API requests by verb and resource, for benchmarks
//! ("fewer API requests than Patroni") and, later, `/metrics`.
//!
//! A tower layer in the kube client stack sees every request, so nothing
//! can bypass the count.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Method, Request};
use tower::{Layer, Service};

/// Request counts keyed by `(verb, resource)`, e.g. `("patch", "pods")`.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<(String, String), u64>>>,
}

// === impl RequestCounter ===

impl RequestCounter {
    /// A snapshot of the counts.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Total number of requests.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    fn record(&self, method: &Method, path: &str, query: Option<&str>) {
        let (verb, resource) = classify(method, path, query);
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((verb.to_string(), resource)).or_default() += 1;
        }
    }
}

/// Kubernetes verb and resource of a request, from its method and path
/// (`/api/v1/namespaces/NS/RESOURCE[/NAME[/SUB]]`, `/apis/G/V/...`).
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Skip the group/version prefix.
    let rest: &[&str] = match segs.first() {
        Some(&"api") => segs.get(2..).unwrap_or(&[]),
        Some(&"apis") => segs.get(3..).unwrap_or(&[]),
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, named) = match rest {
        [] => ("other".to_string(), false),
        [r] => (r.to_string(), false),
        [r, _name] => (r.to_string(), true),
        [r, _name, sub, ..] => (format!("{r}/{sub}"), true),
    };
    let watching =
        query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match (method, named) {
        (&Method::GET, _) if watching => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PATCH, _) => "patch",
        (&Method::PUT, _) => "update",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

/// The tower layer that feeds a [`RequestCounter`].
#[derive(Debug, Clone)]
pub struct CountingLayer(pub RequestCounter);

impl<S> Layer<S> for CountingLayer {
    type Service = CountingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountingService {
            inner,
            counter: self.0.clone(),
        }
    }
}

/// Service wrapper produced by [`CountingLayer`].
#[derive(Debug, Clone)]
pub struct CountingService<S> {
    inner: S,
    counter: RequestCounter,
}

impl<S, B> Service<Request<B>> for CountingService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.counter
            .record(req.method(), req.uri().path(), req.uri().query());
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths map to Kubernetes verbs and resources.
    #[test]
    fn requests_are_classified_by_verb_and_resource() {
        let c = |m: Method, p: &str, q: Option<&str>| {
            let (v, r) = classify(&m, p, q);
            (v, r)
        };
        assert_eq!(
            c(
                Method::GET,
                "/api/v1/namespaces/ns/pods",
                Some("labelSelector=a%3Db")
            ),
            ("list", "pods".into())
        );
        assert_eq!(
            c(
                Method::GET,
                "/api/v1/namespaces/ns/pods",
                Some("watch=true&resourceVersion=5")
            ),
            ("watch", "pods".into())
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/api/v1/namespaces/ns/configmaps/x-leader",
                None
            ),
            ("patch", "configmaps".into())
        );
        assert_eq!(
            c(Method::POST, "/api/v1/namespaces/ns/endpoints", None),
            ("create", "endpoints".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/ns/endpoints/x", None),
            ("get", "endpoints".into())
        );
        assert_eq!(
            c(Method::DELETE, "/api/v1/namespaces/ns/configmaps", None),
            ("deletecollection", "configmaps".into())
        );
        assert_eq!(
            c(Method::PATCH, "/api/v1/namespaces/ns/pods/p/status", None),
            ("patch", "pods/status".into())
        );
        assert_eq!(
            c(
                Method::GET,
                "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices",
                None
            ),
            ("list", "endpointslices".into())
        );
        assert_eq!(c(Method::GET, "/version", None), ("list", "other".into()));
    }
}
