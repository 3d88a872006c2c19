//! Roles and permissions as data: [`PERMISSIONS`] says which roles may do each
//! [`Action`]; [`authorize`] looks it up. Also the rate-limit [`ActionClass`] of a
//! route (PROTOCOL.md 2.4).

use crate::caller::{Caller, Role};
use crate::refusal::Refusal;

/// What a request wants to do, one per API operation (PROTOCOL.md sections 4-12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `POST /v1/elicitations`.
    Elicit,
    /// `GET /v1/elicitations[/{id}]`.
    ReadElicitations,
    /// `POST /v1/elicitations/{id}/respond`.
    Respond,
    /// `POST /v1/elicitations/{id}/cancel`.
    Cancel,
    /// `POST /v1/messages`.
    SendMessage,
    /// `GET /v1/messages`.
    ReadMessages,
    /// `GET /v1/stream`: the caller's own push stream.
    OpenOwnStream,
    /// `POST /v1/events` to a stream that is not bridge-written.
    AppendEvent,
    /// `POST /v1/events` to `$ops`.
    AppendOpsEvent,
    /// `GET /v1/events`, `GET /v1/events/stream`.
    ReadEvents,
    /// `GET /v1/flags...` including evaluate and history.
    ReadFlags,
    /// `PUT /v1/flags/{key}`, kill, unkill.
    WriteFlags,
    /// `GET /v1/ops/stats`.
    ReadOpsStats,
    /// `POST /v1/ops/drain`.
    Drain,
    /// `POST /v1/ops/verify`.
    VerifyStore,
    /// `GET /v1/agents`.
    ListAgents,
    /// `POST /v1/agents`, rotate, `DELETE /v1/agents/{id}`.
    ManageAgents,
    /// `GET /v1/agents/me`.
    WhoAmI,
    /// `POST /v1/sessions`, `DELETE /v1/sessions/current`.
    ManageOwnSession,
    /// `/mcp`: the transport; each tool call is authorized with its own action.
    UseMcp,
    /// `POST /v1/events` to a stream or type only the bridge writes (see
    /// [`append_action`]): permitted to no role, so the refusal is a step-7
    /// `403`, counted and audited like any other.
    AppendReservedEvent,
}

/// A set of roles (bit per role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    const fn bit(r: Role) -> u8 {
        match r {
            Role::Agent => 1,
            Role::Observer => 2,
            Role::Operator => 4,
            Role::Admin => 8,
        }
    }

    /// A set of the given roles.
    pub const fn of(roles: &[Role]) -> Roles {
        let mut bits = 0;
        let mut i = 0;
        while i < roles.len() {
            bits |= Self::bit(roles[i]);
            i += 1;
        }
        Roles(bits)
    }

    /// Whether `r` is in the set.
    pub const fn contains(self, r: Role) -> bool {
        self.0 & Self::bit(r) != 0
    }
}

const AGENT: Role = Role::Agent;
const OBSERVER: Role = Role::Observer;
const OPERATOR: Role = Role::Operator;
const ADMIN: Role = Role::Admin;

/// Who may do what (PROTOCOL.md section 1). `admin` may do everything.
pub const PERMISSIONS: &[(Action, Roles)] = &[
    (Action::Elicit, Roles::of(&[AGENT, ADMIN])),
    (Action::ReadElicitations, Roles::of(&[AGENT, ADMIN])),
    (Action::Respond, Roles::of(&[AGENT, ADMIN])),
    (Action::Cancel, Roles::of(&[AGENT, ADMIN])),
    (Action::SendMessage, Roles::of(&[AGENT, ADMIN])),
    (Action::ReadMessages, Roles::of(&[AGENT, ADMIN])),
    (Action::OpenOwnStream, Roles::of(&[AGENT, ADMIN])),
    (Action::AppendEvent, Roles::of(&[AGENT, ADMIN])),
    (Action::AppendOpsEvent, Roles::of(&[OPERATOR, ADMIN])),
    (
        Action::ReadEvents,
        Roles::of(&[AGENT, OBSERVER, OPERATOR, ADMIN]),
    ),
    (Action::ReadFlags, Roles::of(&[OBSERVER, OPERATOR, ADMIN])),
    (Action::WriteFlags, Roles::of(&[OPERATOR, ADMIN])),
    (
        Action::ReadOpsStats,
        Roles::of(&[OBSERVER, OPERATOR, ADMIN]),
    ),
    (Action::Drain, Roles::of(&[OPERATOR, ADMIN])),
    (Action::VerifyStore, Roles::of(&[OPERATOR, ADMIN])),
    (Action::ListAgents, Roles::of(&[ADMIN])),
    (Action::ManageAgents, Roles::of(&[ADMIN])),
    (
        Action::WhoAmI,
        Roles::of(&[AGENT, OBSERVER, OPERATOR, ADMIN]),
    ),
    (
        Action::ManageOwnSession,
        Roles::of(&[AGENT, OBSERVER, OPERATOR, ADMIN]),
    ),
    (
        Action::UseMcp,
        Roles::of(&[AGENT, OBSERVER, OPERATOR, ADMIN]),
    ),
    (Action::AppendReservedEvent, Roles::of(&[])),
];

impl Action {
    /// Every action, in table order.
    pub fn all() -> impl Iterator<Item = Action> {
        PERMISSIONS.iter().map(|(a, _)| *a)
    }

    /// The roles permitted to perform this action.
    pub fn roles(self) -> Roles {
        PERMISSIONS
            .iter()
            .find(|(a, _)| *a == self)
            .map_or(Roles(0), |(_, r)| *r)
    }

    /// A stable snake_case name (for audit records).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Elicit => "elicit",
            Action::ReadElicitations => "read_elicitations",
            Action::Respond => "respond",
            Action::Cancel => "cancel",
            Action::SendMessage => "send_message",
            Action::ReadMessages => "read_messages",
            Action::OpenOwnStream => "open_own_stream",
            Action::AppendEvent => "append_event",
            Action::AppendOpsEvent => "append_ops_event",
            Action::ReadEvents => "read_events",
            Action::ReadFlags => "read_flags",
            Action::WriteFlags => "write_flags",
            Action::ReadOpsStats => "read_ops_stats",
            Action::Drain => "drain",
            Action::VerifyStore => "verify_store",
            Action::ListAgents => "list_agents",
            Action::ManageAgents => "manage_agents",
            Action::WhoAmI => "who_am_i",
            Action::ManageOwnSession => "manage_own_session",
            Action::UseMcp => "use_mcp",
            Action::AppendReservedEvent => "append_reserved_event",
        }
    }
}

/// Whether `role` may perform `action`.
pub fn permitted(role: Role, action: Action) -> bool {
    action.roles().contains(role)
}

/// PROTOCOL.md 2.2 step 7: `Ok` when the caller's role permits `action`, else
/// `forbidden`.
pub fn authorize(caller: &Caller, action: Action) -> Result<(), Refusal> {
    if permitted(caller.role, action) {
        Ok(())
    } else {
        Err(Refusal::Forbidden { action })
    }
}

/// Type prefixes only the bridge writes (PROTOCOL.md section 7).
pub const BRIDGE_WRITTEN_TYPE_PREFIXES: &[&str] = &[
    "elicitation.",
    "message.",
    "flag.",
    "agent.",
    "security.",
    "ops.",
];

/// Stream prefixes only the bridge writes, beyond PROTOCOL.md 7's `$`: the
/// elicitation service's own streams. An agent's event there could only
/// disturb the service, and a `409` there would tell it the version of a
/// stream it may not read (how many messages another agent has).
pub const BRIDGE_WRITTEN_STREAM_PREFIXES: &[&str] = &["elicitation-", "mailbox-"];

/// The stream operators and admins may append any type to.
pub const OPS_STREAM: &str = "$ops";

/// Which action a `POST /v1/events` of `event_type` to `stream` is, or `None`
/// when only the bridge writes there (any caller gets `403`). Streams starting
/// with `$` and the bridge-written type prefixes are reserved, except `$ops`.
pub fn append_action(stream: &str, event_type: &str) -> Option<Action> {
    if stream == OPS_STREAM {
        return Some(Action::AppendOpsEvent);
    }
    let reserved = stream.starts_with('$')
        || BRIDGE_WRITTEN_STREAM_PREFIXES
            .iter()
            .any(|p| stream.starts_with(p))
        || BRIDGE_WRITTEN_TYPE_PREFIXES
            .iter()
            .any(|p| event_type.starts_with(p));
    (!reserved).then_some(Action::AppendEvent)
}

/// A rate-limit class (PROTOCOL.md 2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionClass {
    /// `POST /v1/elicitations`.
    Elicit,
    /// `.../respond` and `.../cancel`.
    Respond,
    /// Every other `POST`, `PUT`, `DELETE` (and `PATCH`).
    Write,
    /// Every `GET` (and `HEAD`, `OPTIONS`).
    Read,
    /// `POST /v1/sessions`.
    Session,
}

impl ActionClass {
    /// All classes, in the order of the PROTOCOL.md table.
    pub const ALL: [ActionClass; 5] = [
        ActionClass::Elicit,
        ActionClass::Respond,
        ActionClass::Write,
        ActionClass::Read,
        ActionClass::Session,
    ];

    /// Index into [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The label value (`elicit`, `respond`, `write`, `read`, `session`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionClass::Elicit => "elicit",
            ActionClass::Respond => "respond",
            ActionClass::Write => "write",
            ActionClass::Read => "read",
            ActionClass::Session => "session",
        }
    }

    /// The class of a request by method and path (PROTOCOL.md 2.4). `path` is the
    /// wire path without the query; a trailing `/` is ignored.
    pub fn for_route(method: &str, path: &str) -> ActionClass {
        let path = path.strip_suffix('/').unwrap_or(path);
        if method.eq_ignore_ascii_case("POST") {
            if path == "/v1/elicitations" {
                return ActionClass::Elicit;
            }
            if path == "/v1/sessions" {
                return ActionClass::Session;
            }
            if path.starts_with("/v1/elicitations/")
                && (path.ends_with("/respond") || path.ends_with("/cancel"))
            {
                return ActionClass::Respond;
            }
            return ActionClass::Write;
        }
        if ["PUT", "DELETE", "PATCH"]
            .iter()
            .any(|m| method.eq_ignore_ascii_case(m))
        {
            return ActionClass::Write;
        }
        ActionClass::Read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            agent: "x".into(),
            role,
            key_id: 1,
        }
    }

    #[test]
    fn table_covers_every_action_once() {
        let all: Vec<Action> = Action::all().collect();
        for (i, a) in all.iter().enumerate() {
            assert!(!all[i + 1..].contains(a), "{a:?} twice");
            if *a == Action::AppendReservedEvent {
                // Only the bridge writes there: not even an admin's request.
                for r in [Role::Agent, Role::Observer, Role::Operator, Role::Admin] {
                    assert!(!a.roles().contains(r), "{r:?}");
                }
            } else {
                assert!(a.roles().contains(Role::Admin), "admin may do everything");
            }
        }
        assert_eq!(all.len(), 21);
    }

    #[test]
    fn roles_follow_the_protocol_table() {
        assert!(authorize(&caller(Role::Agent), Action::Elicit).is_ok());
        assert_eq!(
            authorize(&caller(Role::Observer), Action::Elicit),
            Err(Refusal::Forbidden {
                action: Action::Elicit
            })
        );
        assert!(authorize(&caller(Role::Observer), Action::ReadFlags).is_ok());
        assert!(authorize(&caller(Role::Agent), Action::ReadFlags).is_err());
        assert!(authorize(&caller(Role::Operator), Action::WriteFlags).is_ok());
        assert!(authorize(&caller(Role::Operator), Action::Drain).is_ok());
        assert!(authorize(&caller(Role::Operator), Action::Elicit).is_err());
        assert!(authorize(&caller(Role::Operator), Action::ManageAgents).is_err());
        assert!(authorize(&caller(Role::Observer), Action::WriteFlags).is_err());
        assert!(authorize(&caller(Role::Admin), Action::ManageAgents).is_ok());
        for r in [Role::Agent, Role::Observer, Role::Operator, Role::Admin] {
            assert!(authorize(&caller(r), Action::WhoAmI).is_ok());
            assert!(authorize(&caller(r), Action::ReadEvents).is_ok());
        }
    }

    #[test]
    fn reserved_streams_and_types_are_bridge_written() {
        assert_eq!(
            append_action("notes-1", "note.added"),
            Some(Action::AppendEvent)
        );
        assert_eq!(append_action("$agents", "note.added"), None);
        assert_eq!(append_action("notes-1", "agent.registered"), None);
        assert_eq!(append_action("notes-1", "security.violation"), None);
        // The elicitation service's own streams, whatever the type.
        assert_eq!(append_action("mailbox-bob", "note.added"), None);
        assert_eq!(append_action("elicitation-el_1", "note.added"), None);
        assert_eq!(
            append_action("mailboxes", "note.added"),
            Some(Action::AppendEvent)
        );
        assert_eq!(
            append_action("$ops", "ops.deploy_started"),
            Some(Action::AppendOpsEvent)
        );
        assert!(!permitted(Role::Agent, Action::AppendOpsEvent));
    }

    #[test]
    fn route_classes_follow_the_protocol() {
        use ActionClass::*;
        for (m, p, c) in [
            ("POST", "/v1/elicitations", Elicit),
            ("POST", "/v1/elicitations/el_1/respond", Respond),
            ("POST", "/v1/elicitations/el_1/cancel", Respond),
            ("POST", "/v1/sessions", Session),
            ("DELETE", "/v1/sessions/current", Write),
            ("POST", "/v1/messages", Write),
            ("PUT", "/v1/flags/x", Write),
            ("POST", "/v1/flags/x/kill", Write),
            ("GET", "/v1/elicitations/el_1", Read),
            ("GET", "/v1/stream", Read),
            ("GET", "/v1/events/stream", Read),
        ] {
            assert_eq!(ActionClass::for_route(m, p), c, "{m} {p}");
        }
    }
}
