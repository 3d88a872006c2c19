//! The MCP 2025-11-25 form profile (PROTOCOL.md section 4): which schemas are
//! allowed, compiled into [`FormSchema`] rules.
//!
//! Exactly these keywords are allowed:
//! - top level: `type: "object"` (required), `properties` (required), `required`,
//!   `$schema`, `title`, `description`;
//! - each property is one of
//!   - string: `type: "string"`, `title`, `description`, `minLength`, `maxLength`,
//!     `format` (`email`, `uri`, `date`, `date-time`), `default`;
//!   - number: `type: "number"` or `"integer"`, `title`, `description`, `minimum`,
//!     `maximum`, `default`;
//!   - boolean: `type: "boolean"`, `title`, `description`, `default`;
//!   - single-select: `type: "string"` with `enum` (and the legacy `enumNames`) or
//!     with `oneOf` of `{const, title}`; `title`, `description`, `default`;
//!   - multi-select: `type: "array"`, `title`, `description`, `minItems`,
//!     `maxItems`, `items` of `{type: "string", enum}` or `{anyOf: [{const, title}]}`,
//!     `default`.
//!
//! Every other keyword, and every nested object, is a [`SchemaProblem`] naming the
//! keyword and its JSON pointer.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Number, Value};

use super::formats::Format;
use super::pointer;
use crate::error::SchemaProblem;

/// A compiled form-profile schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FormSchema {
    pub(crate) properties: BTreeMap<String, Rule>,
    pub(crate) required: Vec<String>,
}

/// What one property accepts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rule {
    Text {
        min_length: Option<u64>,
        max_length: Option<u64>,
        format: Option<Format>,
    },
    Number {
        integer: bool,
        minimum: Option<Number>,
        maximum: Option<Number>,
    },
    Boolean,
    Select {
        options: Options,
    },
    MultiSelect {
        options: Options,
        min_items: Option<u64>,
        max_items: Option<u64>,
    },
}

const TOP_LEVEL: &[&str] = &[
    "type",
    "properties",
    "required",
    "$schema",
    "title",
    "description",
];
const COMMON: &[&str] = &["type", "title", "description", "default"];
const TEXT: &[&str] = &["minLength", "maxLength", "format"];
const NUMBER: &[&str] = &["minimum", "maximum"];
const ARRAY: &[&str] = &["minItems", "maxItems", "items"];

/// Collects problems while compiling.
struct Compiler {
    problems: Vec<SchemaProblem>,
}

impl Compiler {
    fn problem(&mut self, keyword: &str, path: String, message: impl Into<String>) {
        self.problems.push(SchemaProblem {
            keyword: keyword.to_owned(),
            path,
            message: message.into(),
        });
    }

    /// `title` and `description` must be strings wherever they appear.
    fn annotation(&mut self, obj: &Map<String, Value>, base: &str) {
        for kw in ["title", "description", "$schema"] {
            if let Some(v) = obj.get(kw)
                && !v.is_string()
            {
                self.problem(kw, pointer(base, kw), format!("{kw} must be a string"));
            }
        }
    }

    fn count(&mut self, obj: &Map<String, Value>, kw: &str, base: &str) -> Option<u64> {
        let v = obj.get(kw)?;
        let n = non_negative_integer(v);
        if n.is_none() {
            self.problem(
                kw,
                pointer(base, kw),
                format!("{kw} must be a non-negative integer"),
            );
        }
        n
    }

    fn bounds_ordered(
        &mut self,
        lo: Option<u64>,
        hi: Option<u64>,
        kw_hi: &str,
        kw_lo: &str,
        base: &str,
    ) {
        if let (Some(lo), Some(hi)) = (lo, hi)
            && lo > hi
        {
            self.problem(
                kw_hi,
                pointer(base, kw_hi),
                format!("{kw_hi} ({hi}) is less than {kw_lo} ({lo})"),
            );
        }
    }

    fn unknown_keywords(
        &mut self,
        obj: &Map<String, Value>,
        allowed: &[&[&str]],
        base: &str,
        what: &str,
    ) {
        for k in obj.keys() {
            if !allowed.iter().any(|set| set.contains(&k.as_str())) {
                self.problem(
                    k,
                    pointer(base, k),
                    format!("keyword {k:?} is not allowed for {what} in the form profile"),
                );
            }
        }
    }

    /// A non-empty array of distinct strings (`enum`).
    fn string_list(&mut self, v: &Value, kw: &str, path: &str) -> Option<Vec<String>> {
        let Some(items) = v.as_array().filter(|a| !a.is_empty()) else {
            self.problem(
                kw,
                path.to_owned(),
                format!("{kw} must be a non-empty array of strings"),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut seen = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) if seen.insert(s) => out.push(s.to_owned()),
                Some(s) => self.problem(
                    kw,
                    pointer(path, &i.to_string()),
                    format!("{s:?} appears twice"),
                ),
                None => self.problem(
                    kw,
                    pointer(path, &i.to_string()),
                    format!("{kw} items must be strings"),
                ),
            }
        }
        (out.len() == items.len()).then_some(out)
    }

    /// A non-empty array of `{const, title}` with distinct string consts (`oneOf`, `anyOf`).
    fn titled_options(&mut self, v: &Value, kw: &str, path: &str) -> Option<Vec<String>> {
        let Some(items) = v.as_array().filter(|a| !a.is_empty()) else {
            self.problem(
                kw,
                path.to_owned(),
                format!("{kw} must be a non-empty array of {{const, title}}"),
            );
            return None;
        };
        let before = self.problems.len();
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let ip = pointer(path, &i.to_string());
            let Some(o) = item.as_object() else {
                self.problem(
                    kw,
                    ip,
                    format!("{kw} items must be objects {{const, title}}"),
                );
                continue;
            };
            self.unknown_keywords(o, &[&["const", "title"]], &ip, "an option");
            match o.get("const").and_then(Value::as_str) {
                Some(c) if out.iter().any(|x| x == c) => {
                    self.problem(
                        "const",
                        pointer(&ip, "const"),
                        format!("{c:?} appears twice"),
                    );
                }
                Some(c) => out.push(c.to_owned()),
                None => self.problem(
                    "const",
                    pointer(&ip, "const"),
                    "const is required and must be a string",
                ),
            }
            if !o.get("title").is_some_and(Value::is_string) {
                self.problem(
                    "title",
                    pointer(&ip, "title"),
                    "title is required and must be a string",
                );
            }
        }
        (self.problems.len() == before).then_some(out)
    }

    fn property(&mut self, name: &str, p: &Value, base: &str) -> Option<Rule> {
        let Some(obj) = p.as_object() else {
            self.problem(
                "type",
                base.to_owned(),
                format!("property {name:?} must be a JSON object"),
            );
            return None;
        };
        let before = self.problems.len();
        self.annotation(obj, base);
        let ty = obj.get("type");
        let rule = match ty.and_then(Value::as_str) {
            Some("string") if obj.contains_key("enum") || obj.contains_key("oneOf") => {
                self.select(obj, base)
            }
            Some("string") => self.text(obj, base),
            Some(t @ ("number" | "integer")) => self.number(obj, base, t == "integer"),
            Some("boolean") => {
                self.unknown_keywords(obj, &[COMMON], base, "a boolean property");
                Some(Rule::Boolean)
            }
            Some("array") => self.multi_select(obj, base),
            Some("object") => {
                self.problem(
                    "type",
                    pointer(base, "type"),
                    "nested objects are not allowed in the form profile",
                );
                None
            }
            _ => {
                let msg = if ty.is_none() {
                    "type is required"
                } else {
                    "type must be one of"
                };
                self.problem(
                    "type",
                    pointer(base, "type"),
                    format!("{msg} \"string\", \"number\", \"integer\", \"boolean\", \"array\""),
                );
                None
            }
        }?;
        if let Some(d) = obj.get("default") {
            let mut v = super::Violations::default();
            super::answer::check_value(&rule, d, "", &mut v);
            for violation in v.into_sorted() {
                self.problem(
                    "default",
                    pointer(base, "default"),
                    format!("default {}", violation.message),
                );
            }
        }
        (self.problems.len() == before).then_some(rule)
    }

    fn text(&mut self, obj: &Map<String, Value>, base: &str) -> Option<Rule> {
        self.unknown_keywords(obj, &[COMMON, TEXT], base, "a string property");
        let min_length = self.count(obj, "minLength", base);
        let max_length = self.count(obj, "maxLength", base);
        self.bounds_ordered(min_length, max_length, "maxLength", "minLength", base);
        let format = match obj.get("format") {
            None => None,
            Some(f) => {
                let parsed = f.as_str().and_then(Format::parse);
                if parsed.is_none() {
                    self.problem(
                        "format",
                        pointer(base, "format"),
                        "format must be one of \"email\", \"uri\", \"date\", \"date-time\"",
                    );
                }
                parsed
            }
        };
        Some(Rule::Text {
            min_length,
            max_length,
            format,
        })
    }

    fn number(&mut self, obj: &Map<String, Value>, base: &str, integer: bool) -> Option<Rule> {
        self.unknown_keywords(obj, &[COMMON, NUMBER], base, "a number property");
        let mut bound = |kw: &str| -> Option<Number> {
            let v = obj.get(kw)?;
            match v {
                Value::Number(n) => Some(n.clone()),
                _ => {
                    self.problem(kw, pointer(base, kw), format!("{kw} must be a number"));
                    None
                }
            }
        };
        let minimum = bound("minimum");
        let maximum = bound("maximum");
        if let (Some(lo), Some(hi)) = (&minimum, &maximum)
            && super::answer::compare(lo, hi).is_gt()
        {
            self.problem(
                "maximum",
                pointer(base, "maximum"),
                format!("maximum ({hi}) is less than minimum ({lo})"),
            );
        }
        Some(Rule::Number {
            integer,
            minimum,
            maximum,
        })
    }

    fn select(&mut self, obj: &Map<String, Value>, base: &str) -> Option<Rule> {
        if obj.contains_key("enum") && obj.contains_key("oneOf") {
            self.problem(
                "oneOf",
                pointer(base, "oneOf"),
                "a single-select has either enum or oneOf, not both",
            );
            return None;
        }
        if let Some(e) = obj.get("enum") {
            self.unknown_keywords(
                obj,
                &[COMMON, &["enum", "enumNames"]],
                base,
                "a single-select (enum) property",
            );
            let options = self.string_list(e, "enum", &pointer(base, "enum"))?;
            if let Some(names) = obj.get("enumNames") {
                let ok = names
                    .as_array()
                    .is_some_and(|a| a.len() == options.len() && a.iter().all(Value::is_string));
                if !ok {
                    self.problem(
                        "enumNames",
                        pointer(base, "enumNames"),
                        "enumNames must be an array of strings as long as enum",
                    );
                }
            }
            return Some(Rule::Select {
                options: Options::new(options),
            });
        }
        self.unknown_keywords(
            obj,
            &[COMMON, &["oneOf"]],
            base,
            "a single-select (oneOf) property",
        );
        let one_of = obj.get("oneOf").unwrap_or(&Value::Null);
        let options = self.titled_options(one_of, "oneOf", &pointer(base, "oneOf"))?;
        Some(Rule::Select {
            options: Options::new(options),
        })
    }

    fn multi_select(&mut self, obj: &Map<String, Value>, base: &str) -> Option<Rule> {
        self.unknown_keywords(obj, &[COMMON, ARRAY], base, "a multi-select property");
        let min_items = self.count(obj, "minItems", base);
        let max_items = self.count(obj, "maxItems", base);
        self.bounds_ordered(min_items, max_items, "maxItems", "minItems", base);
        let ip = pointer(base, "items");
        let Some(items) = obj.get("items").and_then(Value::as_object) else {
            self.problem(
                "items",
                ip,
                "items is required: {type: \"string\", enum} or {anyOf: [{const, title}]}",
            );
            return None;
        };
        let options = if let Some(any_of) = items.get("anyOf") {
            self.unknown_keywords(items, &[&["anyOf"]], &ip, "multi-select items");
            self.titled_options(any_of, "anyOf", &pointer(&ip, "anyOf"))
        } else {
            self.unknown_keywords(items, &[&["type", "enum"]], &ip, "multi-select items");
            if items.get("type").and_then(Value::as_str) != Some("string") {
                self.problem(
                    "type",
                    pointer(&ip, "type"),
                    "multi-select items must have type \"string\"",
                );
            }
            match items.get("enum") {
                Some(e) => self.string_list(e, "enum", &pointer(&ip, "enum")),
                None => {
                    self.problem(
                        "enum",
                        pointer(&ip, "enum"),
                        "multi-select items need enum (or anyOf)",
                    );
                    None
                }
            }
        }?;
        Some(Rule::MultiSelect {
            options: Options::new(options),
            min_items,
            max_items,
        })
    }
}

/// A JSON integer `>= 0` (also written as `5.0`).
fn non_negative_integer(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    })
}

/// Compiles a form-profile schema, or lists every problem with it.
pub(crate) fn compile(schema: &Value) -> Result<FormSchema, Vec<SchemaProblem>> {
    let mut c = Compiler {
        problems: Vec::new(),
    };
    let Some(top) = schema.as_object() else {
        c.problem(
            "type",
            String::new(),
            "the schema must be a JSON object with type \"object\"",
        );
        return Err(c.problems);
    };
    c.unknown_keywords(top, &[TOP_LEVEL], "", "the top level");
    c.annotation(top, "");
    match top.get("type") {
        Some(Value::String(t)) if t == "object" => {}
        Some(_) => c.problem(
            "type",
            "/type".into(),
            "the top-level type must be \"object\"",
        ),
        None => c.problem(
            "type",
            "/type".into(),
            "type is required and must be \"object\"",
        ),
    }
    let mut properties = BTreeMap::new();
    match top.get("properties") {
        Some(Value::Object(props)) => {
            for (name, p) in props {
                let base = pointer("/properties", name);
                if let Some(rule) = c.property(name, p, &base) {
                    properties.insert(name.clone(), rule);
                }
            }
        }
        Some(_) => c.problem(
            "properties",
            "/properties".into(),
            "properties must be an object",
        ),
        None => c.problem("properties", "/properties".into(), "properties is required"),
    }
    let mut required = Vec::new();
    if let Some(r) = top.get("required") {
        match r.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = pointer("/required", &i.to_string());
                    match item.as_str() {
                        Some(n) if required.iter().any(|x| x == n) => {
                            c.problem("required", path, format!("{n:?} appears twice"));
                        }
                        Some(n) if top.get("properties").and_then(|p| p.get(n)).is_some() => {
                            required.push(n.to_owned());
                        }
                        Some(n) => c.problem(
                            "required",
                            path,
                            format!("{n:?} is not a property of the schema"),
                        ),
                        None => c.problem("required", path, "required items must be strings"),
                    }
                }
            }
            None => c.problem(
                "required",
                "/required".into(),
                "required must be an array of property names",
            ),
        }
    }
    if c.problems.is_empty() {
        Ok(FormSchema {
            properties,
            required,
        })
    } else {
        Err(c.problems)
    }
}

/// The allowed values of a select, in the schema's order (for messages), with a
/// set to look answers up in: a multi-select answer of thousands of items
/// against thousands of options would otherwise compare every pair.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    list: Vec<String>,
    set: std::collections::HashSet<String>,
}

impl Options {
    pub(crate) fn new(list: Vec<String>) -> Self {
        let set = list.iter().cloned().collect();
        Options { list, set }
    }

    /// Whether `s` is one of them.
    pub(crate) fn contains(&self, s: &str) -> bool {
        self.set.contains(s)
    }
}

impl PartialEq for Options {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl std::ops::Deref for Options {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.list
    }
}
