//! First start: the admin credential, the `elicitation_enabled` flag, and (for
//! `serve --dev`) the development agents (PROTOCOL.md section 1).

use std::path::{Path, PathBuf};

use lighthouse_flags::{Attribution, FlagSpec};
use lighthouse_security::Role;

use crate::api::Problem;
use crate::bridge::{Bridge, ELICITATION_FLAG};
use crate::problem::{from_flags, from_security};

/// The administrator created on first start.
pub const ADMIN_AGENT: &str = "admin";
/// Agents `serve --dev` creates, with their roles.
pub const DEV_AGENTS: [(&str, Role); 4] = [
    ("alice", Role::Agent),
    ("bob", Role::Agent),
    ("carol", Role::Agent),
    ("ops", Role::Operator),
];

/// What [`initialize`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupReport {
    /// Credential files written (one per agent created now).
    pub written: Vec<PathBuf>,
    /// Whether the `elicitation_enabled` flag was created.
    pub created_flag: bool,
}

/// Creates, when missing, the `admin` agent and the flag `elicitation_enabled`
/// (on, 100%), and with `dev` the agents of [`DEV_AGENTS`]; every new credential
/// is written to `<credentials_dir>/<agent>.json` (mode 0600). Running it again
/// changes nothing.
pub async fn initialize(
    bridge: &Bridge,
    credentials_dir: &Path,
    dev: bool,
) -> Result<SetupReport, Problem> {
    let mut report = SetupReport::default();
    let mut wanted = vec![(ADMIN_AGENT, Role::Admin)];
    if dev {
        wanted.extend(DEV_AGENTS);
    }
    let registry = bridge.gate().registry();
    for (agent, role) in wanted {
        if registry.get(agent).is_some() {
            continue;
        }
        std::fs::create_dir_all(credentials_dir).map_err(|e| {
            tracing::error!(error = %e, dir = %credentials_dir.display(), "cannot create the credentials folder");
            Problem::internal()
        })?;
        let mut cred = registry
            .register(agent, role, Some(ADMIN_AGENT))
            .await
            .map_err(from_security)?;
        cred.bridge = bridge.public_url().to_owned();
        let path = credentials_dir.join(format!("{agent}.json"));
        cred.write(&path).map_err(from_security)?;
        report.written.push(path);
    }
    if bridge.flags().get(ELICITATION_FLAG).is_none() {
        let mut spec = FlagSpec::new(true, 100.0);
        spec.description =
            "Agents may create elicitations; lower rollout_percent to roll out in stages."
                .to_owned();
        bridge
            .flags()
            .put(
                ELICITATION_FLAG,
                &spec,
                None,
                &Attribution::new(ADMIN_AGENT, "initial setup"),
            )
            .await
            .map_err(from_flags)?;
        report.created_flag = true;
    }
    Ok(report)
}
