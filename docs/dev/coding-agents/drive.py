"""Tiny helpers shared by the driver scripts: a fake server and a JSON-lines child."""
import json
import os
import queue
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NPM_BIN = os.path.join(HERE, "npm", "node_modules", ".bin")
CLAUDE = os.path.join(HERE, "npm/node_modules/@anthropic-ai/claude-code/bin/claude.exe")
CODEX = os.path.join(HERE, "npm/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex")


class Fake:
    def __init__(self, logfile, delay_ms=0):
        self.logfile = logfile
        if os.path.exists(logfile):
            os.remove(logfile)
        env = dict(os.environ, FAKE_DELAY_MS=str(delay_ms))
        self.p = subprocess.Popen([sys.executable, os.path.join(HERE, "fake_model.py"), logfile],
                                  stdout=subprocess.PIPE, stderr=open(logfile + ".stderr", "w"),
                                  text=True, env=env)
        self.port = int(self.p.stdout.readline())
        self.url = "http://127.0.0.1:%d" % self.port

    def records(self):
        if not os.path.exists(self.logfile):
            return []
        with open(self.logfile) as f:
            return [json.loads(l) for l in f if l.strip()]

    def stop(self):
        self.p.terminate()
        self.p.wait()


class Child:
    """A child speaking JSON lines; every line in/out goes to the transcript."""

    def __init__(self, argv, env, cwd, transcript, label=""):
        self.t0 = time.time()
        self.tr = open(transcript, "a")
        self.tr.write("\n### %s\n### argv: %s\n### cwd: %s\n" % (label, " ".join(argv), cwd))
        self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.q = queue.Queue()
        self.lines = []
        self.stderr = []
        self.first_line_at = None
        threading.Thread(target=self._rd, daemon=True).start()
        threading.Thread(target=self._rde, daemon=True).start()

    def _rd(self):
        for line in self.p.stdout:
            now = time.time()
            if self.first_line_at is None:
                self.first_line_at = now
            self.tr.write("<< [%.3f] %s" % (now - self.t0, line))
            self.tr.flush()
            try:
                obj = json.loads(line)
            except Exception:
                obj = {"_nonjson": line}
            self.lines.append((now, obj))
            self.q.put((now, obj))
        self.q.put((time.time(), None))

    def _rde(self):
        for line in self.p.stderr:
            self.stderr.append(line)
            self.tr.write("!! stderr: %s" % line)
            self.tr.flush()

    def send(self, obj):
        s = json.dumps(obj)
        self.tr.write(">> [%.3f] %s\n" % (time.time() - self.t0, s))
        self.tr.flush()
        self.p.stdin.write(s + "\n")
        self.p.stdin.flush()
        return time.time()

    def note(self, s):
        self.tr.write("## %s\n" % s)
        self.tr.flush()

    def wait(self, pred, timeout=30):
        """Return (time, obj) of the first line matching pred; raise on timeout/EOF."""
        end = time.time() + timeout
        while True:
            left = end - time.time()
            if left <= 0:
                raise TimeoutError("no matching line within %ss" % timeout)
            try:
                t, obj = self.q.get(timeout=left)
            except queue.Empty:
                raise TimeoutError("no matching line within %ss" % timeout)
            if obj is None:
                raise EOFError("child stdout closed; rc=%s" % self.p.poll())
            if pred(obj):
                return t, obj

    def close(self, timeout=10):
        try:
            self.p.stdin.close()
        except Exception:
            pass
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.terminate()
            self.p.wait()
        self.tr.write("### exit code %s after %.3fs\n" % (self.p.returncode, time.time() - self.t0))
        self.tr.close()
        return self.p.returncode
