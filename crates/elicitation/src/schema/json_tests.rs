//! The `json-schema` profile: accepted schemas, answers, bounds, and no retrieval.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::*;
use crate::error::Error;

fn compile_json(schema: &Value) -> Result<CompiledSchema, Error> {
    CompiledSchema::compile(SchemaProfile::JsonSchema, schema, &Limits::default())
}

#[test]
fn json_schema_profile_accepts_full_2020_12() {
    let s = json!({"$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"pos": {"type": "integer", "exclusiveMinimum": 0}},
        "properties": {"n": {"$ref": "#/$defs/pos"}, "nested": {"type": "object", "properties": {"x": {"type": "string", "pattern": "^[a-z]+$"}}},
                       "mail": {"type": "string", "format": "email"}},
        "required": ["n"], "additionalProperties": false});
    let c = compile_json(&s).unwrap();
    assert_eq!(
        c.violations(&json!({"n": 3, "nested": {"x": "abc"}})),
        vec![]
    );
    let v = c.violations(&json!({"n": 0, "nested": {"x": "ABC"}, "mail": "nope", "zzz": 1}));
    let mut paths: Vec<_> = v.iter().map(|v| v.path.clone()).collect();
    paths.sort();
    assert_eq!(paths, vec!["", "/mail", "/n", "/nested/x"], "{v:?}");
}

#[test]
fn json_schema_profile_never_retrieves_references() {
    let attempts = Arc::new(AtomicU64::new(0));
    for (s, kw) in [
        (json!({"$ref": "http://127.0.0.1:9/schema.json"}), "$ref"),
        (
            json!({"properties": {"a": {"$ref": "https://example.com/a.json#/x"}}}),
            "$ref",
        ),
        (json!({"$ref": "file:///etc/passwd"}), "$ref"),
        (json!({"$ref": "other.json"}), "$ref"),
    ] {
        let r = CompiledSchema::compile_counting(
            SchemaProfile::JsonSchema,
            &s,
            &Limits::default(),
            &attempts,
        );
        match r {
            Err(Error::InvalidSchema { problems }) => {
                assert_eq!(problems[0].keyword, kw, "{s}: {problems:?}")
            }
            other => panic!("{s}: {other:?}"),
        }
    }
    // Every retrieval went to the refusing retriever; none reached anything else.
    assert!(attempts.load(Ordering::Relaxed) >= 4);
    let Err(Error::InvalidSchema { problems }) =
        compile_json(&json!({"$schema": "http://json-schema.org/draft-04/schema#"}))
    else {
        panic!()
    };
    assert_eq!(
        (problems[0].keyword.as_str(), problems[0].path.as_str()),
        ("$schema", "/$schema")
    );
}

#[test]
fn json_schema_profile_is_bounded() {
    // 16 KiB
    let big = json!({"description": "x".repeat(16 << 10)});
    let Err(Error::InvalidRequest { errors }) = compile_json(&big) else {
        panic!()
    };
    assert_eq!(errors[0].path, "/requested_schema");
    // depth 16: 16 levels pass, 17 do not
    let mut s = json!({"type": "string"});
    for _ in 0..15 {
        s = json!({"items": s});
    }
    assert_eq!(full::depth(&s), 16);
    assert!(compile_json(&s).is_ok());
    let s = json!({"items": s});
    let Err(Error::InvalidRequest { errors }) = compile_json(&s) else {
        panic!()
    };
    assert!(errors[0].message.contains("17 levels"), "{errors:?}");
    // invalid keyword values name the keyword
    let Err(Error::InvalidSchema { problems }) =
        compile_json(&json!({"properties": {"a": {"minLength": "x"}}}))
    else {
        panic!()
    };
    assert_eq!(problems[0].keyword, "minLength", "{problems:?}");
    // backtracking-only regex features are refused rather than run
    assert!(matches!(
        compile_json(&json!({"pattern": "(?=a)a"})),
        Err(Error::InvalidSchema { .. })
    ));
}

#[test]
fn form_profile_size_is_bounded() {
    let limits = Limits {
        max_form_schema_bytes: 100,
        ..Limits::default()
    };
    let s = json!({"type": "object", "properties": {"a": {"type": "string", "description": "y".repeat(100)}}});
    let Err(Error::InvalidRequest { errors }) =
        CompiledSchema::compile(SchemaProfile::Form, &s, &limits)
    else {
        panic!()
    };
    assert_eq!(errors[0].path, "/requested_schema");
}
