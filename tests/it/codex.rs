//! The Codex runtime (`orchestration::runtime::codex`) driving the real
//! `codex app-server` against our fake Responses server, with a test
//! approver: turns with context, resume in a new child, approvals (accepted,
//! declined, answered by the policy), interrupt, and a child killed mid-turn.
//!
//! The binary comes from `$ORCHESTRATION_CODEX`, else `codex` on PATH.
//! Without either a test is skipped with a message on stderr, unless
//! `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1` (set by `scripts/test.sh`), when it fails.

use crate::common::coding::codex as codex_binary;
use crate::common::fake_responses::FakeResponses;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use orchestration::model::{AgentName, ApprovalRequest, ToolCall, ToolResult, Verdict};
use orchestration::runtime::codex::{Codex, ModelServer};
use orchestration::runtime::{
    ApprovalMode, Approver, BoxFuture, Policy, Runtime, RuntimeError, Spec, Turn, TurnEvent,
};
use tokio_util::sync::CancellationToken;

/// How long one turn may take before the test fails (a loaded machine
/// starts Codex slowly); not a speed target.
const TURN_PATIENCE: Duration = Duration::from_secs(90);

/// An approver that answers every request the same way and keeps them.
struct Scripted {
    verdict: Verdict,
    asked: Mutex<Vec<ApprovalRequest>>,
}

impl Scripted {
    fn new(verdict: Verdict) -> Arc<Self> {
        Arc::new(Self {
            verdict,
            asked: Mutex::new(Vec::new()),
        })
    }

    fn asked(&self) -> Vec<ApprovalRequest> {
        self.asked.lock().unwrap().clone()
    }
}

impl Approver for Scripted {
    fn ask(&self, request: ApprovalRequest) -> BoxFuture<'static, Verdict> {
        self.asked.lock().unwrap().push(request);
        let verdict = self.verdict.clone();
        Box::pin(async move { verdict })
    }
}

/// One agent's directories: where it works, its HOME, its state dir.
struct Place {
    dir: tempfile::TempDir,
}

impl Place {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["work", "home", "state"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        Self { dir }
    }

    fn cwd(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn spec(&self, binary: &Path, policy: Policy, resume: Option<String>) -> Spec {
        let mut env = BTreeMap::new();
        env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
        env.insert("HOME".into(), self.home().display().to_string());
        env.insert("LANG".into(), "C.UTF-8".into());
        env.insert("OPENAI_API_KEY".into(), "sk-fake-codex-key".into());
        Spec {
            agent: AgentName::parse("coder").unwrap(),
            command: vec![binary.display().to_string()],
            env,
            cwd: self.cwd(),
            model: Some("fake-model".into()),
            instructions: Some("EXTRA-DEV-INSTRUCTIONS-XYZ".into()),
            resume,
            policy,
            state_dir: self.dir.path().join("state"),
        }
    }

    fn codex(&self, binary: &Path, fake: &FakeResponses, policy: Policy) -> Codex {
        self.codex_resuming(binary, fake, policy, None)
    }

    fn codex_resuming(
        &self,
        binary: &Path,
        fake: &FakeResponses,
        policy: Policy,
        resume: Option<String>,
    ) -> Codex {
        Codex::new(
            self.spec(binary, policy, resume),
            ModelServer {
                base_url: fake.base_url(),
                key_env: "OPENAI_API_KEY".into(),
            },
        )
    }
}

/// What one turn gave.
struct Outcome {
    events: Vec<TurnEvent>,
    error: Option<RuntimeError>,
}

impl Outcome {
    fn text(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match e {
                TurnEvent::Delta(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    fn finish(&self) -> Option<&str> {
        self.events.iter().find_map(|e| match e {
            TurnEvent::Finish(how) => Some(how.as_str()),
            _ => None,
        })
    }

    fn session(&self) -> Option<&str> {
        self.events.iter().find_map(|e| match e {
            TurnEvent::Session(id) => Some(id.as_str()),
            _ => None,
        })
    }

    fn tool_call(&self) -> Option<ToolCall> {
        self.events.iter().find_map(|e| match e {
            TurnEvent::ToolCall(call) => Some(call.clone()),
            _ => None,
        })
    }

    fn tool_result(&self) -> Option<ToolResult> {
        self.events.iter().find_map(|e| match e {
            TurnEvent::ToolResult(result) => Some(result.clone()),
            _ => None,
        })
    }

    fn ok(&self) -> &Self {
        assert!(self.error.is_none(), "the turn failed: {:?}", self.error);
        assert_eq!(self.finish(), Some("stop"), "{:?}", self.events);
        self
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs one turn to its end; `on_event` sees each event as it arrives.
async fn turn_with(
    codex: &mut Codex,
    prompt: &str,
    approver: Arc<dyn Approver>,
    interrupt: CancellationToken,
    mut on_event: impl FnMut(&TurnEvent),
) -> Outcome {
    let mut stream = codex.turn(Turn {
        prompt: prompt.into(),
        approver,
        interrupt,
    });
    let mut outcome = Outcome {
        events: Vec::new(),
        error: None,
    };
    let collect = async {
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    on_event(&event);
                    outcome.events.push(event);
                }
                Err(error) => {
                    outcome.error = Some(error);
                    break;
                }
            }
        }
    };
    tokio::time::timeout(TURN_PATIENCE, collect)
        .await
        .expect("the turn did not end");
    outcome
}

async fn turn(codex: &mut Codex, prompt: &str, approver: Arc<dyn Approver>) -> Outcome {
    turn_with(codex, prompt, approver, CancellationToken::new(), |_| {}).await
}

fn ask() -> Policy {
    Policy::default()
}

#[test]
fn two_turns_share_a_thread_and_a_new_child_resumes_it() {
    let Some(binary) = codex_binary() else { return };
    let fake = FakeResponses::start();
    let place = Place::new();
    let approver = Scripted::new(Verdict::deny("no tools here"));
    runtime().block_on(async {
        let mut codex = place.codex(&binary, &fake, ask());
        assert!(!codex.is_running(), "the child starts at the first turn");
        let first = turn(&mut codex, "hello codex one", approver.clone()).await;
        first.ok();
        assert_eq!(first.text(), "echo: hello codex one");
        let thread = first
            .session()
            .expect("the thread id is reported")
            .to_owned();
        assert!(
            first.events.iter().any(
                |e| matches!(e, TurnEvent::Usage(u) if u.input_tokens > 0 && u.output_tokens > 0)
            ),
            "{:?}",
            first.events
        );
        assert!(codex.is_running());

        let second = turn(&mut codex, "second codex turn", approver.clone()).await;
        second.ok();
        assert_eq!(second.text(), "echo: second codex turn");
        assert_eq!(second.session(), None, "the same child keeps its thread");
        let sent = fake.responses().pop().unwrap();
        assert!(
            sent.input_text().contains("hello codex one"),
            "{}",
            sent.input_text()
        );
        assert!(sent.input_text().contains("EXTRA-DEV-INSTRUCTIONS-XYZ"));
        assert_eq!(
            sent.header("authorization"),
            Some("Bearer sk-fake-codex-key")
        );
        assert_eq!(sent.body["model"], "fake-model");

        codex.stop().await;
        assert!(!codex.is_running());

        // A new runtime (a daemon restart) with the stored thread id.
        let mut again = place.codex_resuming(&binary, &fake, ask(), Some(thread.clone()));
        let third = turn(&mut again, "third codex turn", approver.clone()).await;
        third.ok();
        assert_eq!(third.text(), "echo: third codex turn");
        assert_eq!(third.session(), Some(thread.as_str()));
        let sent = fake.responses().pop().unwrap();
        let input = sent.input_text();
        assert!(
            input.contains("hello codex one") && input.contains("second codex turn"),
            "{input}"
        );
        again.stop().await;
    });
    assert!(approver.asked().is_empty());
    // Codex kept its files under the agent's state dir, never in HOME.
    let home = Codex::codex_home(&place.dir.path().join("state"));
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(config.contains(&fake.base_url()), "{config}");
    assert!(home.join("sessions").is_dir());
    assert!(!place.home().join(".codex").exists());
}

#[test]
fn an_approved_command_runs_in_the_cwd_and_a_declined_one_does_not() {
    let Some(binary) = codex_binary() else { return };
    let fake = FakeResponses::start();
    let place = Place::new();
    let yes = Scripted::new(Verdict::approve());
    let no = Scripted::new(Verdict::deny("not today"));
    runtime().block_on(async {
        let mut codex = place.codex(&binary, &fake, ask());
        let command = "echo made-by-codex > made.txt && pwd";
        let ran = turn(&mut codex, &format!("run: {command}"), yes.clone()).await;
        ran.ok();
        let call = ran.tool_call().expect("a tool call");
        assert_eq!(call.name, "commandExecution");
        assert_eq!(call.input["command"], command);
        let result = ran.tool_result().expect("a tool result");
        assert_eq!(result.id, call.id);
        assert!(!result.is_error, "{result:?}");
        let cwd = place.cwd().display().to_string();
        assert!(result.output.contains(&cwd), "{result:?}");
        assert!(ran.text().starts_with("tool said:"), "{}", ran.text());
        assert!(ran.text().contains(&cwd), "{}", ran.text());

        let declined = turn(&mut codex, "run: touch declined.txt", no.clone()).await;
        declined.ok();
        let result = declined
            .tool_result()
            .expect("a tool result for the declined call");
        assert!(result.is_error, "{result:?}");
        // The model was told the command was rejected.
        let told = fake.responses().pop().unwrap().input_text();
        assert!(told.contains("rejected"), "{told}");
        codex.stop().await;
    });
    assert_eq!(
        std::fs::read_to_string(place.cwd().join("made.txt")).unwrap(),
        "made-by-codex\n"
    );
    assert!(!place.cwd().join("declined.txt").exists());
    let asked = yes.asked();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].tool, "commandExecution");
    assert_eq!(asked[0].summary, "echo made-by-codex > made.txt && pwd");
    assert_eq!(asked[0].cwd.as_deref(), Some(place.cwd().to_str().unwrap()));
    assert_eq!(no.asked().len(), 1);
}

#[test]
fn the_policy_answers_before_a_person_is_asked() {
    let Some(binary) = codex_binary() else { return };
    let fake = FakeResponses::start();
    let place = Place::new();
    let person = Scripted::new(Verdict::approve());
    runtime().block_on(async {
        let allow = Policy {
            allow: vec!["touch allowed.txt".into()],
            mode: ApprovalMode::Never,
        };
        let mut codex = place.codex(&binary, &fake, allow);
        turn(&mut codex, "run: touch allowed.txt", person.clone())
            .await
            .ok();
        // Not a simple command, so no prefix covers it; `never` declines.
        turn(
            &mut codex,
            "run: touch allowed.txt; touch sneaky.txt",
            person.clone(),
        )
        .await
        .ok();
        turn(&mut codex, "run: touch other.txt", person.clone())
            .await
            .ok();
        codex.stop().await;
    });
    assert!(person.asked().is_empty(), "{:?}", person.asked());
    assert!(place.cwd().join("allowed.txt").exists());
    assert!(!place.cwd().join("sneaky.txt").exists());
    assert!(!place.cwd().join("other.txt").exists());
}

#[test]
fn an_interrupted_turn_keeps_the_child_for_the_next() {
    let Some(binary) = codex_binary() else { return };
    let fake = FakeResponses::start();
    let place = Place::new();
    let approver = Scripted::new(Verdict::deny("no"));
    runtime().block_on(async {
        let mut codex = place.codex(&binary, &fake, ask());
        turn(&mut codex, "warm up", approver.clone()).await.ok();
        let pid = codex.pid().expect("a child");
        let interrupt = CancellationToken::new();
        let stop = interrupt.clone();
        let held = turn_with(
            &mut codex,
            "hold: a long story",
            approver.clone(),
            interrupt,
            |event| {
                if matches!(event, TurnEvent::Delta(_)) {
                    stop.cancel();
                }
            },
        )
        .await;
        assert!(held.error.is_none(), "{:?}", held.error);
        assert_eq!(held.finish(), Some("interrupted"), "{:?}", held.events);
        assert!(
            held.text().starts_with("ech"),
            "the partial reply: {}",
            held.text()
        );
        assert!(codex.is_running());

        let next = turn(&mut codex, "after the interrupt", approver.clone()).await;
        next.ok();
        assert_eq!(next.text(), "echo: after the interrupt");
        assert_eq!(codex.pid(), Some(pid), "the same child took the next turn");
        let input = fake.responses().pop().unwrap().input_text();
        assert!(input.contains("hold: a long story"), "{input}");
        codex.stop().await;
    });
}

#[test]
fn a_child_killed_mid_turn_fails_the_turn_and_the_next_resumes() {
    let Some(binary) = codex_binary() else { return };
    let fake = FakeResponses::start();
    let place = Place::new();
    let approver = Scripted::new(Verdict::deny("no"));
    runtime().block_on(async {
        let mut codex = place.codex(&binary, &fake, ask());
        let first = turn(&mut codex, "before the crash", approver.clone()).await;
        first.ok();
        let thread = first.session().unwrap().to_owned();
        let pid = codex.pid().expect("a child");
        let killed = turn_with(
            &mut codex,
            "hold: killed mid-turn",
            approver.clone(),
            CancellationToken::new(),
            |event| {
                if matches!(event, TurnEvent::Delta(_)) {
                    crate::common::signal(pid, "KILL");
                }
            },
        )
        .await;
        match &killed.error {
            Some(error @ RuntimeError::Died { status, stderr, .. }) => {
                assert!(status.contains('9'), "{error}");
                assert!(
                    !stderr.contains('\u{1b}'),
                    "colour codes are stripped: {stderr:?}"
                );
            }
            other => panic!("expected Died, got {other:?} after {:?}", killed.events),
        }
        assert!(!codex.is_running());

        let next = turn(&mut codex, "after the crash", approver.clone()).await;
        next.ok();
        assert_eq!(next.text(), "echo: after the crash");
        assert_eq!(
            next.session(),
            Some(thread.as_str()),
            "the new child resumed the thread"
        );
        assert_ne!(codex.pid(), Some(pid));
        let input = fake.responses().pop().unwrap().input_text();
        assert!(input.contains("before the crash"), "{input}");
        codex.stop().await;
    });
}

#[test]
fn a_turn_its_caller_gave_up_on_is_settled_before_the_next() {
    let Some(binary) = codex_binary() else { return };
    let fake = FakeResponses::start();
    let place = Place::new();
    let approver = Scripted::new(Verdict::deny("no"));
    runtime().block_on(async {
        let mut codex = place.codex(&binary, &fake, ask());
        turn(&mut codex, "warm up", approver.clone()).await.ok();
        let pid = codex.pid();
        {
            let mut stream = codex.turn(Turn {
                prompt: "hold: nobody waits for this".into(),
                approver: approver.clone(),
                interrupt: CancellationToken::new(),
            });
            let first = tokio::time::timeout(TURN_PATIENCE, async {
                loop {
                    match stream.next().await {
                        Some(Ok(TurnEvent::Delta(text))) => return text,
                        Some(Ok(_)) => {}
                        other => panic!("the held turn ended: {other:?}"),
                    }
                }
            })
            .await
            .expect("a first delta");
            assert!(first.starts_with("ech"), "{first}");
            // The stream is dropped here, mid-turn: the caller gave up.
        }
        let next = turn(&mut codex, "after giving up", approver.clone()).await;
        next.ok();
        assert_eq!(next.text(), "echo: after giving up");
        assert_eq!(codex.pid(), pid, "the child was kept");
        codex.stop().await;
    });
}

#[test]
fn a_model_server_nobody_answers_fails_the_turn() {
    let Some(binary) = codex_binary() else { return };
    let place = Place::new();
    let approver = Scripted::new(Verdict::deny("no"));
    runtime().block_on(async {
        let mut codex = Codex::new(
            place.spec(&binary, ask(), None),
            ModelServer {
                base_url: format!("http://127.0.0.1:{}/v1", crate::common::CLOSED_PORT),
                key_env: "OPENAI_API_KEY".into(),
            },
        );
        let failed = turn(&mut codex, "is anyone there", approver.clone()).await;
        match &failed.error {
            Some(RuntimeError::Turn(message)) => {
                assert!(message.contains("model server"), "{message}");
            }
            other => panic!(
                "expected a failed turn, got {other:?} after {:?}",
                failed.events
            ),
        }
        assert!(codex.is_running(), "the child stays for the next turn");
        codex.stop().await;
    });
}

#[test]
fn a_model_server_error_fails_the_turn_and_the_next_one_works() {
    let Some(binary) = codex_binary() else { return };
    let fake = FakeResponses::start();
    let place = Place::new();
    let approver = Scripted::new(Verdict::deny("no"));
    runtime().block_on(async {
        let mut codex = place.codex(&binary, &fake, ask());
        let failed = turn(&mut codex, "http500: please fail", approver.clone()).await;
        assert!(
            matches!(failed.error, Some(RuntimeError::Turn(_))),
            "{:?} after {:?}",
            failed.error,
            failed.events
        );
        let next = turn(&mut codex, "and now work", approver.clone()).await;
        next.ok();
        assert_eq!(next.text(), "echo: and now work");
        codex.stop().await;
    });
}

#[test]
fn a_missing_executable_says_how_to_install_it() {
    let place = Place::new();
    let approver = Scripted::new(Verdict::deny("no"));
    runtime().block_on(async {
        let mut codex = Codex::new(
            place.spec(Path::new("/nonexistent/codex"), ask(), None),
            ModelServer::default(),
        );
        let failed = turn(&mut codex, "hello", approver).await;
        match &failed.error {
            Some(error @ RuntimeError::Missing { .. }) => {
                assert!(
                    error.to_string().contains("npm install -g @openai/codex"),
                    "{error}"
                );
            }
            other => panic!("expected Missing, got {other:?}"),
        }
        assert!(!codex.is_running());
    });
}

/// The daemon with Codex as a named agent: spawned through the CLI, talked
/// to over the socket, restarted.
mod through_the_daemon {
    use super::{FakeResponses, codex_binary};

    use std::path::{Path, PathBuf};

    use serde_json::json;

    use crate::common::coding::{
        child_in, claude, claude_agent_config, env_with_agent, line_of, reply, spawn_claude,
        stream_message,
    };
    use crate::common::fake_anthropic::FakeAnthropic;
    use crate::common::in_process::InProcess;
    use crate::common::{Env, Harness, open_events, read_rest};

    /// A daemon whose Codex is `codex`, with a HOME of its own inside the
    /// env, the agent's working directory, and the fake it talks to.
    struct Setup {
        env: Env,
        cwd: PathBuf,
        fake: FakeResponses,
    }

    impl Setup {
        fn new(codex: &Path) -> Self {
            Self::with_config(codex, "")
        }

        fn with_config(codex: &Path, extra: &str) -> Self {
            let env = Env::new();
            let home = env.dir.path().join("home");
            let cwd = env.dir.path().join("project");
            for dir in [&home, &cwd] {
                std::fs::create_dir_all(dir).expect("dir");
            }
            let config = format!(
                "[agents.codex]\ncommand = [{codex:?}]\nenv = {{ HOME = {home:?} }}\n{extra}",
                codex = codex.display().to_string(),
                home = home.display().to_string(),
            );
            Self {
                env: env.config(&config),
                cwd,
                fake: FakeResponses::start(),
            }
        }

        fn daemon(&self) -> InProcess {
            InProcess::serve(self.env.clone(), &["--no-tcp"])
        }

        /// `spawn NAME --provider codex --base-url FAKE --cwd PROJECT` plus `extra`.
        fn spawn(&self, daemon: &InProcess, name: &str, extra: &[&str]) {
            let url = self.fake.base_url();
            let cwd = self.cwd.display().to_string();
            let mut args = vec![
                "spawn",
                name,
                "--provider",
                "codex",
                "--model",
                "fake-model",
                "--base-url",
                &url,
                "--api-key-env",
                "FAKE_OPENAI_KEY",
                "--cwd",
                &cwd,
            ];
            args.extend_from_slice(extra);
            daemon
                .env()
                .cli_env(&[("FAKE_OPENAI_KEY", "sk-fake-daemon-codex")], &args)
                .ok();
        }

        fn last_input(&self) -> String {
            self.fake
                .responses()
                .pop()
                .expect("a request reached the fake")
                .input_text()
        }
    }

    #[test]
    fn turns_keep_their_context_and_a_restarted_daemon_resumes_the_thread() {
        let Some(codex) = codex_binary() else { return };
        let setup = Setup::new(&codex);
        let daemon = setup.daemon();
        setup.spawn(&daemon, "coder", &[]);
        let info = daemon.json("GET", "/agents/coder", None).json();
        assert_eq!(info["provider"], "codex");
        assert_eq!(info["cwd"], setup.cwd.display().to_string());
        assert_eq!(reply(&daemon.say("coder", "hello one")), "echo: hello one");
        assert_eq!(
            reply(&daemon.say("coder", "second turn")),
            "echo: second turn"
        );
        assert!(setup.last_input().contains("hello one"));
        let sent = setup.fake.responses().pop().unwrap();
        assert_eq!(
            sent.header("authorization"),
            Some("Bearer sk-fake-daemon-codex")
        );
        drop(daemon);

        let daemon = setup.daemon();
        let out = daemon.cli(&["message", "coder", "third turn"]);
        out.ok();
        assert_eq!(out.stdout(), "echo: third turn\n");
        let input = setup.last_input();
        for earlier in ["hello one", "echo: hello one", "second turn"] {
            assert!(
                input.contains(earlier),
                "{earlier:?} not resumed in: {input}"
            );
        }
        let history = daemon.history("coder");
        let usage = &history["messages"][1]["metadata"]["usage"];
        assert!(usage["input_tokens"].as_u64().unwrap_or(0) > 0, "{history}");
        // Codex's home is the daemon's, not the user's.
        assert!(!setup.env.dir.path().join("home/.codex").exists());
    }

    #[test]
    fn an_allowed_command_runs_in_the_cwd_and_its_call_and_result_are_searchable_history() {
        let Some(codex) = codex_binary() else { return };
        let setup = Setup::new(&codex);
        let daemon = setup.daemon();
        setup.spawn(&daemon, "coder", &["--allow", "touch"]);
        let out = daemon.cli(&["message", "coder", "run: touch made_by_codex.txt"]);
        out.ok();
        assert!(out.stdout().contains("tool said"), "{}", out.stdout());
        assert!(setup.cwd.join("made_by_codex.txt").is_file());

        let history = daemon.history("coder");
        let messages = history["messages"].as_array().expect("messages");
        let call = messages
            .iter()
            .find(|m| m["message_type"] == "tool_call")
            .expect("a tool call in history");
        assert_eq!(call["metadata"]["tool"], "commandExecution");
        assert_eq!(
            call["metadata"]["input"]["command"],
            "touch made_by_codex.txt"
        );
        let result = messages
            .iter()
            .find(|m| m["message_type"] == "tool_result")
            .expect("a tool result in history");
        assert_eq!(
            result["metadata"]["tool_use_id"],
            call["metadata"]["tool_use_id"]
        );
        assert_eq!(result["metadata"]["is_error"], false);
        let hits = daemon.json("GET", "/search?q=made_by_codex", None).json();
        assert!(
            hits["results"]
                .as_array()
                .expect("results")
                .iter()
                .any(|hit| hit["message_id"] == call["id"]),
            "search missed the tool call: {hits}"
        );
    }

    #[test]
    fn with_approval_never_a_command_does_not_run_and_the_model_is_told() {
        let Some(codex) = codex_binary() else { return };
        let setup = Setup::new(&codex);
        let daemon = setup.daemon();
        setup.spawn(&daemon, "coder", &["--approval", "never"]);
        let text = reply(&daemon.say("coder", "run: touch denied.txt"));
        assert!(text.starts_with("tool said"), "{text}");
        assert!(text.contains("rejected"), "{text}");
        assert!(!setup.cwd.join("denied.txt").exists());
    }

    #[test]
    fn a_command_that_asks_is_an_approval_event_and_a_stream_line() {
        let Some(codex) = codex_binary() else { return };
        let setup = Setup::new(&codex);
        let daemon = setup.daemon();
        setup.spawn(&daemon, "coder", &[]);
        let mut events = open_events(&daemon.env().socket());
        let mut stream = stream_message(&daemon, "coder", "run: touch asked.txt");
        let call = line_of(&mut stream, "tool_call");
        assert_eq!(call["call"]["name"], "commandExecution");
        let asked = line_of(&mut stream, "approval");
        let approval = &asked["approval"];
        assert_eq!(approval["agent"], "coder");
        assert_eq!(approval["tool"], "commandExecution");
        assert_eq!(approval["summary"], "touch asked.txt");
        assert_eq!(approval["cwd"], setup.cwd.display().to_string());
        let event = line_of(&mut events, "approval_requested");
        assert_eq!(event["approval"]["id"], approval["id"]);
        assert!(!setup.cwd.join("asked.txt").exists());

        // Interrupting the turn withdraws the request; the child stays.
        let interrupted = daemon.json("POST", "/agents/coder/interrupt", None);
        assert_eq!(interrupted.status, 202, "{}", interrupted.text());
        let resolved = line_of(&mut events, "approval_resolved");
        assert_eq!(resolved["approval_id"], approval["id"]);
        assert_eq!(resolved["decision"], "deny");
        let rest = read_rest(&mut stream);
        assert!(!setup.cwd.join("asked.txt").exists(), "{rest}");
        assert_eq!(reply(&daemon.say("coder", "and now")), "echo: and now");
    }

    #[test]
    fn an_interrupted_turn_keeps_its_partial_reply_and_the_next_turn_runs() {
        let Some(codex) = codex_binary() else { return };
        let setup = Setup::new(&codex);
        let daemon = setup.daemon();
        setup.spawn(&daemon, "coder", &[]);
        let mut stream = stream_message(&daemon, "coder", "hold: a long story");
        line_of(&mut stream, "delta");
        let interrupted = daemon.json("POST", "/agents/coder/interrupt", None);
        assert_eq!(interrupted.json()["interrupted"], true);
        let message = line_of(&mut stream, "message");
        assert_eq!(message["message"]["metadata"]["interrupted"], true);
        let partial = message["message"]["content"].as_str().expect("content");
        assert!(
            !partial.is_empty() && "echo: hold: a long story".starts_with(partial),
            "{partial:?}"
        );
        assert_eq!(
            reply(&daemon.say("coder", "after that")),
            "echo: after that"
        );
    }

    #[test]
    fn a_child_killed_mid_turn_fails_that_turn_and_the_next_resumes_the_thread() {
        let Some(codex) = codex_binary() else { return };
        let setup = Setup::new(&codex);
        let daemon = setup.daemon();
        setup.spawn(&daemon, "coder", &[]);
        assert_eq!(
            reply(&daemon.say("coder", "remember me")),
            "echo: remember me"
        );
        let mut stream = stream_message(&daemon, "coder", "hold: a story to cut");
        line_of(&mut stream, "delta");
        let pid = child_in(&setup.cwd).expect("the Codex child, working in the project dir");
        crate::common::signal(pid, "KILL");
        let error = line_of(&mut stream, "error");
        assert_eq!(error["code"], "agent_exited", "{error}");
        assert!(
            error["detail"].as_str().unwrap_or("").contains("signal 9"),
            "{error}"
        );
        assert_eq!(
            reply(&daemon.say("coder", "still there?")),
            "echo: still there?"
        );
        assert!(setup.last_input().contains("remember me"));
    }

    #[test]
    fn bypass_is_refused_over_tcp_and_accepted_on_the_socket() {
        let env = env_with_agent("codex", "/bin/true");
        let dir = env.dir.path().display().to_string();
        let daemon = InProcess::start_in(env, true);
        let spawn = |name: &str| json!({"name": name, "provider": "codex", "cwd": dir, "approval": "bypass"});
        let refused = daemon.tcp_json("POST", "/agents", Some(spawn("over-tcp")));
        assert_eq!(refused.status, 403, "{}", refused.text());
        assert_eq!(refused.json()["code"], "bypass_refused");
        let accepted = daemon.json("POST", "/agents", Some(spawn("on-socket")));
        assert_eq!(accepted.status, 200, "{}", accepted.text());
        assert_eq!(accepted.json()["provider"], "codex");
    }

    #[test]
    fn a_missing_executable_is_refused_at_spawn_with_the_install_line() {
        let env = env_with_agent("codex", "/nonexistent/bin/codex");
        let dir = env.dir.path().display().to_string();
        let daemon = InProcess::serve(env, &["--no-tcp"]);
        let out = daemon.cli(&["spawn", "coder", "--provider", "codex", "--cwd", &dir]);
        assert_eq!(out.code(), 2, "{}", out.stderr());
        assert!(
            out.stderr().contains("npm install -g @openai/codex"),
            "{}",
            out.stderr()
        );
    }

    #[test]
    fn fan_out_reaches_echo_claude_code_and_codex_agents_alike() {
        let Some(codex) = codex_binary() else { return };
        let Some(claude) = claude() else { return };
        let claude_dir = tempfile::tempdir().expect("tempdir");
        let setup = Setup::with_config(&codex, &claude_agent_config(&claude, claude_dir.path()));
        let daemon = setup.daemon();
        setup.spawn(&daemon, "coder", &[]);
        let fake_anthropic = FakeAnthropic::start();
        spawn_claude(&daemon, "claude", &fake_anthropic, &setup.cwd, &[]);
        daemon.cli(&["spawn", "parrot", "--provider", "echo"]).ok();
        let answer = daemon.json(
            "POST",
            "/messages",
            Some(json!({"agents": ["coder", "claude", "parrot"], "content": "hello all"})),
        );
        assert_eq!(answer.status, 200, "{}", answer.text());
        let results = answer.json();
        for (agent, expected) in [
            ("coder", "echo: hello all"),
            ("claude", "echo: hello all"),
            ("parrot", "hello all"),
        ] {
            assert_eq!(
                results[agent]["messages"][0]["content"], expected,
                "{results}"
            );
        }
    }
}
