//! Checking an answer against a compiled form-profile schema.
//!
//! Every violation is reported (up to [`MAX_VIOLATIONS`](super::MAX_VIOLATIONS),
//! then a note that more exist), each with the JSON pointer of the offending value
//! inside `content`: a property not in the schema, a missing required property
//! (at `/<name>`), a wrong type, a violated bound, a value outside the options,
//! a string not in its format.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::form::{FormSchema, Rule};
use super::{Violations, options_list, pointer, quote};
use crate::error::Violation;

/// Checks `content` against `schema`; the violations are sorted by path, at
/// most [`MAX_VIOLATIONS`](super::MAX_VIOLATIONS) of them plus a note on the rest.
pub(crate) fn check(schema: &FormSchema, content: &Value) -> Vec<Violation> {
    let mut out = Violations::default();
    let Some(obj) = content.as_object() else {
        out.push("", || format!("expected an object, got {}", kind(content)));
        return out.into_sorted();
    };
    for (name, v) in obj {
        let path = pointer("", name);
        match schema.properties.get(name) {
            Some(rule) => check_value(rule, v, &path, &mut out),
            None => out.push(path, || "is not a property of the requested schema".into()),
        }
    }
    for name in &schema.required {
        if !obj.contains_key(name) {
            out.push(pointer("", name), || "is a required property".into());
        }
    }
    out.into_sorted()
}

/// Checks one value against one property rule, adding violations at `path`.
pub(crate) fn check_value(rule: &Rule, v: &Value, path: &str, out: &mut Violations) {
    match rule {
        Rule::Text {
            min_length,
            max_length,
            format,
        } => {
            let Some(s) = v.as_str() else {
                return out.push(path, || format!("expected a string, got {}", kind(v)));
            };
            let len = s.chars().count() as u64;
            if let Some(min) = min_length.filter(|m| len < *m) {
                out.push(path, || {
                    format!("{} is shorter than {min} characters", quote(s))
                });
            }
            if let Some(max) = max_length.filter(|m| len > *m) {
                out.push(path, || {
                    format!("{} is longer than {max} characters", quote(s))
                });
            }
            if let Some(f) = format.filter(|f| !f.matches(s)) {
                out.push(path, || {
                    format!("{} is not a valid {}", quote(s), f.as_str())
                });
            }
        }
        Rule::Number {
            integer,
            minimum,
            maximum,
        } => {
            let Value::Number(n) = v else {
                let want = if *integer { "an integer" } else { "a number" };
                return out.push(path, || format!("expected {want}, got {}", kind(v)));
            };
            if *integer && !is_integer(n) {
                out.push(path, || format!("{n} is not an integer"));
            }
            if let Some(min) = minimum.as_ref().filter(|m| compare(n, m).is_lt()) {
                out.push(path, || format!("{n} is less than the minimum of {min}"));
            }
            if let Some(max) = maximum.as_ref().filter(|m| compare(n, m).is_gt()) {
                out.push(path, || format!("{n} is greater than the maximum of {max}"));
            }
        }
        Rule::Boolean => {
            if !v.is_boolean() {
                out.push(path, || format!("expected a boolean, got {}", kind(v)));
            }
        }
        Rule::Select { options } => match v.as_str() {
            Some(s) if options.contains(s) => {}
            Some(s) => out.push(path, || not_allowed(s, options)),
            None => out.push(path, || format!("expected a string, got {}", kind(v))),
        },
        Rule::MultiSelect {
            options,
            min_items,
            max_items,
        } => {
            let Some(items) = v.as_array() else {
                return out.push(path, || format!("expected an array, got {}", kind(v)));
            };
            let n = items.len() as u64;
            if let Some(min) = min_items.filter(|m| n < *m) {
                out.push(path, || {
                    format!("has {n} items, fewer than the minimum of {min}")
                });
            }
            if let Some(max) = max_items.filter(|m| n > *m) {
                out.push(path, || {
                    format!("has {n} items, more than the maximum of {max}")
                });
            }
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) if options.contains(s) => {}
                    Some(s) => out.push(pointer(path, &i.to_string()), || not_allowed(s, options)),
                    None => out.push(pointer(path, &i.to_string()), || {
                        format!("expected a string, got {}", kind(item))
                    }),
                }
            }
        }
    }
}

/// The message for a value outside the options: the value and the options,
/// each shortened, never the whole list of a long one.
fn not_allowed(s: &str, options: &[String]) -> String {
    format!(
        "{} is not one of the allowed values {}",
        quote(s),
        options_list(options)
    )
}

/// The JSON type of `v`, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(n: &Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
}

fn as_int(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Orders two JSON numbers: exactly when both are integers, else as `f64`.
pub(crate) fn compare(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (as_int(a), as_int(b)) {
        return x.cmp(&y);
    }
    let (x, y) = (
        a.as_f64().unwrap_or(f64::NAN),
        b.as_f64().unwrap_or(f64::NAN),
    );
    x.partial_cmp(&y).unwrap_or(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn large_integers_compare_exactly() {
        let a = json!(9_007_199_254_740_993u64);
        let b = json!(9_007_199_254_740_992u64);
        let (Value::Number(a), Value::Number(b)) = (a, b) else {
            unreachable!()
        };
        assert_eq!(compare(&a, &b), Ordering::Greater);
        let (Value::Number(x), Value::Number(y)) = (json!(-1), json!(1.5)) else {
            unreachable!()
        };
        assert_eq!(compare(&x, &y), Ordering::Less);
    }
}
