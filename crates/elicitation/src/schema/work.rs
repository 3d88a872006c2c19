//! How much work checking an answer against a `json-schema`-profile schema can
//! take, found before the schema is accepted.
//!
//! `jsonschema` applies every subschema that applies at a location of the
//! answer, and remembers nothing between them: a schema whose references fan
//! out (`a1 = allOf[$ref a0, $ref a0]`, `a2 = allOf[$ref a1, $ref a1]`, ...)
//! applies `a0` 2^k times at one location, and a recursive one that does the
//! same below each level of the answer grows with 2^depth. Size and nesting
//! limits do not catch that (60 such definitions are 4 KiB). So the profile
//! computes, from the schema alone, the most subschemas that can apply at any
//! one location of an answer up to [`MAX_ANSWER_DEPTH`] levels deep, and refuses
//! a schema above [`MAX_APPLICATIONS_PER_LOCATION`]. An answer then costs at
//! most that many applications per JSON value it holds.
//!
//! The count is an upper bound: every in-place subschema (`allOf`, `anyOf`,
//! `oneOf`, `not`, `if`/`then`/`else`, `dependentSchemas`, `$ref`) counts as
//! applied, and below a location the widest child is assumed to meet every
//! keyword that applies to children (`properties` of any one name plus every
//! `patternProperties`, `additionalProperties`, ... and the same for arrays).
//! References are followed when they are JSON pointers or `$anchor` names in the
//! schema itself (an anchor name given twice is refused); `$dynamicRef`, `$recursiveRef`, embedded `$id`s and a
//! reference that loops without descending into the answer make the work
//! unknown, and such a schema is refused too.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::SchemaProblem;

/// The most subschemas a schema may apply at one location of an answer.
pub(crate) const MAX_APPLICATIONS_PER_LOCATION: u64 = 1_000;

/// Answers nest at most this deep (`serde_json`'s recursion limit): the depth
/// the bound is computed for.
pub(crate) const MAX_ANSWER_DEPTH: usize = 128;

/// Longest chain of nested schema objects and references followed.
const MAX_CHAIN: usize = 2_048;

/// Why a schema's work has no known bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unbounded {
    /// A keyword whose target is not known statically.
    Keyword(&'static str),
    /// A reference that is neither a JSON pointer nor an `$anchor` of the schema.
    Reference(String),
    /// References that come back to a subschema without descending into the
    /// answer.
    Loop,
    /// References chained deeper than the analysis follows.
    TooDeep,
}

/// Refuses a schema whose work per location of an answer is over
/// [`MAX_APPLICATIONS_PER_LOCATION`] or has no known bound, naming the keyword.
pub(crate) fn check(schema: &Value) -> Result<(), SchemaProblem> {
    let problem = |keyword: &str, message: String| SchemaProblem {
        keyword: keyword.to_owned(),
        path: String::new(),
        message,
    };
    match applications_per_location(schema) {
        Ok(n) if n <= MAX_APPLICATIONS_PER_LOCATION => Ok(()),
        Ok(n) => Err(problem(
            "$ref",
            format!(
                "checking an answer could apply {} subschemas at one place of it \
                 (its references fan out); at most {MAX_APPLICATIONS_PER_LOCATION} are allowed",
                if n == u64::MAX {
                    "more than 2^64".to_owned()
                } else {
                    n.to_string()
                },
            ),
        )),
        Err(Unbounded::Keyword(k)) => Err(problem(
            k,
            format!(
                "{k} is not supported by the json-schema profile (the work of checking an answer must be bounded)"
            ),
        )),
        Err(Unbounded::Reference(r)) => Err(problem(
            "$ref",
            format!("{r} is not a JSON pointer or $anchor within the schema"),
        )),
        Err(Unbounded::Loop) => Err(problem(
            "$ref",
            "references loop back without descending into the answer".to_owned(),
        )),
        Err(Unbounded::TooDeep) => Err(problem(
            "$ref",
            "references chain deeper than the json-schema profile follows".to_owned(),
        )),
    }
}

/// The most subschemas that apply at one location of an answer nested up to
/// [`MAX_ANSWER_DEPTH`] deep (saturating at `u64::MAX`).
pub(crate) fn applications_per_location(schema: &Value) -> Result<u64, Unbounded> {
    let mut anchors = HashMap::new();
    collect_anchors(schema, true, &mut anchors)?;
    let mut w = Work {
        root: schema,
        anchors,
        memo: HashMap::new(),
        chain: Vec::new(),
    };
    let mut most = 0u64;
    for k in 0..=MAX_ANSWER_DEPTH {
        let n = w.at(schema, k)?;
        most = most.max(n);
        // Applications only grow with k when the schema recurses; stop early
        // once over the limit.
        if most > MAX_APPLICATIONS_PER_LOCATION {
            break;
        }
    }
    Ok(most)
}

/// Every `$anchor` (plain-name fragment) of the schema; refuses embedded
/// `$id`s, which change what a reference means.
fn collect_anchors<'a>(
    v: &'a Value,
    root: bool,
    out: &mut HashMap<&'a str, &'a Value>,
) -> Result<(), Unbounded> {
    // Iterative: the schema's depth is bounded, but not by this function.
    let mut stack = vec![(v, root)];
    while let Some((v, root)) = stack.pop() {
        match v {
            Value::Object(o) => {
                if !root && o.contains_key("$id") {
                    return Err(Unbounded::Keyword("$id"));
                }
                // `$dynamicAnchor` names a plain-name fragment too. A name
                // given twice is refused: `jsonschema` registers anchors only
                // where it expects subschemas, this collects them everywhere,
                // so with a decoy (under an unknown keyword, say) the two could
                // resolve one name differently.
                for kw in ["$anchor", "$dynamicAnchor"] {
                    if let Some(Value::String(a)) = o.get(kw)
                        && out
                            .insert(a.as_str(), v)
                            .is_some_and(|prev| !std::ptr::eq(prev, v))
                    {
                        return Err(Unbounded::Reference(format!(
                            "#{a} (an anchor named twice)"
                        )));
                    }
                }
                stack.extend(o.values().map(|c| (c, false)));
            }
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, false))),
            _ => {}
        }
    }
    Ok(())
}

struct Work<'a> {
    root: &'a Value,
    anchors: HashMap<&'a str, &'a Value>,
    /// `f(schema, k)`: the most applications at one location `k` levels
    /// below where `schema` applies.
    memo: HashMap<(*const Value, usize), u64>,
    /// What is being computed, to find loops.
    chain: Vec<(*const Value, usize)>,
}

/// Keywords whose subschema applies where the schema does.
const IN_PLACE_ONE: &[&str] = &["not", "if", "then", "else"];
/// ... an array of them.
const IN_PLACE_LIST: &[&str] = &["allOf", "anyOf", "oneOf"];
/// ... an object of them.
const IN_PLACE_MAP: &[&str] = &["dependentSchemas"];
/// Keywords whose subschema applies to children (or keys) of the location.
const DOWN_ONE: &[&str] = &[
    "additionalProperties",
    "unevaluatedProperties",
    "propertyNames",
    "items",
    "contains",
    "unevaluatedItems",
    "additionalItems",
];
/// ... an object of them, each for its own child (`properties`) or for any
/// child whose name matches (`patternProperties`).
const DOWN_BY_NAME: &str = "properties";
const DOWN_BY_PATTERN: &str = "patternProperties";
/// ... an array of them, each for its own child.
const DOWN_BY_INDEX: &str = "prefixItems";

impl<'a> Work<'a> {
    /// The most applications at one location `k` levels below where `v` applies.
    fn at(&mut self, v: &'a Value, k: usize) -> Result<u64, Unbounded> {
        let Value::Object(o) = v else {
            // `true`, `false` (or not a schema: the compile refuses those).
            return Ok(u64::from(k == 0));
        };
        let key = (v as *const Value, k);
        if let Some(&n) = self.memo.get(&key) {
            return Ok(n);
        }
        if self.chain.contains(&key) {
            return Err(Unbounded::Loop);
        }
        if self.chain.len() >= MAX_CHAIN {
            return Err(Unbounded::TooDeep);
        }
        self.chain.push(key);
        let n = self.object(o, k);
        self.chain.pop();
        let n = n?;
        self.memo.insert(key, n);
        Ok(n)
    }

    fn object(
        &mut self,
        o: &'a serde_json::Map<String, Value>,
        k: usize,
    ) -> Result<u64, Unbounded> {
        for kw in ["$dynamicRef", "$recursiveRef"] {
            if o.contains_key(kw) {
                return Err(Unbounded::Keyword(if kw == "$dynamicRef" {
                    "$dynamicRef"
                } else {
                    "$recursiveRef"
                }));
            }
        }
        // This schema itself, at its own location.
        let mut n = u64::from(k == 0);
        let add = |n: u64, m: u64| n.saturating_add(m);
        if let Some(r) = o.get("$ref") {
            let target = self.resolve(r)?;
            n = add(n, self.at(target, k)?);
        }
        for kw in IN_PLACE_ONE {
            if let Some(c) = o.get(*kw) {
                n = add(n, self.at(c, k)?);
            }
        }
        for kw in IN_PLACE_LIST {
            if let Some(Value::Array(list)) = o.get(*kw) {
                for c in list {
                    n = add(n, self.at(c, k)?);
                }
            }
        }
        for kw in IN_PLACE_MAP {
            if let Some(Value::Object(map)) = o.get(*kw) {
                for c in map.values() {
                    n = add(n, self.at(c, k)?);
                }
            }
        }
        if k == 0 {
            return Ok(n);
        }
        // Below: the widest child meets one named property (the widest), every
        // pattern, and every keyword for any child.
        let mut below = 0u64;
        if let Some(Value::Object(props)) = o.get(DOWN_BY_NAME) {
            let mut widest = 0;
            for c in props.values() {
                widest = widest.max(self.at(c, k - 1)?);
            }
            below = add(below, widest);
        }
        if let Some(Value::Array(items)) = o.get(DOWN_BY_INDEX) {
            let mut widest = 0;
            for c in items {
                widest = widest.max(self.at(c, k - 1)?);
            }
            below = add(below, widest);
        }
        if let Some(Value::Object(patterns)) = o.get(DOWN_BY_PATTERN) {
            for c in patterns.values() {
                below = add(below, self.at(c, k - 1)?);
            }
        }
        for kw in DOWN_ONE {
            if let Some(c) = o.get(*kw) {
                below = add(below, self.at(c, k - 1)?);
            }
        }
        Ok(add(n, below))
    }

    fn resolve(&self, r: &Value) -> Result<&'a Value, Unbounded> {
        let s = r.as_str().ok_or(Unbounded::Reference(r.to_string()))?;
        let unknown = || Unbounded::Reference(s.to_owned());
        let fragment = s.strip_prefix('#').ok_or_else(unknown)?;
        if fragment.is_empty() {
            return Ok(self.root);
        }
        if fragment.starts_with('/') {
            if fragment.contains('%') {
                return Err(unknown());
            }
            return self.root.pointer(fragment).ok_or_else(unknown);
        }
        self.anchors.get(fragment).copied().ok_or_else(unknown)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn fan_out(k: usize) -> Value {
        let mut defs = serde_json::Map::new();
        defs.insert("a0".into(), json!({"type": "string"}));
        for i in 1..=k {
            let r = json!({"$ref": format!("#/$defs/a{}", i - 1)});
            defs.insert(format!("a{i}"), json!({"allOf": [r, r]}));
        }
        json!({"$defs": defs, "$ref": format!("#/$defs/a{k}")})
    }

    #[test]
    fn references_that_fan_out_are_counted_as_often_as_they_apply() {
        // Each level applies itself, and its reference twice, each reference
        // the level below: 1 + 29 at the root for three levels.
        assert_eq!(applications_per_location(&fan_out(3)), Ok(30));
        assert!(applications_per_location(&fan_out(12)).unwrap() > MAX_APPLICATIONS_PER_LOCATION);
        assert_eq!(applications_per_location(&fan_out(80)), Ok(u64::MAX));
    }

    #[test]
    fn a_tree_costs_the_same_at_every_depth_and_a_doubling_tree_is_refused() {
        let tree = json!({"$defs": {"t": {"type": "object", "properties": {
            "left": {"$ref": "#/$defs/t"}, "right": {"$ref": "#/$defs/t"}, "v": {"type": "integer"}}}},
            "$ref": "#/$defs/t"});
        let n = applications_per_location(&tree).unwrap();
        assert!(n <= 4, "{n}");
        // The same subschema twice at each level below: 2^depth.
        let doubling = json!({"$defs": {"t": {"properties": {"a": {"allOf": [
            {"$ref": "#/$defs/t"}, {"$ref": "#/$defs/t"}]}}}}, "$ref": "#/$defs/t"});
        assert!(applications_per_location(&doubling).unwrap() > MAX_APPLICATIONS_PER_LOCATION);
    }

    #[test]
    fn unknown_targets_and_loops_in_place_have_no_bound() {
        assert_eq!(
            applications_per_location(&json!({"allOf": [{"$ref": "#"}]})),
            Err(Unbounded::Loop)
        );
        assert!(matches!(
            applications_per_location(&json!({"$dynamicRef": "#x"})),
            Err(Unbounded::Keyword("$dynamicRef"))
        ));
        assert!(matches!(
            applications_per_location(
                &json!({"properties": {"a": {"$id": "https://x/y", "type": "string"}}})
            ),
            Err(Unbounded::Keyword("$id"))
        ));
        assert!(matches!(
            applications_per_location(&json!({"$ref": "other.json#/x"})),
            Err(Unbounded::Reference(_))
        ));
        // `$anchor` names resolve.
        let anchored = json!({"$defs": {"p": {"$anchor": "pos", "type": "integer"}},
            "properties": {"n": {"$ref": "#pos"}}});
        assert_eq!(applications_per_location(&anchored), Ok(2));
        // An anchor named twice (a decoy where `jsonschema` looks for none)
        // is refused rather than resolved one way here and another there.
        let decoy = json!({"!x": {"$anchor": "top"}, "$defs": {"a": {"$anchor": "top",
            "allOf": [{"$ref": "#/$defs/b"}, {"$ref": "#/$defs/b"}]}, "b": {"type": "string"}},
            "$ref": "#top"});
        assert!(matches!(
            applications_per_location(&decoy),
            Err(Unbounded::Reference(_))
        ));
        // A reference that descends before it loops is fine (`{"items": {"$ref": "#"}}`).
        assert_eq!(
            applications_per_location(&json!({"items": {"$ref": "#"}})),
            Ok(2)
        );
    }
}
