#!/usr/bin/env python3
"""Fake model server for offline tests of Claude Code and Codex (stdlib only).

Speaks:
  * streaming (and non-streaming) Anthropic Messages: POST /v1/messages[?beta=true]
  * streaming OpenAI Responses:                    POST /v1/responses
  * HEAD / (Claude Code connectivity probe), GET /v1/models (empty list)

Reply logic (same for both wires):
  * last input item is a tool result  -> text "tool said: <result>"
  * last user text contains "run: CMD" -> a tool call running CMD
        (Claude: tool "Bash" {"command": CMD};
         Codex: the shell-like tool found in the request's tools list)
  * otherwise                          -> text "echo: <last user text>"
  * "slow:" anywhere in the last user text -> stream the reply as 40 deltas,
    0.25 s apart (for interrupt tests)
  * "http500:" in the last user text (not a tool result) -> HTTP 500 JSON error
  * env FAKE_DELAY_MS: sleep this long before the first byte (simulated model time)

Every request is appended to the log file (JSON lines): path, headers (secrets
redacted), body, t_start, t_end (server-side time spent on it).

Usage: fake_model.py LOGFILE [PORTFILE]   (binds 127.0.0.1:0, prints the port,
        writes it to PORTFILE if given)
"""
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = sys.argv[1] if len(sys.argv) > 1 else "fake_model.log"
PORTFILE = sys.argv[2] if len(sys.argv) > 2 else None
DELAY = float(os.environ.get("FAKE_DELAY_MS", "0")) / 1000.0
_lock = threading.Lock()
SECRET = {"authorization", "x-api-key", "api-key", "openai-api-key", "cookie"}


def log(rec):
    with _lock, open(LOG, "a") as f:
        f.write(json.dumps(rec) + "\n")


# ---------------------------------------------------------------- helpers
def text_of(content):
    """Concatenate the text parts of a message content (str or list of parts)."""
    if isinstance(content, str):
        return content
    out = []
    for p in content or []:
        if isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text"):
            out.append(p.get("text", ""))
    return "\n".join(out)


def result_text(c):
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return "\n".join(p.get("text", "") for p in c if isinstance(p, dict))
    return json.dumps(c)


def find_cmd(text):
    i = text.rfind("run:")
    if i < 0:
        return None
    return text[i + 4:].strip().splitlines()[0].strip() if text[i + 4:].strip() else None


def last_user_text(body):
    """Text of the last user input if it is not a tool result ('' otherwise)."""
    if isinstance(body.get("messages"), list):
        msgs = [m for m in body["messages"] if m.get("role") == "user"]
        if not msgs:
            return ""
        c = msgs[-1].get("content")
        if isinstance(c, list):
            if c and isinstance(c[-1], dict) and c[-1].get("type") == "tool_result":
                return ""
            texts = [p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text"
                     and not p.get("text", "").lstrip().startswith("<system-reminder>")]
            return texts[-1] if texts else ""
        return c or ""
    items = body.get("input")
    if isinstance(items, list) and items:
        if items[-1].get("type", "message") != "message":
            return ""
        users = [i for i in items if i.get("type", "message") == "message" and i.get("role") == "user"]
        return text_of(users[-1].get("content")) if users else ""
    return ""


def decide_anthropic(body):
    # Claude Code 2.1 may put role "system" messages after the user turn
    # (beta mid-conversation-system): use the last *user* message.
    msgs = [m for m in (body.get("messages") or []) if m.get("role") == "user"]
    last = msgs[-1] if msgs else {"role": "user", "content": ""}
    content = last.get("content")
    if isinstance(content, list):
        # Claude Code merges a tool_result and the next user text into one user message
        # (seen after an interrupt while a permission request was pending): a real text
        # block after the last tool_result means the user spoke last.
        idx_tr = max([i for i, p in enumerate(content) if isinstance(p, dict) and p.get("type") == "tool_result"],
                     default=-1)
        idx_tx = max([i for i, p in enumerate(content) if isinstance(p, dict) and p.get("type") == "text"
                      and not p.get("text", "").lstrip().startswith(("<system-reminder>", "[Request interrupted"))],
                     default=-1)
        trs = [content[idx_tr]] if idx_tr > idx_tx else []
        if trs:
            tr = trs[-1]
            r = result_text(tr.get("content"))
            flag = " (is_error)" if tr.get("is_error") else ""
            return ("text", "tool said%s: %s" % (flag, r.strip()), False)
    # last user text block (Claude Code prepends <system-reminder> blocks)
    if isinstance(content, list):
        texts = [p.get("text", "") for p in content
                 if isinstance(p, dict) and p.get("type") == "text"
                 and not p.get("text", "").lstrip().startswith("<system-reminder>")]
        t = texts[-1] if texts else text_of(content)
    else:
        t = content or ""
    slow = "slow:" in t
    cmd = find_cmd(t)
    if cmd and body.get("tools"):
        return ("tool", cmd, slow)
    return ("text", "echo: " + t.strip(), slow)


# ---------------------------------------------------------------- handler
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _hdrs(self):
        return {k: ("<redacted>" if k.lower() in SECRET else v) for k, v in self.headers.items()}

    def do_HEAD(self):
        log({"t_start": time.time(), "method": "HEAD", "path": self.path, "headers": self._hdrs()})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        t0 = time.time()
        body = json.dumps({"object": "list", "data": [], "models": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        log({"t_start": t0, "t_end": time.time(), "method": "GET", "path": self.path, "headers": self._hdrs()})

    def do_POST(self):
        t0 = time.time()
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.headers.get("Content-Encoding", "").lower() == "zstd":
            body = {"_undecoded": "zstd", "len": len(raw)}
        else:
            try:
                body = json.loads(raw or b"{}")
            except Exception:
                body = {"_raw": raw.decode("utf-8", "replace")}
        rec = {"t_start": t0, "method": "POST", "path": self.path, "headers": self._hdrs(), "body": body}
        err = None
        try:
            p = self.path.split("?")[0]
            if "http500:" in last_user_text(body):
                rec["reply"] = ["http", 500]
                self._json({"type": "error", "error": {"type": "api_error", "message": "fake internal error"}}, 500)
            elif p.endswith("/messages/count_tokens"):
                self._json({"input_tokens": 100})
            elif p.endswith("/messages"):
                self.anthropic(body, rec)
            elif p.endswith("/responses"):
                self.openai_responses(body, rec)
            else:
                self._json({"error": {"type": "not_found", "message": self.path}}, 404)
        except (BrokenPipeError, ConnectionResetError) as e:
            err = "client went away: %r" % e
        rec["t_end"] = time.time()
        if err:
            rec["error"] = err
        log(rec)

    # ------------------------------------------------------------ plumbing
    def _json(self, obj, code=200):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def _sse_begin(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _ev(self, name, obj):
        self._chunk(("event: %s\ndata: %s\n\n" % (name, json.dumps(obj))).encode())

    def _sse_end(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    @staticmethod
    def _pieces(s, slow):
        if slow:
            k = max(1, len(s) // 40 + 1)
            return [s[i:i + k] for i in range(0, len(s), k)], 0.25
        k = max(1, len(s) // 3 + 1)
        return [s[i:i + k] for i in range(0, len(s), k)], 0.0

    # ------------------------------------------------------------ anthropic
    def anthropic(self, body, rec):
        kind, payload, slow = decide_anthropic(body)
        rec["reply"] = [kind, payload]
        if DELAY:
            time.sleep(DELAY)
        model = body.get("model", "fake")
        mid = "msg_" + uuid.uuid4().hex[:20]
        in_tok = len(json.dumps(body.get("messages", []))) // 4
        if kind == "tool":
            content = [{"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:20], "name": "Bash",
                        "input": {"command": payload, "description": "run it"}}]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": payload}]
            stop = "end_turn"
        out_tok = max(1, len(payload) // 4)
        usage = {"input_tokens": in_tok, "output_tokens": out_tok,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if not body.get("stream"):
            self._json({"id": mid, "type": "message", "role": "assistant", "model": model,
                        "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage})
            return
        self._sse_begin()
        self._ev("message_start", {"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": dict(usage, output_tokens=1)}})
        blk = content[0]
        if blk["type"] == "text":
            self._ev("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "text", "text": ""}})
            parts, gap = self._pieces(payload, slow)
            for p in parts:
                self._ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "text_delta", "text": p}})
                if gap:
                    time.sleep(gap)
        else:
            self._ev("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "tool_use", "id": blk["id"],
                                                               "name": blk["name"], "input": {}}})
            js = json.dumps(blk["input"])
            for p in self._pieces(js, False)[0]:
                self._ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "input_json_delta", "partial_json": p}})
        self._ev("content_block_stop", {"type": "content_block_stop", "index": 0})
        self._ev("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": stop, "stop_sequence": None},
                                   "usage": {"output_tokens": out_tok}})
        self._ev("message_stop", {"type": "message_stop"})
        self._sse_end()

    # ------------------------------------------------------------ responses
    def openai_responses(self, body, rec):
        items = body.get("input") or []
        if isinstance(items, str):
            items = [{"type": "message", "role": "user", "content": items}]
        last = items[-1] if items else {}
        kind, payload, slow = "text", "echo: ", False
        if last.get("type") in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            out = last.get("output")
            if isinstance(out, dict):
                out = out.get("content") or json.dumps(out)
            elif isinstance(out, list):
                out = result_text(out)
            kind, payload = "text", "tool said: %s" % (out or "").strip()
        else:
            users = [i for i in items if i.get("type", "message") == "message" and i.get("role") == "user"]
            t = text_of(users[-1].get("content")) if users else ""
            slow = "slow:" in t
            cmd = find_cmd(t)
            tool = self._shell_tool(body.get("tools") or [])
            if cmd and tool:
                kind, payload = "tool", (tool, cmd)
            else:
                kind, payload = "text", "echo: " + t.strip()
        rec["reply"] = [kind, payload]
        if DELAY:
            time.sleep(DELAY)
        rid = "resp_" + uuid.uuid4().hex[:20]
        in_tok = len(json.dumps(items)) // 4
        self._sse_begin()
        base = {"id": rid, "object": "response", "created_at": int(time.time()), "model": body.get("model"),
                "status": "in_progress", "output": []}
        self._ev("response.created", {"type": "response.created", "response": base})
        if kind == "text":
            iid = "msg_" + uuid.uuid4().hex[:20]
            item = {"type": "message", "id": iid, "role": "assistant", "status": "in_progress", "content": []}
            self._ev("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item})
            self._ev("response.content_part.added", {"type": "response.content_part.added", "item_id": iid,
                     "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})
            parts, gap = self._pieces(payload, slow)
            for p in parts:
                self._ev("response.output_text.delta", {"type": "response.output_text.delta", "item_id": iid,
                         "output_index": 0, "content_index": 0, "delta": p})
                if gap:
                    time.sleep(gap)
            self._ev("response.output_text.done", {"type": "response.output_text.done", "item_id": iid,
                     "output_index": 0, "content_index": 0, "text": payload})
            done = dict(item, status="completed", content=[{"type": "output_text", "text": payload, "annotations": []}])
            out_tok = max(1, len(payload) // 4)
        else:
            (tname, tshape), cmd = payload
            if tshape == "array":
                args = {"command": ["bash", "-lc", cmd]}
            elif tshape == "cmd":
                args = {"cmd": cmd}
            else:
                args = {"command": cmd}
            js = json.dumps(args)
            iid = "fc_" + uuid.uuid4().hex[:20]
            item = {"type": "function_call", "id": iid, "call_id": "call_" + uuid.uuid4().hex[:20],
                    "name": tname, "arguments": "", "status": "in_progress"}
            self._ev("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item})
            for p in self._pieces(js, False)[0]:
                self._ev("response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta",
                         "item_id": iid, "output_index": 0, "delta": p})
            self._ev("response.function_call_arguments.done", {"type": "response.function_call_arguments.done",
                     "item_id": iid, "output_index": 0, "arguments": js})
            done = dict(item, arguments=js, status="completed")
            out_tok = max(1, len(js) // 4)
        self._ev("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": done})
        usage = {"input_tokens": in_tok, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": out_tok, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": in_tok + out_tok}
        self._ev("response.completed", {"type": "response.completed",
                 "response": dict(base, status="completed", output=[done], usage=usage)})
        self._sse_end()

    @staticmethod
    def _shell_tool(tools):
        """Pick the shell tool codex offered; return (name, argument shape)."""
        by = {}
        for t in tools:
            name = t.get("name") or (t.get("function") or {}).get("name")
            if name:
                by[name] = t
        for name in ("shell_command", "exec_command", "shell", "container.exec", "local_shell"):
            if name in by:
                t = by[name]
                props = ((t.get("parameters") or {}).get("properties") or {})
                if "cmd" in props:
                    return (name, "cmd")
                cmdp = props.get("command") or {}
                return (name, "array" if cmdp.get("type") == "array" else "string")
        return None


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("FAKE_PORT", "0"))), H)
    srv.daemon_threads = True
    port = srv.server_address[1]
    if PORTFILE:
        with open(PORTFILE + ".tmp", "w") as f:
            f.write(str(port))
        os.rename(PORTFILE + ".tmp", PORTFILE)
    print(port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
