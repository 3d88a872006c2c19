//! [`Control`] over HTTP: what the deploy, rollback and baseline tools call on a
//! remote bridge. Every error becomes a [`Problem`] (transport failures are
//! `503 unavailable`, see [`Error::problem`](crate::Error::problem)).

use lighthouse_core::api::{
    AppendEventResponse, DrainReport, DrainRequest, EventsPage, EventsQuery, Flag, FlagEvaluation,
    FlagKill, FlagList, FlagOutcome, FlagPut, Health, OpsStats, Problem, VerifyResponse,
};
use lighthouse_core::{Control, OpsRecord};

use crate::client::Client;

impl Control for Client {
    async fn health(&self) -> Result<Health, Problem> {
        Ok(self.health_ready().await?)
    }

    async fn list_flags(&self) -> Result<FlagList, Problem> {
        Ok(Client::list_flags(self).await?)
    }

    async fn get_flag(&self, key: &str) -> Result<Flag, Problem> {
        Ok(Client::get_flag(self, key).await?)
    }

    async fn put_flag(&self, key: &str, put: FlagPut) -> Result<FlagOutcome, Problem> {
        Ok(self.put_flag_outcome(key, &put).await?)
    }

    async fn kill_flag(
        &self,
        key: &str,
        reason: &str,
        expected_version: Option<u64>,
    ) -> Result<FlagOutcome, Problem> {
        let req = FlagKill {
            reason: Some(reason.to_owned()),
            expected_version,
        };
        Ok(self.kill_flag_outcome(key, &req).await?)
    }

    async fn unkill_flag(
        &self,
        key: &str,
        reason: &str,
        expected_version: Option<u64>,
    ) -> Result<FlagOutcome, Problem> {
        let req = FlagKill {
            reason: Some(reason.to_owned()),
            expected_version,
        };
        Ok(self.unkill_flag_outcome(key, &req).await?)
    }

    async fn evaluate_flag(&self, key: &str, agent: &str) -> Result<FlagEvaluation, Problem> {
        Ok(Client::evaluate_flag(self, key, agent).await?)
    }

    async fn stats(&self, window_s: u64) -> Result<OpsStats, Problem> {
        Ok(self.ops_stats(window_s).await?)
    }

    async fn drain(&self, req: DrainRequest) -> Result<DrainReport, Problem> {
        Ok(Client::drain(self, &req).await?)
    }

    async fn verify(&self) -> Result<VerifyResponse, Problem> {
        Ok(Client::verify(self).await?)
    }

    /// Appends with the record's id, or else a fresh one, so the append is
    /// retried safely after ambiguous failures: a repeated id returns the
    /// original result. A caller that retries after an error passes its own
    /// id, the same on every try.
    async fn record_ops_event(&self, record: OpsRecord) -> Result<AppendEventResponse, Problem> {
        let mut req = record.into_request();
        if req.id.is_none() {
            req.id = Some(format!("ops-{}", lighthouse_security::fresh_nonce()));
        }
        Ok(self.append_event(&req).await?)
    }

    async fn query_events(&self, q: EventsQuery) -> Result<EventsPage, Problem> {
        Ok(Client::query_events(self, &q).await?)
    }
}
