//! Events, flags, operations, agents, health and metrics (PROTOCOL.md 7 to 11).

use lighthouse_core::api::{
    AgentList, AppendEventRequest, AppendEventResponse, CreateAgentRequest, Credential,
    DrainReport, DrainRequest, EventOrder, EventsPage, EventsQuery, FLAG_CHANGED_HEADER,
    FLAG_SEQ_HEADER, Flag, FlagEvaluation, FlagHistory, FlagKill, FlagList, FlagOutcome, FlagPut,
    Health, Me, OpsStats, Role, VerifyResponse,
};
use reqwest::Method;

use crate::client::Client;
use crate::error::Error;
use crate::transport::{Answer, Call, Retry, segment};

fn flag_path(key: &str, tail: &str) -> String {
    format!("/v1/flags/{}{tail}", segment(key))
}

/// `PUT /v1/flags/{key}`: sent again only when it provably never arrived.
fn put_call(key: &str, put: &FlagPut) -> Result<Call, Error> {
    Call::new(Method::PUT, flag_path(key, "")).json(put)
}

/// `POST /v1/flags/{key}/kill`: retried after ambiguous failures unless it
/// carries a version condition (see [`Client::kill_flag`]).
fn kill_call(key: &str, req: &FlagKill) -> Result<Call, Error> {
    let retry = if req.expected_version.is_some() {
        Retry::Unsafe
    } else {
        Retry::Safe
    };
    Ok(Call::post(flag_path(key, "/kill")).json(req)?.retry(retry))
}

/// `POST /v1/flags/{key}/unkill`: never sent again after an ambiguous failure.
fn unkill_call(key: &str, req: &FlagKill) -> Result<Call, Error> {
    Call::post(flag_path(key, "/unkill")).json(req)
}

/// The flag of a flag write's answer with what the write did, from the
/// bridge's `X-Lighthouse-Changed` and `X-Lighthouse-Seq` headers.
fn flag_outcome(answer: &Answer) -> Result<FlagOutcome, Error> {
    let invalid = |detail: String| Error::InvalidResponse {
        status: answer.status,
        detail,
    };
    let header = |name: &str| answer.headers.get(name).map(|v| v.to_str().unwrap_or(""));
    let changed = match header(FLAG_CHANGED_HEADER) {
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(invalid(format!(
                "{FLAG_CHANGED_HEADER} is {other:?}, not true or false"
            )));
        }
        None => {
            return Err(invalid(format!(
                "the flag write was applied, but the bridge did not say what it did (no \
                 {FLAG_CHANGED_HEADER} header: a bridge older than this client); the flag's \
                 history shows it"
            )));
        }
    };
    let seq = match header(FLAG_SEQ_HEADER) {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| invalid(format!("{FLAG_SEQ_HEADER} is {v:?}, not a sequence")))?,
        ),
    };
    if changed != seq.is_some() {
        return Err(invalid(format!(
            "{FLAG_CHANGED_HEADER} is {changed} but {FLAG_SEQ_HEADER} is {}",
            if seq.is_some() { "present" } else { "absent" }
        )));
    }
    Ok(FlagOutcome {
        flag: answer.decode()?,
        changed,
        seq,
    })
}

/// The query of `GET /v1/events` (and the filters of its stream).
pub(crate) fn events_query(call: Call, q: &EventsQuery) -> Call {
    call.query("after", q.after)
        .query("before", q.before)
        .query("stream", q.stream.as_deref())
        .query("type", q.event_type.as_deref())
        .query("agent", q.agent.as_deref())
        .query("correlation_id", q.correlation_id.as_deref())
        .query("since", q.since.map(|t| t.to_string()))
        .query("until", q.until.map(|t| t.to_string()))
        .query(
            "order",
            q.order.map(|o| match o {
                EventOrder::Asc => "asc",
                EventOrder::Desc => "desc",
            }),
        )
        .query("limit", q.limit)
}

impl Client {
    /// `POST /v1/events`. With an `id` the append is retried after ambiguous
    /// failures (the bridge returns the original result for a repeated id);
    /// without one it is retried only when it provably never arrived.
    pub async fn append_event(
        &self,
        req: &AppendEventRequest,
    ) -> Result<AppendEventResponse, Error> {
        let retry = if req.id.is_some() {
            Retry::Safe
        } else {
            Retry::Unsafe
        };
        self.json(Call::post("/v1/events").json(req)?.retry(retry))
            .await
    }

    /// `GET /v1/events` with every filter of PROTOCOL.md 7.
    pub async fn query_events(&self, q: &EventsQuery) -> Result<EventsPage, Error> {
        self.json(events_query(Call::get("/v1/events"), q)).await
    }

    /// `GET /v1/flags`.
    pub async fn list_flags(&self) -> Result<FlagList, Error> {
        self.json(Call::get("/v1/flags")).await
    }

    /// `GET /v1/flags/{key}`.
    pub async fn get_flag(&self, key: &str) -> Result<Flag, Error> {
        self.json(Call::get(flag_path(key, ""))).await
    }

    /// `PUT /v1/flags/{key}`: creates or replaces. Sent again only when it
    /// provably never reached the bridge (the connection could not be made, or
    /// `429`), never after an ambiguous failure:
    /// - without `expected_version`, a retry after a first attempt that was
    ///   applied would silently undo any change another operator made in
    ///   between (an emergency rollback to 0, say);
    /// - with it, a retry after a lost success is a `409 version_conflict`
    ///   that reads as "someone else changed the flag", and a read-modify-write
    ///   loop would then apply its change a second time on top of its own.
    ///
    /// After [`Error::Transport`] (or an [`Error::InvalidResponse`] with a 2xx
    /// status: applied, answer lost) read the flag to learn what happened.
    pub async fn put_flag(&self, key: &str, put: &FlagPut) -> Result<Flag, Error> {
        self.json(put_call(key, put)?).await
    }

    /// [`put_flag`](Self::put_flag), with what the write did: whether it
    /// changed the flag and the `seq` of its event (the bridge's
    /// `X-Lighthouse-Changed` and `X-Lighthouse-Seq` headers). A bridge that
    /// does not send them (one from before them) answers
    /// [`Error::InvalidResponse`]: the write was applied, what it did is
    /// unknown; the flag's history shows it.
    pub async fn put_flag_outcome(&self, key: &str, put: &FlagPut) -> Result<FlagOutcome, Error> {
        flag_outcome(&self.answer(put_call(key, put)?).await?)
    }

    /// `POST /v1/flags/{key}/kill`: off for every agent, only if the flag is
    /// at `expected_version` when one is given (else `409 version_conflict`).
    ///
    /// Without `expected_version`, retried after ambiguous failures: a kill of
    /// a killed flag appends nothing and answers the flag as it is, and the
    /// only change a retry can override is an `unkill` that landed between the
    /// attempts, which it overrides towards "off" (the state the caller asked
    /// for, and the safe one; the flag's history shows both). With it, sent
    /// again only when it provably never reached the bridge, as a `PUT` with
    /// one: a retry after a lost success would be a `409` that reads as
    /// "someone else changed the flag".
    pub async fn kill_flag(&self, key: &str, req: &FlagKill) -> Result<Flag, Error> {
        self.json(kill_call(key, req)?).await
    }

    /// [`kill_flag`](Self::kill_flag), with what the write did (see
    /// [`put_flag_outcome`](Self::put_flag_outcome)): `changed: false` for a
    /// flag that was killed already. A retried kill whose first attempt
    /// applied reports `changed: false` too: a caller that must know who
    /// killed it reads the flag's history (the change's correlation id is the
    /// request id).
    pub async fn kill_flag_outcome(&self, key: &str, req: &FlagKill) -> Result<FlagOutcome, Error> {
        flag_outcome(&self.answer(kill_call(key, req)?).await?)
    }

    /// `POST /v1/flags/{key}/unkill`, only if the flag is at
    /// `expected_version` when one is given: with it, an unkill decided on a
    /// stale read cannot lift a kill made since. Not retried after an
    /// ambiguous failure: an emergency kill that landed between the attempts
    /// would be silently lifted by the retry.
    pub async fn unkill_flag(&self, key: &str, req: &FlagKill) -> Result<Flag, Error> {
        self.json(unkill_call(key, req)?).await
    }

    /// [`unkill_flag`](Self::unkill_flag), with what the write did (see
    /// [`put_flag_outcome`](Self::put_flag_outcome)).
    pub async fn unkill_flag_outcome(
        &self,
        key: &str,
        req: &FlagKill,
    ) -> Result<FlagOutcome, Error> {
        flag_outcome(&self.answer(unkill_call(key, req)?).await?)
    }

    /// `GET /v1/flags/{key}/history`: every change, oldest first, following
    /// the bridge's pages (`next`) back to the first change.
    pub async fn flag_history(&self, key: &str) -> Result<FlagHistory, Error> {
        let mut page = self.flag_history_page(key, None, None).await?;
        let mut before = page.next;
        while let Some(b) = before {
            let mut older = self.flag_history_page(key, Some(b), None).await?;
            // A cursor must move back; a bridge that repeats one would loop.
            before = older.next.filter(|&n| n < b);
            older.changes.append(&mut page.changes);
            page.changes = older.changes;
        }
        page.next = None;
        Ok(page)
    }

    /// One page of `GET /v1/flags/{key}/history?before=&limit=`: the newest
    /// `limit` changes below version `before`, oldest first, and where older
    /// ones continue (`next`).
    pub async fn flag_history_page(
        &self,
        key: &str,
        before: Option<u64>,
        limit: Option<usize>,
    ) -> Result<FlagHistory, Error> {
        self.json(
            Call::get(flag_path(key, "/history"))
                .query("before", before)
                .query("limit", limit),
        )
        .await
    }

    /// `GET /v1/flags/{key}/evaluate?agent=a`.
    pub async fn evaluate_flag(&self, key: &str, agent: &str) -> Result<FlagEvaluation, Error> {
        self.json(Call::get(flag_path(key, "/evaluate")).query("agent", Some(agent)))
            .await
    }

    /// `GET /v1/ops/stats?window_s=N` (1 to 900).
    pub async fn ops_stats(&self, window_s: u64) -> Result<OpsStats, Error> {
        self.json(Call::get("/v1/ops/stats").query("window_s", Some(window_s)))
            .await
    }

    /// `POST /v1/ops/drain`. Waits up to `timeout_ms` on the bridge, so the
    /// request timeout is extended by as much. Not retried after an ambiguous
    /// failure.
    pub async fn drain(&self, req: &DrainRequest) -> Result<DrainReport, Error> {
        let call = Call::post("/v1/ops/drain")
            .json(req)?
            .wait(std::time::Duration::from_millis(req.timeout_ms));
        self.json(call).await
    }

    /// `POST /v1/ops/verify`: only reads the log, so it is retried like a read.
    pub async fn verify(&self) -> Result<VerifyResponse, Error> {
        self.json(Call::post("/v1/ops/verify").retry(Retry::Safe))
            .await
    }

    /// `GET /v1/agents` (admin).
    pub async fn list_agents(&self) -> Result<AgentList, Error> {
        self.json(Call::get("/v1/agents")).await
    }

    /// `POST /v1/agents` (admin): the new agent's credential.
    pub async fn add_agent(&self, id: &str, role: Role) -> Result<Credential, Error> {
        let body = CreateAgentRequest {
            id: id.to_owned(),
            role,
        };
        self.json(Call::post("/v1/agents").json(&body)?).await
    }

    /// `POST /v1/agents/{id}/rotate` (admin): the credential with the next key id.
    pub async fn rotate_agent(&self, id: &str) -> Result<Credential, Error> {
        self.json(Call::post(format!("/v1/agents/{}/rotate", segment(id))))
            .await
    }

    /// `DELETE /v1/agents/{id}` (admin): every key and token of the agent refused.
    pub async fn revoke_agent(&self, id: &str) -> Result<(), Error> {
        self.answer(Call::new(
            Method::DELETE,
            format!("/v1/agents/{}", segment(id)),
        ))
        .await
        .map(|_| ())
    }

    /// `GET /v1/agents/me`.
    pub async fn me(&self) -> Result<Me, Error> {
        self.json(Call::get("/v1/agents/me")).await
    }

    /// `GET /health/live` (no credentials sent): `Ok` while the process serves.
    pub async fn health_live(&self) -> Result<serde_json::Value, Error> {
        self.json(Call::get("/health/live").unauthenticated()).await
    }

    /// `GET /health/ready` (no credentials sent). A `503` carrying the readiness
    /// body is returned as `Ok` with `status: "unavailable"`, so the components
    /// say why; see [`Health::is_ok`].
    pub async fn health_ready(&self) -> Result<Health, Error> {
        let call = Call::get("/health/ready").unauthenticated();
        let answer = self
            .transport
            .execute(&call, |s| (200..300).contains(&s) || s == 503)
            .await?;
        match answer.decode::<Health>() {
            Ok(h) => Ok(h),
            // A 503 from something else than the bridge (a proxy, say).
            Err(_) if answer.status == 503 => Err(Error::Refused(crate::transport::problem_from(
                503,
                &answer.body,
            ))),
            Err(e) => Err(e),
        }
    }

    /// `GET /metrics` (no credentials sent): the Prometheus text.
    pub async fn metrics_text(&self) -> Result<String, Error> {
        let answer = self.answer(Call::get("/metrics").unauthenticated()).await?;
        String::from_utf8(answer.body).map_err(|e| Error::InvalidResponse {
            status: answer.status,
            detail: format!("metrics are not UTF-8: {e}"),
        })
    }
}
