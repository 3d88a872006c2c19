//! The `json-schema` profile: full JSON Schema 2020-12, bounded.
//!
//! Bounds: the schema's size and nesting depth are limited (checked before
//! compiling, as `invalid_request` on `/requested_schema`), `$schema` may only name
//! 2020-12, regular expressions use a linear-time engine (no catastrophic
//! backtracking), and no reference is ever retrieved: the validator is built with
//! a retriever that refuses every URI, so a `$ref` that is not inside the schema
//! itself fails to compile instead of reaching the network or the file system.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jsonschema::{Draft, PatternOptions, Retrieve, Uri, Validator};
use serde_json::Value;

use crate::error::{SchemaProblem, Violation};

/// The only `$schema` the profile accepts (when `$schema` is given at all).
pub(crate) const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// A retriever that refuses everything, and counts how often it was asked.
#[derive(Debug, Default)]
pub(crate) struct RefuseRetrieval {
    pub(crate) attempts: Arc<AtomicU64>,
}

impl Retrieve for RefuseRetrieval {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        Err(format!("remote references are not allowed ({uri})").into())
    }
}

/// The nesting depth of `v`: scalars 0, a container 1 plus its deepest child.
pub(crate) fn depth(v: &Value) -> usize {
    // Iterative, so that a hostile document cannot overflow the stack here.
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(a) => {
                max = max.max(d);
                stack.extend(a.iter().map(|c| (c, d + 1)));
            }
            Value::Object(o) => {
                max = max.max(d);
                stack.extend(o.values().map(|c| (c, d + 1)));
            }
            _ => {}
        }
    }
    max
}

/// Compiles a `json-schema`-profile schema. Size and depth are checked by the caller.
pub(crate) fn compile(
    schema: &Value,
    retriever: RefuseRetrieval,
) -> Result<Validator, Vec<SchemaProblem>> {
    if let Some(s) = schema.get("$schema")
        && s.as_str() != Some(DRAFT_2020_12)
    {
        return Err(vec![SchemaProblem {
            keyword: "$schema".into(),
            path: "/$schema".into(),
            message: format!("only {DRAFT_2020_12} is supported"),
        }]);
    }
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .with_retriever(retriever)
        .with_pattern_options(PatternOptions::regex())
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| {
            // A compile error is either the schema failing the meta-schema (the
            // instance path then points into the schema) or an unresolvable
            // reference.
            let path = e.instance_path().as_str().to_owned();
            let keyword = path
                .rsplit('/')
                .next()
                .filter(|k| !k.is_empty() && k.parse::<usize>().is_err())
                .map_or_else(
                    || keyword_of(&e.to_string()),
                    |k| k.replace("~1", "/").replace("~0", "~"),
                );
            vec![SchemaProblem {
                keyword,
                path,
                message: e.to_string(),
            }]
        })
}

/// The keyword an unresolvable-reference message is about.
fn keyword_of(message: &str) -> String {
    if message.contains("$dynamicRef") {
        "$dynamicRef".into()
    } else if message.contains("ref") || message.contains("retriev") || message.contains("resolve")
    {
        "$ref".into()
    } else {
        String::new()
    }
}

/// Every violation of `content`, by its instance path.
pub(crate) fn check(validator: &Validator, content: &Value) -> Vec<Violation> {
    validator
        .iter_errors(content)
        .map(|e| Violation::new(e.instance_path().as_str(), e.to_string()))
        .collect()
}
