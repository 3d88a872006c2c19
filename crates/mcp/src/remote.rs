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

    async fn health(&self) -> Result<Health, Problem> {
        self.health_ready().await.map_err(problem)
    }
}
