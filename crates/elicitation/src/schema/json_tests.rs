//! The `json-schema` profile: accepted schemas, answers, bounds, and no retrieval.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::*;
use crate::error::{Error, Violation};

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
    assert_eq!(paths, vec!["/mail", "/n", "/nested/x", "/zzz"], "{v:?}");
}

/// A missing required property and each disallowed one are reported at
/// `/<name>` of that property, as in the form profile, not at their object.
#[test]
fn json_schema_property_violations_point_at_the_property() {
    let s = json!({"type": "object",
        "properties": {"a": {"type": "integer"}, "o": {"type": "object", "required": ["x"],
                       "properties": {"x": {}}, "additionalProperties": false}},
        "required": ["a", "b/c"], "additionalProperties": false});
    let c = compile_json(&s).unwrap();
    let v = c.violations(&json!({"o": {"y": 1, "z": 2}, "extra": true}));
    let got: Vec<_> = v
        .iter()
        .map(|v| (v.path.as_str(), v.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/a", "is a required property"),
            ("/b~1c", "is a required property"),
            ("/extra", "is not a property the requested schema allows"),
            ("/o/x", "is a required property"),
            ("/o/y", "is not a property the requested schema allows"),
            ("/o/z", "is not a property the requested schema allows"),
        ]
    );
    let s = json!({"properties": {"a": {}}, "unevaluatedProperties": false});
    let v = compile_json(&s)
        .unwrap()
        .violations(&json!({"a": 1, "b": 2}));
    assert_eq!(
        v,
        vec![Violation::new(
            "/b",
            "is not a property the requested schema allows"
        )]
    );
}

/// Many failing items: messages for the first `MAX_VIOLATIONS` only, then the
/// exact count of the others.
#[test]
fn json_schema_violations_are_capped() {
    let c = compile_json(&json!({"type": "array", "items": {"enum": ["x".repeat(2000)]}})).unwrap();
    let answer = Value::Array(vec![json!(1); 300]);
    let v = c.violations(&answer);
    assert_eq!(v.len(), MAX_VIOLATIONS + 1, "{v:?}");
    assert_eq!(v[0].path, "/0");
    assert!(
        v[..MAX_VIOLATIONS]
            .iter()
            .all(|v| v.message.len() <= MAX_VIOLATION_MESSAGE_BYTES + 3)
    );
    assert_eq!(
        v[MAX_VIOLATIONS],
        Violation::new(
            "",
            "200 more violation(s) not listed: at most 100 are reported"
        )
    );
}

/// A schema that applies many subschemas to every item of a long array would
/// make `jsonschema` collect hundreds of thousands of errors: only the first
/// is reported, with a note, and the check is quick.
#[test]
fn json_schema_error_collection_is_bounded() {
    let all_of: Vec<Value> = (0..400)
        .map(|_| json!({"items": {"type": "string"}}))
        .collect();
    let c = compile_json(&json!({"allOf": all_of})).unwrap();
    let answer = Value::Array(vec![json!(0); 20_000]);
    let started = std::time::Instant::now();
    let v = c.violations(&answer);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0].path, "/0");
    assert_eq!(v[1].path, "");
    assert!(v[1].message.contains("only the first"), "{v:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // A reference is counted as its target: all violations here.
    let c =
        compile_json(&json!({"$defs": {"s": {"type": "string"}}, "items": {"$ref": "#/$defs/s"}}))
            .unwrap();
    let v = c.violations(&json!([1, 2]));
    assert_eq!(
        v.iter().map(|v| v.path.as_str()).collect::<Vec<_>>(),
        ["/0", "/1"]
    );
    // A cycle of references has no bound: the first violation only.
    let c = compile_json(
        &json!({"$defs": {"t": {"type": "array", "items": {"$ref": "#/$defs/t"}}},
        "$ref": "#/$defs/t"}),
    )
    .unwrap();
    let v = c.violations(&json!([[1], 2]));
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[1].message.contains("only the first"), "{v:?}");
    // No violations, no note.
    assert_eq!(c.violations(&json!([[], [[]]])), vec![]);
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

/// References that fan out would make one check of an answer take exponential
/// time (`jsonschema` does not remember a subschema's result): refused when
/// the schema is given, with the work of a check bounded for what is accepted.
#[test]
fn json_schema_references_that_fan_out_are_refused() {
    let mut defs = serde_json::Map::new();
    defs.insert("a0".into(), json!({"type": "string"}));
    for i in 1..=40 {
        let r = json!({"$ref": format!("#/$defs/a{}", i - 1)});
        defs.insert(format!("a{i}"), json!({"allOf": [r, r]}));
    }
    let s = json!({"$defs": defs, "$ref": "#/$defs/a40"});
    let Err(Error::InvalidSchema { problems }) = compile_json(&s) else {
        panic!("accepted")
    };
    assert_eq!(problems[0].keyword, "$ref", "{problems:?}");
    // A recursive schema that descends is fine, and so is an anchor.
    let tree = json!({"$defs": {"t": {"$anchor": "node", "type": "object", "properties": {
        "children": {"type": "array", "items": {"$ref": "#node"}}, "v": {"type": "integer"}}}},
        "$ref": "#/$defs/t"});
    let c = compile_json(&tree).unwrap();
    assert_eq!(
        c.violations(&json!({"v": 1, "children": [{"v": 2}]})),
        vec![]
    );
    assert_eq!(
        c.violations(&json!({"v": 1, "children": [{"v": "x"}]}))[0].path,
        "/children/0/v"
    );
    // A dynamic reference has no target known in advance.
    let Err(Error::InvalidSchema { problems }) =
        compile_json(&json!({"$dynamicAnchor": "n", "items": {"$dynamicRef": "#n"}}))
    else {
        panic!("accepted")
    };
    assert_eq!(problems[0].keyword, "$dynamicRef");
}
