//! The web page in a real browser: `tests/ui/page.py` drives headless
//! Chromium (Debian's `chromium` and `chromium-driver`) through Selenium
//! against an in-process daemon with the echo provider: login through the
//! link's fragment, the token refused the second time, spawning from the
//! page, a streamed reply, markup in a reply shown as text, search, a
//! fan-out side by side, and the Usage page's budgets and spending against
//! a fake model server that reports usage. `tests/ui/approvals.py` answers
//! a real Claude Code agent's approvals from the page's panel. Both scripts
//! take the browser, the login and their helpers from `tests/ui/common.py`.
//! Screenshots of each page land in `target/tmp/ui-screenshots/` for
//! whoever changes the page to look at.
//!
//! Python with Selenium comes from `$ORCHESTRATION_SELENIUM_PYTHON` (set by
//! `scripts/test.sh`, which installs it), Chromium and its driver from
//! `$ORCHESTRATION_CHROMIUM` / `$ORCHESTRATION_CHROMEDRIVER`, else
//! `chromium` and `chromedriver` on PATH. Without them the test is skipped
//! with a message, unless `$ORCHESTRATION_REQUIRE_THIRD_PARTY=1`, when it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::coding::{ClaudeSetup, claude, spawn_claude};
use crate::common::fake_provider::{FakeProvider, Reply, openai_chunks_with_usage};
use crate::common::in_process::InProcess;
use crate::common::{Env, Harness};

/// What the browser test needs, or why it cannot run.
struct Browser {
    python: PathBuf,
    chromium: PathBuf,
    chromedriver: PathBuf,
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn from_env_or_path(variable: &str, program: &str) -> Option<PathBuf> {
    match std::env::var_os(variable) {
        Some(value) if !value.is_empty() => Some(PathBuf::from(value)),
        _ => on_path(program),
    }
}

fn browser() -> Result<Browser, String> {
    let python = std::env::var_os("ORCHESTRATION_SELENIUM_PYTHON")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .ok_or("ORCHESTRATION_SELENIUM_PYTHON (a Python with selenium) is not set")?;
    let imports = Command::new(&python)
        .args(["-c", "import selenium"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !imports.status.success() {
        return Err(format!("{} cannot import selenium", python.display()));
    }
    let chromium = from_env_or_path("ORCHESTRATION_CHROMIUM", "chromium")
        .ok_or("chromium is not installed (Debian: apt-get install chromium)")?;
    let chromedriver = from_env_or_path("ORCHESTRATION_CHROMEDRIVER", "chromedriver")
        .ok_or("chromedriver is not installed (Debian: apt-get install chromium-driver)")?;
    Ok(Browser {
        python,
        chromium,
        chromedriver,
    })
}

/// A fresh login link, as `orchestration ui --print-url` prints it.
fn link(daemon: &InProcess) -> String {
    let printed = daemon.cli(&["ui", "--print-url"]);
    printed.ok();
    printed.stdout().trim().to_owned()
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// The browser, or `None` (skipped, or a failure when third-party tools are required).
fn browser_or_skip() -> Option<Browser> {
    match browser() {
        Ok(browser) => Some(browser),
        Err(why) => {
            let required = std::env::var("ORCHESTRATION_REQUIRE_THIRD_PARTY").as_deref() == Ok("1");
            assert!(
                !required,
                "the browser test is required but cannot run: {why}; run scripts/test.sh"
            );
            eprintln!(
                "SKIPPED: the browser test did not run: {why}; `bash scripts/test.sh` installs what it needs"
            );
            None
        }
    }
}

/// The command running `script` with Selenium against `daemon`, its
/// browser profile, home and scratch files in the daemon's temp dir.
fn script(browser: &Browser, daemon: &InProcess, name: &str) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ui")
        .join(name);
    let mut command = Command::new(&browser.python);
    command
        .arg(&script)
        .arg("--screenshots")
        .arg(screenshots())
        .arg("--profile")
        .arg(daemon.env.dir.path().join("chromium-profile"))
        .arg("--chromium")
        .arg(&browser.chromium)
        .arg("--chromedriver")
        .arg(&browser.chromedriver)
        // Selenium must not look for a driver on the network.
        .env("SE_OFFLINE", "true")
        .env("SE_AVOID_STATS", "true")
        .env("HOME", daemon.env.dir.path().join("home"))
        // Chromium's and its driver's scratch files go to the test's temp dir too.
        .env("TMPDIR", daemon.env.dir.path());
    command
}

#[test]
fn the_page_works_in_a_real_browser() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    // The usage page's model server: two replies of 3 tokens in and 100 out,
    // 0.503 USD each at this price, under two budgets on its profile.
    let fake = FakeProvider::start();
    for _ in 0..2 {
        fake.push(Reply::sse(&openai_chunks_with_usage(
            "gpt-test",
            &["fine"],
            Some(json!({"prompt_tokens": 3, "completion_tokens": 100})),
        )));
    }
    let config = format!(
        "[providers]\nmax_retries = 0\nbudget_max_tokens = 100\n\n\
         [profiles.fake]\nbase_url = \"{}\"\nmodel = \"gpt-test\"\n\n\
         [prices.\"gpt-test\"]\ninput = 1000.0\noutput = 5000.0\n\n\
         [[budgets]]\nscope = \"profile:fake\"\nperiod = \"day\"\nusd = 5.0\n\n\
         [[budgets]]\nscope = \"profile:fake\"\nperiod = \"month\"\ntokens = 100000\n",
        fake.url("/v1")
    );
    // Slow enough words that the page shows the reply while it streams.
    let daemon = InProcess::start_with(Env::new().config(&config), true, |config| {
        config.echo_delay = Duration::from_millis(50);
    });
    let output = script(&browser, &daemon, "page.py")
        .arg("--link")
        .arg(link(&daemon))
        .arg("--second-link")
        .arg(link(&daemon))
        .output()
        .expect("run the browser test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}\ndaemon log:\n{}",
        daemon.log()
    );
    // What the page did is what the daemon has.
    let history = daemon.history("web");
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(
        texts.iter().any(|t| t.starts_with("hello from the page")),
        "{texts:?}"
    );
    assert_eq!(daemon.json("GET", "/agents/other", None).status, 200);
    // The budgets the page showed are the daemon's.
    assert_eq!(fake.requests().len(), 2);
    let info = daemon.json("GET", "/agents/paid", None).json();
    assert_eq!(info["budget"], "2usd/day", "{info}");
    let usage = daemon.json("GET", "/usage", None).json();
    let day = usage["budgets"]
        .as_array()
        .expect("budgets")
        .iter()
        .find(|b| b["scope"] == "profile:fake" && b["period"] == "day")
        .expect("the day budget")
        .clone();
    assert_eq!(day["spent"], json!(1.006), "{day}");
}

#[test]
fn the_approvals_panel_answers_a_real_coding_agent() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let Some(claude) = claude() else { return };
    let ClaudeSetup { env, cwd, fake } = ClaudeSetup::new(&claude);
    let daemon = InProcess::start_in(env, true);
    spawn_claude(&daemon, "coder", &fake, &cwd, &[]);
    let output = script(&browser, &daemon, "approvals.py")
        .arg("--link")
        .arg(link(&daemon))
        .arg("--agent")
        .arg("coder")
        .arg("--cwd")
        .arg(&cwd)
        .output()
        .expect("run the browser test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the approvals browser test failed:\n{stdout}\n{stderr}\ndaemon log:\n{}",
        daemon.log()
    );
    // The page's answers are the daemon's: one command ran, the other did not.
    assert!(cwd.join("approved.txt").is_file());
    assert!(!cwd.join("denied.txt").exists());
    assert!(!cwd.join("queued.txt").exists());
    // The message the page saw queued was answered after the denied turn.
    let history = daemon.history("coder").to_string();
    assert!(history.contains("echo: behind it"), "{history}");
    assert_eq!(
        daemon.json("GET", "/approvals", None).json(),
        serde_json::json!([])
    );
}
