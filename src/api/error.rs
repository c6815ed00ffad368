//! API errors and the one function that decides each one's HTTP status.

use http::{Method, StatusCode};

use crate::engine::EngineError;
use crate::model::InvalidName;
use crate::providers::{ProviderError, SetupError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("invalid agent name: {0}")]
    InvalidName(#[from] InvalidName),
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("request body is larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error(
        "the request body did not arrive within {:.1}s (limits.body_timeout)",
        .0.as_secs_f64()
    )]
    BodyTimeout(std::time::Duration),
    #[error("the request head is larger than the {limit}-byte limit")]
    HeadTooLarge { limit: usize },
    #[error("path not accepted: {0}; send the canonical path")]
    BadPath(String),
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("method {method} is not allowed here; allowed: {}", list(allowed))]
    MethodNotAllowed {
        method: Method,
        allowed: &'static [Method],
    },
    #[error("missing or wrong bearer token; read it from the daemon's http.token file")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("reload failed, nothing changed: {0}")]
    ReloadFailed(String),
    #[error(
        "{limit} event streams are already open (limits.max_event_streams); close one or try again shortly"
    )]
    TooManyStreams { limit: usize },
}

impl ApiError {
    /// The key variable a suspended agent lacks, for clients that can send it.
    pub fn missing_key(&self) -> Option<String> {
        match self {
            Self::Engine(EngineError::Suspended {
                reason: SetupError::MissingKey { variable, .. },
                ..
            }) => Some(variable.clone()),
            _ => None,
        }
    }

    /// The HTTP status of every error, decided here and nowhere else.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Engine(error) => engine_status(error),
            Self::InvalidName(_) | Self::InvalidBody(_) | Self::InvalidQuery(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::BodyRead(_) | Self::BadPath(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            // The file's content, not the request, is wrong; the daemon is fine.
            Self::ReloadFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyStreams { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

fn engine_status(error: &EngineError) -> StatusCode {
    match error {
        EngineError::NotFound(_)
        | EngineError::NoHistory(_)
        | EngineError::NoConversation(..)
        | EngineError::AgentGone(_) => StatusCode::NOT_FOUND,
        // The agent exists but cannot run until what it lacks arrives.
        EngineError::NameTaken(_) | EngineError::Suspended { .. } => StatusCode::CONFLICT,
        EngineError::Setup(_) | EngineError::BadSearch(_) => StatusCode::BAD_REQUEST,
        EngineError::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
        EngineError::Interrupted(_) => StatusCode::SERVICE_UNAVAILABLE,
        EngineError::Provider(ProviderError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
        EngineError::Provider(_) => StatusCode::BAD_GATEWAY,
        // The disk is full or the store unwritable: nobody's request was wrong.
        EngineError::Store(_) => StatusCode::INSUFFICIENT_STORAGE,
    }
}

fn list(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value of an `Allow` header for a 405.
pub fn allow_header(methods: &[Method]) -> String {
    list(methods)
}
