//! [`Backend`] on a remote bridge through [`lighthouse_client::Client`]: the
//! stdio proxy. Every call is one REST request, signed (or carrying a token) by
//! the client, so the remote bridge admits, limits and audits it as any other.

use std::time::Duration;

use lighthouse_client::{Client, ListElicitations, Mailbox, ReceiveMessages};
use lighthouse_core::api::{
    AppendEventRequest, AppendEventResponse, CancelRequest, CreateRequest, Elicitation,
    ElicitationList, EventsPage, EventsQuery, Health, MessagesPage, Problem, RespondRequest,
    SentMessage, Status,
};
use lighthouse_elicitation::SendMessage;

use crate::backend::Backend;

fn problem(e: lighthouse_client::Error) -> Problem {
    e.problem()
}

impl Backend for Client {
    async fn elicit(&self, req: CreateRequest) -> Result<Elicitation, Problem> {
        Client::elicit(self, &req).await.map_err(problem)
    }

    async fn get_elicitation(&self, id: &str, wait_ms: u64) -> Result<Elicitation, Problem> {
        Client::get_elicitation(self, id, Duration::from_millis(wait_ms))
            .await
            .map_err(problem)
    }

    async fn pending_inbox(&self, limit: usize) -> Result<ElicitationList, Problem> {
        let q = ListElicitations {
            mailbox: Mailbox::Inbox,
            status: Some(Status::Pending),
            limit: Some(limit),
            cursor: None,
        };
        self.list_elicitations(&q).await.map_err(problem)
    }

    async fn respond(&self, id: &str, req: RespondRequest) -> Result<Elicitation, Problem> {
        Client::respond(self, id, &req).await.map_err(problem)
    }

    async fn cancel(&self, id: &str, req: CancelRequest) -> Result<Elicitation, Problem> {
        Client::cancel(self, id, req.reason.as_deref())
            .await
            .map_err(problem)
    }

    async fn send_message(&self, req: SendMessage) -> Result<SentMessage, Problem> {
        Client::send_message(self, &req.to, &req.body)
            .await
            .map_err(problem)
    }

    async fn receive_messages(&self, after: u64, wait_ms: u64) -> Result<MessagesPage, Problem> {
        let q = ReceiveMessages {
            after,
            wait: Duration::from_millis(wait_ms),
            limit: None,
        };
        self.messages(&q).await.map_err(problem)
    }

    async fn append_event(&self, req: AppendEventRequest) -> Result<AppendEventResponse, Problem> {
        Client::append_event(self, &req).await.map_err(problem)
    }

    async fn query_events(&self, q: EventsQuery) -> Result<EventsPage, Problem> {
        Client::query_events(self, &q).await.map_err(problem)
    }

    /// PROTOCOL.md 12: the health tool answers with a readiness body, never an
    /// error result. A bridge that cannot be reached, or answers with
    /// something that is not its readiness body, is therefore `unavailable`,
    /// with the reason as the `bridge` component.
    async fn health(&self) -> Result<Health, Problem> {
        Ok(match self.health_ready().await {
            Ok(h) => h,
            Err(e) => unreachable_health(&e.problem().detail),
        })
    }
}

/// Longest reason put in the `bridge` component, in bytes.
const MAX_REASON_BYTES: usize = 256;

/// The readiness body of a bridge the proxy could not get one from.
fn unreachable_health(reason: &str) -> Health {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Health {
        status: "unavailable".into(),
        components: [("bridge".to_owned(), reason[..end].to_owned())].into(),
    }
}

#[cfg(test)]
mod tests {
    use lighthouse_client::RetryPolicy;

    use super::*;

    /// An unreachable bridge is a normal health result saying `unavailable`.
    #[tokio::test]
    async fn health_of_an_unreachable_bridge_is_a_result_not_an_error() {
        // A port that was free a moment ago: nothing listens there now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::builder()
            .base_url(format!("http://127.0.0.1:{port}"))
            .bearer_token("token")
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        let h = Backend::health(&client).await.unwrap();
        assert_eq!(h.status, "unavailable");
        assert!(
            h.components["bridge"].contains("could not be reached"),
            "{:?}",
            h.components
        );
        assert!(h.components["bridge"].len() <= MAX_REASON_BYTES);
    }
}
