//! Routing: maps method and path to a handler. Paths match with or without a
//! trailing slash; path segments are percent-decoded, then validated.

use std::borrow::Cow;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;

use super::ApiContext;
use super::body::{self, Body, read_json};
use super::error::ApiError;
use super::wire::{AgentRequest, Health, MessageRequest, Messages, Models};
use crate::engine::{AgentName, AgentState, Exchange, ListFilter};
use crate::providers::DEFAULT_PROVIDER;

type Reply = Result<Response<Body>, ApiError>;

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const AGENTS: &[Method] = &[Method::GET, Method::POST, Method::DELETE];
const AGENT: &[Method] = &[Method::GET, Method::DELETE];
const HISTORY: &[Method] = &[Method::GET, Method::DELETE];

pub async fn route(ctx: &ApiContext, request: Request<Incoming>) -> Reply {
    let path = request.uri().path().to_owned();
    let segments = segments(&path)?;
    let segments: Vec<&str> = segments.iter().map(|s| s.as_ref()).collect();
    let method = request.method().clone();
    match (segments.as_slice(), &method) {
        (["health"], &Method::GET) => health(ctx),
        (["health"], _) => not_allowed(method, GET),
        (["shutdown"], &Method::POST) => shutdown(ctx),
        (["shutdown"], _) => not_allowed(method, POST),
        (["models"], &Method::POST) => models(ctx, request).await,
        (["models"], _) => not_allowed(method, POST),
        (["agents"], &Method::GET) => list(ctx, &request),
        (["agents"], &Method::POST) => spawn(ctx, request).await,
        (["agents"], &Method::DELETE) => shutdown_all(ctx).await,
        (["agents"], _) => not_allowed(method, AGENTS),
        (["agents", name], &Method::GET) => get(ctx, name),
        (["agents", name], &Method::DELETE) => shutdown_agent(ctx, name).await,
        (["agents", _], _) => not_allowed(method, AGENT),
        (["agents", name, "message"], &Method::POST) => message(ctx, name, request).await,
        (["agents", _, "message"], _) => not_allowed(method, POST),
        (["agents", name, "task"], &Method::POST) => task(ctx, name, request).await,
        (["agents", _, "task"], _) => not_allowed(method, POST),
        (["agents", name, "history"], &Method::GET) => history(ctx, name, &request),
        (["agents", name, "history"], &Method::DELETE) => clear_history(ctx, name),
        (["agents", _, "history"], _) => not_allowed(method, HISTORY),
        _ => Err(ApiError::NoRoute(path)),
    }
}

/// Splits a path into percent-decoded segments, ignoring empty ones (so a
/// trailing slash changes nothing).
fn segments(path: &str) -> Result<Vec<Cow<'_, str>>, ApiError> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .map_err(|_| ApiError::NoRoute(path.to_owned()))
        })
        .collect()
}

fn not_allowed(method: Method, allowed: &'static [Method]) -> Reply {
    Err(ApiError::MethodNotAllowed { method, allowed })
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
        },
    ))
}

fn shutdown(ctx: &ApiContext) -> Reply {
    tracing::info!("shutdown requested over the API");
    ctx.stop.cancel();
    Ok(body::json(
        StatusCode::ACCEPTED,
        &serde_json::json!({"status": "shutting down"}),
    ))
}

fn list(ctx: &ApiContext, request: &Request<Incoming>) -> Reply {
    let mut filter = ListFilter::default();
    for (key, value) in query(request) {
        match key.as_str() {
            "state" if !value.is_empty() => {
                filter.state = Some(
                    value
                        .parse::<AgentState>()
                        .map_err(ApiError::InvalidQuery)?,
                );
            }
            "provider" if !value.is_empty() => filter.provider = Some(value),
            "all" => filter.all = flag(&value),
            _ => {}
        }
    }
    Ok(body::json(StatusCode::OK, &ctx.engine.list(&filter)))
}

async fn spawn(ctx: &ApiContext, request: Request<Incoming>) -> Reply {
    let spawn: AgentRequest = read_json(request.into_body()).await?;
    let Some(name) = spawn.name.clone() else {
        return Err(ApiError::InvalidBody("field `name` is required".into()));
    };
    let info = ctx.engine.spawn(spawn.into_config(name))?;
    Ok(body::json(StatusCode::OK, &info))
}

/// `POST /models`: the models the endpoint a spawn request names offers.
/// A POST, not a GET, because the request carries the API key.
async fn models(ctx: &ApiContext, request: Request<Incoming>) -> Reply {
    let spec: AgentRequest = read_json(request.into_body()).await?;
    let spec = spec.into_spec();
    let models = ctx.engine.models(&spec).await?;
    let provider = spec
        .profile
        .or(spec.provider)
        .unwrap_or_else(|| DEFAULT_PROVIDER.into());
    Ok(body::json(StatusCode::OK, &Models { provider, models }))
}

/// `DELETE /agents/{name}/history`: forgets every message the name has had.
fn clear_history(ctx: &ApiContext, name: &str) -> Reply {
    let name = AgentName::parse(name)?;
    ctx.engine.clear_history(&name)?;
    Ok(body::empty(StatusCode::NO_CONTENT))
}

fn get(ctx: &ApiContext, name: &str) -> Reply {
    let name = AgentName::parse(name)?;
    Ok(body::json(StatusCode::OK, &ctx.engine.get(&name)?))
}

async fn shutdown_agent(ctx: &ApiContext, name: &str) -> Reply {
    let name = AgentName::parse(name)?;
    ctx.engine.shutdown_agent(&name).await?;
    Ok(body::empty(StatusCode::NO_CONTENT))
}

async fn shutdown_all(ctx: &ApiContext) -> Reply {
    Ok(body::json(StatusCode::OK, &ctx.engine.shutdown_all().await))
}

async fn message(ctx: &ApiContext, name: &str, request: Request<Incoming>) -> Reply {
    let name = AgentName::parse(name)?;
    let message: MessageRequest = read_json(request.into_body()).await?;
    let exchange = ctx.engine.send(&name, message.content)?;
    answer(exchange, message.stream).await
}

async fn task(ctx: &ApiContext, name: &str, request: Request<Incoming>) -> Reply {
    let name = AgentName::parse(name)?;
    let mut task: AgentRequest = read_json(request.into_body()).await?;
    if task.name.as_ref().is_some_and(|given| given != &name) {
        return Err(ApiError::InvalidBody(format!(
            "field `name` must match the name in the path ('{name}')"
        )));
    }
    let Some(prompt) = task.prompt.take() else {
        return Err(ApiError::InvalidBody("field `prompt` is required".into()));
    };
    let stream = task.stream.unwrap_or(false);
    let exchange = ctx.engine.task(task.into_config(name), prompt)?;
    answer(exchange, stream).await
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

fn history(ctx: &ApiContext, name: &str, request: &Request<Incoming>) -> Reply {
    let name = AgentName::parse(name)?;
    let mut limit = None;
    let mut all = false;
    for (key, value) in query(request) {
        match key.as_str() {
            "limit" if !value.is_empty() => {
                let n = value.parse::<usize>().map_err(|_| {
                    ApiError::InvalidQuery(format!(
                        "limit must be a non-negative whole number, not {value:?}"
                    ))
                })?;
                limit = Some(n);
            }
            "all" => all = flag(&value),
            _ => {}
        }
    }
    let messages = ctx.engine.history(&name, limit, all)?;
    Ok(body::json(StatusCode::OK, &Messages { messages }))
}

/// A boolean query parameter: `?all`, `?all=1`, `?all=true` and `?all=yes` are true.
fn flag(value: &str) -> bool {
    matches!(value, "" | "1" | "true" | "yes")
}

/// The query string's `key=value` pairs, percent- and `+`-decoded.
fn query<B>(request: &Request<B>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}
