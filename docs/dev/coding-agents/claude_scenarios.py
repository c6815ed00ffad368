#!/usr/bin/env python3
"""Drive Claude Code (stream-json + control protocol) against fake_model.py.

Writes transcripts to out/claude_*.txt and the fake's request log to out/claude_fake.log.
Prints a summary of checks.
"""
import json
import os
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from drive import CLAUDE, Child, Fake  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
os.makedirs(OUT, exist_ok=True)
TR = os.path.join(OUT, "claude_transcript_%s.txt" % "_".join(sys.argv[1:] or ["all"]))
if os.path.exists(TR):
    os.remove(TR)
fake = Fake(os.path.join(OUT, "claude_fake_%s.log" % "_".join(sys.argv[1:] or ["all"])))
home = os.path.abspath(tempfile.mkdtemp(prefix="claude-home-"))
cwd = os.path.abspath(tempfile.mkdtemp(prefix="claude-cwd-"))
checks = []


def check(name, ok, detail=""):
    checks.append((name, ok, detail))
    print(("PASS " if ok else "FAIL ") + name + (" -- " + detail if detail else ""), flush=True)


def env_for(url):
    return {"PATH": os.environ["PATH"], "HOME": home, "LANG": "C.UTF-8",
            "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "fake",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0"}


BASE = [CLAUDE, "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
        "--permission-prompt-tool", "stdio", "--include-partial-messages"]


def start(extra, label, url=None):
    c = Child(BASE + extra, env_for(url or fake.url), cwd, TR, label)
    t = c.send({"type": "control_request", "request_id": "init-1", "request": {"subtype": "initialize"}})
    c.wait(lambda o: o.get("type") == "control_response" and o["response"].get("request_id") == "init-1", 60)
    c.note("initialize answered after %.3fs" % (time.time() - c.t0))
    return c


def user(c, text):
    return c.send({"type": "user", "message": {"role": "user", "content": text}})


def result(c, timeout=60):
    return c.wait(lambda o: o.get("type") == "result", timeout)[1]


def last_post():
    return [r for r in fake.records() if r["method"] == "POST"][-1]


def all_text(rec):
    return json.dumps(rec["body"].get("messages"))


SECTIONS = sys.argv[1:] or ["main", "modes", "down"]
# ---------------------------------------------------------------- process 1
if "main" in SECTIONS:
    c = start([], "process 1: turns, tool allow/deny, interrupt")
    user(c, "hello one")
    r1 = result(c)
    sid = r1["session_id"]
    check("text turn", r1["result"] == "echo: hello one", r1["result"])

    user(c, "second turn")
    r2 = result(c)
    check("second turn sees first (fake log)", "hello one" in all_text(last_post()) and r2["result"] == "echo: second turn")
    check("same session id across turns", r2["session_id"] == sid, sid)

    # tool call -> allow
    user(c, "run: echo hi-from-bash > made_by_claude.txt && pwd")
    _, req = c.wait(lambda o: o.get("type") == "control_request" and o["request"].get("subtype") == "can_use_tool")
    c.send({"type": "control_response", "response": {"subtype": "success", "request_id": req["request_id"],
            "response": {"behavior": "allow", "updatedInput": req["request"]["input"]}}})
    r3 = result(c)
    check("allow -> command ran in cwd", os.path.exists(os.path.join(cwd, "made_by_claude.txt")), r3["result"])
    check("allow -> reply quotes result", cwd in r3["result"], r3["result"])

    # tool call -> deny
    user(c, "run: touch denied_by_user.txt")
    _, req = c.wait(lambda o: o.get("type") == "control_request" and o["request"].get("subtype") == "can_use_tool")
    c.send({"type": "control_response", "response": {"subtype": "success", "request_id": req["request_id"],
            "response": {"behavior": "deny", "message": "operator said no"}}})
    r4 = result(c)
    check("deny -> not ran", not os.path.exists(os.path.join(cwd, "denied_by_user.txt")), r4["result"])
    check("deny -> model told", "operator said no" in r4["result"], json.dumps(r4.get("permission_denials")))

    # interrupt mid-turn
    user(c, "slow: please tell me a long long story about the sea and the wind and the stars")
    c.wait(lambda o: o.get("type") == "stream_event" and o["event"].get("type") == "content_block_delta")
    ti = c.send({"type": "control_request", "request_id": "int-1", "request": {"subtype": "interrupt"}})
    r5 = result(c, 30)
    check("interrupt -> result", True, "after %.3fs subtype=%s is_error=%s result=%r" %
          (time.time() - ti, r5.get("subtype"), r5.get("is_error"), r5.get("result")))
    user(c, "after the interrupt")
    r6 = result(c)
    check("turn after interrupt works in same process", r6["result"] == "echo: after the interrupt", r6["result"])
    lp = all_text(last_post())
    check("request after interrupt carries interrupted turn?", "slow:" in lp, "contains 'slow:'=%s, '[Request interrupted' = %s" % ("slow:" in lp, "Request interrupted" in lp))
    rc = c.close()
    check("process 1 exits on stdin EOF", rc == 0, "rc=%s" % rc)

    # ---------------------------------------------------------------- process 2: --resume
    c = start(["--resume", sid], "process 2: --resume " + sid)
    user(c, "do you remember?")
    r = result(c)
    body = all_text(last_post())
    check("--resume: request contains earlier turns", "hello one" in body and "second turn" in body)
    check("--resume: session id kept", r["session_id"] == sid, "new=%s old=%s" % (r["session_id"], sid))
    c.close()

    # ---------------------------------------------------------------- process 3: --session-id chosen
    chosen = str(uuid.uuid4())
    c = start(["--session-id", chosen, "--model", "claude-fake-model-1", "--append-system-prompt", "EXTRA-INSTRUCTIONS-XYZ",
               "--allowedTools", "Bash(echo:*)"], "process 3: --session-id, --model, --append-system-prompt, --allowedTools")
    user(c, "run: echo allowed-without-asking")
    r = result(c)
    rec = [x for x in fake.records() if x["method"] == "POST"]
    asked = any(o.get("type") == "control_request" and o.get("request", {}).get("subtype") == "can_use_tool" for _, o in c.lines)
    check("--session-id used", r["session_id"] == chosen, r["session_id"])
    check("--model sent to server", rec[-1]["body"]["model"] == "claude-fake-model-1", rec[-1]["body"]["model"])
    check("--append-system-prompt in system", "EXTRA-INSTRUCTIONS-XYZ" in json.dumps(rec[-1]["body"]["system"]))
    check("--allowedTools Bash(echo:*) -> no can_use_tool", not asked, r["result"])
    c.close()
    c = start(["--resume", chosen], "process 4: --resume chosen id")
    user(c, "again")
    r = result(c)
    check("--resume chosen id sees earlier", "allowed-without-asking" in all_text(last_post()), r["session_id"])
    c.close()

# ---------------------------------------------------------------- permission modes
def try_mode(mode, extra_env=None):
    label = "--permission-mode %s%s" % (mode, " env " + json.dumps(extra_env) if extra_env else "")
    global env_for
    ef = env_for
    if extra_env:
        env_for = lambda url: dict(ef(url), **extra_env)
    try:
        c = start(["--permission-mode", mode], "process: " + label)
    except Exception as e:
        check(label, False, "did not start: %r" % e)
        return
    finally:
        env_for = ef
    user(c, "run: echo mode-%s > mode_%s.txt" % (mode, mode))
    try:
        t, o = c.wait(lambda o: o.get("type") == "result" or
                      (o.get("type") == "control_request" and o["request"].get("subtype") == "can_use_tool"), 30)
        if o.get("type") == "control_request":
            c.send({"type": "control_response", "response": {"subtype": "success", "request_id": o["request_id"],
                    "response": {"behavior": "deny", "message": "test denies"}}})
            o = result(c)
            asked = True
        else:
            asked = False
        check(label, True, "asked=%s ran=%s result=%r" % (
            asked, os.path.exists(os.path.join(cwd, "mode_%s.txt" % mode)), o.get("result")))
    except Exception as e:
        check(label, False, repr(e))
    c.close()


if "modes" in SECTIONS:
    for mode in ("default", "acceptEdits", "plan", "dontAsk", "bypassPermissions"):
        try_mode(mode)
    try_mode("bypassPermissions", {"IS_SANDBOX": "1"})

# ---------------------------------------------------------------- server down
if "down" in SECTIONS:
  fake_dead_url = "http://127.0.0.1:9"  # discard port, nothing listens
  c = start([], "process: model server down", url=fake_dead_url)
  t = user(c, "anyone there?")
  try:
      r = result(c, 60)
      check("server down -> result", True, "after %.3fs is_error=%s subtype=%s result=%r" % (
          time.time() - t, r.get("is_error"), r.get("subtype"), r.get("result")))
      user(c, "still alive?")
      r = result(c, 60)
      check("server down -> process still takes turns", True, repr(r.get("result")))
  except Exception as e:
      check("server down", False, repr(e))
  rc = c.close()
  check("server down process exit", True, "rc=%s" % rc)

fake.stop()
print("cwd:", cwd, "home:", home)
print("%d/%d checks passed" % (sum(1 for x in checks if x[1]), len(checks)))
