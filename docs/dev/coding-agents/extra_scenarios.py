#!/usr/bin/env python3
"""Edge cases for both CLIs: kill -9 mid-turn then resume, HTTP 500 from the model,
Claude allow without updatedInput, Claude cost after resume, Codex interrupt while it
is "Reconnecting...". Transcript: out/extra_transcript.txt, fake log out/extra_fake.log."""
import json
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import claude_lib as CL  # noqa: E402
from drive import CLAUDE, CODEX, Child, Fake  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")
TR = os.path.join(OUT, "extra_transcript.txt")
if os.path.exists(TR):
    os.remove(TR)
fake = Fake(os.path.join(OUT, "extra_fake.log"))
BASE = os.path.join(HERE, "tmp", "extra")
os.makedirs(BASE, exist_ok=True)
home = tempfile.mkdtemp(prefix="home-", dir=BASE)
cwd = tempfile.mkdtemp(prefix="cwd-", dir=BASE)
checks = []


def check(name, ok, detail=""):
    checks.append((name, ok, detail))
    print(("PASS " if ok else "FAIL ") + name + (" -- " + detail if detail else ""), flush=True)


def posts():
    return [r for r in fake.records() if r["method"] == "POST"]


SECTIONS = sys.argv[1:] or ["claude", "codex"]

# ============================================================== Claude
if "claude" in SECTIONS:
    cenv = CL.env(fake.url, home)

    def cstart(extra, label):
        c = Child(CL.argv(CLAUDE, extra), cenv, cwd, TR, label)
        CL.initialize(c)
        return c

    c = cstart([], "claude: allow without updatedInput; kill -9 mid-turn")
    c.send(CL.user("first claude turn"))
    r = CL.result(c)
    sid = r["session_id"]
    cost1 = r["total_cost_usd"]
    c.send(CL.user("run: echo no-updated-input > noui.txt"))
    _, req = c.wait(lambda o: o.get("type") == "control_request" and o["request"].get("subtype") == "can_use_tool")
    c.send({"type": "control_response", "response": {"subtype": "success", "request_id": req["request_id"],
                                                      "response": {"behavior": "allow"}}})
    r = CL.result(c)
    check("claude allow without updatedInput", os.path.exists(os.path.join(cwd, "noui.txt")), repr(r.get("result"))[:300])
    c.send(CL.user("slow: the killed turn"))
    c.wait(lambda o: o.get("type") == "stream_event" and o["event"].get("type") == "content_block_delta")
    os.kill(c.p.pid, signal.SIGKILL)
    c.note("sent SIGKILL to %d" % c.p.pid)
    rc = c.close()
    check("claude kill -9", rc == -9, "rc=%s" % rc)

    c = cstart(["--resume", sid], "claude: --resume after kill -9")
    c.send(CL.user("after the kill"))
    r = CL.result(c)
    body = json.dumps(posts()[-1]["body"]["messages"])
    check("claude resume after kill: earlier turns present", "first claude turn" in body, "")
    check("claude resume after kill: killed prompt present", "the killed turn" in body,
          "partial assistant text present: %s" % ("echo: slow" in body or '"ec' in body))
    check("claude total_cost_usd after resume", True,
          "before kill (turn 1) %s; first turn of resumed process %s" % (cost1, r["total_cost_usd"]))

    c.send(CL.user("http500: fail please"))
    t0 = time.time()
    r = CL.result(c)
    check("claude HTTP 500", r.get("is_error") is True, "after %.3fs subtype=%s api_error_status=%s result=%r" % (
        time.time() - t0, r.get("subtype"), r.get("api_error_status"), r.get("result")))
    c.send(CL.user("after the 500"))
    r = CL.result(c)
    check("claude turn after 500", r.get("result") == "echo: after the 500", repr(r.get("result")))
    c.close()

# ============================================================== Codex
if "codex" in SECTIONS:
    def codex_home(url):
        ch = tempfile.mkdtemp(prefix="codex-home-", dir=BASE)
        with open(os.path.join(ch, "config.toml"), "w") as f:
            f.write('model = "fake-model"\nmodel_provider = "fake"\n\n[model_providers.fake]\nname = "fake"\n'
                    'base_url = "%s/v1"\nenv_key = "FAKE_KEY"\nwire_api = "responses"\n'
                    'request_max_retries = 0\nstream_max_retries = 0\n' % url)
        return ch

    CH = codex_home(fake.url)
    n = [0]

    def rpc(c, method, params, timeout=60):
        n[0] += 1
        rid = "x%d" % n[0]
        c.send({"method": method, "id": rid, "params": params})
        return c.wait(lambda o: o.get("id") == rid and "method" not in o, timeout)[1]

    def xstart(label, ch):
        env = {"PATH": os.environ["PATH"], "HOME": home, "LANG": "C.UTF-8", "CODEX_HOME": ch, "FAKE_KEY": "fake"}
        c = Child([CODEX, "app-server"], env, cwd, TR, label)
        rpc(c, "initialize", {"clientInfo": {"name": "orchestration", "title": None, "version": "0.1"},
                              "capabilities": None})
        c.send({"method": "initialized"})
        return c

    def tin(t):
        return [{"type": "text", "text": t, "text_elements": []}]

    def turn(c, tid, text, timeout=60):
        r = rpc(c, "turn/start", {"threadId": tid, "input": tin(text)})
        turn_id = r["result"]["turn"]["id"]
        errs = []
        while True:
            _, o = c.wait(lambda o: "method" in o, timeout)
            if o["method"] == "error":
                errs.append(o["params"])
            if o["method"] == "turn/completed" and o["params"]["turn"]["id"] == turn_id:
                return o["params"]["turn"], errs

    c = xstart("codex: kill -9 mid-turn", CH)
    tid = rpc(c, "thread/start", {"cwd": cwd, "model": "fake-model", "approvalPolicy": "untrusted",
                                  "sandbox": "workspace-write"})["result"]["thread"]["id"]
    turn(c, tid, "first codex turn")
    rpc(c, "turn/start", {"threadId": tid, "input": tin("slow: the killed codex turn")})
    c.wait(lambda o: o.get("method") == "item/agentMessage/delta")
    os.kill(c.p.pid, signal.SIGKILL)
    c.note("sent SIGKILL to %d" % c.p.pid)
    check("codex kill -9", c.close() == -9)

    c = xstart("codex: thread/resume after kill -9", CH)
    r = rpc(c, "thread/resume", {"threadId": tid})
    check("codex thread/resume after kill", "result" in r, json.dumps(r)[:200])
    t, errs = turn(c, tid, "after the codex kill")
    body = json.dumps(posts()[-1]["body"]["input"])
    check("codex resume after kill: earlier turn present", "first codex turn" in body)
    check("codex resume after kill: killed prompt present", "the killed codex turn" in body)

    t0 = time.time()
    t, errs = turn(c, tid, "http500: codex fail please", timeout=120)
    check("codex HTTP 500", True, "after %.3fs status=%s error=%s; error notifications: %s" % (
        time.time() - t0, t["status"], json.dumps(t["error"])[:300], json.dumps(errs)[:600]))
    t, errs = turn(c, tid, "after the codex 500")
    check("codex turn after 500", t["status"] == "completed", t["status"])
    c.close()

    # interrupt while reconnecting to a dead server
    c = xstart("codex: interrupt while reconnecting (server down)", codex_home("http://127.0.0.1:9"))
    tid = rpc(c, "thread/start", {"cwd": cwd, "model": "fake-model", "approvalPolicy": "untrusted",
                                  "sandbox": "workspace-write"})["result"]["thread"]["id"]
    r = rpc(c, "turn/start", {"threadId": tid, "input": tin("anyone?")})
    turn_id = r["result"]["turn"]["id"]
    t0 = time.time()
    _, e = c.wait(lambda o: o.get("method") == "error", 30)
    ta = time.time()
    ir = rpc(c, "turn/interrupt", {"threadId": tid, "turnId": turn_id})
    _, done = c.wait(lambda o: o.get("method") == "turn/completed", 30)
    check("codex interrupt while reconnecting", done["params"]["turn"]["status"] == "interrupted",
          "first error after %.3fs; turn/completed %.3fs after interrupt; status=%s" % (
              ta - t0, time.time() - ta, done["params"]["turn"]["status"]))
    c.close()

fake.stop()
print("%d/%d checks passed" % (sum(1 for x in checks if x[1]), len(checks)))
