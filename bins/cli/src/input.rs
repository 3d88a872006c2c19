//! Arguments that carry JSON (inline or `@FILE`), times and enumerations.

use lighthouse_core::api::{Role, Status, Timestamp, Variant};
use serde_json::Value;

use crate::run::Failure;

/// Largest `@FILE` JSON argument: the bridge's request body limit.
const MAX_JSON_FILE_BYTES: u64 = 1 << 20;

/// Parses `text` as JSON, or the file it names after `@`.
pub fn json_arg(name: &str, text: &str) -> Result<Value, Failure> {
    let (source, content) = match text.strip_prefix('@') {
        Some(path) => {
            use std::io::Read;
            let file = std::fs::File::open(path)
                .map_err(|e| Failure::Usage(format!("--{name}: cannot read {path}: {e}")))?;
            // The bridge takes bodies of at most 1 MiB: a larger file cannot be
            // sent, so it is not read whole either.
            let mut content = String::new();
            file.take(MAX_JSON_FILE_BYTES + 1)
                .read_to_string(&mut content)
                .map_err(|e| Failure::Usage(format!("--{name}: cannot read {path}: {e}")))?;
            if content.len() as u64 > MAX_JSON_FILE_BYTES {
                return Err(Failure::Usage(format!(
                    "--{name}: {path} is larger than {MAX_JSON_FILE_BYTES} bytes (the bridge's body limit)"
                )));
            }
            (path.to_owned(), content)
        }
        None => ("the argument".to_owned(), text.to_owned()),
    };
    serde_json::from_str(&content)
        .map_err(|e| Failure::Usage(format!("--{name}: {source} is not valid JSON: {e}")))
}

/// Parses an elicitation status.
pub fn status_arg(text: Option<&str>) -> Result<Option<Status>, Failure> {
    text.map(|s| {
        Status::parse(s).ok_or_else(|| {
            Failure::Usage(format!(
                "--status {s:?}: expected pending, accepted, declined, cancelled or expired"
            ))
        })
    })
    .transpose()
}

/// Parses an RFC 3339 time.
pub fn time_arg(name: &str, text: Option<&str>) -> Result<Option<Timestamp>, Failure> {
    text.map(|t| {
        Timestamp::parse_rfc3339(t).map_err(|_| {
            Failure::Usage(format!(
                "--{name} {t:?}: expected an RFC 3339 time such as 2026-11-26T07:00:00.000Z"
            ))
        })
    })
    .transpose()
}

/// Parses `NAME=WEIGHT`.
pub fn variant_arg(text: &str) -> Result<Variant, Failure> {
    let bad = || Failure::Usage(format!("--variant {text:?}: expected NAME=WEIGHT"));
    let (name, weight) = text.split_once('=').ok_or_else(bad)?;
    let weight = weight.trim().parse::<u32>().map_err(|_| bad())?;
    if name.trim().is_empty() {
        return Err(bad());
    }
    Ok(Variant {
        name: name.trim().to_owned(),
        weight,
    })
}

/// Parses a role.
pub fn role_arg(text: &str) -> Result<Role, Failure> {
    match text {
        "agent" => Ok(Role::Agent),
        "observer" => Ok(Role::Observer),
        "operator" => Ok(Role::Operator),
        "admin" => Ok(Role::Admin),
        _ => Err(Failure::Usage(format!(
            "--role {text:?}: expected agent, observer, operator or admin"
        ))),
    }
}

/// Checks an agent id as the bridge does (`^[a-z0-9][a-z0-9._-]{0,63}$`,
/// PROTOCOL.md 1) before it names a file: `../x` would name one outside the
/// current directory.
pub fn agent_id_arg(id: &str) -> Result<&str, Failure> {
    let ok = (1..=64).contains(&id.len())
        && id.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(id)
    } else {
        Err(Failure::Usage(format!(
            "agent id {id:?}: expected 1 to 64 of [a-z0-9._-], starting with a letter or digit"
        )))
    }
}

/// A comma-separated list argument: an empty value (`--allow ""`) clears.
pub fn list_arg(items: Vec<String>) -> Vec<String> {
    items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_file_larger_than_a_request_body_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.json");
        std::fs::write(&ok, br#"{"port": 1}"#).unwrap();
        let v = json_arg("content", &format!("@{}", ok.display())).unwrap();
        assert_eq!(v, serde_json::json!({"port": 1}));
        let big = dir.path().join("big.json");
        let mut text = String::from("[");
        text.push_str(&"1,".repeat(600_000));
        text.push_str("1]");
        std::fs::write(&big, text).unwrap();
        match json_arg("content", &format!("@{}", big.display())) {
            Err(Failure::Usage(m)) => assert!(m.contains("larger than"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_comes_inline_or_from_a_file() {
        assert_eq!(
            json_arg("x", "{\"a\":1}").unwrap(),
            serde_json::json!({"a": 1})
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        std::fs::write(&p, "[1,2]").unwrap();
        assert_eq!(
            json_arg("x", &format!("@{}", p.display())).unwrap(),
            serde_json::json!([1, 2])
        );
        assert!(matches!(json_arg("x", "{nope"), Err(Failure::Usage(_))));
        assert!(matches!(
            json_arg("x", "@/no/such/file"),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn small_arguments_are_checked() {
        assert_eq!(status_arg(Some("pending")).unwrap(), Some(Status::Pending));
        assert!(status_arg(Some("done")).is_err());
        assert!(
            time_arg("since", Some("2026-11-26T07:00:00.000Z"))
                .unwrap()
                .is_some()
        );
        assert!(time_arg("since", Some("yesterday")).is_err());
        assert_eq!(variant_arg("control=500").unwrap().weight, 500);
        assert!(variant_arg("control").is_err());
        assert!(variant_arg("=5").is_err());
        assert_eq!(list_arg(vec!["".into()]), Vec::<String>::new());
        assert_eq!(role_arg("operator").unwrap(), Role::Operator);
        assert!(role_arg("root").is_err());
        for good in ["bob", "a", "ops-1", "x.y_z", &"a".repeat(64)] {
            assert_eq!(agent_id_arg(good).unwrap(), good);
        }
        for bad in ["", "../x", "a/b", "Bob", "-x", ".x", &"a".repeat(65)] {
            assert!(agent_id_arg(bad).is_err(), "{bad:?}");
        }
        assert_eq!(list_arg(vec![" a".into(), "b".into()]), vec!["a", "b"]);
    }
}
