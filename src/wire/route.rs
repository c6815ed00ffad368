//! The endpoint table: a request's method, path and query as one typed
//! [`Route`]. The daemon parses each request once into it ([`Route::parse`]);
//! the transport guard, the dispatcher and the access log all look at that
//! value and never at the raw path, so a request cannot be guarded as one
//! thing and routed as another. The client builds its requests from the
//! same value ([`Route::method`], [`Route::target`]), so the two sides
//! cannot drift: a test sends every route through both.
//!
//! Only canonical paths parse: no empty (`//`) or dot (`.`, `..`) segments,
//! and no percent-encoding in fixed segments (`/%73hutdown` is refused, not
//! decoded). One trailing slash is allowed. The `{name}` segment may be
//! percent-encoded, as long as it decodes to a valid agent name.

use http::{Method, Uri};
use percent_encoding::percent_decode_str;

use super::{
    ApprovalId, ApprovalsQuery, ConversationsQuery, EventsQuery, HistoryQuery, InvalidApprovalId,
    ListQuery, Query, QueryError, SearchQuery, ToolsQuery, UsageQuery,
};
use crate::model::{AgentName, InvalidName};

/// Why a request line names no route. The API turns each into its status.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Not the canonical spelling of a path.
    #[error("{0}")]
    BadPath(String),
    /// No route has this path.
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("method {method} is not allowed here")]
    MethodNotAllowed {
        method: Method,
        allowed: &'static [Method],
    },
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error(transparent)]
    InvalidQuery(#[from] QueryError),
    #[error(transparent)]
    InvalidApprovalId(#[from] InvalidApprovalId),
}

/// What a request asks for, with its parameters decoded and validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Health,
    /// `POST /shutdown`: stop the daemon (control plane).
    Shutdown,
    /// `POST /reload`: re-read the config and environment files (control plane).
    Reload,
    /// `POST /prune`: delete old ended conversations (control plane).
    Prune,
    Models,
    /// `POST /messages`: one prompt to several agents at once.
    FanOut,
    /// `GET /search`: full text over every conversation.
    Search(SearchQuery),
    /// `GET /conversations`: every conversation of every name.
    Conversations(ConversationsQuery),
    /// `GET /events`: the live event stream, optionally of some agents only.
    Events(EventsQuery),
    /// `GET /usage`: the usage ledger's sums.
    Usage(UsageQuery),
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /tools`: the configured MCP servers, their state and tools
    /// (`?start=true` starts those not running first).
    Tools(ToolsQuery),
    ListAgents(ListQuery),
    Spawn,
    /// `DELETE /agents`: shut every agent down (control plane).
    ShutdownAll,
    GetAgent(AgentName),
    ShutdownAgent(AgentName),
    Message(AgentName),
    Task(AgentName),
    /// `POST /agents/{name}/interrupt`: stop the turn running now.
    Interrupt(AgentName),
    History(AgentName, HistoryQuery),
    ClearHistory(AgentName),
    /// `GET /approvals`: the pending approvals, optionally of one agent.
    Approvals(ApprovalsQuery),
    /// `POST /approvals/{id}`: approve or deny one (data plane: the web
    /// page and remote MCP clients answer approvals too).
    Answer(ApprovalId),
    /// `GET /ui/` and `GET /ui/{file}`: the web page's files.
    UiFile(UiFile),
    /// `POST /ui/login`: the web page trades its one-time token for a session.
    UiLogin,
    /// `POST /ui/logout`: the web page ends its session.
    UiLogout,
    /// `POST /ui/link`: a one-time login link for the web page (control plane).
    UiLink,
}

/// The name of one of the web page's files: one path segment of lowercase
/// ASCII letters, digits, `-` and `.`, not starting with `.`. Whether such
/// a file exists is the daemon's business (404 if not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiFile(String);

impl UiFile {
    /// The page itself, served at `/ui/`.
    pub const INDEX: &'static str = "index.html";

    pub fn index() -> Self {
        Self(Self::INDEX.to_owned())
    }

    /// `None` for anything that cannot be one of the page's file names.
    pub fn parse(segment: &str) -> Option<Self> {
        let valid = (1..=64).contains(&segment.len())
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        valid.then(|| Self(segment.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const AGENTS: &[Method] = &[Method::GET, Method::POST, Method::DELETE];
const GET_DELETE: &[Method] = &[Method::GET, Method::DELETE];

impl Route {
    /// Parses a request line. A path that is not canonical is a 400; one
    /// that names nothing is a 404; a known path with the wrong method a 405.
    pub fn parse(method: &Method, uri: &Uri) -> Result<Self, RouteError> {
        let path = uri.path();
        let segments = canonical_segments(path)?;
        let query = uri.query().unwrap_or("");
        let not_allowed = |allowed| RouteError::MethodNotAllowed {
            method: method.clone(),
            allowed,
        };
        let no_route = || RouteError::NoRoute(path.to_owned());
        let Some((first, rest)) = segments.split_first() else {
            return Err(no_route());
        };
        let first = fixed(first)?;
        match (first, rest) {
            ("health", []) => {
                only(method, &Method::GET, Self::Health).ok_or_else(|| not_allowed(GET))
            }
            ("shutdown", []) => {
                only(method, &Method::POST, Self::Shutdown).ok_or_else(|| not_allowed(POST))
            }
            ("conversations", []) => match *method {
                Method::GET => Ok(Self::Conversations(
                    ConversationsQuery::parse(query).map_err(invalid)?,
                )),
                _ => Err(not_allowed(GET)),
            },
            ("messages", []) => {
                only(method, &Method::POST, Self::FanOut).ok_or_else(|| not_allowed(POST))
            }
            ("search", []) => match *method {
                Method::GET => Ok(Self::Search(SearchQuery::parse(query).map_err(invalid)?)),
                _ => Err(not_allowed(GET)),
            },
            ("prune", []) => {
                only(method, &Method::POST, Self::Prune).ok_or_else(|| not_allowed(POST))
            }
            ("events", []) => match *method {
                Method::GET => Ok(Self::Events(EventsQuery::parse(query).map_err(invalid)?)),
                _ => Err(not_allowed(GET)),
            },
            ("usage", []) => match *method {
                Method::GET => Ok(Self::Usage(UsageQuery::parse(query).map_err(invalid)?)),
                _ => Err(not_allowed(GET)),
            },
            ("metrics", []) => {
                only(method, &Method::GET, Self::Metrics).ok_or_else(|| not_allowed(GET))
            }
            ("tools", []) => match *method {
                Method::GET => Ok(Self::Tools(ToolsQuery::parse(query).map_err(invalid)?)),
                _ => Err(not_allowed(GET)),
            },
            ("reload", []) => {
                only(method, &Method::POST, Self::Reload).ok_or_else(|| not_allowed(POST))
            }
            ("models", []) => {
                only(method, &Method::POST, Self::Models).ok_or_else(|| not_allowed(POST))
            }
            ("agents", []) => match *method {
                Method::GET => Ok(Self::ListAgents(ListQuery::parse(query).map_err(invalid)?)),
                Method::POST => Ok(Self::Spawn),
                Method::DELETE => Ok(Self::ShutdownAll),
                _ => Err(not_allowed(AGENTS)),
            },
            ("agents", [name, tail @ ..]) => agent_route(method, query, name, tail, path),
            ("approvals", []) => match *method {
                Method::GET => Ok(Self::Approvals(
                    ApprovalsQuery::parse(query).map_err(invalid)?,
                )),
                _ => Err(not_allowed(GET)),
            },
            ("approvals", [id]) => {
                // Fixed-segment rules apply: an id has no reason to be encoded.
                let id = ApprovalId::parse(fixed(id)?)?;
                only(method, &Method::POST, Self::Answer(id)).ok_or_else(|| not_allowed(POST))
            }
            ("ui", []) => only(method, &Method::GET, Self::UiFile(UiFile::index()))
                .ok_or_else(|| not_allowed(GET)),
            ("ui", [segment]) => ui_route(method, fixed(segment)?, path),
            _ => Err(no_route()),
        }
    }

    /// The method a request for this route uses.
    pub fn method(&self) -> Method {
        match self {
            Self::Health
            | Self::Search(_)
            | Self::Conversations(_)
            | Self::Events(_)
            | Self::Usage(_)
            | Self::Metrics
            | Self::Tools(_)
            | Self::ListAgents(_)
            | Self::GetAgent(_)
            | Self::History(..)
            | Self::Approvals(_)
            | Self::UiFile(_) => Method::GET,
            Self::Shutdown
            | Self::Reload
            | Self::Prune
            | Self::Models
            | Self::FanOut
            | Self::Spawn
            | Self::Message(_)
            | Self::Task(_)
            | Self::Interrupt(_)
            | Self::Answer(_)
            | Self::UiLogin
            | Self::UiLogout
            | Self::UiLink => Method::POST,
            Self::ShutdownAll | Self::ShutdownAgent(_) | Self::ClearHistory(_) => Method::DELETE,
        }
    }

    /// The request target (canonical path and query) that [`Route::parse`]
    /// reads back as this route. An agent name needs no encoding: every
    /// character a valid name may have is one a path segment may have.
    pub fn target(&self) -> String {
        match self {
            Self::Health => "/health".into(),
            Self::Shutdown => "/shutdown".into(),
            Self::Reload => "/reload".into(),
            Self::Prune => "/prune".into(),
            Self::Models => "/models".into(),
            Self::FanOut => "/messages".into(),
            Self::Search(query) => format!("/search{}", query.to_query()),
            Self::Conversations(query) => format!("/conversations{}", query.to_query()),
            Self::Events(query) => format!("/events{}", query.to_query()),
            Self::Usage(query) => format!("/usage{}", query.to_query()),
            Self::Metrics => "/metrics".into(),
            Self::Tools(query) => format!("/tools{}", query.to_query()),
            Self::ListAgents(query) => format!("/agents{}", query.to_query()),
            Self::Spawn | Self::ShutdownAll => "/agents".into(),
            Self::GetAgent(name) | Self::ShutdownAgent(name) => format!("/agents/{name}"),
            Self::Message(name) => format!("/agents/{name}/message"),
            Self::Task(name) => format!("/agents/{name}/task"),
            Self::Interrupt(name) => format!("/agents/{name}/interrupt"),
            Self::History(name, query) => format!("/agents/{name}/history{}", query.to_query()),
            Self::ClearHistory(name) => format!("/agents/{name}/history"),
            Self::Approvals(query) => format!("/approvals{}", query.to_query()),
            Self::Answer(id) => format!("/approvals/{id}"),
            Self::UiFile(file) if file.as_str() == UiFile::INDEX => "/ui/".into(),
            Self::UiFile(file) => format!("/ui/{}", file.as_str()),
            Self::UiLogin => "/ui/login".into(),
            Self::UiLogout => "/ui/logout".into(),
            Self::UiLink => "/ui/link".into(),
        }
    }

    /// Routes that act on the daemon as a whole: accepted on the Unix socket only.
    pub fn is_control_plane(&self) -> bool {
        matches!(
            self,
            Self::Shutdown | Self::ShutdownAll | Self::Reload | Self::Prune | Self::UiLink
        )
    }

    /// The agent a request is about, for the log.
    pub fn agent(&self) -> Option<&AgentName> {
        match self {
            Self::GetAgent(name)
            | Self::ShutdownAgent(name)
            | Self::Message(name)
            | Self::Task(name)
            | Self::Interrupt(name)
            | Self::History(name, _)
            | Self::ClearHistory(name) => Some(name),
            Self::Approvals(query) => query.agent.as_ref(),
            _ => None,
        }
    }

    /// A short fixed name of the route, for the log.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Shutdown => "shutdown",
            Self::Reload => "reload",
            Self::Prune => "prune",
            Self::Models => "models",
            Self::Search(_) => "search",
            Self::FanOut => "fan_out",
            Self::Conversations(_) => "conversations",
            Self::Events(_) => "events",
            Self::Usage(_) => "usage",
            Self::Metrics => "metrics",
            Self::Tools(_) => "tools",
            Self::ListAgents(_) => "list",
            Self::Spawn => "spawn",
            Self::ShutdownAll => "shutdown_all",
            Self::GetAgent(_) => "get_agent",
            Self::ShutdownAgent(_) => "shutdown_agent",
            Self::Message(_) => "message",
            Self::Task(_) => "task",
            Self::Interrupt(_) => "interrupt",
            Self::History(..) => "history",
            Self::ClearHistory(_) => "clear_history",
            Self::Approvals(_) => "approvals",
            Self::Answer(_) => "answer",
            Self::UiFile(_) => "ui_file",
            Self::UiLogin => "ui_login",
            Self::UiLogout => "ui_logout",
            Self::UiLink => "ui_link",
        }
    }
}

fn agent_route(
    method: &Method,
    query: &str,
    name: &str,
    tail: &[&str],
    path: &str,
) -> Result<Route, RouteError> {
    let not_allowed = |allowed| RouteError::MethodNotAllowed {
        method: method.clone(),
        allowed,
    };
    // The fixed tail first, so `/agents/x/%6Dessage` is refused whatever x is.
    let tail = match tail {
        [] => None,
        [segment] => Some(fixed(segment)?),
        _ => return Err(RouteError::NoRoute(path.to_owned())),
    };
    if !matches!(
        tail,
        None | Some("message" | "task" | "interrupt" | "history")
    ) {
        return Err(RouteError::NoRoute(path.to_owned()));
    }
    let name = agent_name(name)?;
    match (tail, method) {
        (None, &Method::GET) => Ok(Route::GetAgent(name)),
        (None, &Method::DELETE) => Ok(Route::ShutdownAgent(name)),
        (None, _) => Err(not_allowed(GET_DELETE)),
        (Some("message"), &Method::POST) => Ok(Route::Message(name)),
        (Some("task"), &Method::POST) => Ok(Route::Task(name)),
        (Some("interrupt"), &Method::POST) => Ok(Route::Interrupt(name)),
        (Some("message" | "task" | "interrupt"), _) => Err(not_allowed(POST)),
        (Some(_), &Method::GET) => Ok(Route::History(
            name,
            HistoryQuery::parse(query).map_err(invalid)?,
        )),
        (Some(_), &Method::DELETE) => Ok(Route::ClearHistory(name)),
        (Some(_), _) => Err(not_allowed(GET_DELETE)),
    }
}

/// `/ui/{segment}`: the login and logout actions, the link (control
/// plane), or one of the page's files.
fn ui_route(method: &Method, segment: &str, path: &str) -> Result<Route, RouteError> {
    let action = match segment {
        "login" => Some(Route::UiLogin),
        "logout" => Some(Route::UiLogout),
        "link" => Some(Route::UiLink),
        _ => None,
    };
    match (action, method) {
        (Some(action), &Method::POST) => Ok(action),
        (Some(_), _) => Err(RouteError::MethodNotAllowed {
            method: method.clone(),
            allowed: POST,
        }),
        (None, &Method::GET) => UiFile::parse(segment)
            .map(Route::UiFile)
            .ok_or_else(|| RouteError::NoRoute(path.to_owned())),
        (None, _) => Err(RouteError::MethodNotAllowed {
            method: method.clone(),
            allowed: GET,
        }),
    }
}

fn only(method: &Method, wanted: &Method, route: Route) -> Option<Route> {
    (method == wanted).then_some(route)
}

fn invalid(error: QueryError) -> RouteError {
    RouteError::InvalidQuery(error)
}

/// The path's segments, refusing every spelling that is not the canonical one.
fn canonical_segments(path: &str) -> Result<Vec<&str>, RouteError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(RouteError::BadPath(format!(
            "{path:?} is not an absolute path"
        )));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    // One trailing slash means the same path; two do not.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    for segment in &segments {
        if segment.is_empty() {
            return Err(RouteError::BadPath(format!(
                "{path:?} has an empty segment (`//`)"
            )));
        }
        if *segment == "." || *segment == ".." {
            return Err(RouteError::BadPath(format!("{path:?} has a dot segment")));
        }
    }
    Ok(segments)
}

/// A fixed segment (`agents`, `message`, …) is matched exactly as sent.
fn fixed(segment: &str) -> Result<&str, RouteError> {
    if segment.contains('%') {
        return Err(RouteError::BadPath(format!(
            "{segment:?}: percent-encoding is only allowed in an agent name"
        )));
    }
    Ok(segment)
}

/// The `{name}` segment, percent-decoded; it must then be a valid name
/// (which also rules out an encoded `/` or dot segment).
fn agent_name(segment: &str) -> Result<AgentName, RouteError> {
    let decoded = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| RouteError::BadPath(format!("{segment:?} does not decode to UTF-8")))?;
    if decoded.contains('/') {
        return Err(RouteError::BadPath(format!("{segment:?} encodes a `/`")));
    }
    Ok(AgentName::parse(&decoded)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: &str, target: &str) -> Result<Route, u16> {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let uri: Uri = target.parse().unwrap();
        Route::parse(&method, &uri).map_err(|e| status(&e))
    }

    /// The status the API gives each kind of error (`api/error.rs`).
    fn status(error: &RouteError) -> u16 {
        match error {
            RouteError::BadPath(_) => 400,
            RouteError::NoRoute(_) => 404,
            RouteError::MethodNotAllowed { .. } => 405,
            RouteError::InvalidName(_)
            | RouteError::InvalidQuery(_)
            | RouteError::InvalidApprovalId(_) => 422,
        }
    }

    fn name(text: &str) -> AgentName {
        AgentName::parse(text).unwrap()
    }

    /// Every route, canonical.
    fn canonical() -> Vec<(&'static str, &'static str, Route)> {
        vec![
            ("GET", "/health", Route::Health),
            ("POST", "/shutdown", Route::Shutdown),
            ("POST", "/reload", Route::Reload),
            ("POST", "/prune", Route::Prune),
            ("POST", "/messages", Route::FanOut),
            (
                "GET",
                "/conversations",
                Route::Conversations(ConversationsQuery::default()),
            ),
            ("POST", "/models", Route::Models),
            ("GET", "/events", Route::Events(EventsQuery::default())),
            ("GET", "/usage", Route::Usage(UsageQuery::default())),
            ("GET", "/tools", Route::Tools(ToolsQuery::default())),
            ("GET", "/metrics", Route::Metrics),
            ("GET", "/search", Route::Search(SearchQuery::default())),
            ("GET", "/agents", Route::ListAgents(ListQuery::default())),
            ("POST", "/agents", Route::Spawn),
            ("DELETE", "/agents", Route::ShutdownAll),
            ("GET", "/agents/a", Route::GetAgent(name("a"))),
            ("DELETE", "/agents/a", Route::ShutdownAgent(name("a"))),
            ("POST", "/agents/a/message", Route::Message(name("a"))),
            ("POST", "/agents/a/task", Route::Task(name("a"))),
            ("POST", "/agents/a/interrupt", Route::Interrupt(name("a"))),
            (
                "GET",
                "/agents/a/history",
                Route::History(name("a"), HistoryQuery::default()),
            ),
            (
                "DELETE",
                "/agents/a/history",
                Route::ClearHistory(name("a")),
            ),
            (
                "GET",
                "/approvals",
                Route::Approvals(ApprovalsQuery::default()),
            ),
            ("POST", "/approvals/3f9c2a", Route::Answer(id("3f9c2a"))),
            ("GET", "/ui/app.js", Route::UiFile(ui_file("app.js"))),
            ("POST", "/ui/login", Route::UiLogin),
            ("POST", "/ui/logout", Route::UiLogout),
            ("POST", "/ui/link", Route::UiLink),
        ]
    }

    fn id(text: &str) -> ApprovalId {
        ApprovalId::parse(text).unwrap()
    }

    fn ui_file(text: &str) -> UiFile {
        UiFile::parse(text).unwrap()
    }

    /// Every route, with parameters that exercise the query encoding.
    fn every_route() -> Vec<Route> {
        let odd = name("x.y_z-1");
        vec![
            Route::Health,
            Route::Shutdown,
            Route::Reload,
            Route::Prune,
            Route::Models,
            Route::FanOut,
            Route::Search(SearchQuery::default()),
            Route::Search(SearchQuery {
                q: "\"a phrase\" OR b* & c=d".into(),
                agent: Some(odd.clone()),
                since: Some("7d".into()),
                limit: Some(3),
            }),
            Route::Conversations(ConversationsQuery::default()),
            Route::Conversations(ConversationsQuery {
                agent: Some(odd.clone()),
            }),
            Route::Usage(UsageQuery::default()),
            Route::Usage(UsageQuery {
                by: Some(crate::model::UsageBy::Day),
                since: Some("2026-01-01T00:00:00+01:00".into()),
                agent: Some(odd.clone()),
            }),
            Route::Metrics,
            Route::Tools(ToolsQuery::default()),
            Route::Tools(ToolsQuery { start: true }),
            Route::Events(EventsQuery::default()),
            Route::Events(EventsQuery {
                agents: vec![odd.clone(), name("a")],
            }),
            Route::ListAgents(ListQuery::default()),
            Route::ListAgents(ListQuery {
                state: Some(crate::model::AgentState::Suspended),
                provider: Some("open ai/+%".into()),
                all: true,
            }),
            Route::Spawn,
            Route::ShutdownAll,
            Route::GetAgent(odd.clone()),
            Route::ShutdownAgent(odd.clone()),
            Route::Message(odd.clone()),
            Route::Task(odd.clone()),
            Route::Interrupt(odd.clone()),
            Route::History(odd.clone(), HistoryQuery::default()),
            Route::History(
                odd.clone(),
                HistoryQuery {
                    limit: Some(0),
                    all: true,
                    conversation: Some(uuid::Uuid::from_u128(7)),
                },
            ),
            Route::ClearHistory(odd.clone()),
            Route::Approvals(ApprovalsQuery::default()),
            Route::Approvals(ApprovalsQuery { agent: Some(odd) }),
            Route::Answer(id("0a9f00")),
            Route::UiFile(UiFile::index()),
            Route::UiFile(ui_file("style.css")),
            Route::UiLogin,
            Route::UiLogout,
            Route::UiLink,
        ]
    }

    #[test]
    fn every_route_reads_back_as_it_was_built() {
        let routes = every_route();
        for route in &routes {
            let uri: Uri = route.target().parse().expect("a valid target");
            let parsed = Route::parse(&route.method(), &uri);
            assert_eq!(parsed.ok().as_ref(), Some(route), "{}", route.target());
        }
        // Each kind of route is in the list: a new one must be added here.
        let labels: std::collections::BTreeSet<&str> = routes.iter().map(Route::label).collect();
        let canonical: std::collections::BTreeSet<&str> = canonical()
            .iter()
            .map(|(_, _, route)| route.label())
            .collect();
        assert_eq!(labels, canonical);
    }

    /// Other spellings of a canonical path: each must be refused, or
    /// (only the trailing slash) mean exactly the same route.
    fn spellings(path: &str) -> Vec<String> {
        let mut out = vec![
            format!("{path}/"),
            format!("{path}//"),
            format!("/{path}"),
            format!("{path}/."),
            format!("{path}/.."),
            format!("/.{path}"),
            format!("/x/..{path}"),
            path.to_uppercase(),
            path.replacen('/', "//", 2).replacen("///", "//", 1),
            path.replace('/', "/./"),
            path.replace('/', "%2F"),
            path.replace('/', "%2f"),
        ];
        // Percent-encode each character of each fixed segment in turn.
        for (i, c) in path.char_indices().filter(|(_, c)| c.is_ascii_alphabetic()) {
            out.push(format!("{}%{:02X}{}", &path[..i], c as u32, &path[i + 1..]));
            out.push(format!("{}%{:02x}{}", &path[..i], c as u32, &path[i + 1..]));
        }
        if let Some(inner) = path.strip_prefix("/agents/a") {
            out.push(format!("/agents/a%2F..{inner}"));
            out.push(format!("/agents/.{inner}"));
            out.push(format!("/agents/..{inner}"));
            out.push(format!("/agents/%2E%2E{inner}"));
            out.push(format!("/agents//a{inner}"));
        }
        out
    }

    #[test]
    fn guard_and_router_agree_on_every_spelling() {
        let all_methods = ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"];
        let mut checked = 0;
        for (method, path, route) in canonical() {
            assert_eq!(parse(method, path), Ok(route.clone()), "{method} {path}");
            for spelling in spellings(path) {
                for m in all_methods {
                    // An unparseable request line never reaches the router at all.
                    let Ok(uri) = spelling.parse::<Uri>() else {
                        continue;
                    };
                    let parsed = Route::parse(&Method::from_bytes(m.as_bytes()).unwrap(), &uri);
                    checked += 1;
                    let Ok(parsed) = parsed else { continue };
                    // Whatever a spelling parses to, it is exactly what the
                    // canonical path means with that method: the guard and
                    // the router both see that one value.
                    assert_eq!(
                        Ok(parsed),
                        parse(m, path),
                        "{m} {spelling} means something other than {m} {path}"
                    );
                }
            }
        }
        assert!(checked > 1000, "only {checked} spellings checked");
    }

    #[test]
    fn non_canonical_spellings_are_refused_not_rerouted() {
        for (method, target) in [
            ("POST", "/%73hutdown"),
            ("POST", "//shutdown"),
            ("POST", "/shutdown//"),
            ("POST", "/./shutdown"),
            ("POST", "/x/../shutdown"),
            ("DELETE", "/%61gents"),
            ("DELETE", "//agents"),
            ("DELETE", "/agents/."),
            ("DELETE", "/agents/a/.."),
            ("GET", "/agents/a%2Fb"),
            ("POST", "/agents/a/%6Dessage"),
        ] {
            let status = parse(method, target).expect_err(target);
            assert_eq!(status, 400, "{method} {target}");
        }
        assert_eq!(parse("POST", "/Shutdown"), Err(404));
        assert_eq!(parse("DELETE", "/AGENTS"), Err(404));
        assert_eq!(parse("POST", "/shutdown/"), Ok(Route::Shutdown));
        assert_eq!(
            parse("GET", "/agents/"),
            Ok(Route::ListAgents(ListQuery::default()))
        );
    }

    #[test]
    fn an_encoded_name_is_decoded_only_into_a_valid_name() {
        assert_eq!(
            parse("GET", "/agents/%61lice"),
            Ok(Route::GetAgent(name("alice")))
        );
        assert_eq!(
            parse("GET", "/agents/a.b"),
            Ok(Route::GetAgent(name("a.b")))
        );
        assert_eq!(parse("GET", "/agents/%2Ehidden"), Err(422));
        assert_eq!(parse("GET", "/agents/a%20b"), Err(422));
        assert_eq!(parse("GET", "/agents/%FF"), Err(400));
    }

    #[test]
    fn queries_are_typed_at_the_parse() {
        let Ok(Route::History(_, query)) = parse("GET", "/agents/a/history?limit=3&all") else {
            panic!("history did not parse");
        };
        assert_eq!(query.limit, Some(3));
        assert!(query.all);
        assert_eq!(parse("GET", "/agents/a/history?limit=-1"), Err(422));
        let Ok(Route::Events(query)) = parse("GET", "/events?agent=a&agent=b&agent=a") else {
            panic!("events did not parse");
        };
        assert_eq!(query.agents, vec![name("a"), name("b")]);
        assert_eq!(parse("GET", "/events?agent=.x"), Err(422));
        assert_eq!(parse("POST", "/events"), Err(405));
        assert_eq!(parse("GET", "/agents?state=sleepy"), Err(422));
        assert_eq!(parse("PUT", "/agents"), Err(405));
        assert_eq!(parse("GET", "/agents/a/b/c"), Err(404));
        assert_eq!(parse("GET", "/"), Err(404));
    }

    #[test]
    fn the_web_page_s_paths() {
        let index = Ok(Route::UiFile(UiFile::index()));
        assert_eq!(parse("GET", "/ui"), index);
        assert_eq!(parse("GET", "/ui/"), index);
        assert_eq!(parse("GET", "/ui/index.html"), index);
        assert_eq!(parse("GET", "/ui/login"), Err(405));
        assert_eq!(parse("POST", "/ui/app.js"), Err(405));
        assert_eq!(parse("GET", "/ui/App.js"), Err(404));
        assert_eq!(parse("GET", "/ui/.hidden"), Err(404));
        assert_eq!(parse("GET", "/ui/a/b.js"), Err(404));
        assert_eq!(parse("GET", "/ui/%61pp.js"), Err(400));
        assert!(parse("POST", "/ui/link").is_ok_and(|r| r.is_control_plane()));
    }
}

#[cfg(test)]
mod approval_tests {
    use super::*;

    fn parse(method: &str, target: &str) -> Result<Route, String> {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let uri: Uri = target.parse().unwrap();
        Route::parse(&method, &uri).map_err(|e| match e {
            RouteError::InvalidApprovalId(_) => "invalid_id".into(),
            RouteError::MethodNotAllowed { .. } => "405".into(),
            RouteError::NoRoute(_) => "404".into(),
            RouteError::BadPath(_) => "400".into(),
            other => other.to_string(),
        })
    }

    #[test]
    fn an_approval_id_is_six_lowercase_hex_digits() {
        for good in ["3f9c2a", "000000", "abcdef"] {
            assert_eq!(
                parse("POST", &format!("/approvals/{good}")),
                Ok(Route::Answer(ApprovalId::parse(good).unwrap()))
            );
        }
        for bad in ["3F9C2A", "3f9c2", "3f9c2a0", "3f9c2g", "nope", "%33f9c2a"] {
            let parsed = parse("POST", &format!("/approvals/{bad}"));
            assert!(
                matches!(&parsed, Err(e) if e == "invalid_id" || e == "400"),
                "{bad}: {parsed:?}"
            );
        }
        assert_eq!(parse("GET", "/approvals/3f9c2a"), Err("405".into()));
        assert_eq!(parse("DELETE", "/approvals"), Err("405".into()));
        assert_eq!(parse("POST", "/approvals/3f9c2a/x"), Err("404".into()));
    }

    #[test]
    fn the_approvals_list_takes_an_agent() {
        let Ok(Route::Approvals(query)) = parse("GET", "/approvals?agent=coder") else {
            panic!("approvals did not parse");
        };
        assert_eq!(query.agent.as_ref().map(AgentName::as_str), Some("coder"));
        assert!(parse("GET", "/approvals?agent=.x").is_err());
        assert!(!Route::Approvals(query).is_control_plane());
        assert!(!Route::Answer(ApprovalId::parse("3f9c2a").unwrap()).is_control_plane());
    }
}
