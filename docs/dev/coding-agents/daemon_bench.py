"""A Claude Code turn through the daemon vs the same CLI driven directly.

Superseded by the bench target `cargo bench --bench coding_agents`
(benches/coding_agents.rs), which alternates the two sides' turns; kept as
the earlier session's notes.

Usage (from the repository, after `cargo build` and scripts/test.sh's npm install):
  ORCHESTRATION_CLAUDE=target/third-party/npm/node_modules/@anthropic-ai/claude-code-linux-x64/claude \
      python3 docs/dev/coding-agents/daemon_bench.py
Five warm turns each (after one warm-up) against fake_model.py with no model time; prints
each time, the medians, their ratio and the difference. Not a Rust bench: it reuses this
folder's drivers. Everything it writes is in a temp dir it removes.
"""
import json, os, shutil, socket, subprocess, sys, time, statistics, tempfile
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)
import claude_lib
from drive import Child
CLAUDE = os.environ["ORCHESTRATION_CLAUDE"]
B = os.path.join(REPO, "target", "debug", "orchestration")
CLAUDE = os.path.abspath(CLAUDE)
root = tempfile.mkdtemp(prefix="cbench-")
fake = subprocess.Popen(["python3", os.path.join(HERE, "fake_model.py"), root + "/fake.log", root + "/port"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while not os.path.exists(root + "/port") or not open(root + "/port").read().strip(): time.sleep(0.05)
url = "http://127.0.0.1:" + open(root + "/port").read().strip()
home = root + "/home"; cwd = root + "/cwd"; os.makedirs(home); os.makedirs(cwd)
N = 5
# direct
c = Child(claude_lib.argv(CLAUDE), claude_lib.env(url, home), cwd, root + "/direct.txt")
claude_lib.initialize(c)
c.send(claude_lib.user("warm up")); claude_lib.result(c)
direct = []
for i in range(N):
    t = time.monotonic(); c.send(claude_lib.user("hello %d" % i)); claude_lib.result(c); direct.append(time.monotonic() - t)
c.close() if hasattr(c, "close") else None
# daemon
env = dict(os.environ, ORCHESTRATION_RUNTIME_DIR=root + "/run", ORCHESTRATION_STATE_DIR=root + "/state", ORCHESTRATION_CONFIG=root + "/config.toml", FAKEKEY="fake")
open(root + "/config.toml", "w").write('[agents.claude-code]\ncommand = ["%s"]\nenv = { HOME = "%s", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1", DISABLE_TELEMETRY = "1", CLAUDE_CODE_MAX_RETRIES = "0" }\n' % (CLAUDE, home + "2"))
os.makedirs(home + "2")
d = subprocess.Popen([B, "serve", "--no-tcp"], env=env, stdout=subprocess.DEVNULL, stderr=open(root + "/daemon.log", "w"))
while not os.path.exists(root + "/run/daemon.sock"): time.sleep(0.05)
time.sleep(0.2)
subprocess.run([B, "spawn", "coder", "--provider", "claude-code", "--base-url", url, "--api-key-env", "FAKEKEY", "--cwd", cwd], env=env, check=True, stdout=subprocess.DEVNULL)
def post(content):
    s = socket.socket(socket.AF_UNIX); s.connect(root + "/run/daemon.sock")
    body = json.dumps({"content": content}).encode()
    s.sendall(b"POST /agents/coder/message HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk: break
        data += chunk
    assert b" 200 " in data.split(b"\r\n")[0], data[:300]
post("warm up")
daemon = []
for i in range(N):
    t = time.monotonic(); post("hello %d" % i); daemon.append(time.monotonic() - t)
d.terminate(); d.wait(); fake.terminate(); fake.wait()
md, mm = statistics.median(direct), statistics.median(daemon)
print("direct ms", [round(x*1000,1) for x in direct], "median", round(md*1000,1))
print("daemon ms", [round(x*1000,1) for x in daemon], "median", round(mm*1000,1))
print("ratio", round(mm/md, 3), "overhead ms", round((mm-md)*1000,1))
shutil.rmtree(root, ignore_errors=True)
