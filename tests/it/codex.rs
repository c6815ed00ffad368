//! The Codex runtime (`orchestration::runtime::codex`) driving the real
//! `codex app-server` against our fake Responses server, with a test
//! approver: turns with context, resume in a new child, approvals (accepted,
//! declined, answered by the policy), interrupt, and a child killed mid-turn.
//!
//! The binary comes from `$ORCHESTRATION_CODEX`, else `codex` on PATH.
//! Without either a test is skipped with a message on stderr, unless
//! `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1` (set by `scripts/test.sh`), when it fails.

use crate::common::fake_responses::FakeResponses;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use orchestration::model::{AgentName, ApprovalRequest, Verdict};
use orchestration::runtime::codex::{Codex, ModelServer};
use orchestration::runtime::{
    ApprovalMode, Approver, BoxFuture, Policy, Runtime, RuntimeError, Spec, Turn, TurnEvent,
};
use tokio_util::sync::CancellationToken;

/// How long one turn may take before the test fails (a loaded machine
/// starts Codex slowly); not a speed target.
const TURN_PATIENCE: Duration = Duration::from_secs(90);

pub fn codex_binary() -> Option<PathBuf> {
    let found = std::env::var_os("ORCHESTRATION_CODEX")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("codex"))
                    .find(|candidate| candidate.is_file())
            })
        });
    if found.is_none() {
        let required = std::env::var("ORCHESTRATION_REQUIRE_THIRD_PARTY").as_deref() == Ok("1");
        assert!(
            !required,
            "codex is required but not installed; run scripts/test.sh"
        );
        eprintln!(
            "SKIPPED: codex is not installed, so the Codex tests did not run; \
             `bash scripts/test.sh` installs it"
        );
    }
    found
}

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
        let call = ran
            .events
            .iter()
            .find_map(|e| match e {
                TurnEvent::ToolCall(call) => Some(call.clone()),
                _ => None,
            })
            .expect("a tool call");
        assert_eq!(call.name, "commandExecution");
        assert_eq!(call.input["command"], command);
        let result = ran
            .events
            .iter()
            .find_map(|e| match e {
                TurnEvent::ToolResult(result) => Some(result.clone()),
                _ => None,
            })
            .expect("a tool result");
        assert_eq!(result.id, call.id);
        assert!(!result.is_error, "{result:?}");
        let cwd = place.cwd().display().to_string();
        assert!(result.output.contains(&cwd), "{result:?}");
        assert!(ran.text().starts_with("tool said:"), "{}", ran.text());
        assert!(ran.text().contains(&cwd), "{}", ran.text());

        let declined = turn(&mut codex, "run: touch declined.txt", no.clone()).await;
        declined.ok();
        let result = declined
            .events
            .iter()
            .find_map(|e| match e {
                TurnEvent::ToolResult(result) => Some(result.clone()),
                _ => None,
            })
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
            Some(error @ RuntimeError::Died { status, .. }) => {
                assert!(status.contains('9'), "{error}");
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
            other => panic!("expected a failed turn, got {other:?} after {:?}", failed.events),
        }
        assert!(codex.is_running(), "the child stays for the next turn");
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
                assert!(error.to_string().contains("npm install -g @openai/codex"), "{error}");
            }
            other => panic!("expected Missing, got {other:?}"),
        }
        assert!(!codex.is_running());
    });
}
