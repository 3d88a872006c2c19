//! The character rules for names (PROTOCOL.md): flag keys, agent ids, variant names.

/// Longest flag key in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// Longest agent id in bytes.
pub const MAX_AGENT_BYTES: usize = 64;
/// Longest variant name in bytes.
pub const MAX_VARIANT_NAME_BYTES: usize = 64;

/// Whether `key` is a flag key: `^[a-z0-9][a-z0-9._-]{0,127}$`.
pub fn is_valid_key(key: &str) -> bool {
    lower_name(key, MAX_KEY_BYTES)
}

/// Whether `agent` is an agent id: `^[a-z0-9][a-z0-9._-]{0,63}$`.
#[inline]
pub fn is_valid_agent(agent: &str) -> bool {
    lower_name(agent, MAX_AGENT_BYTES)
}

/// Whether `name` is a variant name. The protocol does not say; this crate uses
/// the agent id rule, `^[a-z0-9][a-z0-9._-]{0,63}$`.
pub fn is_valid_variant_name(name: &str) -> bool {
    lower_name(name, MAX_VARIANT_NAME_BYTES)
}

/// The rule text for error messages.
pub(crate) const KEY_RULE: &str = "1 to 128 of [a-z0-9._-], starting with a-z or 0-9";
pub(crate) const AGENT_RULE: &str = "an agent id: 1 to 64 of [a-z0-9._-], starting with a-z or 0-9";
pub(crate) const VARIANT_RULE: &str = "1 to 64 of [a-z0-9._-], starting with a-z or 0-9";

/// Which bytes may follow the first one: `[a-z0-9._-]`.
const REST: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-';
        c += 1;
    }
    t
};

#[inline]
fn lower_name(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    match b.split_first() {
        Some((&first, rest)) if b.len() <= max => {
            (first.is_ascii_lowercase() || first.is_ascii_digit())
                // A fold without early exit compiles to a short branch-free loop.
                && rest.iter().fold(true, |ok, &c| ok & REST[usize::from(c)])
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_follow_the_protocol() {
        for ok in [
            "elicitation_enabled",
            "new_ui",
            "0",
            "a.b-c_d",
            &"a".repeat(128),
        ] {
            assert!(is_valid_key(ok), "{ok}");
        }
        for bad in [
            "",
            "_a",
            ".a",
            "-a",
            "A",
            "a b",
            "a/b",
            "é",
            &"a".repeat(129),
        ] {
            assert!(!is_valid_key(bad), "{bad}");
        }
    }

    #[test]
    fn agents_follow_the_protocol() {
        assert!(is_valid_agent("ops-1"));
        assert!(is_valid_agent(&"a".repeat(64)));
        assert!(!is_valid_agent(&"a".repeat(65)));
        assert!(!is_valid_agent("Alice"));
        assert!(!is_valid_agent(""));
    }

    proptest! {
        #[test]
        fn key_rule_matches_the_regex(s in "\\PC{0,140}") {
            let expected = !s.is_empty()
                && s.len() <= 128
                && s.chars().enumerate().all(|(i, c)| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || (i > 0 && "._-".contains(c))
                });
            prop_assert_eq!(is_valid_key(&s), expected);
        }

        #[test]
        fn generated_keys_are_valid(s in "[a-z0-9][a-z0-9._-]{0,127}") {
            prop_assert!(is_valid_key(&s));
        }
    }
}
