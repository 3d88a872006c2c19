//! Checking an answer against a compiled form-profile schema.
//!
//! Every violation is reported, each with the JSON pointer of the offending value
//! inside `content`: a property not in the schema, a missing required property
//! (at `/<name>`), a wrong type, a violated bound, a value outside the options,
//! a string not in its format.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::form::{FormSchema, Rule};
use super::pointer;
use crate::error::Violation;

/// Checks `content` against `schema`; the violations are sorted by path.
pub(crate) fn check(schema: &FormSchema, content: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(obj) = content.as_object() else {
        out.push(Violation::new(
            "",
            format!("expected an object, got {}", kind(content)),
        ));
        return out;
    };
    for (name, v) in obj {
        let path = pointer("", name);
        match schema.properties.get(name) {
            Some(rule) => check_value(rule, v, &path, &mut out),
            None => out.push(Violation::new(
                path,
                "is not a property of the requested schema",
            )),
        }
    }
    for name in &schema.required {
        if !obj.contains_key(name) {
            out.push(Violation::new(pointer("", name), "is a required property"));
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Checks one value against one property rule, appending violations at `path`.
pub(crate) fn check_value(rule: &Rule, v: &Value, path: &str, out: &mut Vec<Violation>) {
    let mut bad = |message: String| out.push(Violation::new(path, message));
    match rule {
        Rule::Text {
            min_length,
            max_length,
            format,
        } => {
            let Some(s) = v.as_str() else {
                return bad(format!("expected a string, got {}", kind(v)));
            };
            let len = s.chars().count() as u64;
            if let Some(min) = min_length.filter(|m| len < *m) {
                bad(format!("{s:?} is shorter than {min} characters"));
            }
            if let Some(max) = max_length.filter(|m| len > *m) {
                bad(format!("{s:?} is longer than {max} characters"));
            }
            if let Some(f) = format.filter(|f| !f.matches(s)) {
                bad(format!("{s:?} is not a valid {}", f.as_str()));
            }
        }
        Rule::Number {
            integer,
            minimum,
            maximum,
        } => {
            let Value::Number(n) = v else {
                let want = if *integer { "an integer" } else { "a number" };
                return bad(format!("expected {want}, got {}", kind(v)));
            };
            if *integer && !is_integer(n) {
                bad(format!("{n} is not an integer"));
            }
            if let Some(min) = minimum.as_ref().filter(|m| compare(n, m).is_lt()) {
                bad(format!("{n} is less than the minimum of {min}"));
            }
            if let Some(max) = maximum.as_ref().filter(|m| compare(n, m).is_gt()) {
                bad(format!("{n} is greater than the maximum of {max}"));
            }
        }
        Rule::Boolean => {
            if !v.is_boolean() {
                bad(format!("expected a boolean, got {}", kind(v)));
            }
        }
        Rule::Select { options } => match v.as_str() {
            Some(s) if options.iter().any(|o| o == s) => {}
            Some(s) => bad(format!(
                "{s:?} is not one of the allowed values {options:?}"
            )),
            None => bad(format!("expected a string, got {}", kind(v))),
        },
        Rule::MultiSelect {
            options,
            min_items,
            max_items,
        } => {
            let Some(items) = v.as_array() else {
                return bad(format!("expected an array, got {}", kind(v)));
            };
            let n = items.len() as u64;
            if let Some(min) = min_items.filter(|m| n < *m) {
                bad(format!("has {n} items, fewer than the minimum of {min}"));
            }
            if let Some(max) = max_items.filter(|m| n > *m) {
                bad(format!("has {n} items, more than the maximum of {max}"));
            }
            for (i, item) in items.iter().enumerate() {
                let ip = pointer(path, &i.to_string());
                match item.as_str() {
                    Some(s) if options.iter().any(|o| o == s) => {}
                    Some(s) => out.push(Violation::new(
                        ip,
                        format!("{s:?} is not one of the allowed values {options:?}"),
                    )),
                    None => out.push(Violation::new(
                        ip,
                        format!("expected a string, got {}", kind(item)),
                    )),
                }
            }
        }
    }
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
