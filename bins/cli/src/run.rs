//! Each command: build the request from the arguments, call the client, print.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lighthouse_client::{
    Client, EventStreamFilter, ListElicitations, Mailbox, ReceiveMessages, idempotency_key,
};
use lighthouse_core::api::{
    CreateRequest, Credential, DrainRequest, DrainThen, ErrorCode, EventOrder, EventsQuery,
    FlagKill, FlagPut, FlagSpec, Problem, RespondRequest, SchemaProfile,
};

use crate::args::{
    AgentsCommand, Cli, Command, ElicitArgs, EventsCommand, FlagSetArgs, FlagsCommand, ListArgs,
    OpsCommand, QueryArgs, RespondArgs,
};
use crate::input::{agent_id_arg, json_arg, list_arg, role_arg, status_arg, time_arg, variant_arg};
use crate::output::{self, AgentEventJson, CredentialWritten, Out};

/// Why a command failed, and so its exit code.
#[derive(Debug)]
pub enum Failure {
    /// The bridge answered with a problem (exit 1).
    Refused(Box<Problem>),
    /// A write that is not idempotent was answered with a `5xx`: it may or may
    /// not have taken effect (exit 3, as a transport failure).
    Ambiguous(Box<Problem>),
    /// The command ran and its result says no (`ops verify` on a broken chain;
    /// exit 1).
    Negative(String),
    /// Bad usage or input, found before anything was sent (exit 2).
    Usage(String),
    /// The bridge could not be reached or answered something unreadable (exit 3).
    Broken(String),
    /// Standard output was closed (a pipe reader went away): stop quietly.
    OutputClosed,
    /// A failure, and a note for the user on what to do about it (printed after
    /// it; the exit code is the failure's).
    Noted(Box<Failure>, String),
}

impl Failure {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused(_) | Failure::Negative(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Ambiguous(_) | Failure::Broken(_) => 3,
            Failure::OutputClosed => 0,
            Failure::Noted(f, _) => f.exit_code(),
        }
    }

    /// Whether the request may or may not have acted (exit 3): no usable
    /// answer, or a write answered with a `5xx`.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Failure::Ambiguous(_) | Failure::Broken(_) => true,
            Failure::Noted(f, _) => f.is_ambiguous(),
            _ => false,
        }
    }

    /// This failure with `note` printed after it.
    pub fn noted(self, note: impl Into<String>) -> Failure {
        Failure::Noted(Box::new(self), note.into())
    }

    /// Prints the failure to stderr: the problem as JSON with `--json`, else a
    /// line (wire strings with their control characters escaped). A note
    /// follows on a line of its own, `note: ...`, in both modes.
    pub fn report(&self, json: bool) {
        match self {
            Failure::Refused(p) | Failure::Ambiguous(p) if json => {
                eprintln!("{}", serde_json::to_string(p).unwrap_or_default());
            }
            Failure::Refused(p) | Failure::Ambiguous(p) => {
                eprintln!(
                    "error: {} ({}): {}",
                    p.code.as_str(),
                    p.status,
                    output::one_line(&p.detail)
                );
                for e in &p.errors {
                    let at = if e.path.is_empty() {
                        "(body)".to_owned()
                    } else {
                        output::one_line(&e.path)
                    };
                    eprintln!("  {at}: {}", output::one_line(&e.message));
                }
            }
            Failure::Negative(m) | Failure::Usage(m) | Failure::Broken(m) => {
                eprintln!("error: {}", output::one_line(m));
            }
            Failure::OutputClosed => {}
            Failure::Noted(f, note) => {
                f.report(json);
                eprintln!("note: {}", output::one_line(note));
            }
        }
    }
}

/// The failure of a write that is not idempotent: a `5xx` answer (after the
/// client's retries, where it makes any) leaves its outcome unknown, as a
/// broken connection does.
fn write_failure(e: lighthouse_client::Error) -> Failure {
    match e {
        lighthouse_client::Error::Refused(p) if p.status >= 500 => Failure::Ambiguous(Box::new(p)),
        e => e.into(),
    }
}

/// [`write_failure`], with `note` added when the outcome is unknown.
fn unsure(e: lighthouse_client::Error, note: impl FnOnce() -> String) -> Failure {
    let f = write_failure(e);
    if f.is_ambiguous() { f.noted(note()) } else { f }
}

impl From<lighthouse_client::Error> for Failure {
    fn from(e: lighthouse_client::Error) -> Self {
        use lighthouse_client::Error as E;
        match e {
            E::Refused(p) => Failure::Refused(Box::new(p)),
            e @ (E::Transport { .. } | E::InvalidResponse { .. }) => Failure::Broken(e.to_string()),
            e @ (E::Credential(_) | E::Config(_)) => Failure::Usage(e.to_string()),
        }
    }
}

fn credential(cli: &Cli) -> Result<Credential, Failure> {
    let path = cli.credential.as_ref().ok_or_else(|| {
        Failure::Usage("no credential: pass --credential FILE or set LIGHTHOUSE_CREDENTIAL".into())
    })?;
    Credential::read(path)
        .map_err(|e| Failure::Usage(format!("credential {}: {e}", path.display())))
}

fn client(cli: &Cli, credential: Credential) -> Result<Client, Failure> {
    let mut b = Client::builder().credential(credential);
    if let Some(url) = &cli.bridge {
        b = b.base_url(url.clone());
    }
    Ok(b.build()?)
}

/// `f` with a note on what to do when the bridge did not take the credential.
///
/// The bridge answers an unknown or revoked agent, or a retired key, exactly
/// as a wrong secret (PROTOCOL.md 2.2), so the answer cannot say which: the
/// note names the candidates and how to tell them apart.
fn credential_hint(f: Failure, agent: &str, key_id: u64) -> Failure {
    let Failure::Refused(p) = &f else { return f };
    let agent = output::one_line(agent);
    let note = match p.code {
        ErrorCode::BadSignature | ErrorCode::Unauthenticated => format!(
            "the bridge did not accept the credential of {agent} (key {key_id}), and does not \
             say why: the agent may have been revoked, or its key rotated out (a previous key \
             works only for the grace period), the secret may be wrong, or the credential may \
             be another bridge's. An admin sees the agent's state and current key with \
             `lighthouse agents list`, and issues a new credential with \
             `lighthouse agents rotate {agent}` (a revoked agent needs a new id: \
             `lighthouse agents add`)"
        ),
        ErrorCode::StaleRequest => "the request's timestamp is too far from the bridge's clock \
             (300 s by default): check this machine's clock (`timedatectl` shows it and \
             whether it is synchronised) and sync it (NTP)"
            .to_owned(),
        _ => return f,
    };
    f.noted(note)
}

fn wait_ms(name: &str, ms: u64) -> Result<Duration, Failure> {
    if ms > lighthouse_core::MAX_WAIT_MS {
        return Err(Failure::Usage(format!(
            "--{name} must be 0 to {}",
            lighthouse_core::MAX_WAIT_MS
        )));
    }
    Ok(Duration::from_millis(ms))
}

/// Runs the command of `cli`.
pub async fn run(cli: Cli, out: &mut Out) -> Result<(), Failure> {
    let credential = credential(&cli)?;
    let (agent, key_id) = (credential.agent.clone(), credential.key_id);
    let c = client(&cli, credential)?;
    command(&c, cli.command, out)
        .await
        .map_err(|f| credential_hint(f, &agent, key_id))
}

async fn command(c: &Client, command: Command, out: &mut Out) -> Result<(), Failure> {
    match command {
        Command::Elicit(a) => elicit(c, a, out).await,
        Command::Inbox(a) => list(c, Mailbox::Inbox, a, out).await,
        Command::Outbox(a) => list(c, Mailbox::Outbox, a, out).await,
        Command::Get { id, wait_ms: ms } => {
            let e = c.get_elicitation(&id, wait_ms("wait-ms", ms)?).await?;
            out.show(&e, output::elicitation)
        }
        Command::Respond(a) => respond(c, a, out).await,
        Command::Cancel { id, reason } => {
            let e = c
                .cancel(&id, reason.as_deref())
                .await
                .map_err(|e| unsure(e, || unknown_outcome_of_act(&id, "cancellation")))?;
            out.show(&e, output::elicitation)
        }
        Command::Watch { after, count } => watch(c, after, count, out).await,
        Command::Send { to, body } => {
            let body = json_arg("body", &body)?;
            let sent = c.send_message(&to, &body).await.map_err(|e| {
                unsure(e, || {
                    "the message may or may not have been delivered (messages carry no idempotency key): \
                     `lighthouse events query --type message.sent --desc` shows what was sent"
                        .to_owned()
                })
            })?;
            out.show(&sent, |s| format!("sent {} (seq {})", s.id, s.seq))
        }
        Command::Messages {
            after,
            wait_ms: ms,
            limit,
        } => {
            let q = ReceiveMessages {
                after,
                wait: wait_ms("wait-ms", ms)?,
                limit,
            };
            let page = c.messages(&q).await?;
            out.show(&page, |p| {
                let mut lines: Vec<String> = p.messages.iter().map(output::message_row).collect();
                lines.push(format!("next_after: {}", p.next_after));
                lines.join("\n")
            })
        }
        Command::Events(EventsCommand::Query(a)) => query(c, a, out).await,
        Command::Events(EventsCommand::Tail {
            stream,
            event_type,
            after,
            count,
        }) => {
            let filter = EventStreamFilter {
                after,
                stream,
                event_type,
            };
            let mut tail = c.event_stream(&filter);
            let mut seen = 0u64;
            while count.is_none_or(|n| seen < n) {
                match tail.next().await {
                    Some(Ok(e)) => out.show(&e, output::event_row)?,
                    Some(Err(e)) => return Err(e.into()),
                    None => break,
                }
                seen += 1;
            }
            Ok(())
        }
        Command::Flags(f) => flags(c, f, out).await,
        Command::Ops(o) => ops(c, o, out).await,
        Command::Agents(a) => agents(c, a, out).await,
        Command::Me => {
            let me = c.me().await?;
            out.show(&me, output::me)
        }
    }
}

async fn elicit(c: &Client, a: ElicitArgs, out: &mut Out) -> Result<(), Failure> {
    let mut req = CreateRequest::new(a.to, a.message, json_arg("schema", &a.schema)?);
    req.timeout_ms = a.timeout_ms;
    req.metadata = a
        .metadata
        .as_deref()
        .map(|m| json_arg("metadata", m))
        .transpose()?;
    if a.json_schema {
        req.schema_profile = Some(SchemaProfile::JsonSchema);
    }
    if let Some(k) = &a.idempotency_key
        && !valid_idempotency_key(k)
    {
        return Err(Failure::Usage(
            "--idempotency-key must be 1 to 128 of [A-Za-z0-9_.:-]".into(),
        ));
    }
    let given = a.idempotency_key.is_some();
    let key = a.idempotency_key.unwrap_or_else(idempotency_key);
    let created = match c.elicit_with_key(&req, &key).await {
        Ok(c) => c.record,
        // The key is what makes a second try safe: without it, a retry by hand
        // would create a second elicitation if the first went through.
        Err(e) => {
            return Err(unsure(e, || {
                if given {
                    "the elicitation may have been created; re-run with the same \
                     --idempotency-key to retry safely"
                        .to_owned()
                } else {
                    format!(
                        "the elicitation may have been created; re-run with \
                         --idempotency-key {key} to retry safely"
                    )
                }
            }));
        }
    };
    if !a.wait {
        return out.show(&created, output::elicitation);
    }
    // Said before waiting: a wait that fails or is interrupted must not lose
    // the id of what was created.
    eprintln!(
        "created {}; waiting for {} to answer",
        output::one_line(&created.id),
        output::one_line(&created.to)
    );
    // Until its deadline, plus a margin for the expiry to be written.
    let life = created
        .expires_at
        .unix_millis()
        .saturating_sub(created.created_at.unix_millis())
        .max(0) as u64;
    let done = c
        .wait_terminal(&created.id, Duration::from_millis(life + 2_000))
        .await
        .map_err(|e| {
            Failure::from(e).noted(format!(
                "elicitation {id} was created and may still be pending: \
                 `lighthouse get {id}` shows it, `lighthouse cancel {id}` cancels it",
                id = created.id
            ))
        })?;
    out.show(&done, output::elicitation)
}

/// What the bridge takes as an `Idempotency-Key`: 1 to 128 of
/// `[A-Za-z0-9_.:-]` (PROTOCOL.md 4; anything else is `400`).
fn valid_idempotency_key(k: &str) -> bool {
    (1..=128).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// The note of a respond or cancel whose outcome is unknown.
fn unknown_outcome_of_act(id: &str, what: &str) -> String {
    format!(
        "the {what} may or may not have been recorded: `lighthouse get {}` shows the elicitation's state",
        output::one_line(id)
    )
}

async fn list(c: &Client, mailbox: Mailbox, a: ListArgs, out: &mut Out) -> Result<(), Failure> {
    let q = ListElicitations {
        mailbox,
        status: status_arg(a.status.as_deref())?,
        limit: a.limit,
        cursor: a.cursor,
    };
    let page = c.list_elicitations(&q).await?;
    out.show(&page, |p| {
        output::elicitation_rows(&p.items, p.next_cursor.as_deref())
    })
}

async fn respond(c: &Client, a: RespondArgs, out: &mut Out) -> Result<(), Failure> {
    let req = match (a.accept, a.decline) {
        (Some(content), false) => RespondRequest::accept(json_arg("accept", &content)?),
        (None, true) => RespondRequest::decline(a.reason),
        _ => {
            return Err(Failure::Usage(
                "give exactly one of --accept JSON or --decline".into(),
            ));
        }
    };
    let e = c
        .respond(&a.id, &req)
        .await
        .map_err(|e| unsure(e, || unknown_outcome_of_act(&a.id, "response")))?;
    out.show(&e, output::elicitation)
}

async fn watch(
    c: &Client,
    after: Option<u64>,
    count: Option<u64>,
    out: &mut Out,
) -> Result<(), Failure> {
    let mut stream = c.agent_stream(after);
    let mut seen = 0u64;
    while count.is_none_or(|n| seen < n) {
        match stream.next().await {
            Some(Ok(ev)) => out.show(&AgentEventJson::from(&ev), |_| output::agent_event(&ev))?,
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
        seen += 1;
    }
    Ok(())
}

async fn query(c: &Client, a: QueryArgs, out: &mut Out) -> Result<(), Failure> {
    let q = EventsQuery {
        after: a.after,
        before: a.before,
        stream: a.stream,
        event_type: a.event_type,
        agent: a.agent,
        correlation_id: a.correlation_id,
        since: time_arg("since", a.since.as_deref())?,
        until: time_arg("until", a.until.as_deref())?,
        order: a.desc.then_some(EventOrder::Desc),
        limit: a.limit,
    };
    let page = c.query_events(&q).await?;
    out.show(&page, |p| output::event_rows(&p.events, p.next, a.desc))
}

async fn flags(c: &Client, f: FlagsCommand, out: &mut Out) -> Result<(), Failure> {
    match f {
        FlagsCommand::List => {
            let list = c.list_flags().await?;
            out.show(&list, |l| {
                if l.flags.is_empty() {
                    "(none)".to_owned()
                } else {
                    l.flags
                        .iter()
                        .map(output::flag_row)
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            })
        }
        FlagsCommand::Get { key } => out.show(&c.get_flag(&key).await?, output::flag),
        FlagsCommand::Set(a) => {
            let flag = set_flag(c, a).await?;
            out.show(&flag, output::flag)
        }
        FlagsCommand::Kill {
            key,
            reason,
            expected_version,
        } => {
            let req = FlagKill {
                reason: Some(reason),
                expected_version,
            };
            let f = c
                .kill_flag(&key, &req)
                .await
                .map_err(|e| unsure(e, || unknown_flag_change(&key)))?;
            out.show(&f, output::flag)
        }
        FlagsCommand::Unkill {
            key,
            reason,
            expected_version,
        } => {
            let req = FlagKill {
                reason: Some(reason),
                expected_version,
            };
            let f = c
                .unkill_flag(&key, &req)
                .await
                .map_err(|e| unsure(e, || unknown_flag_change(&key)))?;
            out.show(&f, output::flag)
        }
        FlagsCommand::History { key } => {
            let h = c.flag_history(&key).await?;
            out.show(&h, |h| {
                h.changes
                    .iter()
                    .map(output::flag_change)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        FlagsCommand::Evaluate { key, agent } => {
            out.show(&c.evaluate_flag(&key, &agent).await?, output::evaluation)
        }
    }
}

/// Read, change the given fields, write back conditioned on the version read.
async fn set_flag(c: &Client, a: FlagSetArgs) -> Result<lighthouse_core::api::Flag, Failure> {
    // Arguments first: a malformed one is exit 2 with nothing sent.
    let variants: Vec<_> = a
        .variants
        .iter()
        .map(|v| variant_arg(v))
        .collect::<Result<_, _>>()?;
    let current = match c.get_flag(&a.key).await {
        Ok(f) => Some(f),
        Err(lighthouse_client::Error::Refused(p)) if p.code == ErrorCode::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let mut spec = match &current {
        Some(f) => FlagSpec {
            key: None,
            description: f.description.clone(),
            enabled: f.enabled,
            rollout_percent: f.rollout_percent.as_percent(),
            allow: f.allow.clone(),
            deny: f.deny.clone(),
            variants: f.variants.clone(),
            requires: f.requires.clone(),
        },
        // A new flag starts off for everyone unless told otherwise.
        None => FlagSpec::new(false, 0.0),
    };
    if let Some(e) = a.enabled {
        spec.enabled = e;
    }
    if let Some(p) = a.rollout {
        spec.rollout_percent = p;
    }
    if let Some(d) = a.description {
        spec.description = d;
    }
    if let Some(v) = a.allow {
        spec.allow = list_arg(v);
    }
    if let Some(v) = a.deny {
        spec.deny = list_arg(v);
    }
    if let Some(v) = a.requires {
        spec.requires = list_arg(v);
    }
    if !variants.is_empty() {
        spec.variants = variants;
    }
    let put = FlagPut {
        spec,
        reason: Some(a.reason),
        expected_version: a
            .expected_version
            .or(Some(current.map_or(0, |f| f.version))),
    };
    c.put_flag(&a.key, &put)
        .await
        .map_err(|e| unsure(e, || unknown_flag_change(&a.key)))
}

/// The note of a flag change whose outcome is unknown.
fn unknown_flag_change(key: &str) -> String {
    format!(
        "the change may or may not have been applied: `lighthouse flags history {}` shows it",
        output::one_line(key)
    )
}

async fn ops(c: &Client, o: OpsCommand, out: &mut Out) -> Result<(), Failure> {
    match o {
        OpsCommand::Stats { window_s } => out.show(&c.ops_stats(window_s).await?, output::stats),
        OpsCommand::Drain {
            timeout_ms,
            cancel,
            reason,
        } => {
            let req = DrainRequest {
                timeout_ms,
                then: if cancel {
                    DrainThen::Cancel
                } else {
                    DrainThen::None
                },
                reason,
            };
            let report = c.drain(&req).await.map_err(|e| {
                unsure(e, || {
                    "the drain may or may not have run: `lighthouse ops stats` shows what is still pending"
                        .to_owned()
                })
            })?;
            out.show(&report, output::drain)
        }
        OpsCommand::Verify => {
            let v = c.verify().await?;
            // The verdict is decided before printing: a broken chain exits 1
            // even when stdout is closed (`ops verify | head -c0`).
            let verdict = if v.ok {
                Ok(())
            } else {
                Err(Failure::Negative(format!(
                    "the integrity chain is broken at seq {}",
                    v.first_bad_seq.map_or("?".to_owned(), |s| s.to_string())
                )))
            };
            let shown = out.show(&v, output::verify);
            verdict.and(shown)
        }
    }
}

async fn agents(c: &Client, a: AgentsCommand, out: &mut Out) -> Result<(), Failure> {
    match a {
        AgentsCommand::List => {
            let list = c.list_agents().await?;
            out.show(&list, |l| output::agent_table(&l.agents))
        }
        AgentsCommand::Add {
            id,
            role,
            out: file,
        } => {
            let role = role_arg(&role)?;
            let id = agent_id_arg(&id)?;
            let file = CredentialFile::create(file, id)?;
            let cred = c.add_agent(id, role).await.map_err(|e| {
                file.discard();
                unsure(e, || {
                    format!(
                        "{id} may or may not have been registered, and no credential was \
                         written: `lighthouse agents list` shows it; if it is there, \
                         `lighthouse agents rotate {id}` issues its credential"
                    )
                })
            })?;
            let written = file.write(&cred)?;
            out.show(&written, |w| output::credential_written("registered", w))
        }
        AgentsCommand::Rotate { id, out: file } => {
            let id = agent_id_arg(&id)?;
            let file = CredentialFile::create(file, id)?;
            let cred = c.rotate_agent(id).await.map_err(|e| {
                file.discard();
                unsure(e, || {
                    format!(
                        "the key of {id} may or may not have been rotated, and no credential \
                         was written: `lighthouse agents list` shows its current key; rotate \
                         again to get a credential"
                    )
                })
            })?;
            let written = file.write(&cred)?;
            out.show(&written, |w| {
                format!(
                    "{}\nthe previous key stays valid for the grace period (24 h by default); \
                     after a leak, `lighthouse agents revoke {id}` refuses every key at once",
                    output::credential_written("rotated", w)
                )
            })
        }
        AgentsCommand::Revoke { id } => {
            c.revoke_agent(&id).await.map_err(|e| match e {
                lighthouse_client::Error::Refused(p) if p.code == ErrorCode::NotFound => {
                    Failure::Refused(Box::new(p)).noted(format!(
                        "no active agent {}: it may be revoked already (`lighthouse agents list` \
                         shows it)",
                        output::one_line(&id)
                    ))
                }
                e => unsure(e, || {
                    format!(
                        "{} may or may not have been revoked: `lighthouse agents list` shows it; \
                         revoking again is safe",
                        output::one_line(&id)
                    )
                }),
            })?;
            let revoked = serde_json::json!({"agent": id, "revoked": true});
            out.show(&revoked, |_| {
                format!(
                    "revoked {}: every key and token of it is refused from now on",
                    output::one_line(&id)
                )
            })
        }
    }
}

/// The file a new credential goes to, created (exclusively, mode 0600) before
/// the request is sent: an agent registered or rotated with nowhere to write
/// its secret would be an agent nobody holds a key for.
struct CredentialFile {
    path: PathBuf,
    file: std::fs::File,
}

impl CredentialFile {
    /// Creates `out`, else `./ID.json`. An existing file is never replaced:
    /// it may be the only copy of a credential still in use.
    fn create(out: Option<PathBuf>, id: &str) -> Result<CredentialFile, Failure> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = out.unwrap_or_else(|| Path::new(".").join(format!("{id}.json")));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                Failure::Usage(if e.kind() == std::io::ErrorKind::AlreadyExists {
                    format!(
                        "{} already exists; not overwriting it (move it away, or name \
                         another file with --out FILE); nothing was sent",
                        path.display()
                    )
                } else {
                    format!("cannot create {}: {e}; nothing was sent", path.display())
                })
            })?;
        Ok(CredentialFile { path, file })
    }

    /// Removes the (still empty) file, when no credential came back.
    fn discard(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Writes `cred` and syncs it; what to print about it (no secret).
    fn write(mut self, cred: &Credential) -> Result<CredentialWritten, Failure> {
        let mut text = cred.to_json();
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_all())
            .map_err(|e| {
                // A partly written credential is no credential: removed, so
                // that a rotate into the same file is not refused by it.
                let _ = std::fs::remove_file(&self.path);
                Failure::Broken(format!(
                    "{} has a new key (registered or rotated), but its credential could not \
                     be written to {}: {e}; that key is unusable",
                    cred.agent,
                    self.path.display()
                ))
                .noted(format!(
                    "`lighthouse agents rotate {} --out FILE` issues another",
                    cred.agent
                ))
            })?;
        Ok(CredentialWritten {
            agent: cred.agent.clone(),
            role: cred.role,
            key_id: cred.key_id,
            bridge: cred.bridge.clone(),
            file: self.path.display().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_checked_as_the_bridge_checks_them() {
        assert!(valid_idempotency_key("lhk-AbC_09.x:y"));
        assert!(valid_idempotency_key(&"k".repeat(128)));
        for bad in ["", "a b", "a\nb", "a/b", "é", &"k".repeat(129)] {
            assert!(!valid_idempotency_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_refused_credential_gets_a_note_on_what_may_be_wrong() {
        let refused = |code| Failure::Refused(Box::new(Problem::new(code, "x")));
        for code in [ErrorCode::BadSignature, ErrorCode::Unauthenticated] {
            let f = credential_hint(refused(code), "bob", 2);
            let Failure::Noted(_, note) = &f else {
                panic!("{f:?}")
            };
            assert!(
                note.contains("bob (key 2)")
                    && note.contains("revoked")
                    && note.contains("rotated out")
                    && note.contains("`lighthouse agents rotate bob`"),
                "{note}"
            );
            assert_eq!(f.exit_code(), 1);
        }
        let f = credential_hint(refused(ErrorCode::StaleRequest), "bob", 2);
        assert!(
            matches!(&f, Failure::Noted(_, n) if n.contains("clock")),
            "{f:?}"
        );
        for code in [ErrorCode::Forbidden, ErrorCode::NotFound] {
            let f = credential_hint(refused(code), "bob", 2);
            assert!(matches!(f, Failure::Refused(_)), "{f:?}");
        }
        let f = credential_hint(Failure::Broken("down".into()), "bob", 2);
        assert!(matches!(f, Failure::Broken(_)), "{f:?}");
    }

    #[test]
    fn a_write_answered_with_a_5xx_has_an_unknown_outcome() {
        let refused = |code, status| {
            let mut p = Problem::new(code, "x");
            p.status = status;
            lighthouse_client::Error::Refused(p)
        };
        for status in [500, 502, 503, 504] {
            let f = write_failure(refused(ErrorCode::Unavailable, status));
            assert!(f.is_ambiguous() && f.exit_code() == 3, "{status}: {f:?}");
        }
        // A refusal before any handler acted is not.
        let f = write_failure(refused(ErrorCode::RateLimited, 429));
        assert!(!f.is_ambiguous() && f.exit_code() == 1, "{f:?}");
        let f = unsure(refused(ErrorCode::NotFound, 404), || "never".into());
        assert!(matches!(f, Failure::Refused(_)), "{f:?}");
        // No answer at all is, and the note keeps the exit code.
        let f = unsure(
            lighthouse_client::Error::Transport {
                detail: "reset".into(),
                attempts: 1,
            },
            || "check".into(),
        );
        assert!(matches!(&f, Failure::Noted(_, n) if n == "check"), "{f:?}");
        assert_eq!(f.exit_code(), 3);
    }
}
