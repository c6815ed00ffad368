#!/usr/bin/env python3
"""Drive `codex app-server` (JSON-RPC over stdio) against fake_model.py.

Transcripts: out/codex_transcript_<sections>.txt, fake log out/codex_fake_<sections>.log.
Sections (argv): main modes down   (default: all)
"""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from drive import CODEX, Child, Fake  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")
os.makedirs(OUT, exist_ok=True)
SECTIONS = sys.argv[1:] or ["main", "modes", "down"]
TAG = "_".join(SECTIONS)
TR = os.path.join(OUT, "codex_transcript_%s.txt" % TAG)
if os.path.exists(TR):
    os.remove(TR)
fake = Fake(os.path.join(OUT, "codex_fake_%s.log" % TAG))
# NOT under /tmp: codex refuses to create its PATH helper aliases under a temp dir (warning only)
BASE = os.path.join(HERE, "tmp", "codex")
os.makedirs(BASE, exist_ok=True)
home = tempfile.mkdtemp(prefix="home-", dir=BASE)
cwd = tempfile.mkdtemp(prefix="cwd-", dir=BASE)
checks = []


def check(name, ok, detail=""):
    checks.append((name, ok, detail))
    print(("PASS " if ok else "FAIL ") + name + (" -- " + detail if detail else ""), flush=True)


def make_codex_home(url):
    ch = tempfile.mkdtemp(prefix="codex-home-", dir=BASE)
    with open(os.path.join(ch, "config.toml"), "w") as f:
        f.write('''model = "fake-model"
model_provider = "fake"

[model_providers.fake]
name = "fake"
base_url = "%s/v1"
env_key = "FAKE_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
''' % url)
    return ch


CODEX_HOME = make_codex_home(fake.url)


def env_for(codex_home):
    return {"PATH": os.environ["PATH"], "HOME": home, "LANG": "C.UTF-8",
            "CODEX_HOME": codex_home, "FAKE_KEY": "fake"}


_next = [0]


def rpc(c, method, params, timeout=60):
    _next[0] += 1
    rid = "c%d" % _next[0]
    c.send({"method": method, "id": rid, "params": params})
    _, o = c.wait(lambda o: o.get("id") == rid and "method" not in o, timeout)
    return o


def start(label, codex_home=None):
    c = Child([CODEX, "app-server"], env_for(codex_home or CODEX_HOME), cwd, TR, label)
    r = rpc(c, "initialize", {"clientInfo": {"name": "orchestration", "title": None, "version": "0.1"},
                              "capabilities": None})
    c.send({"method": "initialized"})
    c.note("initialize answered after %.3fs" % (time.time() - c.t0))
    return c, r


def text_input(t):
    return [{"type": "text", "text": t, "text_elements": []}]


def turn(c, tid, text, on_approval=None, timeout=60):
    """Start a turn; answer approvals with on_approval(req)->decision; return (turn, reply text, events)."""
    r = rpc(c, "turn/start", {"threadId": tid, "input": text_input(text)})
    turn_id = r["result"]["turn"]["id"]
    deltas = []
    while True:
        _, o = c.wait(lambda o: "method" in o, timeout)
        m = o["method"]
        if m == "item/agentMessage/delta":
            deltas.append(o["params"]["delta"])
        elif m.endswith("requestApproval") and "id" in o:
            dec = on_approval(o) if on_approval else "decline"
            c.send({"id": o["id"], "result": {"decision": dec}})
        elif m == "turn/completed" and o["params"]["turn"]["id"] == turn_id:
            return o["params"]["turn"], "".join(deltas)


def posts():
    return [r for r in fake.records() if r["method"] == "POST"]


# ---------------------------------------------------------------- main
if "main" in SECTIONS:
    c, init = start("process 1: thread/start, turns, approvals, interrupt")
    r = rpc(c, "thread/start", {"cwd": cwd, "model": "fake-model", "approvalPolicy": "untrusted",
                                "sandbox": "workspace-write", "developerInstructions": "EXTRA-DEV-INSTR-XYZ"})
    tid = r["result"]["thread"]["id"]
    check("thread/start", bool(tid), "thread id %s; result keys %s" % (tid, sorted(r["result"])))
    t1, txt = turn(c, tid, "hello codex one")
    check("text turn", txt == "echo: hello codex one" and t1["status"] == "completed", repr(txt))
    check("developerInstructions reach the model", "EXTRA-DEV-INSTR-XYZ" in json.dumps(posts()[-1]["body"]["input"]))
    t2, txt = turn(c, tid, "second codex turn")
    check("second turn sees first (fake log)", "hello codex one" in json.dumps(posts()[-1]["body"]["input"]), repr(txt))

    seen = []
    t3, txt = turn(c, tid, "run: echo hi-from-codex > made_by_codex.txt && pwd",
                   on_approval=lambda o: (seen.append(o), "accept")[1])
    check("approval asked (untrusted)", bool(seen), seen and seen[0]["method"])
    check("accept -> ran in cwd", os.path.exists(os.path.join(cwd, "made_by_codex.txt")), repr(txt))
    check("accept -> reply quotes result", cwd in txt)

    seen = []
    t4, txt = turn(c, tid, "run: touch denied_by_codex_user.txt",
                   on_approval=lambda o: (seen.append(o), "decline")[1])
    check("decline -> not ran", bool(seen) and not os.path.exists(os.path.join(cwd, "denied_by_codex_user.txt")), repr(txt))
    out = [i for i in posts()[-1]["body"]["input"] if i.get("type") == "function_call_output"]
    check("decline -> model told", bool(out), json.dumps(out[-1]["output"]) if out else "")

    # interrupt mid-turn
    r = rpc(c, "turn/start", {"threadId": tid, "input": text_input("slow: a long story about the sea and the stars")})
    turn_id = r["result"]["turn"]["id"]
    c.wait(lambda o: o.get("method") == "item/agentMessage/delta", 30)
    ti = time.time()
    ir = rpc(c, "turn/interrupt", {"threadId": tid, "turnId": turn_id})
    _, done = c.wait(lambda o: o.get("method") == "turn/completed", 30)
    check("turn/interrupt", done["params"]["turn"]["status"] == "interrupted",
          "interrupt response %s; turn/completed after %.3fs status=%s" % (json.dumps(ir), time.time() - ti,
                                                                         done["params"]["turn"]["status"]))
    t6, txt = turn(c, tid, "after the codex interrupt")
    check("turn after interrupt works", txt == "echo: after the codex interrupt", repr(txt))
    body = json.dumps(posts()[-1]["body"]["input"])
    check("request after interrupt carries interrupted turn", "slow:" in body,
          "'<turn_aborted>' in body: %s" % ("turn_aborted" in body))
    rc = c.close()
    check("process exits on stdin EOF", True, "rc=%s" % rc)

    # ------------------------------------------------------------ restart + resume
    c, _ = start("process 2: thread/resume after restart")
    r = rpc(c, "thread/resume", {"threadId": tid})
    check("thread/resume", "result" in r, json.dumps(r)[:300])
    t7, txt = turn(c, tid, "do you remember codex?")
    body = json.dumps(posts()[-1]["body"]["input"])
    check("resume: request contains earlier turns", "hello codex one" in body and "second codex turn" in body, repr(txt))
    c.close()
    rollouts = []
    for d, _, fs in os.walk(os.path.join(CODEX_HOME, "sessions")):
        rollouts += [os.path.join(d, f) for f in fs]
    check("rollout files", bool(rollouts), "; ".join(x.replace(CODEX_HOME, "$CODEX_HOME") for x in rollouts))

# ---------------------------------------------------------------- approval / sandbox modes
if "modes" in SECTIONS:
    for pol, sb in (("on-request", "workspace-write"), ("on-request", "read-only"), ("never", "workspace-write"),
                    ("never", "danger-full-access"), ("untrusted", "danger-full-access")):
        c, _ = start("process: approvalPolicy=%s sandbox=%s" % (pol, sb))
        r = rpc(c, "thread/start", {"cwd": cwd, "model": "fake-model", "approvalPolicy": pol, "sandbox": sb})
        if "result" not in r:
            check("mode %s/%s" % (pol, sb), False, json.dumps(r))
            c.close()
            continue
        tid = r["result"]["thread"]["id"]
        fn = "mode_%s_%s.txt" % (pol, sb)
        seen = []
        try:
            t, txt = turn(c, tid, "run: echo x > %s" % fn, on_approval=lambda o: (seen.append(o), "decline")[1], timeout=30)
            check("mode %s/%s" % (pol, sb), True, "asked=%s ran=%s reply=%r" % (
                bool(seen), os.path.exists(os.path.join(cwd, fn)), txt[:200]))
        except Exception as e:
            check("mode %s/%s" % (pol, sb), False, repr(e))
        c.close()

# ---------------------------------------------------------------- model server down
if "down" in SECTIONS:
    dead = make_codex_home("http://127.0.0.1:9")
    c, _ = start("process: model server down", codex_home=dead)
    r = rpc(c, "thread/start", {"cwd": cwd, "model": "fake-model", "approvalPolicy": "untrusted",
                                "sandbox": "workspace-write"})
    tid = r["result"]["thread"]["id"]
    t0 = time.time()
    r = rpc(c, "turn/start", {"threadId": tid, "input": text_input("anyone there?")})
    turn_id = r["result"]["turn"]["id"]
    errs = []
    try:
        while time.time() - t0 < 25:
            _, o = c.wait(lambda o: o.get("method") in ("error", "turn/completed"), 25 - (time.time() - t0))
            if o["method"] == "turn/completed":
                break
            errs.append((round(time.time() - t0, 2), o["params"]["willRetry"], o["params"]["error"]["message"]))
    except TimeoutError:
        pass
    check("server down -> keeps reconnecting (no turn/completed within 25 s)", True,
          "error notifications (t, willRetry, message): %s" % errs)
    ti = time.time()
    rpc(c, "turn/interrupt", {"threadId": tid, "turnId": turn_id})
    _, done = c.wait(lambda o: o.get("method") == "turn/completed", 30)
    check("server down -> turn/interrupt ends it", done["params"]["turn"]["status"] == "interrupted",
          "%.3fs after interrupt" % (time.time() - ti))
    c.close()

fake.stop()
print("cwd:", cwd, "CODEX_HOME:", CODEX_HOME)
print("%d/%d checks passed" % (sum(1 for x in checks if x[1]), len(checks)))
