//! Latency recording and the JSON line every scenario prints.

use hdrhistogram::Histogram;
use serde_json::{Map, Value};

/// A latency histogram in microseconds (1 µs to 60 s, 3 significant digits).
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants inside hdrhistogram's supported range.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Adds `p50_us`, `p90_us`, `p99_us`, `p999_us`, `max_us` from `h` to `out`.
pub fn percentiles(out: &mut Map<String, Value>, h: &Histogram<u64>) {
    for (name, q) in [
        ("p50_us", 0.50),
        ("p90_us", 0.90),
        ("p99_us", 0.99),
        ("p999_us", 0.999),
    ] {
        out.insert(name.into(), h.value_at_quantile(q).into());
    }
    out.insert("max_us".into(), h.max().into());
}

/// Prints one scenario result as a JSON line.
pub fn emit(out: Map<String, Value>) {
    println!("{}", Value::Object(out));
}
