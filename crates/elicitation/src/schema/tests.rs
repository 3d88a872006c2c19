//! Tables of schemas accepted and refused for each keyword of the form profile,
//! and of answers accepted and refused.

use serde_json::{Value, json};

use super::*;
use crate::error::Error;

fn form(props: Value) -> Value {
    json!({"type": "object", "properties": props})
}

fn compile_form(schema: &Value) -> Result<CompiledSchema, Error> {
    CompiledSchema::compile(SchemaProfile::Form, schema, &Limits::default())
}

/// Expects the schema to be refused with exactly this first (keyword, path).
fn refused(schema: Value, keyword: &str, path: &str) {
    match compile_form(&schema) {
        Err(Error::InvalidSchema { problems }) => {
            assert!(
                problems
                    .iter()
                    .any(|p| p.keyword == keyword && p.path == path),
                "schema {schema} gave {problems:?}, expected keyword {keyword} at {path}"
            );
        }
        other => {
            panic!("schema {schema} gave {other:?}, expected invalid_schema {keyword} at {path}")
        }
    }
}

#[test]
fn form_schemas_accepted_for_every_keyword() {
    let accepted = [
        // top level
        json!({"type": "object", "properties": {}}),
        json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "T", "description": "D",
               "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
        // string
        form(
            json!({"s": {"type": "string", "title": "S", "description": "d", "minLength": 1, "maxLength": 5, "default": "abc"}}),
        ),
        form(json!({"s": {"type": "string", "format": "email"}})),
        form(json!({"s": {"type": "string", "format": "uri"}})),
        form(json!({"s": {"type": "string", "format": "date", "default": "2026-11-26"}})),
        form(json!({"s": {"type": "string", "format": "date-time"}})),
        form(json!({"s": {"type": "string", "minLength": 2.0}})),
        // number
        form(
            json!({"n": {"type": "number", "title": "N", "description": "d", "minimum": -1.5, "maximum": 2.5, "default": 0}}),
        ),
        form(json!({"n": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 8080}})),
        // boolean
        form(json!({"b": {"type": "boolean", "title": "B", "description": "d", "default": true}})),
        // single-select
        form(
            json!({"c": {"type": "string", "enum": ["r", "g"], "title": "C", "description": "d", "default": "g"}}),
        ),
        form(json!({"c": {"type": "string", "enum": ["r", "g"], "enumNames": ["Red", "Green"]}})),
        form(
            json!({"c": {"type": "string", "oneOf": [{"const": "r", "title": "Red"}, {"const": "g", "title": "Green"}], "default": "r"}}),
        ),
        // multi-select
        form(
            json!({"m": {"type": "array", "title": "M", "description": "d", "minItems": 1, "maxItems": 2,
                          "items": {"type": "string", "enum": ["a", "b", "c"]}, "default": ["a"]}}),
        ),
        form(
            json!({"m": {"type": "array", "items": {"anyOf": [{"const": "a", "title": "A"}, {"const": "b", "title": "B"}]}}}),
        ),
    ];
    for s in accepted {
        assert!(
            compile_form(&s).is_ok(),
            "refused {s}: {:?}",
            compile_form(&s).err()
        );
    }
}

#[test]
fn form_schemas_refused_per_keyword() {
    // top level
    refused(json!([1]), "type", "");
    refused(json!({"properties": {}}), "type", "/type");
    refused(json!({"type": "array", "properties": {}}), "type", "/type");
    refused(json!({"type": "object"}), "properties", "/properties");
    refused(
        json!({"type": "object", "properties": []}),
        "properties",
        "/properties",
    );
    refused(
        json!({"type": "object", "properties": {}, "additionalProperties": false}),
        "additionalProperties",
        "/additionalProperties",
    );
    refused(
        json!({"type": "object", "properties": {}, "$defs": {}}),
        "$defs",
        "/$defs",
    );
    refused(
        json!({"type": "object", "properties": {}, "title": 3}),
        "title",
        "/title",
    );
    refused(
        json!({"type": "object", "properties": {}, "$schema": 1}),
        "$schema",
        "/$schema",
    );
    refused(
        json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}),
        "required",
        "/required/0",
    );
    refused(
        json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "a"]}),
        "required",
        "/required/1",
    );
    refused(
        json!({"type": "object", "properties": {}, "required": "a"}),
        "required",
        "/required",
    );
    // property type
    refused(
        form(json!({"a": {"title": "no type"}})),
        "type",
        "/properties/a/type",
    );
    refused(
        form(json!({"a": {"type": "object", "properties": {}}})),
        "type",
        "/properties/a/type",
    );
    refused(
        form(json!({"a": {"type": "null"}})),
        "type",
        "/properties/a/type",
    );
    refused(
        form(json!({"a": {"type": ["string", "null"]}})),
        "type",
        "/properties/a/type",
    );
    refused(form(json!({"a": "string"})), "type", "/properties/a");
    refused(
        form(json!({"a/b": {"type": "string", "pattern": "x"}})),
        "pattern",
        "/properties/a~1b/pattern",
    );
    // string
    refused(
        form(json!({"s": {"type": "string", "pattern": "^a"}})),
        "pattern",
        "/properties/s/pattern",
    );
    refused(
        form(json!({"s": {"type": "string", "minLength": -1}})),
        "minLength",
        "/properties/s/minLength",
    );
    refused(
        form(json!({"s": {"type": "string", "maxLength": "5"}})),
        "maxLength",
        "/properties/s/maxLength",
    );
    refused(
        form(json!({"s": {"type": "string", "minLength": 5, "maxLength": 2}})),
        "maxLength",
        "/properties/s/maxLength",
    );
    refused(
        form(json!({"s": {"type": "string", "format": "ipv4"}})),
        "format",
        "/properties/s/format",
    );
    refused(
        form(json!({"s": {"type": "string", "default": 5}})),
        "default",
        "/properties/s/default",
    );
    refused(
        form(json!({"s": {"type": "string", "maxLength": 2, "default": "abc"}})),
        "default",
        "/properties/s/default",
    );
    refused(
        form(json!({"s": {"type": "string", "description": false}})),
        "description",
        "/properties/s/description",
    );
    refused(
        form(json!({"s": {"type": "string", "enumNames": ["A"]}})),
        "enumNames",
        "/properties/s/enumNames",
    );
    // number
    refused(
        form(json!({"n": {"type": "number", "exclusiveMinimum": 0}})),
        "exclusiveMinimum",
        "/properties/n/exclusiveMinimum",
    );
    refused(
        form(json!({"n": {"type": "number", "multipleOf": 2}})),
        "multipleOf",
        "/properties/n/multipleOf",
    );
    refused(
        form(json!({"n": {"type": "integer", "minimum": "1"}})),
        "minimum",
        "/properties/n/minimum",
    );
    refused(
        form(json!({"n": {"type": "integer", "minimum": 10, "maximum": 1}})),
        "maximum",
        "/properties/n/maximum",
    );
    refused(
        form(json!({"n": {"type": "integer", "default": 1.5}})),
        "default",
        "/properties/n/default",
    );
    refused(
        form(json!({"n": {"type": "number", "minLength": 1}})),
        "minLength",
        "/properties/n/minLength",
    );
    // boolean
    refused(
        form(json!({"b": {"type": "boolean", "const": true}})),
        "const",
        "/properties/b/const",
    );
    refused(
        form(json!({"b": {"type": "boolean", "default": "yes"}})),
        "default",
        "/properties/b/default",
    );
    // single-select
    refused(
        form(json!({"c": {"type": "string", "enum": []}})),
        "enum",
        "/properties/c/enum",
    );
    refused(
        form(json!({"c": {"type": "string", "enum": ["a", 1]}})),
        "enum",
        "/properties/c/enum/1",
    );
    refused(
        form(json!({"c": {"type": "string", "enum": ["a", "a"]}})),
        "enum",
        "/properties/c/enum/1",
    );
    refused(
        form(json!({"c": {"type": "string", "enum": ["a"], "enumNames": ["A", "B"]}})),
        "enumNames",
        "/properties/c/enumNames",
    );
    refused(
        form(json!({"c": {"type": "string", "enum": ["a"], "minLength": 1}})),
        "minLength",
        "/properties/c/minLength",
    );
    refused(
        form(json!({"c": {"type": "string", "enum": ["a"], "default": "b"}})),
        "default",
        "/properties/c/default",
    );
    refused(
        form(
            json!({"c": {"type": "string", "enum": ["a"], "oneOf": [{"const": "a", "title": "A"}]}}),
        ),
        "oneOf",
        "/properties/c/oneOf",
    );
    refused(
        form(json!({"c": {"type": "string", "oneOf": [{"const": "a"}]}})),
        "title",
        "/properties/c/oneOf/0/title",
    );
    refused(
        form(
            json!({"c": {"type": "string", "oneOf": [{"const": "a", "title": "A", "description": "x"}]}}),
        ),
        "description",
        "/properties/c/oneOf/0/description",
    );
    refused(
        form(json!({"c": {"type": "string", "oneOf": [{"title": "A"}]}})),
        "const",
        "/properties/c/oneOf/0/const",
    );
    refused(
        form(json!({"c": {"type": "string", "oneOf": []}})),
        "oneOf",
        "/properties/c/oneOf",
    );
    refused(
        form(
            json!({"c": {"type": "string", "oneOf": [{"const": "a", "title": "A"}], "enumNames": ["A"]}}),
        ),
        "enumNames",
        "/properties/c/enumNames",
    );
    refused(
        form(json!({"c": {"type": "integer", "enum": [1, 2]}})),
        "enum",
        "/properties/c/enum",
    );
    // multi-select
    refused(
        form(json!({"m": {"type": "array"}})),
        "items",
        "/properties/m/items",
    );
    refused(
        form(json!({"m": {"type": "array", "items": {"type": "integer", "enum": ["a"]}}})),
        "type",
        "/properties/m/items/type",
    );
    refused(
        form(json!({"m": {"type": "array", "items": {"type": "string"}}})),
        "enum",
        "/properties/m/items/enum",
    );
    refused(
        form(
            json!({"m": {"type": "array", "items": {"type": "string", "enum": ["a"], "maxLength": 3}}}),
        ),
        "maxLength",
        "/properties/m/items/maxLength",
    );
    refused(
        form(
            json!({"m": {"type": "array", "items": {"anyOf": [{"const": "a", "title": "A"}], "type": "string"}}}),
        ),
        "type",
        "/properties/m/items/type",
    );
    refused(
        form(json!({"m": {"type": "array", "items": {"anyOf": [{"const": 1, "title": "A"}]}}})),
        "const",
        "/properties/m/items/anyOf/0/const",
    );
    refused(
        form(
            json!({"m": {"type": "array", "minItems": 3, "maxItems": 1, "items": {"type": "string", "enum": ["a"]}}}),
        ),
        "maxItems",
        "/properties/m/maxItems",
    );
    refused(
        form(
            json!({"m": {"type": "array", "uniqueItems": true, "items": {"type": "string", "enum": ["a"]}}}),
        ),
        "uniqueItems",
        "/properties/m/uniqueItems",
    );
    refused(
        form(
            json!({"m": {"type": "array", "items": {"type": "string", "enum": ["a"]}, "default": ["z"]}}),
        ),
        "default",
        "/properties/m/default",
    );
    refused(
        form(json!({"m": {"type": "array", "items": {"type": "object", "properties": {}}}})),
        "properties",
        "/properties/m/items/properties",
    );
}

#[test]
fn every_problem_is_listed() {
    let s = form(json!({"a": {"type": "string", "pattern": "x"}, "b": {"type": "object"}}));
    let Err(Error::InvalidSchema { problems }) = compile_form(&s) else {
        panic!()
    };
    let got: Vec<_> = problems
        .iter()
        .map(|p| (p.keyword.as_str(), p.path.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("pattern", "/properties/a/pattern"),
            ("type", "/properties/b/type")
        ]
    );
}

fn port_schema() -> CompiledSchema {
    let s = json!({"type": "object",
        "properties": {
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "host": {"type": "string", "minLength": 1, "maxLength": 8},
            "mail": {"type": "string", "format": "email"},
            "site": {"type": "string", "format": "uri"},
            "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "date-time"},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "tls": {"type": "boolean"},
            "color": {"type": "string", "enum": ["red", "green"]},
            "size": {"type": "string", "oneOf": [{"const": "s", "title": "Small"}, {"const": "l", "title": "Large"}]},
            "tags": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string", "enum": ["a", "b", "c"]}},
            "pets": {"type": "array", "items": {"anyOf": [{"const": "cat", "title": "Cat"}, {"const": "dog", "title": "Dog"}]}}
        },
        "required": ["port"]});
    compile_form(&s).unwrap()
}

#[test]
fn answers_accepted() {
    let c = port_schema();
    for ok in [
        json!({"port": 8080}),
        json!({"port": 1, "host": "h", "mail": "a@b.c", "site": "https://x.y/z", "day": "2026-11-26",
               "at": "2026-11-26T07:00:00.123Z", "ratio": 0.5, "tls": false, "color": "red", "size": "l",
               "tags": ["a", "c"], "pets": []}),
        json!({"port": 65535.0}),
        json!({"port": 2, "ratio": 1}),
    ] {
        assert_eq!(c.violations(&ok), vec![], "{ok}");
        assert!(c.check(&ok).is_ok());
    }
}

#[test]
fn answers_refused_with_every_violation() {
    let c = port_schema();
    let table: Vec<(Value, Vec<(&str, &str)>)> = vec![
        (json!({}), vec![("/port", "is a required property")]),
        (
            json!({"port": 70000}),
            vec![("/port", "70000 is greater than the maximum of 65535")],
        ),
        (
            json!({"port": 0}),
            vec![("/port", "0 is less than the minimum of 1")],
        ),
        (
            json!({"port": 1.5}),
            vec![("/port", "1.5 is not an integer")],
        ),
        (
            json!({"port": "80"}),
            vec![("/port", "expected an integer, got string")],
        ),
        (
            json!({"port": null}),
            vec![("/port", "expected an integer, got null")],
        ),
        (
            json!({"port": 1, "extra": 1}),
            vec![("/extra", "is not a property of the requested schema")],
        ),
        (
            json!({"port": 1, "host": ""}),
            vec![("/host", "\"\" is shorter than 1 characters")],
        ),
        (
            json!({"port": 1, "host": "ééééééééé"}),
            vec![("/host", "\"ééééééééé\" is longer than 8 characters")],
        ),
        (
            json!({"port": 1, "mail": "nope"}),
            vec![("/mail", "\"nope\" is not a valid email")],
        ),
        (
            json!({"port": 1, "site": "no scheme"}),
            vec![("/site", "\"no scheme\" is not a valid uri")],
        ),
        (
            json!({"port": 1, "day": "2026-02-30"}),
            vec![("/day", "\"2026-02-30\" is not a valid date")],
        ),
        (
            json!({"port": 1, "at": "2026-11-26"}),
            vec![("/at", "\"2026-11-26\" is not a valid date-time")],
        ),
        (
            json!({"port": 1, "ratio": 1.01}),
            vec![("/ratio", "1.01 is greater than the maximum of 1")],
        ),
        (
            json!({"port": 1, "tls": "yes"}),
            vec![("/tls", "expected a boolean, got string")],
        ),
        (
            json!({"port": 1, "color": "blue"}),
            vec![(
                "/color",
                "\"blue\" is not one of the allowed values [\"red\", \"green\"]",
            )],
        ),
        (
            json!({"port": 1, "size": "m"}),
            vec![(
                "/size",
                "\"m\" is not one of the allowed values [\"s\", \"l\"]",
            )],
        ),
        (
            json!({"port": 1, "tags": []}),
            vec![("/tags", "has 0 items, fewer than the minimum of 1")],
        ),
        (
            json!({"port": 1, "tags": ["a", "b", "c"]}),
            vec![("/tags", "has 3 items, more than the maximum of 2")],
        ),
        (
            json!({"port": 1, "tags": ["a", "z", 3]}),
            vec![
                ("/tags", "has 3 items, more than the maximum of 2"),
                (
                    "/tags/1",
                    "\"z\" is not one of the allowed values [\"a\", \"b\", \"c\"]",
                ),
                ("/tags/2", "expected a string, got number"),
            ],
        ),
        (
            json!({"port": 1, "pets": ["fish"]}),
            vec![(
                "/pets/0",
                "\"fish\" is not one of the allowed values [\"cat\", \"dog\"]",
            )],
        ),
        (
            json!({"port": 1, "tags": "a"}),
            vec![("/tags", "expected an array, got string")],
        ),
        (json!([1]), vec![("", "expected an object, got array")]),
        (
            json!({"a/b": 1, "port": 99999}),
            vec![
                ("/a~1b", "is not a property of the requested schema"),
                ("/port", "99999 is greater than the maximum of 65535"),
            ],
        ),
    ];
    for (content, want) in table {
        let got = c.violations(&content);
        let got: Vec<_> = got
            .iter()
            .map(|v| (v.path.as_str(), v.message.as_str()))
            .collect();
        assert_eq!(got, want, "content {content}");
        assert!(matches!(
            c.check(&content),
            Err(Error::SchemaMismatch { .. })
        ));
    }
}

#[test]
fn pointers_escape() {
    assert_eq!(pointer("", "a/b~c"), "/a~1b~0c");
    assert_eq!(pointer("/x", "0"), "/x/0");
}

/// A `date-time` answer or `default` whose byte 10 falls inside a character
/// (`é` spans bytes 9 and 10 here) is a violation, not a panic.
#[test]
fn multibyte_date_time_is_a_violation_not_a_panic() {
    let at = "2026-11-2é07:00:00.123Z";
    let c = port_schema();
    let got = c.violations(&json!({"port": 1, "at": at}));
    assert_eq!(
        got,
        vec![Violation::new(
            "/at",
            format!("{at:?} is not a valid date-time")
        )]
    );
    refused(
        form(json!({"at": {"type": "string", "format": "date-time", "default": at}})),
        "default",
        "/properties/at/default",
    );
}

/// An answer with thousands of bad items against a long list of options gets
/// messages for the first `MAX_VIOLATIONS` only, each short (the options are
/// not all spelled out), then the count of the others: the error stays small
/// instead of growing with items × options.
#[test]
fn answer_violations_are_capped_in_number_and_length() {
    let options: Vec<String> = (0..2000)
        .map(|i| format!("option-{i:04}-xxxxxxxx"))
        .collect();
    let s = form(json!({"tags": {"type": "array", "items": {"type": "string", "enum": options}}}));
    let c = compile_form(&s).unwrap();
    let answer = json!({"tags": vec!["nope"; 10_000]});
    let v = c.violations(&answer);
    assert_eq!(v.len(), MAX_VIOLATIONS + 1);
    let kept = &v[..MAX_VIOLATIONS];
    assert!(
        kept.iter()
            .all(|v| v.message.len() <= MAX_VIOLATION_MESSAGE_BYTES + 3)
    );
    assert!(
        kept[0]
            .message
            .starts_with("\"nope\" is not one of the allowed values [\"option-0000-"),
        "{}",
        kept[0].message
    );
    assert!(
        kept[0].message.ends_with("… (2000 in all)]"),
        "{}",
        kept[0].message
    );
    assert_eq!(
        v[MAX_VIOLATIONS],
        Violation::new(
            "",
            "9900 more violation(s) not listed: at most 100 are reported"
        )
    );
    let body = serde_json::to_string(&v).unwrap();
    assert!(body.len() < 64 << 10, "{} bytes", body.len());

    // A long offending string is quoted in part.
    let c = compile_form(&form(
        json!({"s": {"type": "string", "maxLength": 3, "format": "email"}}),
    ))
    .unwrap();
    let long = "é".repeat(30_000);
    let v = c.violations(&json!({"s": long}));
    assert_eq!(v.len(), 2);
    for v in &v {
        assert!(v.message.len() < 200, "{}", v.message);
        assert!(v.message.starts_with("\"éééé"), "{}", v.message);
        assert!(v.message.contains("…\""), "{}", v.message);
    }
}

/// A multi-select `default` with many bad items is refused with a bounded
/// list of problems.
#[test]
fn default_problems_are_capped() {
    let s = form(
        json!({"tags": {"type": "array", "items": {"type": "string", "enum": ["a"]},
        "default": vec!["z"; 5000]}}),
    );
    let Err(Error::InvalidSchema { problems }) = compile_form(&s) else {
        panic!()
    };
    assert_eq!(problems.len(), MAX_VIOLATIONS + 1);
    assert!(
        problems
            .iter()
            .all(|p| p.path == "/properties/tags/default")
    );
    assert!(
        problems[MAX_VIOLATIONS].message.contains("4900 more"),
        "{:?}",
        problems[MAX_VIOLATIONS]
    );
}
