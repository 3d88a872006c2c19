//! The authenticated caller.

use serde::{Deserialize, Serialize};

/// The role of an agent (PROTOCOL.md section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Elicits, responds, sends and receives messages, appends and reads events.
    Agent,
    /// Reads events, flags and ops stats.
    Observer,
    /// Observer plus flag changes, drain, verify and `$ops` appends.
    Operator,
    /// Everything, plus agent management.
    Admin,
}

impl Role {
    /// The role's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Observer => "observer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// An authenticated caller: produced only by the verifier (or by trusted
/// in-process code), never from a name in a request body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Caller {
    /// Agent id.
    pub agent: String,
    /// Role.
    pub role: Role,
    /// The key id the request was signed with (or its token was bound to).
    pub key_id: u64,
}
