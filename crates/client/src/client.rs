//! [`Client`] and its [`ClientBuilder`].

use std::path::Path;
use std::sync::Arc;

use lighthouse_core::api::{Credential, SessionRequest, SessionResponse};
use lighthouse_event_store::SharedClock;
use reqwest::{Method, Url};

use crate::config::{ClientConfig, ReconnectPolicy, RetryPolicy};
use crate::error::Error;
use crate::transport::{Answer, Auth, Call, Transport};

/// A typed client of one bridge, acting as one agent. Cheap to clone (the
/// connection pool is shared).
///
/// Every call returns the protocol's types; failures are [`Error`]s that map
/// onto [`Problem`](lighthouse_core::api::Problem)s.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) transport: Arc<Transport>,
    agent: Option<String>,
}

/// Builds a [`Client`]: a credential (signing) or a bearer token, an optional
/// base URL override, and the [`ClientConfig`].
#[derive(Debug, Default)]
pub struct ClientBuilder {
    credential: Option<Credential>,
    token: Option<String>,
    base_url: Option<String>,
    config: ClientConfig,
}

impl ClientBuilder {
    /// Signs every request with `credential` (its `bridge` is the default base URL).
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Authenticates with a bearer token instead of signatures (PROTOCOL.md 2.3).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The bridge's base URL (`http://host:port`), overriding the credential's.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// The clock signing timestamps come from.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.config.clock = clock;
        self
    }

    /// The retry policy of single requests.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }

    /// The reconnect policy of SSE streams.
    pub fn reconnect(mut self, reconnect: ReconnectPolicy) -> Self {
        self.config.reconnect = reconnect;
        self
    }

    /// Builds the client. Fails on a missing or malformed base URL, a scheme
    /// other than `http` (this build has no TLS: terminate TLS in front of the
    /// client or the bridge), or neither a credential nor a token.
    pub fn build(self) -> Result<Client, Error> {
        let (auth, agent, default_url) = match (self.credential, self.token) {
            (_, Some(token)) => (Auth::Bearer(token), None, None),
            (Some(c), None) => (
                Auth::Signed(c.signer()),
                Some(c.agent.clone()),
                Some(c.bridge.clone()),
            ),
            (None, None) => {
                return Err(Error::Config(
                    "a credential or a bearer token is required".into(),
                ));
            }
        };
        let url = self
            .base_url
            .or(default_url)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                Error::Config("no bridge URL: the credential has none and none was given".into())
            })?;
        let base = parse_base(&url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(self.config.connect_timeout)
            // The bridge closes a keep-alive connection idle for 30 s (its
            // default header read timeout); reusing one just as it closes
            // would fail a request, so the pool lets go first.
            .pool_idle_timeout(std::time::Duration::from_secs(20))
            // A redirect would hand a signed request (headers and all) to
            // wherever it points, or turn a signed POST into an unsigned GET:
            // a redirect is an answer, not something to follow.
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .user_agent(concat!("lighthouse-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Client {
            transport: Arc::new(Transport {
                http,
                base,
                auth,
                config: self.config,
            }),
            agent,
        })
    }
}

fn parse_base(url: &str) -> Result<Url, Error> {
    let base = Url::parse(url).map_err(|e| Error::Config(format!("bridge URL {url:?}: {e}")))?;
    match base.scheme() {
        "http" => {}
        "https" => {
            return Err(Error::Config(format!(
                "bridge URL {url:?}: this client build speaks plain HTTP only; terminate TLS in a local proxy"
            )));
        }
        other => {
            return Err(Error::Config(format!(
                "bridge URL {url:?}: unsupported scheme {other:?}"
            )));
        }
    }
    if base.query().is_some() || base.fragment().is_some() || base.host().is_none() {
        return Err(Error::Config(format!(
            "bridge URL {url:?}: expected http://host:port with an optional path prefix"
        )));
    }
    Ok(base)
}

impl Client {
    /// A builder with the default configuration.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client signing with the credential file at `path` (refused when its
    /// group or others may read it), talking to the bridge the file names.
    pub fn from_credential_file(path: impl AsRef<Path>) -> Result<Client, Error> {
        Client::builder()
            .credential(Credential::read(path)?)
            .build()
    }

    /// A client signing with `credential`, talking to the bridge it names.
    pub fn from_credential(credential: Credential) -> Result<Client, Error> {
        Client::builder().credential(credential).build()
    }

    /// A client using a bearer token against `base_url`.
    pub fn with_token(base_url: &str, token: impl Into<String>) -> Result<Client, Error> {
        Client::builder()
            .base_url(base_url)
            .bearer_token(token)
            .build()
    }

    /// The agent this client signs as (`None` for a token client).
    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// The bridge's base URL.
    pub fn base_url(&self) -> &Url {
        &self.transport.base
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.transport.config
    }

    /// A client on the same connection pool and configuration using `token`.
    pub fn with_bearer(&self, token: impl Into<String>) -> Client {
        Client {
            transport: Arc::new(Transport {
                http: self.transport.http.clone(),
                base: self.transport.base.clone(),
                auth: Auth::Bearer(token.into()),
                config: self.transport.config.clone(),
            }),
            agent: None,
        }
    }

    /// Runs a call and decodes a 2xx JSON body.
    pub(crate) async fn json<T: serde::de::DeserializeOwned>(
        &self,
        call: Call,
    ) -> Result<T, Error> {
        self.answer(call).await?.decode()
    }

    /// Runs a call to a 2xx answer.
    pub(crate) async fn answer(&self, call: Call) -> Result<Answer, Error> {
        self.transport
            .execute(&call, |s| (200..300).contains(&s))
            .await
    }

    /// `POST /v1/sessions`: a bearer token for this agent (`ttl_s` default 3600,
    /// at most 86400). Not retried: each attempt would issue another token.
    pub async fn create_session(&self, ttl_s: Option<u64>) -> Result<SessionResponse, Error> {
        self.json(Call::post("/v1/sessions").json(&SessionRequest { ttl_s })?)
            .await
    }

    /// `DELETE /v1/sessions/current`: revokes the token this client uses (a
    /// signing client gets `400`).
    pub async fn end_session(&self) -> Result<(), Error> {
        self.answer(Call::new(Method::DELETE, "/v1/sessions/current"))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert!(parse_base("http://127.0.0.1:8765").is_ok());
        assert!(parse_base("http://bridge.internal/prefix/").is_ok());
        for bad in [
            "https://x",
            "ftp://x",
            "127.0.0.1:8765",
            "http://x/?a=1",
            "nonsense",
        ] {
            assert!(parse_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_client_needs_some_authentication_and_a_url() {
        assert!(matches!(Client::builder().build(), Err(Error::Config(_))));
        assert!(matches!(
            Client::builder().bearer_token("t").build(),
            Err(Error::Config(_))
        ));
        let c = Client::with_token("http://127.0.0.1:1", "secret-token").unwrap();
        assert_eq!(c.agent(), None);
        assert!(!format!("{c:?}").contains("secret-token"));
    }
}
