//! The gatekeeper's Prometheus metrics, served on the private admin listener only.

use crate::validate::Endpoint;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sqlgate::request_log::Finished;
use sqlgate::Role;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub role: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<EndpointLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sqlgate_gatekeeper");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00005, 2.0, 20))
        });
        registry.register(
            "requests",
            "Requests by endpoint, key role and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a request",
            duration.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
        }
    }
}

impl Metrics {
    /// Counts a finished request to an endpoint that runs SQL (other routes are not counted).
    pub fn observe(&self, done: &Finished<'_>) {
        let Some(endpoint) = Endpoint::ALL
            .into_iter()
            .find(|e| done.route == Some(e.path()))
            .map(Endpoint::name)
        else {
            return;
        };
        let role = done.fields.role.map_or("none", Role::as_str);
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                role,
                status: done.status.as_u16(),
            })
            .inc();
        self.duration
            .get_or_create(&EndpointLabels { endpoint })
            .observe(done.duration.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            log::error!("Metrics encoding failed");
        }
        out
    }
}
