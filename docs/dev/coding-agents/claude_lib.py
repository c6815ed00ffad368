"""Claude Code stream-json helpers shared by extra_scenarios.py and bench.py."""
import os
import time


def env(url, home):
    return {"PATH": os.environ["PATH"], "HOME": home, "LANG": "C.UTF-8",
            "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "fake",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0"}


def argv(claude, extra=()):
    return [claude, "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
            "--permission-prompt-tool", "stdio", "--include-partial-messages"] + list(extra)


def initialize(c, rid="init-1"):
    c.send({"type": "control_request", "request_id": rid, "request": {"subtype": "initialize"}})
    t, _ = c.wait(lambda o: o.get("type") == "control_response" and o["response"].get("request_id") == rid, 60)
    return t


def user(text):
    return {"type": "user", "message": {"role": "user", "content": text}}


def result(c, timeout=60):
    return c.wait(lambda o: o.get("type") == "result", timeout)[1]
