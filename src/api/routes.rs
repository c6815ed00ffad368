//! The handlers: one per [`Route`], called with the route's decoded
//! parameters and the request body.

use std::collections::BTreeMap;

use http::{Response, StatusCode};
use hyper::body::Incoming;

use super::body::{self, Body, EventsFormat};
use super::error::ApiError;
use super::guard::{self, Caller};
use super::{ApiContext, ui};
use crate::engine::{Exchange, ListFilter, Which};
use crate::model::{AgentName, Clock, SearchFilter, Secret, UsageFilter};
use crate::providers::DEFAULT_PROVIDER;
use crate::wire::Route;
use crate::wire::{AnswerRequest, Answered, ApprovalId, ApprovalsQuery, MAX_REASON_BYTES};
use crate::wire::{
    Conversations, EventsQuery, FanOutLine, FanOutRequest, FanOutResult, Health, HistoryQuery,
    Interrupted, ListQuery, MessageRequest, Messages, Models, ModelsRequest, PruneRequest,
    SearchQuery, SearchResults, SpawnRequest, StreamLine, TaskRequest, ToolServers, UsageQuery,
};

type Reply = Result<Response<Body>, ApiError>;

/// Runs the handler of an already parsed (and guarded) route.
pub async fn dispatch(
    ctx: &ApiContext,
    route: Route,
    caller: &Caller,
    headers: &http::HeaderMap,
    body: Incoming,
) -> Reply {
    match route {
        Route::Health => health(ctx),
        Route::Shutdown => shutdown(ctx),
        Route::Reload => reload(ctx),
        Route::Prune => prune(ctx, body).await,
        Route::Models => models(ctx, body).await,
        Route::Search(query) => search(ctx, query),
        Route::FanOut => fan_out(ctx, body).await,
        Route::Conversations(query) => {
            let conversations = ctx.engine.conversations(query.agent.as_ref());
            Ok(body::json(StatusCode::OK, &Conversations { conversations }))
        }
        Route::Events(query) => events(ctx, query, headers),
        Route::Usage(query) => usage(ctx, query),
        Route::Metrics => Ok(super::metrics::render(ctx)),
        Route::Tools(query) => {
            let servers = ctx.engine.tools().servers(query.start).await;
            Ok(body::json(StatusCode::OK, &ToolServers { servers }))
        }
        Route::ListAgents(query) => list(ctx, query),
        Route::Spawn => spawn(ctx, caller, body).await,
        Route::ShutdownAll => shutdown_all(ctx).await,
        Route::GetAgent(name) => get(ctx, &name),
        Route::ShutdownAgent(name) => shutdown_agent(ctx, &name).await,
        Route::Message(name) => message(ctx, &name, body).await,
        Route::Task(name) => task(ctx, caller, name, body).await,
        Route::Interrupt(name) => interrupt(ctx, &name),
        Route::History(name, query) => history(ctx, &name, query),
        Route::ClearHistory(name) => clear_history(ctx, &name),
        Route::Approvals(query) => approvals(ctx, &query),
        Route::Answer(id) => answer_approval(ctx, &id, body).await,
        Route::UiFile(file) => ui::file(&file),
        Route::UiLogin => ui::login(ctx, caller, headers, body).await,
        Route::UiLogout => ui::logout(ctx, caller),
        Route::UiLink => ui::link(ctx),
    }
}

fn health(ctx: &ApiContext) -> Reply {
    Ok(body::json(
        StatusCode::OK,
        &Health {
            status: "ok".into(),
            agents: ctx.engine.live_count(),
            version: crate::VERSION.into(),
            pid: std::process::id(),
            uptime_s: ctx.engine.uptime().as_secs(),
            config: Some(ctx.control.config_status()),
            // The config's only: agents' own are one per agent (`usage` lists them).
            budgets: ctx.engine.budgets().config_states(ctx.engine.now()),
        },
    ))
}

fn shutdown(ctx: &ApiContext) -> Reply {
    tracing::info!("shutdown requested over the API");
    // Before the token fires (event streams end on it), so event readers
    // see every pending approval denied.
    ctx.engine
        .approvals()
        .deny_all(crate::engine::SHUTTING_DOWN);
    ctx.stop.cancel();
    Ok(body::json(
        StatusCode::ACCEPTED,
        &serde_json::json!({"status": "shutting down"}),
    ))
}

/// `POST /reload`: 200 with what changed, or 422 with why nothing did.
fn reload(ctx: &ApiContext) -> Reply {
    let control = ctx.control.clone();
    let outcome = tokio::task::block_in_place(|| control.reload());
    match outcome {
        Ok(reloaded) => Ok(body::json(StatusCode::OK, &reloaded)),
        Err(reason) => Err(ApiError::ReloadFailed(reason)),
    }
}

/// `POST /messages`: the prompt goes to every named agent at once; each
/// answers on its own, and one agent's failure (unknown, suspended, a
/// provider error) is that agent's result, not the request's.
async fn fan_out(ctx: &ApiContext, body: Incoming) -> Reply {
    let request: FanOutRequest = ctx.read_json(body).await?;
    let mut agents = request.agents.clone();
    agents.sort();
    agents.dedup();
    if agents.is_empty() || agents.len() != request.agents.len() {
        return Err(ApiError::InvalidBody(
            "field `agents` must name at least one agent, each once".into(),
        ));
    }
    let most = ctx.engine.settings().config.limits.max_fan_out;
    if agents.len() > most {
        return Err(ApiError::InvalidBody(format!(
            "field `agents` names {} agents; one message goes to at most {most} (limits.max_fan_out)",
            agents.len()
        )));
    }
    // One copy of the prompt, shared by every agent's queue.
    let content: std::sync::Arc<str> = request.content.into();
    let exchanges: Vec<(AgentName, Result<Exchange, ApiError>)> = request
        .agents
        .into_iter()
        .map(|name| {
            let exchange = ctx
                .engine
                .send(&name, content.clone(), None)
                .map_err(ApiError::from);
            (name, exchange)
        })
        .collect();
    if request.stream {
        return Ok(fan_out_stream(exchanges));
    }
    let replies = exchanges.into_iter().map(|(name, exchange)| async move {
        let outcome = match exchange {
            Ok(exchange) => exchange.reply().await.map_err(ApiError::from),
            Err(error) => Err(error),
        };
        let result = match outcome {
            Ok(reply) => FanOutResult::Replied(Messages {
                messages: vec![reply],
            }),
            Err(error) => FanOutResult::Failed {
                status: error.status().as_u16(),
                code: error.code(),
                detail: error.to_string(),
            },
        };
        (name, result)
    });
    let results: BTreeMap<AgentName, FanOutResult> = futures_util::future::join_all(replies)
        .await
        .into_iter()
        .collect();
    Ok(body::json(StatusCode::OK, &results))
}

/// Every agent's reply lines as they happen, each tagged with its agent,
/// then a last `{"type":"done"}`.
fn fan_out_stream(exchanges: Vec<(AgentName, Result<Exchange, ApiError>)>) -> Response<Body> {
    use futures_util::StreamExt;
    let per_agent = exchanges
        .into_iter()
        .map(|(name, exchange)| match exchange {
            Ok(exchange) => body::exchange_lines(exchange)
                .map(move |lines| tag(&name, lines))
                .boxed(),
            Err(error) => {
                futures_util::stream::once(
                    async move { tag(&name, vec![body::error_line(&error)]) },
                )
                .boxed()
            }
        });
    let done = futures_util::stream::once(async {
        body::encode_lines(&[FanOutLine {
            agent: None,
            line: StreamLine::Done,
        }])
    });
    body::ndjson_lines(futures_util::stream::select_all(per_agent).chain(done))
}

fn tag(name: &AgentName, lines: Vec<StreamLine>) -> bytes::Bytes {
    let tagged: Vec<FanOutLine> = lines
        .into_iter()
        .map(|line| FanOutLine {
            agent: Some(name.clone()),
            line,
        })
        .collect();
    body::encode_lines(&tagged)
}

/// `POST /prune`: removes (or with `dry_run` lists) ended conversations
/// whose last message is older than `older_than`.
async fn prune(ctx: &ApiContext, body: Incoming) -> Reply {
    let request: PruneRequest = ctx.read_json(body).await?;
    let back = crate::duration::parse(&request.older_than)
        .map_err(|reason| ApiError::InvalidBody(format!("older_than: {reason}")))?;
    let cutoff = ctx.engine.clock().rfc3339_ago(back);
    let report = ctx.engine.prune(&cutoff, request.dry_run)?;
    if !request.dry_run {
        tracing::info!(
            conversations = report.conversations.len(),
            freed = report.size_before.saturating_sub(report.size_after),
            "pruned ended conversations"
        );
    }
    Ok(body::json(StatusCode::OK, &report))
}

/// `GET /search`: 200 with the hits, best first; 400 for a query the index
/// cannot read or a `since` that is neither a duration nor a time.
fn search(ctx: &ApiContext, query: SearchQuery) -> Reply {
    let since = since_time(query.since.as_deref(), ctx.engine.clock())?;
    let filter = SearchFilter {
        query: &query.q,
        agent: query.agent.as_ref(),
        since: since.as_deref(),
        limit: query.limit.unwrap_or(20).min(1000),
    };
    let results = ctx.engine.search(&filter)?;
    Ok(body::json(StatusCode::OK, &SearchResults { results }))
}

/// `GET /usage`: the ledger's sums over the calls asked for.
fn usage(ctx: &ApiContext, query: UsageQuery) -> Reply {
    let since = since_time(query.since.as_deref(), ctx.engine.clock())?;
    let filter = UsageFilter {
        by: query.by,
        since: since.as_deref(),
        agent: query.agent.as_ref().map(AgentName::as_str),
    };
    let report = ctx.engine.usage(&filter)?;
    Ok(body::json(StatusCode::OK, &report))
}

/// A query's `since`, if it has one, as an RFC 3339 time: given as one,
/// or as a duration back from `clock`'s now.
fn since_time(since: Option<&str>, clock: &Clock) -> Result<Option<String>, ApiError> {
    since.map(|since| one_since(since, clock)).transpose()
}

fn one_since(since: &str, clock: &Clock) -> Result<String, ApiError> {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::parse(since, rfc3339) {
        Ok(at) => {
            return at
                .to_offset(time::UtcOffset::UTC)
                .format(rfc3339)
                .map_err(|e| ApiError::InvalidQuery(format!("since: {e}")));
        }
        // A year and a dash: meant as a date, so why it is not one is the
        // news (`2026-13-01…` has no month 13), not that `-13-01…` is no
        // duration unit.
        Err(error) if looks_like_a_date(since) => {
            return Err(ApiError::InvalidQuery(format!(
                "since {since:?} is not a valid date and time (RFC 3339, e.g. 2026-01-31T12:00:00Z): {error}"
            )));
        }
        Err(_) => {}
    }
    let back = crate::duration::parse(since).map_err(|reason| {
        ApiError::InvalidQuery(format!(
            "since must be a duration back from now (7d, 12h) or an RFC 3339 time: {reason}"
        ))
    })?;
    Ok(clock.rfc3339_ago(back))
}

/// Four digits and a dash: how every RFC 3339 time begins.
fn looks_like_a_date(text: &str) -> bool {
    let bytes = text.trim().as_bytes();
    bytes.len() > 4 && bytes[..4].iter().all(u8::is_ascii_digit) && bytes[4] == b'-'
}

/// `GET /events`: NDJSON, or server-sent events for a client that accepts them.
fn events(ctx: &ApiContext, query: EventsQuery, headers: &http::HeaderMap) -> Reply {
    let sse = headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("text/event-stream"));
    let format = if sse {
        EventsFormat::Sse
    } else {
        EventsFormat::Ndjson
    };
    let limits = ctx.engine.settings().config.limits.clone();
    let slot =
        ctx.event_streams
            .take(limits.max_event_streams)
            .ok_or(ApiError::TooManyStreams {
                limit: limits.max_event_streams,
            })?;
    let stream = body::EventStream {
        query,
        format,
        slot,
        keepalive: limits.events_keepalive,
    };
    Ok(body::events(
        ctx.engine.events().clone(),
        stream,
        ctx.stop.clone(),
    ))
}

fn list(ctx: &ApiContext, query: ListQuery) -> Reply {
    let filter = ListFilter {
        state: query.state,
        provider: query.provider,
        all: query.all,
    };
    Ok(body::json(StatusCode::OK, &ctx.engine.list(&filter)))
}

async fn spawn(ctx: &ApiContext, caller: &Caller, body: Incoming) -> Reply {
    let spawn: SpawnRequest = ctx.read_json(body).await?;
    guard::check_approval_mode(
        caller,
        spawn.approval,
        spawn.allow.as_deref().unwrap_or(&[]),
    )?;
    let config = spawn.into_config().map_err(ApiError::InvalidBody)?;
    let info = ctx.engine.spawn(config).await?;
    Ok(body::json(StatusCode::OK, &info))
}

/// `POST /models`: the models the endpoint a spawn request names offers.
/// A POST, not a GET, because the request carries the API key.
async fn models(ctx: &ApiContext, body: Incoming) -> Reply {
    let request: ModelsRequest = ctx.read_json(body).await?;
    let spec = request.into_spec();
    let models = ctx.engine.models(&spec).await?;
    let provider = spec
        .profile
        .or(spec.provider)
        .unwrap_or_else(|| DEFAULT_PROVIDER.into());
    Ok(body::json(StatusCode::OK, &Models { provider, models }))
}

/// `DELETE /agents/{name}/history`: forgets every message the name has had.
fn clear_history(ctx: &ApiContext, name: &AgentName) -> Reply {
    ctx.engine.clear_history(name)?;
    Ok(body::empty(StatusCode::NO_CONTENT))
}

fn get(ctx: &ApiContext, name: &AgentName) -> Reply {
    Ok(body::json(StatusCode::OK, &ctx.engine.get(name)?))
}

async fn shutdown_agent(ctx: &ApiContext, name: &AgentName) -> Reply {
    ctx.engine.shutdown_agent(name).await?;
    Ok(body::empty(StatusCode::NO_CONTENT))
}

async fn shutdown_all(ctx: &ApiContext) -> Reply {
    Ok(body::json(StatusCode::OK, &ctx.engine.shutdown_all().await))
}

async fn message(ctx: &ApiContext, name: &AgentName, body: Incoming) -> Reply {
    let message: MessageRequest = ctx.read_json(body).await?;
    let key = message.api_key.filter(|k| !k.is_empty()).map(Secret::new);
    let exchange = ctx.engine.send(name, message.content.into(), key)?;
    answer(exchange, message.stream).await
}

async fn task(ctx: &ApiContext, caller: &Caller, name: AgentName, body: Incoming) -> Reply {
    let mut task: TaskRequest = ctx.read_json(body).await?;
    guard::check_approval_mode(caller, task.approval, task.allow.as_deref().unwrap_or(&[]))?;
    if task.name.as_ref().is_some_and(|given| given != &name) {
        return Err(ApiError::InvalidBody(format!(
            "field `name` must match the name in the path ('{name}')"
        )));
    }
    let prompt = std::mem::take(&mut task.prompt);
    let stream = task.stream;
    let config = task
        .spawn(name)
        .into_config()
        .map_err(ApiError::InvalidBody)?;
    let exchange = ctx.engine.task(config, prompt).await?;
    answer(exchange, stream).await
}

/// `POST /agents/{name}/interrupt`: 202 whether or not a turn was running;
/// the body says which. The interrupted caller gets its partial reply.
fn interrupt(ctx: &ApiContext, name: &AgentName) -> Reply {
    let interrupted = ctx.engine.interrupt(name)?;
    Ok(body::json(
        StatusCode::ACCEPTED,
        &Interrupted { interrupted },
    ))
}

/// Answers an exchange as an NDJSON stream or, once finished, as `{"messages":[…]}`.
async fn answer(exchange: Exchange, stream: bool) -> Reply {
    if stream {
        return Ok(body::ndjson(exchange));
    }
    let reply = exchange.reply().await?;
    Ok(body::json(
        StatusCode::OK,
        &Messages {
            messages: vec![reply],
        },
    ))
}

fn history(ctx: &ApiContext, name: &AgentName, query: HistoryQuery) -> Reply {
    let which = match (query.conversation, query.all) {
        (Some(id), _) => Which::One(id),
        (None, true) => Which::All,
        (None, false) => Which::Last,
    };
    let messages = ctx.engine.history(name, query.limit, which)?;
    Ok(body::json(StatusCode::OK, &Messages { messages }))
}

/// `GET /approvals`: the pending approvals, oldest first (one agent's with `?agent=`).
fn approvals(ctx: &ApiContext, query: &ApprovalsQuery) -> Reply {
    let pending = ctx.engine.approvals().list(query.agent.as_ref());
    Ok(body::json(StatusCode::OK, &pending))
}

/// `POST /approvals/{id}`: 200 with the approval and the decision taken;
/// 404 for an id never handed out, 409 for one already settled.
async fn answer_approval(ctx: &ApiContext, id: &ApprovalId, body: Incoming) -> Reply {
    let answer: AnswerRequest = ctx.read_json(body).await?;
    if answer
        .reason
        .as_ref()
        .is_some_and(|reason| reason.len() > MAX_REASON_BYTES)
    {
        return Err(ApiError::InvalidBody(format!(
            "field `reason` is longer than {MAX_REASON_BYTES} bytes"
        )));
    }
    let verdict = answer.into_verdict();
    let approval = ctx
        .engine
        .approvals()
        .answer(id.as_str(), verdict.clone())?;
    Ok(body::json(
        StatusCode::OK,
        &Answered {
            approval,
            decision: verdict.decision,
            reason: verdict.reason,
        },
    ))
}
