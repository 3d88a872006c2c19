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

/// What a create whose outcome is unknown adds to its problem's detail.
/// `lighthouse_elicit` takes no idempotency key (PROTOCOL.md 12), so an
/// identical retry cannot be made safe: the caller must look first.
pub(crate) const MAY_HAVE_BEEN_CREATED: &str = "the elicitation may have been created: before \
retrying, look for it with lighthouse_query_events {\"type\": \"elicitation.requested\", \
\"order\": \"desc\"}, or a retry may ask the question twice";

/// The problem of a failed create, saying so when it may have succeeded: no
/// usable answer (after the client's retries, all with the same idempotency
/// key), a `5xx`, or a `2xx` whose body could not be read.
fn create_problem(e: lighthouse_client::Error) -> Problem {
    use lighthouse_client::Error as E;
    let unknown = match &e {
        E::Transport { .. } => true,
        E::InvalidResponse { status, .. } => (200..300).contains(status),
        E::Refused(p) => p.status >= 500,
        E::Credential(_) | E::Config(_) => false,
    };
    let mut p = e.problem();
    if unknown {
        p.detail = format!("{}; {MAY_HAVE_BEEN_CREATED}", p.detail);
    }
    p
}

impl Backend for Client {
    async fn elicit(&self, req: CreateRequest) -> Result<Elicitation, Problem> {
        Client::elicit(self, &req).await.map_err(create_problem)
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

    /// A create that may have succeeded says so; one that surely did not
    /// does not.
    #[tokio::test]
    async fn a_create_with_an_unknown_outcome_says_it_may_have_been_created() {
        use axum::http::StatusCode;
        let app = axum::Router::new()
            .route(
                "/v1/elicitations",
                axum::routing::post(|| async { (StatusCode::BAD_GATEWAY, "<html>502</html>") }),
            )
            .fallback(|| async { (StatusCode::FORBIDDEN, "no") });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let client = |base: &str| {
            Client::builder()
                .base_url(base)
                .bearer_token("token")
                .retry(RetryPolicy::none())
                .build()
                .unwrap()
        };
        let req = CreateRequest::new("bob", "?", serde_json::json!({}));
        for base in [&url, &dead] {
            let p = Backend::elicit(&client(base), req.clone())
                .await
                .unwrap_err();
            assert!(p.detail.ends_with(MAY_HAVE_BEEN_CREATED), "{base}: {p:?}");
        }
        // Refused outright (a 4xx): nothing was created.
        let p = Backend::elicit(&client(&format!("{url}/other")), req)
            .await
            .unwrap_err();
        assert_eq!(p.status, 403);
        assert!(!p.detail.contains("may have been created"), "{p:?}");
        server.abort();
    }
}
