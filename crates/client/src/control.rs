//! [`Control`] over HTTP: what the deploy, rollback and baseline tools call on a
//! remote bridge. Every error becomes a [`Problem`] (transport failures are
//! `503 unavailable`, see [`Error::problem`](crate::Error::problem)).

use lighthouse_core::Control;
use lighthouse_core::OPS_STREAM;
use lighthouse_core::api::{
    AppendEventRequest, AppendEventResponse, DrainReport, DrainRequest, EventsPage, EventsQuery,
    ExpectedVersion, Flag, FlagEvaluation, FlagKill, FlagList, FlagPut, Health, OpsStats, Problem,
    VerifyResponse,
};
use serde_json::Value;

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

    async fn put_flag(&self, key: &str, put: FlagPut) -> Result<Flag, Problem> {
        Ok(Client::put_flag(self, key, &put).await?)
    }

    async fn kill_flag(
        &self,
        key: &str,
        reason: &str,
        expected_version: Option<u64>,
    ) -> Result<Flag, Problem> {
        let req = FlagKill {
            reason: Some(reason.to_owned()),
            expected_version,
        };
        Ok(Client::kill_flag(self, key, &req).await?)
    }

    async fn unkill_flag(
        &self,
        key: &str,
        reason: &str,
        expected_version: Option<u64>,
    ) -> Result<Flag, Problem> {
        let req = FlagKill {
            reason: Some(reason.to_owned()),
            expected_version,
        };
        Ok(Client::unkill_flag(self, key, &req).await?)
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

    /// Appends with a fresh event id, so the append is retried safely: a
    /// repeated id returns the original result.
    async fn record_ops_event(
        &self,
        event_type: &str,
        data: Value,
    ) -> Result<AppendEventResponse, Problem> {
        let req = AppendEventRequest {
            stream: OPS_STREAM.to_owned(),
            event_type: event_type.to_owned(),
            data,
            metadata: None,
            expected_version: Some(ExpectedVersion::Any),
            id: Some(format!("ops-{}", lighthouse_security::fresh_nonce())),
        };
        Ok(self.append_event(&req).await?)
    }

    async fn query_events(&self, q: EventsQuery) -> Result<EventsPage, Problem> {
        Ok(Client::query_events(self, &q).await?)
    }
}
