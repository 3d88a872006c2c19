//! Label values: the fixed sets as types, and the bounded maps that admit
//! first-use values (routes, statuses, flags) up to a cap.
//!
//! A label whose values come from traffic is a memory and cardinality hazard:
//! a client can invent routes, a bug can put an id in a template. So every
//! first-use label has a cap ([`LabelCaps`]); a value that arrives once the cap
//! is reached, or that is not valid for its label, is recorded under
//! [`OVERFLOW_LABEL_VALUE`] instead, and the fold is counted in
//! `lighthouse_metrics_label_values_folded_total{label}`.

/// The label value that replaces an invalid value, or a new value once its
/// label's cap is reached. It cannot be a route template (no leading `/`), a
/// status code or a flag key (flag keys start with `[a-z0-9]`).
pub const OVERFLOW_LABEL_VALUE: &str = "_other";

/// The `route` value for requests that matched no route template.
pub const UNMATCHED_ROUTE: &str = "_unmatched";

/// Longest route template accepted as a label value, in bytes.
pub const MAX_ROUTE_LEN: usize = 128;

macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $value:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in catalogue order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The label values, in the order of [`Self::ALL`].
            pub const VALUES: &'static [&'static str] = &[$($value),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                Self::VALUES[self as usize]
            }

            /// The value whose label value is `s`.
            pub fn parse(s: &str) -> Option<Self> {
                Self::VALUES.iter().position(|v| *v == s).map(|i| Self::ALL[i])
            }

            pub(crate) fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// How an elicitation ended (`outcome`).
    Outcome {
        /// The target answered with content matching the schema.
        Accepted => "accepted",
        /// The target declined.
        Declined => "declined",
        /// The requester cancelled, or an operator drain did.
        Cancelled => "cancelled",
        /// Nobody acted before `expires_at`.
        Expired => "expired",
    }
}

label_enum! {
    /// Why a request was refused by authentication or authorization (`kind`).
    ViolationKind {
        /// Missing or malformed credentials, or a bad token.
        Unauthenticated => "unauthenticated",
        /// Timestamp outside the allowed skew.
        StaleRequest => "stale_request",
        /// Signature did not match.
        BadSignature => "bad_signature",
        /// Nonce already seen.
        ReplayedRequest => "replayed_request",
        /// The role does not permit the route.
        Forbidden => "forbidden",
    }
}

label_enum! {
    /// The rate-limit class of a request (`action`).
    RateAction {
        /// `POST /v1/elicitations`.
        Elicit => "elicit",
        /// Respond and cancel.
        Respond => "respond",
        /// Every other write.
        Write => "write",
        /// Every `GET`.
        Read => "read",
        /// `POST /v1/sessions`.
        Session => "session",
    }
}

label_enum! {
    /// The result of a flag evaluation (`result`).
    FlagResult {
        /// The flag is on for the agent.
        On => "on",
        /// The flag is off for the agent.
        Off => "off",
    }
}

label_enum! {
    /// A first-use label whose value was folded into `_other` (`label`).
    FoldedLabel {
        /// `route`.
        Route => "route",
        /// `status`.
        Status => "status",
        /// `flag`.
        Flag => "flag",
    }
}

/// Caps on the number of distinct values of each first-use label.
///
/// With the defaults, the route-labelled series are bounded by
/// `routes × statuses` counters plus `routes` histograms (each plus one
/// `_other` row), and flags by `2 × flags` counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelCaps {
    /// Distinct `route` values. Default [`LabelCaps::DEFAULT_ROUTES`].
    pub routes: usize,
    /// Distinct `status` values. Default [`LabelCaps::DEFAULT_STATUSES`].
    pub statuses: usize,
    /// Distinct `flag` values. Default [`LabelCaps::DEFAULT_FLAGS`].
    pub flags: usize,
}

impl LabelCaps {
    /// Default route cap: the API has about 30 route templates.
    pub const DEFAULT_ROUTES: usize = 64;
    /// Default status cap: the API answers about 15 distinct codes.
    pub const DEFAULT_STATUSES: usize = 24;
    /// Default flag cap.
    pub const DEFAULT_FLAGS: usize = 256;
}

impl Default for LabelCaps {
    fn default() -> Self {
        Self {
            routes: Self::DEFAULT_ROUTES,
            statuses: Self::DEFAULT_STATUSES,
            flags: Self::DEFAULT_FLAGS,
        }
    }
}

/// Whether `route` may be a `route` label value: a template starting with `/`
/// of printable ASCII without quotes or backslashes, at most
/// [`MAX_ROUTE_LEN`] bytes, or [`UNMATCHED_ROUTE`].
pub fn is_valid_route(route: &str) -> bool {
    route == UNMATCHED_ROUTE
        || (route.starts_with('/')
            && route.len() <= MAX_ROUTE_LEN
            && route
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'))
}

/// Whether `status` is an HTTP status code (100 to 599).
pub fn is_valid_status(status: u16) -> bool {
    (100..=599).contains(&status)
}

/// Whether `key` is a flag key: `^[a-z0-9][a-z0-9._-]{0,127}$`.
pub fn is_valid_flag_key(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_label_values() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(*o));
        }
        assert_eq!(ViolationKind::BadSignature.as_str(), "bad_signature");
        assert_eq!(RateAction::Session.to_string(), "session");
        assert_eq!(FlagResult::parse("maybe"), None);
        assert_eq!(FoldedLabel::ALL.len(), FoldedLabel::VALUES.len());
    }

    #[test]
    fn route_status_and_flag_validation() {
        assert!(is_valid_route("/v1/elicitations/{id}/respond"));
        assert!(is_valid_route(UNMATCHED_ROUTE));
        assert!(!is_valid_route("v1/elicitations"));
        assert!(!is_valid_route("/v1/with space"));
        assert!(!is_valid_route(&format!("/{}", "a".repeat(MAX_ROUTE_LEN))));
        assert!(!is_valid_route(OVERFLOW_LABEL_VALUE));
        assert!(is_valid_status(200) && is_valid_status(599) && is_valid_status(100));
        assert!(!is_valid_status(99) && !is_valid_status(600));
        assert!(is_valid_flag_key("elicitation_enabled") && is_valid_flag_key("new-ui.v2"));
        assert!(!is_valid_flag_key(OVERFLOW_LABEL_VALUE));
        assert!(!is_valid_flag_key("Upper") && !is_valid_flag_key(""));
        assert!(!is_valid_flag_key(&"a".repeat(129)));
    }
}
