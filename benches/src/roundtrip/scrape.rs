//! The bridge's own view of the measured window, from two `/metrics` readings:
//! how many durable appends it made and how long they took, and how busy each
//! route kept it (long-poll waits excluded by the bridge). This says where a
//! round trip's time went on the server side.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::client::Http;

const APPEND: &str = "lighthouse_event_store_append_duration_seconds";
const ROUTE: &str = "lighthouse_http_request_duration_seconds";

/// One reading: every sample by its full name with labels.
pub struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    pub async fn take(http: &Http) -> Option<Scrape> {
        let text = http.get_text("/metrics").await.ok()?;
        Some(Scrape::parse(&text))
    }

    fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape(samples)
    }

    fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// The figures of the window from `self` to `later`.
    pub fn window(&self, later: &Scrape) -> Value {
        let d = |name: &str| later.get(name) - self.get(name);
        let count = d(&format!("{APPEND}_count"));
        let mut out = Map::new();
        out.insert("store_appends".into(), count.round().into());
        if count > 0.0 {
            let mean_us = d(&format!("{APPEND}_sum")) / count * 1e6;
            out.insert("store_append_mean_us".into(), mean_us.round().into());
            // Cumulative bucket deltas, in order of their bounds.
            let prefix = format!("{APPEND}_bucket{{le=\"");
            let mut buckets: Vec<(f64, f64)> = later
                .0
                .keys()
                .filter_map(|k| {
                    let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                    let bound = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().ok()?
                    };
                    Some((bound, d(k)))
                })
                .collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (name, q) in [
                ("store_append_p50_le_us", 0.5),
                ("store_append_p99_le_us", 0.99),
            ] {
                let bound = buckets
                    .iter()
                    .find(|(_, c)| *c >= q * count)
                    .map(|(b, _)| b * 1e6);
                out.insert(
                    name.into(),
                    bound.filter(|b| b.is_finite()).map(f64::round).into(),
                );
            }
        }
        let mut routes = Map::new();
        let prefix = format!("{ROUTE}_count{{route=\"");
        for k in later.0.keys() {
            let Some(route) = k.strip_prefix(&prefix).and_then(|r| r.strip_suffix("\"}")) else {
                continue;
            };
            let n = d(k);
            if n > 0.0 {
                let sum = d(&format!("{ROUTE}_sum{{route=\"{route}\"}}"));
                routes.insert(
                    route.to_owned(),
                    json!({"requests": n.round(), "busy_mean_us": (sum / n * 1e6).round()}),
                );
            }
        }
        out.insert("routes".into(), Value::Object(routes));
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_the_difference_of_two_readings() {
        let a = Scrape::parse(
            "lighthouse_event_store_append_duration_seconds_bucket{le=\"0.001\"} 10\n\
             lighthouse_event_store_append_duration_seconds_bucket{le=\"0.01\"} 10\n\
             lighthouse_event_store_append_duration_seconds_bucket{le=\"+Inf\"} 10\n\
             lighthouse_event_store_append_duration_seconds_sum 0.005\n\
             lighthouse_event_store_append_duration_seconds_count 10\n",
        );
        let b = Scrape::parse(
            "# TYPE x histogram\n\
             lighthouse_event_store_append_duration_seconds_bucket{le=\"0.001\"} 108\n\
             lighthouse_event_store_append_duration_seconds_bucket{le=\"0.01\"} 110\n\
             lighthouse_event_store_append_duration_seconds_bucket{le=\"+Inf\"} 110\n\
             lighthouse_event_store_append_duration_seconds_sum 0.105\n\
             lighthouse_event_store_append_duration_seconds_count 110\n\
             lighthouse_http_request_duration_seconds_sum{route=\"/v1/x\"} 0.5\n\
             lighthouse_http_request_duration_seconds_count{route=\"/v1/x\"} 1000\n",
        );
        let w = a.window(&b);
        assert_eq!(w["store_appends"], 100.0);
        assert_eq!(w["store_append_mean_us"], 1000.0);
        assert_eq!(w["store_append_p50_le_us"], 1000.0);
        assert_eq!(w["store_append_p99_le_us"], 10000.0);
        assert_eq!(w["routes"]["/v1/x"]["busy_mean_us"], 500.0);
    }
}
