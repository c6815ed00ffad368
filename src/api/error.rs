//! API errors and the two functions that decide each one's HTTP status and
//! its code on the wire.

use http::{Method, StatusCode};

use crate::engine::budget::BudgetError;
use crate::engine::{AnswerError, EngineError, ToolError};
use crate::model::InvalidName;
use crate::profiles::ProfileError;
use crate::providers::{ProviderError, SetupError};
use crate::runtime::RuntimeError;
use crate::wire::{ErrorBody, ErrorCode, InvalidApprovalId, RouteError};

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
    /// The web page's login token or session cookie is missing, used or stale.
    #[error("{0}; run `orchestration ui` to open the page with a fresh login")]
    NoSession(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(
        "approval mode `bypass` runs commands without asking; it is only accepted on the daemon's Unix socket"
    )]
    BypassOverTcp,
    /// An `allow` pattern that runs every command without asking, over TCP.
    #[error(
        "allow pattern {0:?} runs every shell command without asking, as approval mode `bypass` does; it is only accepted on the daemon's Unix socket"
    )]
    ShellOverTcp(String),
    /// A connection refused at the listener's cap, before any request was read.
    #[error("the daemon already has {limit} open connections on this listener; try again shortly")]
    TooManyConnections { limit: usize },
    #[error("reload failed, nothing changed: {0}")]
    ReloadFailed(String),
    #[error(
        "{limit} event streams are already open (limits.max_event_streams); close one or try again shortly"
    )]
    TooManyStreams { limit: usize },
    /// An answer to an approval that is not pending.
    #[error(transparent)]
    Answer(#[from] AnswerError),
    #[error(transparent)]
    InvalidApprovalId(#[from] InvalidApprovalId),
}

impl From<RouteError> for ApiError {
    fn from(error: RouteError) -> Self {
        match error {
            RouteError::BadPath(why) => Self::BadPath(why),
            RouteError::NoRoute(path) => Self::NoRoute(path),
            RouteError::MethodNotAllowed { method, allowed } => {
                Self::MethodNotAllowed { method, allowed }
            }
            RouteError::InvalidName(error) => Self::InvalidName(error),
            RouteError::InvalidQuery(error) => Self::InvalidQuery(error.to_string()),
            RouteError::InvalidApprovalId(error) => Self::InvalidApprovalId(error),
        }
    }
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

    /// What the client reads: the sentence, the code, and the variable a
    /// suspended agent's key is in.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            detail: self.to_string(),
            code: self.code(),
            missing_key: self.missing_key(),
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
            Self::Unauthorized | Self::NoSession(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::BypassOverTcp | Self::ShellOverTcp(_) => {
                StatusCode::FORBIDDEN
            }
            Self::TooManyConnections { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // The file's content, not the request, is wrong; the daemon is fine.
            Self::ReloadFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyStreams { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Answer(AnswerError::NotFound(_)) => StatusCode::NOT_FOUND,
            // It existed and is settled: answering it again conflicts with that.
            Self::Answer(AnswerError::AlreadyResolved(_)) => StatusCode::CONFLICT,
            Self::InvalidApprovalId(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

impl ApiError {
    /// The code of every error, for clients that decide what to do next:
    /// decided here and nowhere else, beside the status.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Engine(error) => engine_code(error),
            Self::InvalidName(_) => ErrorCode::InvalidName,
            Self::InvalidBody(_) => ErrorCode::InvalidBody,
            Self::InvalidQuery(_) => ErrorCode::InvalidQuery,
            Self::BodyRead(_) => ErrorCode::BodyUnreadable,
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::BodyTimeout(_) => ErrorCode::BodyTimeout,
            Self::HeadTooLarge { .. } => ErrorCode::HeadTooLarge,
            Self::BadPath(_) => ErrorCode::BadPath,
            Self::NoRoute(_) => ErrorCode::NoRoute,
            Self::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            Self::Unauthorized | Self::NoSession(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::BypassOverTcp | Self::ShellOverTcp(_) => ErrorCode::BypassRefused,
            Self::TooManyConnections { .. } => ErrorCode::TooManyConnections,
            Self::TooManyStreams { .. } => ErrorCode::TooManyStreams,
            Self::ReloadFailed(_) => ErrorCode::ReloadFailed,
            Self::Answer(AnswerError::NotFound(_)) => ErrorCode::ApprovalNotFound,
            Self::Answer(AnswerError::AlreadyResolved(_)) => ErrorCode::AlreadyResolved,
            Self::InvalidApprovalId(_) => ErrorCode::InvalidApprovalId,
        }
    }
}

fn engine_code(error: &EngineError) -> ErrorCode {
    match error {
        EngineError::NotFound(_) | EngineError::NoHistory(_) | EngineError::NoConversation(..) => {
            ErrorCode::NotFound
        }
        EngineError::AgentGone(_) => ErrorCode::AgentGone,
        EngineError::NameTaken(_) => ErrorCode::NameTaken,
        EngineError::Suspended { .. } => ErrorCode::Suspended,
        EngineError::Setup(error) => setup_code(error),
        EngineError::BadSearch(_) => ErrorCode::InvalidSearch,
        EngineError::Budget(BudgetError::Exceeded(_)) => ErrorCode::BudgetExceeded,
        EngineError::Budget(BudgetError::Unpriced { .. }) => ErrorCode::BudgetUnpriced,
        EngineError::QueueFull(_) => ErrorCode::QueueFull,
        EngineError::ProcessesBusy { .. } => ErrorCode::ProcessesBusy,
        EngineError::Interrupted(_) => ErrorCode::Interrupted,
        EngineError::Provider(error) => provider_code(error),
        EngineError::Store(_) => ErrorCode::Storage,
        EngineError::Runtime(error) => runtime_code(error),
        EngineError::Tools(error) => tool_code(error),
        EngineError::ToolsForCodingAgent(_) => ErrorCode::ToolsForCodingAgent,
    }
}

fn tool_code(error: &ToolError) -> ErrorCode {
    match error {
        ToolError::UnknownServer(_) => ErrorCode::UnknownToolServer,
        ToolError::UnknownTool { .. } => ErrorCode::UnknownTool,
        ToolError::Unavailable { .. } | ToolError::Timeout(_) | ToolError::Cancelled => {
            ErrorCode::ToolServerUnavailable
        }
    }
}

fn setup_code(error: &SetupError) -> ErrorCode {
    match error {
        SetupError::Profile(ProfileError::UnknownProvider(_)) => ErrorCode::UnknownProvider,
        SetupError::Profile(ProfileError::UnknownProfile { .. }) => ErrorCode::UnknownProfile,
        SetupError::Profile(ProfileError::BadProfile(_)) => ErrorCode::InvalidProfile,
        SetupError::MissingKey { .. } => ErrorCode::MissingKey,
        SetupError::BadBaseUrl(_) => ErrorCode::InvalidBaseUrl,
        SetupError::BadHeader(_) => ErrorCode::InvalidHeader,
        SetupError::NoModel(_) => ErrorCode::NoModel,
        SetupError::Http(_) => ErrorCode::SetupFailed,
        SetupError::NoEndpoint(_) => ErrorCode::NoEndpoint,
        SetupError::NotInstalled { .. } => ErrorCode::NotInstalled,
        SetupError::BadCwd { .. } => ErrorCode::InvalidCwd,
        SetupError::BadAllow { .. } | SetupError::AllowTooLong { .. } => ErrorCode::InvalidAllow,
    }
}

fn runtime_code(error: &RuntimeError) -> ErrorCode {
    match error {
        // Missing mid-life (uninstalled since the spawn): 502 like the rest.
        RuntimeError::Missing { .. } | RuntimeError::Start { .. } | RuntimeError::Died { .. } => {
            ErrorCode::AgentExited
        }
        RuntimeError::Protocol { .. } => ErrorCode::UpstreamProtocol,
        RuntimeError::Turn(_) => ErrorCode::UpstreamError,
    }
}

fn provider_code(error: &ProviderError) -> ErrorCode {
    match error {
        ProviderError::Status { .. } => ErrorCode::UpstreamStatus,
        ProviderError::Timeout(_) => ErrorCode::UpstreamTimeout,
        ProviderError::Connect(_) => ErrorCode::UpstreamUnreachable,
        ProviderError::Protocol(_) => ErrorCode::UpstreamProtocol,
        ProviderError::Stream(_) | ProviderError::Other(_) => ErrorCode::UpstreamError,
        ProviderError::Limit(_) => ErrorCode::ReplyLimit,
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
        // The patterns parse, but not as one pattern each: unprocessable.
        EngineError::Setup(SetupError::BadAllow { .. } | SetupError::AllowTooLong { .. }) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        EngineError::Setup(_) | EngineError::BadSearch(_) => StatusCode::BAD_REQUEST,
        EngineError::QueueFull(_) | EngineError::ProcessesBusy { .. } => {
            StatusCode::TOO_MANY_REQUESTS
        }
        // Spending it would take is not allowed (the budget, or a USD
        // budget with no price to count by): nothing went wrong upstream.
        EngineError::Budget(_) => StatusCode::PAYMENT_REQUIRED,
        EngineError::Interrupted(_) => StatusCode::SERVICE_UNAVAILABLE,
        EngineError::Provider(ProviderError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
        EngineError::Provider(_) => StatusCode::BAD_GATEWAY,
        // The disk is full or the store unwritable: nobody's request was wrong.
        EngineError::Store(_) => StatusCode::INSUFFICIENT_STORAGE,
        // The coding agent (or the model server behind it) failed, not the request.
        EngineError::Runtime(_) => StatusCode::BAD_GATEWAY,
        // The request named what config does not have.
        EngineError::Tools(ToolError::UnknownServer(_) | ToolError::UnknownTool { .. })
        | EngineError::ToolsForCodingAgent(_) => StatusCode::UNPROCESSABLE_ENTITY,
        // The tool server failed, not the request.
        EngineError::Tools(_) => StatusCode::BAD_GATEWAY,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::engine::budget::Refusal;
    use crate::model::AgentName;

    /// One error of every kind the API answers with.
    fn every_error() -> Vec<ApiError> {
        let name = || AgentName::parse("a").expect("a valid name");
        let setup = [
            SetupError::Profile(ProfileError::UnknownProvider("p".into())),
            SetupError::Profile(ProfileError::UnknownProfile {
                name: "p".into(),
                known: String::new(),
            }),
            SetupError::Profile(ProfileError::BadProfile("p".into())),
            SetupError::MissingKey {
                what: "p".into(),
                variable: "V".into(),
            },
            SetupError::BadBaseUrl("u".into()),
            SetupError::BadHeader("h".into()),
            SetupError::NoModel("p".into()),
            SetupError::Http("h".into()),
            SetupError::NoEndpoint("codex".into()),
            SetupError::NotInstalled {
                program: "claude".into(),
                looked: "PATH".into(),
                install: "npm".into(),
            },
            SetupError::BadCwd {
                path: "/x".into(),
                why: "does not exist".into(),
            },
            SetupError::BadAllow {
                pattern: "Read,Bash".into(),
                why: "w".into(),
            },
            SetupError::AllowTooLong { total: 2, max: 1 },
        ];
        let provider = [
            ProviderError::Status {
                status: 500,
                message: "m".into(),
            },
            ProviderError::Timeout("t".into()),
            ProviderError::Connect("c".into()),
            ProviderError::Protocol("p".into()),
            ProviderError::Stream("s".into()),
            ProviderError::Limit("l".into()),
            ProviderError::Other("o".into()),
        ];
        let engine = [
            EngineError::NotFound(name()),
            EngineError::NoHistory(name()),
            EngineError::NoConversation(name(), uuid::Uuid::nil()),
            EngineError::NameTaken(name()),
            EngineError::Suspended {
                name: name(),
                reason: SetupError::NoModel("p".into()),
            },
            EngineError::QueueFull(name()),
            EngineError::ProcessesBusy { max: 1 },
            EngineError::AgentGone(name()),
            EngineError::Interrupted("i".into()),
            EngineError::BadSearch("b".into()),
            EngineError::Budget(BudgetError::Unpriced {
                budget: "all/day, 1.00 usd".into(),
                model: "m".into(),
            }),
            EngineError::Budget(BudgetError::Exceeded(Box::new(Refusal {
                state: crate::model::BudgetState {
                    scope: "all".into(),
                    period: crate::model::BudgetPeriod::Day,
                    unit: crate::model::BudgetUnit::Usd,
                    source: crate::model::BudgetSource::Config,
                    limit: 1.0,
                    spent: 1.0,
                    reserved: 0.0,
                    remaining: 0.0,
                    resets: None,
                },
                limit: "1.00 usd".into(),
                spent: "1.00 usd".into(),
                reserved: "0.00 usd".into(),
                needed: "0.10 usd".into(),
            }))),
            EngineError::Runtime(RuntimeError::Died {
                program: "claude".into(),
                status: "killed by signal 9".into(),
                stderr: String::new(),
            }),
            EngineError::Tools(ToolError::UnknownServer("fs".into())),
            EngineError::Tools(ToolError::UnknownTool {
                server: "fs".into(),
                tool: "t".into(),
            }),
            EngineError::Tools(ToolError::Unavailable {
                server: "fs".into(),
                why: "w".into(),
            }),
            EngineError::Tools(ToolError::Timeout("60s".into())),
            EngineError::Tools(ToolError::Cancelled),
            EngineError::ToolsForCodingAgent(name()),
        ];
        let mut all: Vec<ApiError> = setup
            .into_iter()
            .map(|e| ApiError::Engine(EngineError::Setup(e)))
            .chain(
                provider
                    .into_iter()
                    .map(|e| ApiError::Engine(EngineError::Provider(e))),
            )
            .chain(engine.into_iter().map(ApiError::Engine))
            .collect();
        all.extend([
            ApiError::InvalidName(crate::model::InvalidName::Empty),
            ApiError::InvalidBody("b".into()),
            ApiError::InvalidQuery("q".into()),
            ApiError::BodyRead("r".into()),
            ApiError::TooLarge { limit: 1 },
            ApiError::BodyTimeout(std::time::Duration::from_secs(1)),
            ApiError::HeadTooLarge { limit: 1 },
            ApiError::BadPath("p".into()),
            ApiError::NoRoute("p".into()),
            ApiError::MethodNotAllowed {
                method: Method::PUT,
                allowed: &[Method::GET],
            },
            ApiError::Unauthorized,
            ApiError::NoSession("s".into()),
            ApiError::Forbidden("f".into()),
            ApiError::BypassOverTcp,
            ApiError::ShellOverTcp("Bash".into()),
            ApiError::TooManyConnections { limit: 1 },
            ApiError::TooManyStreams { limit: 1 },
            ApiError::ReloadFailed("r".into()),
            ApiError::Answer(AnswerError::NotFound("abcdef".into())),
            ApiError::Answer(AnswerError::AlreadyResolved("abcdef".into())),
            ApiError::InvalidApprovalId(InvalidApprovalId("x".into())),
        ]);
        all
    }

    #[test]
    fn every_error_has_a_code_and_each_code_one_status() {
        let mut statuses: BTreeMap<String, StatusCode> = BTreeMap::new();
        for error in every_error() {
            let code = error.code();
            assert_ne!(code, ErrorCode::Other, "{error:?} has no code of its own");
            let status = *statuses.entry(code.to_string()).or_insert(error.status());
            assert_eq!(status, error.status(), "{code} comes with two statuses");
            let body = serde_json::to_value(error.body()).expect("a body");
            assert_eq!(body["code"], code.to_string());
            assert_eq!(body["detail"], error.to_string());
        }
    }

    #[test]
    fn a_suspended_agent_lacking_a_key_names_its_variable() {
        let error = ApiError::Engine(EngineError::Suspended {
            name: AgentName::parse("a").expect("a valid name"),
            reason: SetupError::MissingKey {
                what: "openai".into(),
                variable: "OPENAI_API_KEY".into(),
            },
        });
        let body = serde_json::to_value(error.body()).expect("a body");
        assert_eq!(body["code"], "suspended");
        assert_eq!(body["missing_key"], "OPENAI_API_KEY");
    }

    #[test]
    fn an_unknown_code_reads_as_other() {
        let code: ErrorCode = serde_json::from_str("\"from_a_newer_daemon\"").expect("reads");
        assert_eq!(code, ErrorCode::Other);
        let body: crate::wire::ErrorBody =
            serde_json::from_str(r#"{"detail":"old daemon"}"#).expect("reads");
        assert_eq!(body.code, ErrorCode::Other);
    }
}
