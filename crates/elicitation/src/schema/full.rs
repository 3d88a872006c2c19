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

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, PatternOptions, Retrieve, Uri, ValidationError, Validator};
use serde_json::Value;

use super::{Violations, pointer};
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

/// The number of JSON values in `v` (objects, arrays and scalars).
fn values(v: &Value) -> usize {
    // Iterative, like `depth`.
    let mut n = 0;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        n += 1;
        match v {
            Value::Array(a) => stack.extend(a),
            Value::Object(o) => stack.extend(o.values()),
            _ => {}
        }
    }
    n
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

/// Most (schema values × answer values) for which every violation is
/// collected. `jsonschema` collects all errors of an answer before handing out
/// the first, and that number grows with the product (each keyword can fail at
/// each location of the answer: `allOf` of many `items` over a long array), so
/// beyond this only the first violation is reported.
pub(crate) const MAX_COLLECT_PRODUCT: usize = 200_000;

/// What [`check`] needs to know of the schema to bound its work.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// JSON values in the schema with every `$ref` replaced by its target, as
    /// often as it is referenced; `None` when that has no bound known here (a
    /// cycle, a long chain, a `$dynamicRef`, a reference that is not a JSON
    /// pointer into the document, or an embedded `$id` that changes what one
    /// means): one subschema may then be applied any number of times at one
    /// location of the answer.
    pub(crate) nodes: Option<usize>,
}

/// Longest chain of references [`Shape::of`] follows.
const MAX_REFERENCE_CHAIN: usize = 64;

impl Shape {
    pub(crate) fn of(schema: &Value) -> Shape {
        let mut expander = Expander {
            root: schema,
            known: std::collections::HashMap::new(),
            chain: Vec::new(),
        };
        Shape {
            nodes: expander.size(schema, true),
        }
    }
}

/// Computes [`Shape::nodes`], remembering the size of each reference target.
struct Expander<'a> {
    root: &'a Value,
    known: std::collections::HashMap<&'a str, usize>,
    /// The references being expanded, innermost last (a repeat is a cycle).
    chain: Vec<&'a str>,
}

impl<'a> Expander<'a> {
    fn size(&mut self, v: &'a Value, root: bool) -> Option<usize> {
        match v {
            Value::Array(a) => a
                .iter()
                .try_fold(1usize, |n, c| n.checked_add(self.size(c, false)?)),
            Value::Object(o) => {
                if o.contains_key("$dynamicRef")
                    || o.contains_key("$recursiveRef")
                    || (!root && o.contains_key("$id"))
                {
                    return None;
                }
                let mut n = 1usize;
                if let Some(r) = o.get("$ref") {
                    n = n.checked_add(self.reference(r.as_str()?)?)?;
                }
                o.values()
                    .try_fold(n, |n, c| n.checked_add(self.size(c, false)?))
            }
            _ => Some(1),
        }
    }

    fn reference(&mut self, r: &'a str) -> Option<usize> {
        if let Some(n) = self.known.get(r) {
            return Some(*n);
        }
        if self.chain.contains(&r) || self.chain.len() >= MAX_REFERENCE_CHAIN {
            return None;
        }
        let pointer = r.strip_prefix('#')?;
        if pointer.contains('%') {
            return None;
        }
        let target = self.root.pointer(pointer)?;
        self.chain.push(r);
        let n = self.size(target, pointer.is_empty());
        self.chain.pop();
        let n = n?;
        self.known.insert(r, n);
        Some(n)
    }
}

/// The violations of `content`, by instance path: every one (messages for the
/// first [`MAX_VIOLATIONS`](super::MAX_VIOLATIONS), then a count) when collecting them
/// all is bounded, else the first one and a note that there may be more.
pub(crate) fn check(validator: &Validator, shape: Shape, content: &Value) -> Vec<Violation> {
    // `validate` stops at the first error: one error allocated, whatever the answer.
    let first = match validator.validate(content) {
        Ok(()) => return Vec::new(),
        Err(e) => e,
    };
    let bounded = shape
        .nodes
        .and_then(|n| n.checked_mul(values(content)))
        .is_some_and(|p| p <= MAX_COLLECT_PRODUCT);
    let mut out = Violations::default();
    if !bounded {
        add(&first, &mut out);
        let mut list = out.into_sorted();
        list.push(Violation::new(
            "",
            "there may be more violations: for this schema and answer only the first is reported",
        ));
        return list;
    }
    // Every error is counted (they are all in memory already, within the bound
    // above); only the first `MAX_VIOLATIONS` get a message.
    for e in validator.iter_errors(content) {
        add(&e, &mut out);
    }
    out.into_sorted()
}

/// Adds the violations of one `jsonschema` error. A missing or disallowed
/// property is reported at `/<name>` of that property, as the form profile
/// does (PROTOCOL.md 4), not at the object holding it; an error naming
/// several disallowed properties becomes one violation each.
fn add(e: &ValidationError<'_>, out: &mut Violations) {
    let at = e.instance_path().as_str();
    match e.kind() {
        ValidationErrorKind::Required {
            property: Value::String(name),
        } => out.push(pointer(at, name), || "is a required property".into()),
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            for name in unexpected {
                out.push(pointer(at, name), || {
                    "is not a property the requested schema allows".into()
                });
            }
        }
        _ => out.push(at, || e.to_string()),
    }
}
