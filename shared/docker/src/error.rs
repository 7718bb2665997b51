//! [`DockerError`]: everything that can go wrong talking to the engine, shared by the client,
//! the transport, the API decoding and the event stream.

use std::time::Duration;

/// Everything that can go wrong talking to the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    /// The engine could not be reached, or the connection broke mid-response.
    #[error("cannot reach the Docker engine: {0}")]
    Connect(String),
    #[error("the Docker engine did not answer within {0:?}")]
    Timeout(Duration),
    /// A non-2xx answer, with the engine's `message` when it sent one.
    #[error("the Docker engine answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("cannot decode the engine's {what}: {error}")]
    Decode { what: &'static str, error: String },
    /// The engine's API version is older than 1.41 or otherwise unusable.
    #[error("unsupported Docker Engine API version {0} (need 1.41 or later)")]
    Unsupported(String),
    #[error("invalid Docker host {0}")]
    InvalidHost(String),
    /// A container id or name that may not go into a URL path.
    #[error("invalid container id or name {0:?}")]
    InvalidId(String),
    /// A request this client refuses to build (a bug in the caller).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("response larger than {limit} bytes")]
    TooLarge { limit: usize },
}

impl DockerError {
    /// The engine said the container does not exist (it may have been removed mid-sweep).
    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::Status { status: 404, .. })
    }
}
