//! Requested schemas: the two profiles of PROTOCOL.md section 4, compiled once
//! when an elicitation is created and reused to check its answer.

mod answer;
mod cache;
mod form;
mod formats;
mod full;

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
    Json(Box<jsonschema::Validator>),
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let profile = match self.kind {
            Kind::Form(_) => SchemaProfile::Form,
            Kind::Json(_) => SchemaProfile::JsonSchema,
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
                Kind::Json(Box::new(
                    full::compile(schema, retriever)
                        .map_err(|problems| Error::InvalidSchema { problems })?,
                ))
            }
        };
        Ok(CompiledSchema { kind })
    }

    /// Every violation of `content`, by JSON pointer; empty when it matches.
    pub fn violations(&self, content: &Value) -> Vec<Violation> {
        match &self.kind {
            Kind::Form(f) => answer::check(f, content),
            Kind::Json(v) => full::check(v, content),
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
