//! Requested schemas: the two profiles of PROTOCOL.md section 4, compiled once
//! when an elicitation is created and reused to check its answer.

mod answer;
mod cache;
mod form;
mod formats;
mod full;
mod work;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::Value;

use crate::error::{Error, Violation};
use crate::limits::Limits;
use crate::record::SchemaProfile;

pub(crate) use cache::SchemaCache;

/// A requested schema, checked against its profile and ready to check answers.
pub struct CompiledSchema {
    kind: Kind,
}

enum Kind {
    Form(form::FormSchema),
    Json(Box<jsonschema::Validator>, full::Shape),
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let profile = match self.kind {
            Kind::Form(_) => SchemaProfile::Form,
            Kind::Json(..) => SchemaProfile::JsonSchema,
        };
        f.debug_struct("CompiledSchema")
            .field("profile", &profile)
            .finish_non_exhaustive()
    }
}

impl CompiledSchema {
    /// Checks `schema` against `profile` and compiles it.
    ///
    /// Errors: [`Error::InvalidSchema`] naming each offending keyword and its path;
    /// [`Error::InvalidRequest`] on `/requested_schema` when the schema is over the
    /// profile's size or depth limit.
    pub fn compile(profile: SchemaProfile, schema: &Value, limits: &Limits) -> Result<Self, Error> {
        Self::compile_counting(profile, schema, limits, &Arc::new(AtomicU64::new(0)))
    }

    /// [`compile`](Self::compile), counting every reference retrieval that was
    /// attempted (and refused) in `attempts`.
    pub(crate) fn compile_counting(
        profile: SchemaProfile,
        schema: &Value,
        limits: &Limits,
        attempts: &Arc<AtomicU64>,
    ) -> Result<Self, Error> {
        let size = crate::request::json_size(schema);
        let limit = match profile {
            SchemaProfile::Form => limits.max_form_schema_bytes,
            SchemaProfile::JsonSchema => limits.max_json_schema_bytes,
        };
        if size > limit {
            return Err(Error::invalid(
                "/requested_schema",
                format!(
                    "is {size} bytes, more than the limit of {limit} for the {} profile",
                    profile.as_str()
                ),
            ));
        }
        let kind = match profile {
            SchemaProfile::Form => Kind::Form(
                form::compile(schema).map_err(|problems| Error::InvalidSchema { problems })?,
            ),
            SchemaProfile::JsonSchema => {
                let d = full::depth(schema);
                if d > limits.max_json_schema_depth {
                    return Err(Error::invalid(
                        "/requested_schema",
                        format!(
                            "is nested {d} levels deep, more than the limit of {}",
                            limits.max_json_schema_depth
                        ),
                    ));
                }
                let retriever = full::RefuseRetrieval {
                    attempts: attempts.clone(),
                };
                let validator = full::compile(schema, retriever)
                    .map_err(|problems| Error::InvalidSchema { problems })?;
                // The work of checking an answer is bounded (after the compile,
                // which refuses what cannot be resolved without retrieving it):
                // `jsonschema` would otherwise take exponential time on
                // references that fan out (see `work`).
                work::check(schema).map_err(|p| Error::InvalidSchema { problems: vec![p] })?;
                Kind::Json(Box::new(validator), full::Shape::of(schema))
            }
        };
        Ok(CompiledSchema { kind })
    }

    /// The violations of `content`, by JSON pointer, bounded (see
    /// [`MAX_VIOLATIONS`]); empty when it matches.
    pub fn violations(&self, content: &Value) -> Vec<Violation> {
        match &self.kind {
            Kind::Form(f) => answer::check(f, content),
            Kind::Json(v, shape) => full::check(v, *shape, content),
        }
    }

    /// `Ok` when `content` matches, else [`Error::SchemaMismatch`] with every violation.
    pub fn check(&self, content: &Value) -> Result<(), Error> {
        let errors = self.violations(content);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::SchemaMismatch { errors })
        }
    }
}

/// Most violations one check reports. PROTOCOL.md asks for every violation,
/// but an answer of 64 KiB can hold tens of thousands of bad items, and a
/// message per item (each naming the allowed values) would make an error body
/// of gigabytes; past this many, one more entry at path `""` says that more
/// exist (and how many, when it is known without further work).
pub const MAX_VIOLATIONS: usize = 100;

/// Longest violation message, in bytes; a longer one is cut at a character
/// boundary and ends with `…`.
pub const MAX_VIOLATION_MESSAGE_BYTES: usize = 512;

/// Longest quotation of an offending string or list of allowed values inside a
/// message, in bytes, before `…`.
const MAX_QUOTE_BYTES: usize = 96;

/// Violations collected up to [`MAX_VIOLATIONS`]; beyond it only counted, so a
/// message is never even formatted for them.
#[derive(Debug, Default)]
pub(crate) struct Violations {
    list: Vec<Violation>,
    /// Violations found beyond the cap.
    omitted: usize,
}

impl Violations {
    /// Records a violation at `path`; `message` is only called when it is kept.
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl FnOnce() -> String) {
        if self.list.len() < MAX_VIOLATIONS {
            self.list.push(Violation::new(path, clip(message())));
        } else {
            self.omitted += 1;
        }
    }

    /// The violations kept, sorted by path, then the note on the omitted ones.
    pub(crate) fn into_sorted(mut self) -> Vec<Violation> {
        self.list.sort_by(|a, b| a.path.cmp(&b.path));
        if self.omitted > 0 {
            self.list.push(Violation::new(
                "",
                format!(
                    "{} more violation(s) not listed: at most {MAX_VIOLATIONS} are reported",
                    self.omitted
                ),
            ));
        }
        self.list
    }
}

/// `message` cut to [`MAX_VIOLATION_MESSAGE_BYTES`].
pub(crate) fn clip(message: String) -> String {
    shorten(message, MAX_VIOLATION_MESSAGE_BYTES)
}

/// `s` cut at a character boundary to at most `max` bytes plus `…`.
fn shorten(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// `s` quoted (`"..."`, escaped), its quotation cut to a few dozen bytes.
pub(crate) fn quote(s: &str) -> String {
    // Format at most a prefix: the answer string may be 64 KiB.
    let mut end = s.len().min(MAX_QUOTE_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let q = format!("{:?}", &s[..end]);
    if end < s.len() {
        format!("{}…\"", &q[..q.len() - 1])
    } else {
        q
    }
}

/// The allowed values for a message: `["a", "b"]`, or its first values then
/// `… (N in all)` when the list is long.
pub(crate) fn options_list(options: &[String]) -> String {
    let mut out = String::from("[");
    for (i, o) in options.iter().enumerate() {
        let item = quote(o);
        if i > 0 {
            out.push_str(", ");
        }
        if out.len() + item.len() > MAX_QUOTE_BYTES * 2 {
            out.push_str(&format!("… ({} in all)", options.len()));
            break;
        }
        out.push_str(&item);
    }
    out.push(']');
    out
}

/// `base` followed by the JSON-pointer escape of `segment` (RFC 6901).
pub(crate) fn pointer(base: &str, segment: &str) -> String {
    let mut s = String::with_capacity(base.len() + segment.len() + 1);
    s.push_str(base);
    s.push('/');
    for c in segment.chars() {
        match c {
            '~' => s.push_str("~0"),
            '/' => s.push_str("~1"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod json_tests;
#[cfg(test)]
mod tests;
