//! The tool loop of an API agent: offer the model the agent's tools (all
//! but those config denies, which are refused if called anyway), run
//! the calls it asks for (each recorded, guarded by its policy and, for
//! `ask`, by the daemon's approvals), send the results back, and call the
//! model again, until it answers in text or `tools.max_tool_rounds` is
//! reached. Every model call goes through [`Model::call`], one ledger row
//! each.
//!
//! Later turns do not resend a turn's tool calls and results: the context
//! built from history skips `tool_call`/`tool_result` messages
//! (`Store::turns`), and the text reply that ended the turn stands for
//! its rounds.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::agent::{End, ExchangeEvent, INTERRUPTED_BY_REQUEST, Model, Reply};
use super::{Engine, EngineError, usage};
use crate::config::Config;
use crate::model::{
    AgentConfig, ApprovalMode, ApprovalRequest, Decision, Event, ToolCall, ToolDef, ToolPolicy,
    ToolResult, Workspace,
};
use crate::providers::http::Redactor;
use crate::providers::{ChatRequest, ProviderSettings, ToolRound};
use crate::tools::{ToolError, ToolHost};

/// How long calls cut short by a stopped turn may take to end (their MCP
/// cancellation sent) before they are given up.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The longest approval summary, in characters.
const SUMMARY_CHARS: usize = 200;

/// The tools one turn offers the model, each with the policy it runs under.
pub(super) struct Toolbox {
    tools: Vec<Offered>,
}

struct Offered {
    def: ToolDef,
    /// The name the model calls it by (`server__tool`).
    wire: String,
    policy: ToolPolicy,
    /// Config denies it: kept so that a call naming it anyway is refused
    /// by its policy, but never shown to the model.
    hidden: bool,
}

impl Toolbox {
    /// The agent's tools (`spawn --tools`, a profile's `tools`), their
    /// servers started if need be; a server that cannot be reached fails
    /// the turn, as does a stop while it starts.
    pub async fn offer(
        engine: &Engine,
        agent: &super::agent::Agent,
        events: &tokio::sync::mpsc::UnboundedSender<ExchangeEvent>,
        turn: &CancellationToken,
    ) -> Result<Self, End> {
        let workspace = &agent.config.workspace;
        if workspace.tools.is_empty() {
            return Ok(Self { tools: Vec::new() });
        }
        let offered = tokio::select! {
            biased;
            _ = agent.cancel.cancelled() => return Err(End::Interrupted("the agent was shut down".into())),
            _ = events.closed() => return Err(End::Interrupted("the client disconnected".into())),
            _ = turn.cancelled() => return Err(End::Interrupted(INTERRUPTED_BY_REQUEST.into())),
            offered = engine.tools().offer(&workspace.tools) => offered,
        };
        let offered = offered.map_err(|error| End::Failed(EngineError::Tools(error)))?;
        let tools = offered
            .into_iter()
            .map(|tool| Offered {
                wire: tool.def.wire_name(),
                policy: policy(tool.policy, &tool.def, workspace),
                hidden: tool.policy == ToolPolicy::Deny,
                def: tool.def,
            })
            .collect();
        Ok(Self { tools })
    }

    /// No tools at all, hidden ones included: a turn with only denied
    /// tools still runs the loop, so a call naming one is refused.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The definitions the model is offered: none config denies, as a
    /// tool it could never run is only a wasted call.
    pub fn defs(&self) -> Vec<ToolDef> {
        self.offered().map(|tool| tool.def.clone()).collect()
    }

    fn offered(&self) -> impl Iterator<Item = &Offered> {
        self.tools.iter().filter(|tool| !tool.hidden)
    }

    fn find(&self, wire: &str) -> Option<&Offered> {
        self.tools.iter().find(|tool| tool.wire == wire)
    }

    /// How history, events and approvals name the tool the model called:
    /// `server.tool`, or the name as the model sent it if it was not offered.
    fn qualified(&self, wire: &str) -> String {
        self.find(wire)
            .map_or_else(|| wire.to_owned(), |tool| tool.def.qualified())
    }

    fn names(&self) -> String {
        self.offered()
            .map(|tool| tool.wire.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a call runs under: config's policy (per tool, per server, or by
/// the read-only hint), then the agent's own: an `--allow` pattern
/// (`server`, `server.tool`, `server.*`) turns `ask` into `allow`,
/// `--approval never` turns it into `deny`, `--approval bypass` into
/// `allow`. A config `deny` stays `deny`.
pub(super) fn policy(config: ToolPolicy, def: &ToolDef, workspace: &Workspace) -> ToolPolicy {
    if config != ToolPolicy::Ask {
        return config;
    }
    if workspace.allow.iter().any(|pattern| allows(pattern, def)) {
        return ToolPolicy::Allow;
    }
    match workspace.approval {
        ApprovalMode::Ask => ToolPolicy::Ask,
        ApprovalMode::Never => ToolPolicy::Deny,
        ApprovalMode::Bypass => ToolPolicy::Allow,
    }
}

/// Whether an `--allow` pattern names this tool.
fn allows(pattern: &str, def: &ToolDef) -> bool {
    let pattern = pattern.trim();
    pattern == def.server
        || pattern == def.qualified()
        || pattern
            .strip_suffix(".*")
            .is_some_and(|server| server == def.server)
}

/// A spawn's tools as stored: its own, else its profile's `tools`.
pub(super) fn with_profile_tools(mut config: AgentConfig, settings: &Config) -> AgentConfig {
    if config.workspace.tools.is_empty()
        && let Some(profile) = config
            .provider
            .profile
            .as_deref()
            .and_then(|name| settings.profiles.get(name))
    {
        config.workspace.tools = profile.tools.clone();
    }
    config
}

/// Refuses a spawn whose tools name a server config does not have, or a
/// tool its server did not list when it last ran (one that has not run
/// yet is checked at the first turn: a spawn starts no server), or that
/// gives tools to a coding agent (which brings its own).
pub(super) fn check(
    config: &AgentConfig,
    settings: &Config,
    host: &ToolHost,
    coding: bool,
) -> Result<(), EngineError> {
    let tools = &config.workspace.tools;
    if tools.is_empty() {
        return Ok(());
    }
    if coding {
        return Err(EngineError::ToolsForCodingAgent(config.name.clone()));
    }
    for name in tools {
        let (server, tool) = match name.split_once('.') {
            Some((server, tool)) => (server, Some(tool)),
            None => (name.as_str(), None),
        };
        if !settings.mcp_servers.contains_key(server) {
            return Err(EngineError::Tools(ToolError::UnknownServer(
                server.to_owned(),
            )));
        }
        if let Some(tool) = tool
            && tool != "*"
            && host.has_tool(server, tool) == Some(false)
        {
            return Err(EngineError::Tools(ToolError::UnknownTool {
                server: server.to_owned(),
                tool: tool.to_owned(),
            }));
        }
    }
    Ok(())
}

/// The turn's model calls and tool rounds: call the model with the tools;
/// while it asks for tools, record and run them and call it again with
/// the round added. Returns how the last call ended and its ledger row
/// (each earlier call's row is recorded with its round's calls).
pub(super) async fn run(
    model: &Model<'_>,
    toolbox: &Toolbox,
    mut request: ChatRequest,
    reply: &mut Reply,
) -> (End, Option<usage::Call>) {
    let settings = model.engine.settings();
    let max_rounds = settings.config.tools.max_tool_rounds;
    let approval_timeout = settings.config.agents.approval_timeout;
    let redactor = redactor(&settings, model.agent);
    drop(settings);
    let mut rounds = 0;
    loop {
        let start = reply.text.len();
        reply.usage = None;
        reply.calls.clear();
        let (end, call) = model.call(request.clone(), reply).await;
        if !matches!(end, End::Complete) || reply.calls.is_empty() {
            return (end, call);
        }
        if rounds >= max_rounds {
            exhausted(model, reply, max_rounds);
            return (end, call);
        }
        rounds += 1;
        reply
            .metadata
            .insert("tool_rounds".into(), Value::from(rounds));
        let calls = std::mem::take(&mut reply.calls);
        let text = reply.text.get(start..).unwrap_or_default().to_owned();
        if let Err(error) = record_calls(model, toolbox, &calls, reply.usage.take(), call).await {
            return (End::Failed(error), None);
        }
        let (results, stopped) = run_calls(
            model,
            toolbox,
            &calls,
            Guard {
                approval_timeout,
                redactor: &redactor,
            },
        )
        .await;
        if let Err(error) = record_results(model, &results).await {
            return (End::Failed(error), None);
        }
        if let Some(reason) = stopped {
            return (End::Interrupted(reason), None);
        }
        request.rounds.push(ToolRound {
            text,
            calls,
            results,
        });
        separate(model, reply);
    }
}

/// Sets what the model says after a round apart from what it said before.
fn separate(model: &Model<'_>, reply: &mut Reply) {
    if reply.text.is_empty() || reply.text.ends_with('\n') {
        return;
    }
    reply.relay(model.agent, model.events, "\n\n".to_owned());
}

/// The model asked for tools once more than `tools.max_tool_rounds`
/// allows: the turn ends with what it said, marked, and a visible note.
fn exhausted(model: &Model<'_>, reply: &mut Reply, max_rounds: u32) {
    reply
        .metadata
        .insert("tool_rounds_exhausted".into(), Value::Bool(true));
    let separator = if reply.text.is_empty() || reply.text.ends_with("\n\n") {
        ""
    } else {
        "\n\n"
    };
    let note = format!(
        "{separator}[The model asked for more tools after {max_rounds} rounds of tool calls (tools.max_tool_rounds); the turn ends here.]"
    );
    reply.relay(model.agent, model.events, note);
}

/// Records a round's calls, before any runs (the first with the model
/// call's usage and ledger row, in one transaction), and relays them.
async fn record_calls(
    model: &Model<'_>,
    toolbox: &Toolbox,
    calls: &[ToolCall],
    usage: Option<crate::model::Usage>,
    mut call: Option<usage::Call>,
) -> Result<(), EngineError> {
    let (engine, agent) = (model.engine, model.agent);
    let name = &agent.config.name;
    let history = engine.history_store();
    for (index, asked) in calls.iter().enumerate() {
        let named = ToolCall {
            id: asked.id.clone(),
            name: toolbox.qualified(&asked.name),
            input: asked.input.clone(),
        };
        let message = named.to_message(name.as_str()).stamped(engine.clock());
        let (usage, record) = if index == 0 {
            (usage, call.as_ref().map(|call| call.record.clone()))
        } else {
            (None, None)
        };
        let appended = history
            .append_call(name, agent.id, &message, usage, record)
            .await;
        if index == 0
            && let Some(call) = call.take()
        {
            engine.meter().observe(&call, appended.is_ok());
        }
        appended?;
        if index == 0
            && let Some(usage) = usage
        {
            agent.add_usage(usage);
            agent.emit(Event::Usage { usage });
        }
        agent.events.emit_with(Some(name), || Event::ToolCall {
            call: named.clone(),
        });
        let _ = model.events.send(ExchangeEvent::ToolCall(named));
    }
    Ok(())
}

/// Records a round's results, in the order of its calls, and relays them.
async fn record_results(model: &Model<'_>, results: &[ToolResult]) -> Result<(), EngineError> {
    let agent = model.agent;
    let name = &agent.config.name;
    for result in results {
        let message = result
            .to_message(name.as_str())
            .stamped(model.engine.clock());
        model
            .engine
            .history_store()
            .append(name, agent.id, &message, None)
            .await?;
        agent.events.emit_with(Some(name), || Event::ToolResult {
            result: result.clone(),
        });
        let _ = model.events.send(ExchangeEvent::ToolResult(result.clone()));
    }
    Ok(())
}

/// What every call of a round is held to.
#[derive(Clone, Copy)]
struct Guard<'a> {
    approval_timeout: Duration,
    redactor: &'a Redactor,
}

/// Runs a round's calls concurrently; a stopped turn cancels those still
/// running (MCP cancellation) and denies those still waiting for an
/// answer. Returns a result a call, in order, and why the turn stopped.
async fn run_calls(
    model: &Model<'_>,
    toolbox: &Toolbox,
    calls: &[ToolCall],
    guard: Guard<'_>,
) -> (Vec<ToolResult>, Option<String>) {
    let cancel = model.turn.child_token();
    let all = join_all(
        calls
            .iter()
            .map(|call| run_call(model, toolbox, call, guard, &cancel)),
    );
    tokio::pin!(all);
    let agent = model.agent;
    let reason = tokio::select! {
        results = &mut all => return (results, None),
        _ = agent.cancel.cancelled() => "the agent was shut down",
        _ = model.events.closed() => "the client disconnected",
        _ = model.turn.cancelled() => INTERRUPTED_BY_REQUEST,
    };
    cancel.cancel();
    let results = match tokio::time::timeout(STOP_GRACE, &mut all).await {
        Ok(results) => results,
        Err(_) => calls
            .iter()
            .map(|call| failed(toolbox, call, ToolError::Cancelled.to_string()))
            .collect(),
    };
    (results, Some(reason.to_owned()))
}

/// One call: refused if the agent was not given the tool or its arguments
/// are not a JSON object; else decided by its policy (asking a person for
/// `ask`), run on its server, and its output scrubbed of the daemon's keys.
async fn run_call(
    model: &Model<'_>,
    toolbox: &Toolbox,
    call: &ToolCall,
    guard: Guard<'_>,
    cancel: &CancellationToken,
) -> ToolResult {
    let Some(tool) = toolbox.find(&call.name) else {
        let why = format!(
            "this agent was not given a tool named {:?}; the tools it has are: {}",
            call.name,
            toolbox.names()
        );
        return failed(toolbox, call, why);
    };
    let input = match arguments(&call.input) {
        Ok(input) => input,
        Err(why) => return failed(toolbox, call, why),
    };
    let qualified = tool.def.qualified();
    match tool.policy {
        ToolPolicy::Allow => {}
        ToolPolicy::Deny => {
            let why = format!("the call was denied: the policy for {qualified} is deny");
            return failed(toolbox, call, why);
        }
        ToolPolicy::Ask => {
            let request = ApprovalRequest {
                tool: qualified.clone(),
                summary: summary(&qualified, &input),
                input: input.clone(),
                cwd: None,
            };
            let events = model.events;
            let asked = model.engine.approvals().ask_notify(
                &model.agent.config.name,
                request,
                guard.approval_timeout,
                |approval| {
                    let _ = events.send(ExchangeEvent::Approval(approval.clone()));
                },
            );
            let verdict = tokio::select! {
                verdict = asked => verdict,
                _ = cancel.cancelled() => return failed(toolbox, call, ToolError::Cancelled.to_string()),
            };
            if verdict.decision == Decision::Deny {
                let why = match verdict.reason {
                    Some(reason) => format!("the call was denied: {reason}"),
                    None => "the call was denied by a person".to_owned(),
                };
                return failed(toolbox, call, why);
            }
        }
    }
    let outcome = model
        .engine
        .tools()
        .call(&tool.def.server, &tool.def.tool, input, cancel)
        .await;
    match outcome {
        Ok(outcome) => ToolResult {
            id: call.id.clone(),
            name: qualified,
            output: guard.redactor.scrub(&outcome.output),
            is_error: outcome.is_error,
        },
        Err(error) => failed(toolbox, call, guard.redactor.scrub(&error.to_string())),
    }
}

/// An error result the model is told.
fn failed(toolbox: &Toolbox, call: &ToolCall, why: String) -> ToolResult {
    ToolResult {
        id: call.id.clone(),
        name: toolbox.qualified(&call.name),
        output: why,
        is_error: true,
    }
}

/// A call's arguments as a tool takes them: a JSON object. Text that was
/// not JSON (the wire decoders keep it as a string) is refused with the
/// parser's reason, for the model to correct.
fn arguments(input: &Value) -> Result<Value, String> {
    match input {
        Value::Object(_) => Ok(input.clone()),
        Value::String(raw) => match serde_json::from_str::<Value>(raw) {
            Err(error) => Err(format!("the arguments were not valid JSON: {error}")),
            Ok(_) => Err("the arguments must be a JSON object".to_owned()),
        },
        other => Err(format!(
            "the arguments must be a JSON object, not {}",
            kind(other)
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One line a person can judge an approval by: the tool and its arguments.
fn summary(qualified: &str, input: &Value) -> String {
    let mut text = format!("{qualified} {input}");
    if let Some((cut, _)) = text.char_indices().nth(SUMMARY_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Every key the daemon holds for a provider or profile, and the agent's
/// own: a tool's output is untrusted, and none of them may reach the
/// model, the history or a stream through it.
fn redactor(settings: &ProviderSettings, agent: &super::agent::Agent) -> Redactor {
    let config = &settings.config;
    let mut secrets: Vec<String> = agent
        .spec()
        .api_key
        .map(|key| key.expose().to_owned())
        .into_iter()
        .collect();
    let profiles = crate::profiles::known_profiles(config);
    let variables = profiles
        .split(", ")
        .filter_map(|profile| crate::profiles::key_variable(None, Some(profile), None, config))
        .chain(
            ["openai", "anthropic"]
                .into_iter()
                .filter_map(|kind| crate::profiles::key_variable(Some(kind), None, None, config)),
        );
    for variable in variables {
        if let Some(key) = settings.keys.get(&variable) {
            secrets.push(key.expose().to_owned());
        }
    }
    Redactor::of(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def() -> ToolDef {
        ToolDef {
            server: "fs".into(),
            tool: "read_file".into(),
            description: String::new(),
            input_schema: Value::Null,
            read_only: false,
        }
    }

    fn workspace(allow: &[&str], approval: ApprovalMode) -> Workspace {
        Workspace {
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            approval,
            ..Workspace::default()
        }
    }

    #[test]
    fn the_agent_turns_ask_into_allow_or_deny_but_never_lifts_a_deny() {
        let ask = ToolPolicy::Ask;
        let plain = workspace(&[], ApprovalMode::Ask);
        assert_eq!(policy(ask, &def(), &plain), ToolPolicy::Ask);
        assert_eq!(policy(ToolPolicy::Allow, &def(), &plain), ToolPolicy::Allow);
        for pattern in ["fs", "fs.read_file", "fs.*", " fs "] {
            let allowed = workspace(&[pattern], ApprovalMode::Ask);
            assert_eq!(
                policy(ask, &def(), &allowed),
                ToolPolicy::Allow,
                "{pattern}"
            );
            assert_eq!(
                policy(ToolPolicy::Deny, &def(), &allowed),
                ToolPolicy::Deny,
                "{pattern}"
            );
        }
        for pattern in ["f", "fs.write_file", "other", "fs.read", "Bash"] {
            let other = workspace(&[pattern], ApprovalMode::Ask);
            assert_eq!(policy(ask, &def(), &other), ToolPolicy::Ask, "{pattern}");
        }
        let never = workspace(&[], ApprovalMode::Never);
        assert_eq!(policy(ask, &def(), &never), ToolPolicy::Deny);
        let never_but_allowed = workspace(&["fs"], ApprovalMode::Never);
        assert_eq!(policy(ask, &def(), &never_but_allowed), ToolPolicy::Allow);
        let bypass = workspace(&[], ApprovalMode::Bypass);
        assert_eq!(policy(ask, &def(), &bypass), ToolPolicy::Allow);
        assert_eq!(policy(ToolPolicy::Deny, &def(), &bypass), ToolPolicy::Deny);
    }

    #[test]
    fn arguments_must_be_a_json_object() {
        assert_eq!(arguments(&json!({"a": 1})), Ok(json!({"a": 1})));
        let bad = arguments(&Value::String("{\"a\": ".into())).unwrap_err();
        assert!(
            bad.starts_with("the arguments were not valid JSON: "),
            "{bad}"
        );
        let list = arguments(&json!([1])).unwrap_err();
        assert!(list.contains("an array"), "{list}");
        assert!(arguments(&Value::String("[1]".into())).is_err());
    }

    #[test]
    fn a_summary_is_one_bounded_line() {
        assert_eq!(
            summary("fs.read_file", &json!({"path": "a.txt"})),
            "fs.read_file {\"path\":\"a.txt\"}"
        );
        let long = summary("fs.write_file", &json!({"content": "x\n".repeat(500)}));
        assert!(long.chars().count() <= SUMMARY_CHARS + 1);
        assert!(!long.contains('\n'));
    }
}
