//! [`VariantName`]: a variant name held inline.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::MAX_VARIANT_NAME_BYTES;

/// A variant name (at most 64 bytes) held inline, so that an evaluation hands
/// it out without allocating and without touching a reference count shared by
/// every thread evaluating the same flag. Dereferences to `str`; serializes as a
/// JSON string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VariantName {
    len: u8,
    bytes: [u8; MAX_VARIANT_NAME_BYTES],
}

impl VariantName {
    /// `name` held inline; `None` when it is longer than 64 bytes.
    pub fn new(name: &str) -> Option<Self> {
        let len = u8::try_from(name.len())
            .ok()
            .filter(|&l| usize::from(l) <= MAX_VARIANT_NAME_BYTES)?;
        let mut bytes = [0u8; MAX_VARIANT_NAME_BYTES];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(VariantName { len, bytes })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // The bytes are a copy of a whole `&str`, so they are valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Deref for VariantName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for VariantName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for VariantName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for VariantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for VariantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for VariantName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for VariantName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        VariantName::new(&s)
            .ok_or_else(|| serde::de::Error::custom("variant name longer than 64 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_names_up_to_64_bytes() {
        let long = "v".repeat(64);
        let name = VariantName::new(&long).unwrap();
        assert_eq!(name.as_str(), long);
        assert!(VariantName::new(&"v".repeat(65)).is_none());
        let empty = VariantName::new("").unwrap();
        assert_eq!(&*empty, "");
        let t = VariantName::new("treatment").unwrap();
        assert_eq!(t, "treatment");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"treatment\"");
        assert_eq!(
            serde_json::from_str::<VariantName>("\"treatment\"").unwrap(),
            t
        );
        assert_eq!(format!("{t} {t:?}"), "treatment \"treatment\"");
    }
}
