//! [`VariantName`]: a variant name held inline.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::MAX_VARIANT_NAME_BYTES;

/// Longest name held inline; longer ones (up to 64 bytes) are shared.
const INLINE: usize = 22;

/// A variant name as an evaluation returns it. Names of up to 22 bytes (the
/// usual `control`, `treatment`) are held inline, so handing one out neither
/// allocates nor touches a reference count shared by every thread evaluating the
/// same flag; longer ones share an `Arc<str>`. 24 bytes either way, which keeps
/// an [`Evaluation`](crate::Evaluation) small to return. Dereferences to `str`;
/// serializes as a JSON string.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VariantName(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl VariantName {
    /// `name`; `None` when it is longer than 64 bytes.
    pub fn new(name: &str) -> Option<Self> {
        if name.len() > MAX_VARIANT_NAME_BYTES {
            return None;
        }
        Some(VariantName(match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE => {
                let mut bytes = [0u8; INLINE];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                Repr::Inline { len, bytes }
            }
            _ => Repr::Shared(Arc::from(name)),
        }))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // The bytes are a copy of a whole `&str`, so they are valid UTF-8.
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Shared(s) => s,
        }
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
    fn holds_names_up_to_64_bytes_in_24_bytes() {
        assert_eq!(std::mem::size_of::<VariantName>(), 24);
        assert_eq!(std::mem::size_of::<Option<VariantName>>(), 24);
        let short = VariantName::new(&"s".repeat(22)).unwrap();
        assert!(matches!(short.0, Repr::Inline { len: 22, .. }));
        let shared = VariantName::new(&"s".repeat(23)).unwrap();
        assert!(matches!(shared.0, Repr::Shared(_)));
        assert_eq!(shared.as_str(), "s".repeat(23));
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
