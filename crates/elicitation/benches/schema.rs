//! Hot paths of the schema profiles: compiling a requested schema (done on every
//! create) and checking an answer (every accept).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lighthouse_elicitation::{CompiledSchema, Limits, SchemaProfile};
use serde_json::json;

fn form_schema() -> serde_json::Value {
    json!({"type": "object", "title": "Deploy",
        "properties": {
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "host": {"type": "string", "format": "uri", "maxLength": 200},
            "mail": {"type": "string", "format": "email"},
            "tls": {"type": "boolean", "default": true},
            "env": {"type": "string", "enum": ["dev", "staging", "prod"]},
            "tags": {"type": "array", "maxItems": 3, "items": {"type": "string", "enum": ["a", "b", "c"]}}
        },
        "required": ["port", "host"]})
}

fn answer() -> serde_json::Value {
    json!({"port": 8080, "host": "https://example.com/x", "mail": "ops@example.com", "tls": false,
           "env": "prod", "tags": ["a", "c"]})
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let schema = form_schema();
    c.bench_function("form_compile", |b| {
        b.iter(|| CompiledSchema::compile(SchemaProfile::Form, black_box(&schema), &limits))
    });
    let compiled = CompiledSchema::compile(SchemaProfile::Form, &schema, &limits).unwrap();
    let good = answer();
    c.bench_function("form_check_valid_answer", |b| {
        b.iter(|| compiled.violations(black_box(&good)))
    });
    let bad = json!({"port": 70000, "host": "nope", "extra": 1});
    c.bench_function("form_check_invalid_answer", |b| {
        b.iter(|| compiled.violations(black_box(&bad)))
    });
    c.bench_function("json_schema_compile", |b| {
        b.iter(|| CompiledSchema::compile(SchemaProfile::JsonSchema, black_box(&schema), &limits))
    });
    let compiled = CompiledSchema::compile(SchemaProfile::JsonSchema, &schema, &limits).unwrap();
    c.bench_function("json_schema_check_valid_answer", |b| {
        b.iter(|| compiled.violations(black_box(&good)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
