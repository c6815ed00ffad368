//! API agents with tools: `spawn --tools`, the tool loop on both wires
//! (calls streamed in pieces, several in one reply, run concurrently, sent
//! back), their policies and approvals, `max_tool_rounds`, a restart
//! between turns, and how calls show in history and search. The model is
//! the fake server (real HTTP on 127.0.0.1); the tools are the real
//! `@modelcontextprotocol/server-filesystem`, rooted at a temp dir, which
//! `scripts/test.sh` installs and names in `$ORCHESTRATION_MCP_FILESYSTEM`.
//! Without it those tests say SKIPPED (or fail, with
//! `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1`); the refusals need no server.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::fake_provider::{FakeProvider, Reply, anthropic_events, openai_chunks};
use crate::common::in_process::InProcess;
use crate::common::tool_calls::{
    Call, anthropic_tool_uses, installed, openai_tool_calls, sent_results,
};
use crate::common::{CliOutput, Env, Harness, eventually, sent_turns};

/// The filesystem server's executable, or `None` (the test skips).
fn filesystem_server() -> Option<PathBuf> {
    installed("ORCHESTRATION_MCP_FILESYSTEM")
}

/// Which protocol the fake model speaks.
#[derive(Clone, Copy, Debug)]
enum Wire {
    OpenAi,
    Anthropic,
}

impl Wire {
    fn spawn_body(self, name: &str, fake: &FakeProvider, tools: &[&str]) -> Value {
        let (provider, url) = match self {
            Wire::OpenAi => ("openai", fake.url("/v1")),
            Wire::Anthropic => ("anthropic", fake.url("")),
        };
        json!({"name": name, "provider": provider, "model": "m", "base_url": url, "tools": tools})
    }

    fn calls(self, calls: &[Call]) -> Reply {
        Reply::sse(&match self {
            Wire::OpenAi => openai_tool_calls(calls),
            Wire::Anthropic => anthropic_tool_uses("Let me look.", calls),
        })
    }

    fn text(self, pieces: &[&str]) -> Reply {
        Reply::sse(&match self {
            Wire::OpenAi => openai_chunks(pieces),
            Wire::Anthropic => anthropic_events(pieces),
        })
    }
}

/// A temp dir with two notes, the daemon's config giving it to the
/// filesystem server as `fs` (plus `extra` config), and the fake model.
struct Setup {
    env: Env,
    root: PathBuf,
    fake: FakeProvider,
}

impl Setup {
    fn new(server: &Path, fs_config: &str, extra: &str) -> Self {
        let env = Env::new();
        let root = env.dir.path().join("files");
        std::fs::create_dir_all(&root).expect("files dir");
        // Canonical: the server compares the paths it is asked for with its root's real path.
        let root = root.canonicalize().expect("canonical root");
        std::fs::write(root.join("notes.txt"), "hello from notes").expect("notes");
        std::fs::write(root.join("other.txt"), "the other file").expect("other");
        let config = format!(
            "[mcp_servers.fs]\ncommand = {}\nargs = [{}]\n{fs_config}\n{extra}\n",
            toml_string(&server.display().to_string()),
            toml_string(&root.display().to_string()),
        );
        Self {
            env: env.config(&config),
            root,
            fake: FakeProvider::start(),
        }
    }

    fn daemon(&self) -> InProcess {
        InProcess::serve(self.env.clone(), &["--no-tcp"])
    }

    fn path(&self, file: &str) -> String {
        self.root.join(file).display().to_string()
    }

    /// The argument text of a `read_text_file` call for `file`.
    fn read_args(&self, file: &str) -> String {
        json!({"path": self.path(file)}).to_string()
    }

    /// The filesystem server as `fs` (its table given `fs_config`, the
    /// config `extra`), a daemon, and `reader` spawned on `wire` with every
    /// tool of `fs`; `None` when the server is not installed (the test skips).
    fn reader(wire: Wire, fs_config: &str, extra: &str) -> Option<(Self, InProcess)> {
        let server = filesystem_server()?;
        let setup = Self::new(&server, fs_config, extra);
        let daemon = setup.daemon();
        spawn(&daemon, wire.spawn_body("reader", &setup.fake, &["fs"]));
        Some((setup, daemon))
    }

    /// Scripts the model's next two replies: call `id` reads notes.txt,
    /// then `answer`.
    fn script_read(&self, wire: Wire, id: &str, answer: &[&str]) {
        let args = self.read_args("notes.txt");
        self.fake
            .push(wire.calls(&[(id, "fs__read_text_file", &args)]))
            .push(wire.text(answer));
    }
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a TOML basic string")
}

/// `orchestration spawn NAME --provider openai --model m --base-url URL`,
/// with `--tools T` for each of `tools`.
fn spawn_cli(daemon: &InProcess, name: &str, url: &str, tools: &[&str]) -> CliOutput {
    let mut args = vec![
        "spawn",
        name,
        "--provider",
        "openai",
        "--model",
        "m",
        "--base-url",
        url,
    ];
    for tool in tools {
        args.extend(["--tools", tool]);
    }
    daemon.cli(&args)
}

#[track_caller]
fn spawn(daemon: &InProcess, body: Value) -> Value {
    let spawned = daemon.json("POST", "/agents", Some(body));
    assert_eq!(spawned.status, 200, "{}", spawned.text());
    spawned.json()
}

/// The history's messages as (type, tool, content).
fn kinds(history: &Value) -> Vec<(String, String, String)> {
    history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["message_type"].as_str().unwrap_or_default().to_owned(),
                m["metadata"]["tool"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                m["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_spawn_whose_tools_config_lacks_is_refused_and_one_it_has_is_listed() {
    let fake = FakeProvider::start();
    let env = Env::new().config(
        "[mcp_servers.fs]\ncommand = \"/bin/false\"\n\n[profiles.withtools]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\ntools = [\"fs.read_text_file\"]\n",
    );
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let body = |name: &str, tools: Value| json!({"name": name, "provider": "openai", "model": "m", "base_url": fake.url("/v1"), "tools": tools});
    let refused = daemon.json("POST", "/agents", Some(body("r", json!(["nope"]))));
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert_eq!(refused.json()["code"], "unknown_tool_server");
    assert!(
        refused.detail().contains("[mcp_servers.nope]"),
        "{}",
        refused.text()
    );
    let refused = daemon.json(
        "POST",
        "/agents",
        Some(body("r", json!(["fs", "nope.tool"]))),
    );
    assert_eq!(refused.json()["code"], "unknown_tool_server");
    assert_eq!(daemon.json("GET", "/agents/r", None).status, 404);

    // The CLI says so, with the daemon's sentence.
    let url = fake.url("/v1");
    let cli = spawn_cli(&daemon, "r", &url, &["nope"]);
    assert_ne!(cli.code(), 0);
    assert!(cli.stderr().contains("nope"), "{}", cli.stderr());

    // Known servers: kept with the agent, shown by GET and list.
    let cli = spawn_cli(
        &daemon,
        "reader",
        &url,
        &["fs,fs.read_text_file", "fs.list_directory"],
    );
    cli.ok();
    assert!(
        cli.stdout()
            .contains("tools fs, fs.read_text_file, fs.list_directory"),
        "{}",
        cli.stdout()
    );
    let info = daemon.json("GET", "/agents/reader", None).json();
    assert_eq!(
        info["tools"],
        json!(["fs", "fs.read_text_file", "fs.list_directory"])
    );
    let listed = daemon.cli(&["list"]);
    assert!(
        listed
            .stdout()
            .contains("reader has tools: fs, fs.read_text_file"),
        "{}",
        listed.stdout()
    );

    // A profile's tools apply to a spawn that names none; one that names some keeps its own.
    let info = spawn(&daemon, json!({"name": "p", "profile": "withtools"}));
    assert_eq!(info["tools"], json!(["fs.read_text_file"]));
    let info = spawn(
        &daemon,
        json!({"name": "q", "profile": "withtools", "tools": ["fs"]}),
    );
    assert_eq!(info["tools"], json!(["fs"]));
    // No tools: none shown.
    let info = spawn(&daemon, json!({"name": "plain", "provider": "echo"}));
    assert!(info.get("tools").is_none(), "{info}");
}

#[test]
fn a_coding_agent_is_refused_tools() {
    let env = Env::new();
    let cwd = env.dir.path().join("project");
    std::fs::create_dir_all(&cwd).expect("cwd");
    let env = env.config("[mcp_servers.fs]\ncommand = \"/bin/false\"\n\n[agents.claude-code]\ncommand = [\"/bin/true\"]\n");
    let daemon = InProcess::serve(env, &["--no-tcp"]);
    let refused = daemon.json(
        "POST",
        "/agents",
        Some(
            json!({"name": "c", "provider": "claude-code", "api_key": "k",
            "cwd": cwd.canonicalize().expect("cwd").display().to_string(), "tools": ["fs"]}),
        ),
    );
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert_eq!(refused.json()["code"], "tools_for_coding_agent");
}

/// The model reads a file through the filesystem server (arguments
/// streamed in pieces), is sent the file's text, and answers with it; the
/// call and result are typed messages, the ledger has both model calls.
fn reads_a_file(wire: Wire) {
    let Some((setup, daemon)) = Setup::reader(wire, "", "") else {
        return;
    };
    setup.script_read(wire, "call_1", &["It says: ", "hello from notes"]);
    let replied = daemon.say("reader", "what does notes.txt say?");
    assert_eq!(replied.status, 200, "{}", replied.text());
    let reply = replied.json()["messages"][0].clone();
    assert!(
        reply["content"]
            .as_str()
            .unwrap_or_default()
            .ends_with("It says: hello from notes"),
        "{reply}"
    );
    assert_eq!(reply["metadata"]["tool_rounds"], 1, "{reply}");
    if let Wire::Anthropic = wire {
        // What it said before its calls is set apart from what it said after.
        assert_eq!(
            reply["content"],
            "Let me look.\n\nIt says: hello from notes"
        );
    }

    let requests = setup.fake.requests();
    assert_eq!(requests.len(), 2);
    let names = offered_names(&requests[0].body);
    assert!(
        names.contains(&"fs__read_text_file".to_owned()),
        "{names:?}"
    );
    let results = sent_results(&requests[1].body);
    assert_eq!(results.len(), 1, "{}", requests[1].body);
    assert_eq!(results[0].0, "call_1");
    assert!(results[0].1.contains("hello from notes"), "{results:?}");
    assert!(!results[0].2);

    let kinds = kinds(&daemon.history("reader"));
    let types: Vec<&str> = kinds.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        types,
        ["chat", "tool_call", "tool_result", "chat"],
        "{kinds:?}"
    );
    assert_eq!(kinds[1].1, "fs.read_text_file");
    assert!(kinds[1].2.contains("notes.txt"));
    assert!(kinds[2].2.contains("hello from notes"));
    // Two model calls, both in the ledger and the agent's totals.
    let info = daemon.json("GET", "/agents/reader", None).json();
    let per_call = match wire {
        Wire::OpenAi => 11,
        Wire::Anthropic => 21,
    };
    assert_eq!(info["usage"]["input_tokens"], 2 * per_call, "{info}");
    let ledger = daemon.json("GET", "/usage?agent=reader", None).json();
    assert_eq!(ledger["total"]["calls"], 2, "{ledger}");
    assert_eq!(ledger["total"]["input_tokens"], 2 * per_call, "{ledger}");
}

#[test]
fn the_model_reads_a_file_and_answers_with_it_over_openai() {
    reads_a_file(Wire::OpenAi);
}

#[test]
fn the_model_reads_a_file_and_answers_with_it_over_anthropic() {
    reads_a_file(Wire::Anthropic);
}

/// Four calls in one reply: two reads run, a tool the agent was not given
/// and arguments that are not JSON are refused, and the model is told each.
fn several_calls_in_one_reply(wire: Wire) {
    let Some(server) = filesystem_server() else {
        return;
    };
    let setup = Setup::new(&server, "", "");
    let daemon = setup.daemon();
    spawn(
        &daemon,
        wire.spawn_body("reader", &setup.fake, &["fs.read_text_file"]),
    );
    let notes = setup.read_args("notes.txt");
    let other = setup.read_args("other.txt");
    let write = json!({"path": setup.path("new.txt"), "content": "x"}).to_string();
    setup
        .fake
        .push(wire.calls(&[
            ("a", "fs__read_text_file", &notes),
            ("b", "fs__read_text_file", &other),
            ("c", "fs__write_file", &write),
            ("d", "fs__read_text_file", "{\"path\": \"unfinished"),
        ]))
        .push(wire.text(&["done"]));
    let replied = daemon.say("reader", "read both");
    assert_eq!(replied.status, 200, "{}", replied.text());
    let results = sent_results(&setup.fake.requests()[1].body);
    let ids: Vec<&str> = results.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"], "{results:?}");
    assert!(
        results[0].1.contains("hello from notes") && !results[0].2,
        "{results:?}"
    );
    assert!(
        results[1].1.contains("the other file") && !results[1].2,
        "{results:?}"
    );
    assert!(
        results[2].2
            && results[2]
                .1
                .contains("not given a tool named \"fs__write_file\""),
        "{results:?}"
    );
    assert!(
        results[3].2 && results[3].1.contains("the arguments were not valid JSON"),
        "{results:?}"
    );
    assert!(
        !setup.root.join("new.txt").exists(),
        "a tool not given must not run"
    );
    let kinds = kinds(&daemon.history("reader"));
    let calls = kinds.iter().filter(|(t, _, _)| t == "tool_call").count();
    let results = kinds.iter().filter(|(t, _, _)| t == "tool_result").count();
    assert_eq!((calls, results), (4, 4), "{kinds:?}");
}

#[test]
fn several_calls_in_one_reply_run_and_the_refused_ones_are_explained_over_openai() {
    several_calls_in_one_reply(Wire::OpenAi);
}

#[test]
fn several_calls_in_one_reply_run_and_the_refused_ones_are_explained_over_anthropic() {
    several_calls_in_one_reply(Wire::Anthropic);
}

/// Waits until one approval is pending and returns it.
fn pending(daemon: &InProcess) -> Value {
    let mut found = Value::Null;
    eventually("an approval to be pending", || {
        let listed = daemon.json("GET", "/approvals", None).json();
        found = listed[0].clone();
        !found.is_null()
    });
    found
}

#[test]
fn ask_waits_for_a_person_approve_runs_and_deny_tells_the_model() {
    let Some((setup, daemon)) = Setup::reader(Wire::OpenAi, "policy = \"ask\"", "") else {
        return;
    };
    setup.script_read(Wire::OpenAi, "c1", &["approved and read"]);
    setup.script_read(Wire::OpenAi, "c2", &["denied, sorry"]);
    std::thread::scope(|scope| {
        let turn = scope.spawn(|| daemon.say("reader", "read notes"));
        let approval = pending(&daemon);
        assert_eq!(approval["agent"], "reader");
        assert_eq!(approval["tool"], "fs.read_text_file");
        assert!(
            approval["summary"]
                .as_str()
                .unwrap_or_default()
                .contains("notes.txt"),
            "{approval}"
        );
        let id = approval["id"].as_str().expect("id");
        daemon.cli(&["approve", id]).ok();
        let replied = turn.join().expect("the turn");
        assert_eq!(replied.status, 200, "{}", replied.text());
    });
    let results = sent_results(&setup.fake.requests()[1].body);
    assert!(
        results[0].1.contains("hello from notes") && !results[0].2,
        "{results:?}"
    );

    std::thread::scope(|scope| {
        let turn = scope.spawn(|| daemon.say("reader", "again"));
        let approval = pending(&daemon);
        let id = approval["id"].as_str().expect("id");
        daemon.cli(&["deny", id, "--reason", "not today"]).ok();
        let replied = turn.join().expect("the turn");
        assert_eq!(replied.status, 200, "{}", replied.text());
    });
    let results = sent_results(&setup.fake.requests()[3].body);
    assert!(results[0].2, "{results:?}");
    assert!(
        results[0].1.contains("denied") && results[0].1.contains("not today"),
        "{results:?}"
    );
    assert!(!results[0].1.contains("hello from notes"));
}

#[test]
fn config_deny_stays_denied_and_approval_never_denies_what_would_ask() {
    let Some(server) = filesystem_server() else {
        return;
    };
    let setup = Setup::new(
        &server,
        "policy = \"ask\"\n[mcp_servers.fs.policies]\nread_text_file = \"deny\"",
        "",
    );
    let daemon = setup.daemon();
    let mut body = Wire::OpenAi.spawn_body("reader", &setup.fake, &["fs"]);
    body["allow"] = json!(["fs"]);
    spawn(&daemon, body);
    let mut body = Wire::OpenAi.spawn_body("never", &setup.fake, &["fs"]);
    body["approval"] = json!("never");
    spawn(&daemon, body);
    let args = setup.read_args("notes.txt");
    let list = json!({"path": setup.root.display().to_string()}).to_string();
    setup
        .fake
        .push(Wire::OpenAi.calls(&[
            ("c1", "fs__read_text_file", &args),
            ("c2", "fs__list_directory", &list),
        ]))
        .push(Wire::OpenAi.text(&["ok"]))
        .push(Wire::OpenAi.calls(&[("c3", "fs__list_directory", &list)]))
        .push(Wire::OpenAi.text(&["ok"]));
    assert_eq!(daemon.say("reader", "go").status, 200);
    let results = sent_results(&setup.fake.requests()[1].body);
    // --allow fs lifts ask, never a config deny.
    assert!(
        results[0].2 && results[0].1.contains("policy"),
        "{results:?}"
    );
    assert!(
        !results[1].2 && results[1].1.contains("notes.txt"),
        "{results:?}"
    );
    assert_eq!(daemon.say("never", "go").status, 200);
    let results = sent_results(&setup.fake.requests()[3].body);
    assert!(
        results[0].2 && results[0].1.contains("denied"),
        "{results:?}"
    );
    assert_eq!(daemon.json("GET", "/approvals", None).json(), json!([]));
}

/// The names of the tools a chat request offers, whichever wire it is.
fn offered_names(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().or(t["function"]["name"].as_str()))
        .map(str::to_owned)
        .collect()
}

/// A tool config denies is left out of what the model is offered (an
/// agent's `--allow` does not bring it back), its siblings are offered, a
/// call naming it anyway is refused, and `GET /tools` still lists it.
fn a_denied_tool_is_not_offered(wire: Wire) {
    let Some(server) = filesystem_server() else {
        return;
    };
    let setup = Setup::new(
        &server,
        "[mcp_servers.fs.policies]\nwrite_file = \"deny\"",
        "",
    );
    let daemon = setup.daemon();
    let mut body = wire.spawn_body("reader", &setup.fake, &["fs"]);
    body["allow"] = json!(["fs"]);
    spawn(&daemon, body);
    let write = json!({"path": setup.path("new.txt"), "content": "x"}).to_string();
    setup
        .fake
        .push(wire.calls(&[("w1", "fs__write_file", &write)]))
        .push(wire.text(&["could not"]));
    let replied = daemon.say("reader", "write a file");
    assert_eq!(replied.status, 200, "{}", replied.text());
    let requests = setup.fake.requests();
    for request in &requests {
        let names = offered_names(&request.body);
        assert!(
            names.contains(&"fs__read_text_file".to_owned()),
            "{names:?}"
        );
        assert!(
            !names.contains(&"fs__write_file".to_owned()),
            "a denied tool was offered: {names:?}"
        );
    }
    let results = sent_results(&requests[1].body);
    assert!(
        results[0].2
            && results[0]
                .1
                .contains("the policy for fs.write_file is deny"),
        "{results:?}"
    );
    assert!(!setup.root.join("new.txt").exists(), "a denied tool ran");

    let listed = daemon.json("GET", "/tools", None).json();
    let write_file = listed["servers"][0]["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["name"] == "write_file").cloned())
        .unwrap_or_else(|| panic!("GET /tools lists no write_file: {listed}"));
    assert_eq!(write_file["policy"], "deny", "{listed}");
}

#[test]
fn a_denied_tool_is_not_offered_over_openai() {
    a_denied_tool_is_not_offered(Wire::OpenAi);
}

#[test]
fn a_denied_tool_is_not_offered_over_anthropic() {
    a_denied_tool_is_not_offered(Wire::Anthropic);
}

#[test]
fn max_tool_rounds_ends_the_turn_with_a_marker() {
    let Some((setup, daemon)) = Setup::reader(Wire::Anthropic, "", "[tools]\nmax_tool_rounds = 1")
    else {
        return;
    };
    let args = setup.read_args("notes.txt");
    setup
        .fake
        .push(Wire::Anthropic.calls(&[("t1", "fs__read_text_file", &args)]))
        .push(Wire::Anthropic.calls(&[("t2", "fs__read_text_file", &args)]));
    let replied = daemon.say("reader", "loop forever");
    assert_eq!(replied.status, 200, "{}", replied.text());
    let reply = replied.json()["messages"][0].clone();
    assert_eq!(reply["metadata"]["tool_rounds_exhausted"], true, "{reply}");
    assert!(
        reply["content"]
            .as_str()
            .unwrap_or_default()
            .contains("tools.max_tool_rounds"),
        "{reply}"
    );
    assert_eq!(setup.fake.requests().len(), 2);
    // The second round's call was not run, nor recorded.
    let kinds = kinds(&daemon.history("reader"));
    assert_eq!(
        kinds.iter().filter(|(t, _, _)| t == "tool_call").count(),
        1,
        "{kinds:?}"
    );
}

#[test]
fn after_a_restart_the_tools_stay_and_the_next_context_leaves_the_calls_out() {
    let Some(server) = filesystem_server() else {
        return;
    };
    let setup = Setup::new(&server, "", "");
    {
        let mut daemon = setup.daemon();
        spawn(
            &daemon,
            Wire::OpenAi.spawn_body("reader", &setup.fake, &["fs"]),
        );
        setup.script_read(Wire::OpenAi, "c1", &["It says hello."]);
        assert_eq!(daemon.say("reader", "what does notes.txt say?").status, 200);
        daemon.stop().expect("the daemon stops");
    }
    let daemon = setup.daemon();
    let info = daemon.json("GET", "/agents/reader", None).json();
    assert_eq!(info["tools"], json!(["fs"]), "{info}");
    let kinds = kinds(&daemon.history("reader"));
    assert_eq!(
        kinds.iter().filter(|(t, _, _)| t == "tool_call").count(),
        1,
        "{kinds:?}"
    );
    setup.fake.push(Wire::OpenAi.text(&["Still hello."]));
    let replied = daemon.say("reader", "and now?");
    assert_eq!(replied.status, 200, "{}", replied.text());
    let last = setup.fake.last_request();
    assert!(last.body["tools"].is_array(), "the tools are offered again");
    assert_eq!(
        sent_turns(&last.body),
        [
            ("user".to_owned(), "what does notes.txt say?".to_owned()),
            ("assistant".to_owned(), "It says hello.".to_owned()),
            ("user".to_owned(), "and now?".to_owned()),
        ]
    );
}

#[test]
fn history_markdown_and_search_show_the_call() {
    let Some((setup, daemon)) = Setup::reader(Wire::OpenAi, "", "") else {
        return;
    };
    setup.script_read(Wire::OpenAi, "c1", &["It says hello."]);
    assert_eq!(daemon.say("reader", "what does notes.txt say?").status, 200);
    let markdown = daemon.cli(&["history", "reader", "--format", "markdown"]);
    let text = markdown.ok().stdout();
    assert!(text.contains("<details>"), "{text}");
    assert!(text.contains("fs.read_text_file"), "{text}");
    assert!(text.contains("hello from notes"), "{text}");
    let found = daemon.cli(&["search", "hello from notes"]);
    assert!(found.ok().stdout().contains("reader"), "{}", found.stdout());
    // The reply does not say it: the hit is the tool result.
    let hits = daemon
        .json("GET", "/search?q=%22hello%20from%20notes%22", None)
        .json();
    assert_eq!(hits["results"].as_array().map(Vec::len), Some(1), "{hits}");
}

/// The walk-through a new user follows, on the real CLI: the filesystem
/// server in config, `spawn reader --tools fs`, a question that waits for
/// an approval, `approve ID` from another process, the file's text in the
/// reply, the call in `history` and `search`.
#[test]
fn done_when_a_new_user_reads_a_file_through_an_approved_tool_call() {
    let Some(server) = filesystem_server() else {
        return;
    };
    let setup = Setup::new(&server, "policy = \"ask\"", "");
    let daemon = setup.daemon();
    let url = setup.fake.url("/v1");
    spawn_cli(&daemon, "reader", &url, &["fs"]).ok();
    setup.script_read(
        Wire::OpenAi,
        "c1",
        &["notes.txt says: ", "hello from notes"],
    );
    let message = daemon
        .env()
        .command(&["message", "reader", "what does notes.txt say?"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("message runs");
    let approval = pending(&daemon);
    let id = approval["id"].as_str().expect("id").to_owned();
    let listed = daemon.cli(&["approvals"]);
    assert!(listed.ok().stdout().contains(&id), "{}", listed.stdout());
    daemon.cli(&["approve", &id]).ok();
    let output = message.wait_with_output().expect("message ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("notes.txt says: hello from notes"),
        "{stdout}"
    );
    assert!(
        stderr.contains("fs.read_text_file"),
        "tool activity on stderr: {stderr}"
    );
    let history = daemon.cli(&["history", "reader"]);
    assert!(
        history.ok().stdout().contains("fs.read_text_file"),
        "{}",
        history.stdout()
    );
    let found = daemon.cli(&["search", "hello from notes"]);
    assert!(found.ok().stdout().contains("reader"), "{}", found.stdout());
}

#[test]
fn an_interrupt_while_a_call_waits_for_approval_ends_the_turn_and_keeps_the_call() {
    let Some((setup, daemon)) = Setup::reader(Wire::OpenAi, "policy = \"ask\"", "") else {
        return;
    };
    setup.script_read(Wire::OpenAi, "c1", &["fine"]);
    std::thread::scope(|scope| {
        let turn = scope.spawn(|| daemon.say("reader", "read notes"));
        pending(&daemon);
        let stopped = daemon.json("POST", "/agents/reader/interrupt", None);
        assert_eq!(stopped.status, 202, "{}", stopped.text());
        assert_eq!(stopped.json()["interrupted"], true);
        let replied = turn.join().expect("the turn");
        assert_eq!(replied.json()["code"], "interrupted", "{}", replied.text());
    });
    assert_eq!(daemon.json("GET", "/approvals", None).json(), json!([]));
    let kinds = kinds(&daemon.history("reader"));
    let types: Vec<&str> = kinds.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(types, ["chat", "tool_call", "tool_result"], "{kinds:?}");
    assert!(kinds[2].2.contains("cancelled"), "{kinds:?}");
    assert_eq!(
        setup.fake.requests().len(),
        1,
        "no model call after the interrupt"
    );
    // The next turn works, its context well formed.
    assert_eq!(daemon.say("reader", "never mind").status, 200);
    assert_eq!(
        sent_turns(&setup.fake.last_request().body),
        [
            ("user".to_owned(), "read notes".to_owned()),
            ("user".to_owned(), "never mind".to_owned()),
        ]
    );
}
