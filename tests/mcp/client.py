"""Drives `orchestration mcp` with the official MCP Python SDK (`mcp` from
PyPI, pinned in scripts/test.sh), as an assistant would: over stdio, with
the SDK's own client session. Run by tests/mcp.rs as

    python client.py MODE

with $ORCHESTRATION_BIN naming the binary and the test's environment (runtime,
state and config dirs) in os.environ. MODE is one of:

  scenario     every tool against a running daemon with the echo provider
  cancel       a cancelled send_message leaves its reply interrupted
  unreachable  no daemon and no auto-start: tool errors, the session goes on
  autostart    no daemon: the first call that needs one starts it
  approve      a Claude Code agent spawned in $MCP_PROJECT asks to run a
               command; list_approvals finds it, answer_approval approves it
  task         run_task as a Claude Code agent in $MCP_PROJECT: a command its
               `allow` lets it run, runs there; with approval "never" one is
               refused and does not run
  budget       spawn_agent and run_task with a budget (profile "fake", the
               model server at $MCP_FAKE_URL, which has one reply for the
               first message and one for a run_task on base_url): shown by
               list_agents and the CLI, a call past it and a bad one are tool
               errors; run_task on a base_url, and with a tool config lacks
  tools        run_task on the model server at $MCP_FAKE_URL with the tools
               of the config's server "fs": the model reads $MCP_NOTES

On success it prints one JSON line (what was negotiated) and exits 0; any
failed check raises, which exits non-zero with a traceback on stderr.
"""

import json
import os
import subprocess
import sys
from importlib.metadata import version

import anyio
from mcp import ClientSession, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client

BIN = os.environ["ORCHESTRATION_BIN"]
TOOLS = {
    "spawn_agent": ["name"],
    "list_agents": [],
    "send_message": ["agent", "content"],
    "get_history": ["agent"],
    "run_task": ["prompt"],
    "shutdown_agent": ["agent"],
    "list_models": [],
    "search_history": ["query"],
    "interrupt_agent": ["agent"],
    "list_approvals": [],
    "answer_approval": ["id", "decision"],
}
PROPERTIES = {
    "spawn_agent": {"name", "provider", "profile", "model", "instructions", "base_url", "cwd", "allow", "approval", "tools", "budget"},
    "list_agents": {"state", "provider", "all"},
    "send_message": {"agent", "content"},
    "get_history": {"agent", "limit", "all"},
    "run_task": {"prompt", "provider", "profile", "model", "instructions", "base_url", "cwd", "allow", "approval", "tools", "budget"},
    "shutdown_agent": {"agent"},
    "list_models": {"provider", "profile"},
    "search_history": {"query", "agent", "limit"},
    "interrupt_agent": {"agent"},
    "list_approvals": {"agent"},
    "answer_approval": {"id", "decision", "reason"},
}


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def text(result):
    return "".join(block.text for block in result.content if block.type == "text")


async def ok(session, tool, arguments, **options):
    result = await session.call_tool(tool, arguments, **options)
    check(not result.is_error, f"{tool} {arguments} failed: {text(result)}")
    return result


async def refused(session, tool, arguments, *needles):
    result = await session.call_tool(tool, arguments)
    check(result.is_error is True, f"{tool} {arguments} should fail: {result}")
    for needle in needles:
        check(needle in text(result), f"{tool}: {needle!r} not in {text(result)!r}")
    return text(result)


def cli(*args):
    """The CLI, in the same environment, sees what the MCP server did."""
    done = subprocess.run([BIN, "--json", *args], capture_output=True, text=True, timeout=30)
    check(done.returncode == 0, f"orchestration {args}: {done.stderr}")
    return json.loads(done.stdout)


async def session_for(body):
    params = StdioServerParameters(command=BIN, args=["mcp"], env=dict(os.environ))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            check(init.server_info.name == "orchestration", f"server info: {init.server_info}")
            check(init.capabilities.tools is not None, "no tools capability")
            await body(session)
            return init.protocol_version


async def check_tools(session):
    listed = (await session.list_tools()).tools
    check(sorted(t.name for t in listed) == sorted(TOOLS), f"tools: {[t.name for t in listed]}")
    for tool in listed:
        schema = tool.input_schema
        check(len(tool.description or "") > 40, f"{tool.name}: description {tool.description!r}")
        check(schema["type"] == "object", f"{tool.name}: {schema}")
        check(sorted(schema.get("required", [])) == sorted(TOOLS[tool.name]), f"{tool.name}: {schema}")
        check(set(schema["properties"]) == PROPERTIES[tool.name], f"{tool.name}: {schema}")
        for name, prop in schema["properties"].items():
            check(len(prop.get("description", "")) > 10, f"{tool.name}.{name} has no description")
    states = next(t for t in listed if t.name == "list_agents").input_schema["properties"]["state"]
    check(states["enum"] == ["idle", "processing", "failed", "suspended", "terminated"], f"state: {states}")


async def scenario(session):
    await check_tools(session)

    spawned = await ok(session, "spawn_agent", {"name": "scratch", "provider": "echo"})
    check(spawned.structured_content["name"] == "scratch", f"spawn: {spawned}")
    check(spawned.structured_content["provider"] == "echo", f"spawn: {spawned}")
    await refused(session, "spawn_agent", {"name": "scratch", "provider": "echo"}, "scratch")

    pieces = []

    async def on_progress(progress, total, message):
        pieces.append(message)

    first = await ok(
        session, "send_message", {"agent": "scratch", "content": "hello there"}, progress_callback=on_progress
    )
    check(text(first) == "hello there", f"first reply: {text(first)!r}")
    check("".join(pieces) == "hello there" and len(pieces) >= 2, f"progress pieces: {pieces}")
    # The second exchange sees the first: the echo provider reports how many
    # messages of context it got (human, reply, human).
    second = await ok(session, "send_message", {"agent": "scratch", "content": "and again"})
    check(text(second) == "and again", f"second reply: {text(second)!r}")
    reply = second.structured_content["messages"][0]
    check(reply["metadata"]["context_messages"] == 3, f"context: {reply['metadata']}")

    history = await ok(session, "get_history", {"agent": "scratch"})
    turns = [(m["sender"], m["content"]) for m in history.structured_content["messages"]]
    check(
        turns
        == [("human", "hello there"), ("scratch", "hello there"), ("human", "and again"), ("scratch", "and again")],
        f"history: {turns}",
    )
    check("scratch: and again" in text(history), f"history text: {text(history)}")
    last = await ok(session, "get_history", {"agent": "scratch", "limit": 1})
    check(len(last.structured_content["messages"]) == 1, f"limit: {last}")

    listed = await ok(session, "list_agents", {"provider": "echo"})
    check([a["name"] for a in listed.structured_content["agents"]] == ["scratch"], f"list: {listed}")
    check([a["name"] for a in cli("list")] == ["scratch"], "the CLI does not see the agent")

    # Failures are tool results, and the session goes on after each.
    await refused(session, "send_message", {"agent": "ghost", "content": "hi"}, "ghost", "list_agents")
    await refused(session, "get_history", {"agent": "ghost"}, "ghost")
    await refused(session, "spawn_agent", {"name": "paid", "provider": "openai"}, "OPENAI_API_KEY")
    await refused(session, "spawn_agent", {"name": "-bad", "provider": "echo"}, "-bad")
    await refused(session, "spawn_agent", {"provider": "echo"}, "name")
    await refused(session, "list_agents", {"state": "asleep"}, "asleep")
    # A provider that cannot be reached: the daemon's 502 detail, as a tool error.
    dead = {"name": "down", "provider": "openai", "base_url": os.environ["MCP_DEAD_URL"]}
    await ok(session, "spawn_agent", dead)
    await refused(session, "send_message", {"agent": "down", "content": "hi"}, "provider error", "cannot reach")
    await ok(session, "shutdown_agent", {"agent": "down"})
    try:
        await session.call_tool("no_such_tool", {"query": "x"})
        raise AssertionError("an unknown tool was called")
    except MCPError:
        pass
    # Search: what scratch was told, found in its conversation; bad syntax is a tool error.
    found = await ok(session, "search_history", {"query": "hello", "agent": "scratch"})
    hits = found.structured_content["results"]
    check(hits and all(hit["agent"] == "scratch" for hit in hits), f"search: {found}")
    check("**" in text(found), f"search text: {text(found)!r}")
    await refused(session, "search_history", {"query": "\"unbalanced"}, "search query")
    check(text(await ok(session, "list_agents", {})).count("scratch") == 1, "session unusable after errors")

    task = await ok(session, "run_task", {"prompt": "one shot", "provider": "echo"})
    check(text(task) == "one shot", f"task: {text(task)!r}")
    task_agent = task.structured_content["messages"][0]["sender"]
    check(task_agent.startswith("mcp-task-"), f"task agent: {task_agent}")
    live = [a["name"] for a in cli("list")]
    check(task_agent not in live, f"the task agent was not removed: {live}")
    await refused(session, "run_task", {"prompt": "x", "provider": "nonesuch"}, "nonesuch")
    check(len(cli("list")) == 1, "a failed task left an agent behind")

    models = await ok(session, "list_models", {"provider": "echo"})
    check(models.structured_content["models"] == ["echo"], f"models: {models}")

    pending = await ok(session, "list_approvals", {})
    check(pending.structured_content == {"approvals": []}, f"approvals: {pending}")
    check(text(pending) == "no pending approvals", f"approvals: {text(pending)}")
    await refused(session, "answer_approval", {"id": "abcdef", "decision": "approve"}, "no approval 'abcdef'", "list_approvals")
    await refused(session, "answer_approval", {"id": "abcdef", "decision": "maybe"}, "maybe")

    idle = await ok(session, "interrupt_agent", {"agent": "scratch"})
    check(idle.structured_content == {"interrupted": False}, f"interrupt an idle agent: {idle}")
    await refused(session, "interrupt_agent", {"agent": "ghost"}, "ghost")

    await ok(session, "shutdown_agent", {"agent": "scratch"})
    check(cli("list") == [], "shutdown_agent left the agent running")
    await refused(session, "shutdown_agent", {"agent": "scratch"}, "scratch")
    kept = await ok(session, "get_history", {"agent": "scratch"})
    check(len(kept.structured_content["messages"]) == 4, "the history did not outlive the agent")


async def cancel(session):
    await ok(session, "spawn_agent", {"name": "slow", "provider": "echo"})
    words = " ".join(f"word{i}" for i in range(40))
    started = anyio.Event()
    pieces = []

    async def on_progress(progress, total, message):
        pieces.append(message)
        started.set()

    async def slow_call():
        await session.call_tool("send_message", {"agent": "slow", "content": words}, progress_callback=on_progress)
        raise AssertionError("the slow reply was not cancelled")

    async with anyio.create_task_group() as group:
        group.start_soon(slow_call)
        with anyio.fail_after(15):
            await started.wait()
        # Abandoning the call sends notifications/cancelled.
        group.cancel_scope.cancel()
    check(pieces and pieces[0] == "word0 ", f"progress before the cancel: {pieces}")

    # The same session goes on; the daemon kept the partial reply, interrupted.
    with anyio.fail_after(15):
        while True:
            history = (await ok(session, "get_history", {"agent": "slow"})).structured_content["messages"]
            if len(history) == 2 and history[1]["metadata"].get("interrupted") is True:
                break
            await anyio.sleep(0.05)
    check(history[1]["content"].startswith("word0"), f"partial reply: {history[1]}")
    check(len(history[1]["content"]) < len(words), "the reply was not cut short")
    check("[interrupted]" in text(await ok(session, "get_history", {"agent": "slow"})), "no interrupted flag")
    # The agent is free again.
    again = await ok(session, "send_message", {"agent": "slow", "content": "still here"})
    check(text(again) == "still here", f"after the cancel: {text(again)!r}")

    # interrupt_agent stops a reply in progress; the waiting call returns the partial reply.
    started = anyio.Event()
    replies = []

    async def interrupted_call():
        result = await ok(session, "send_message", {"agent": "slow", "content": words}, progress_callback=on_progress)
        replies.append(result)

    pieces.clear()
    async with anyio.create_task_group() as group:
        group.start_soon(interrupted_call)
        with anyio.fail_after(15):
            await started.wait()
        stopped = await ok(session, "interrupt_agent", {"agent": "slow"})
        check(stopped.structured_content == {"interrupted": True}, f"interrupt: {stopped}")
    reply = replies[0].structured_content["messages"][0]
    check(reply["metadata"].get("interrupted") is True, f"interrupted reply: {reply}")
    check(reply["content"].startswith("word0") and len(reply["content"]) < len(words), f"partial: {reply}")


async def unreachable(session):
    await check_tools(session)
    for _ in range(2):
        await refused(session, "list_agents", {}, "not running", "orchestration serve")
        await refused(session, "spawn_agent", {"name": "a", "provider": "echo"}, "not running")


async def autostart(session):
    await check_tools(session)
    socket = os.path.join(os.environ["ORCHESTRATION_RUNTIME_DIR"], "daemon.sock")
    check(not os.path.exists(socket), "a daemon was started before any call needed one")
    await ok(session, "spawn_agent", {"name": "started", "provider": "echo"})
    check(os.path.exists(socket), "no daemon was started")
    check(text(await ok(session, "send_message", {"agent": "started", "content": "hi"})) == "hi", "no reply")
    check([a["name"] for a in cli("list")] == ["started"], "the CLI does not see the agent")


async def approve(session):
    project = os.environ["MCP_PROJECT"]
    spawned = await ok(
        session,
        "spawn_agent",
        {"name": "coder", "provider": "claude-code", "base_url": os.environ["MCP_FAKE_URL"], "cwd": project},
    )
    check(spawned.structured_content["provider"] == "claude-code", f"spawn: {spawned}")
    await refused(
        session, "spawn_agent", {"name": "other", "provider": "claude-code", "approval": "maybe"}, "maybe"
    )
    replies = []

    async def asking_call():
        replies.append(await ok(session, "send_message", {"agent": "coder", "content": "run: touch x.txt"}))

    async with anyio.create_task_group() as group:
        group.start_soon(asking_call)
        # Claude Code starts slowly on a loaded machine; not a speed target.
        with anyio.fail_after(90):
            while True:
                listed = await ok(session, "list_approvals", {"agent": "coder"})
                pending = listed.structured_content["approvals"]
                if pending:
                    break
                await anyio.sleep(0.1)
        check(len(pending) == 1, f"pending: {pending}")
        approval = pending[0]
        check(approval["tool"] == "Bash", f"approval: {approval}")
        check("touch x.txt" in approval["summary"], f"approval: {approval}")
        check(approval["cwd"] == project, f"approval: {approval}")
        check(approval["id"] in text(listed), f"listing: {text(listed)!r}")
        check(not os.path.exists(os.path.join(project, "x.txt")), "the command ran before it was approved")
        answered = await ok(session, "answer_approval", {"id": approval["id"], "decision": "approve"})
        check(text(answered).startswith(f"approved {approval['id']}"), f"answer: {text(answered)!r}")
    reply = text(replies[0])
    check(reply.startswith("tool said"), f"reply: {reply!r}")
    check("(is_error)" not in reply, f"reply: {reply!r}")
    check(os.path.isfile(os.path.join(project, "x.txt")), "the approved command did not run in the project")
    check(text(await ok(session, "list_approvals", {})) == "no pending approvals", "still pending")
    await refused(session, "answer_approval", {"id": approval["id"], "decision": "deny"}, "already")


async def task(session):
    project = os.environ["MCP_PROJECT"]
    # The model server's URL is the daemon's [agents.claude-code] env.
    coder = {"provider": "claude-code", "cwd": project}
    allowed = await ok(session, "run_task", {**coder, "prompt": "run: touch allowed.txt", "allow": ["Bash(touch:*)"]})
    reply = text(allowed)
    check(reply.startswith("tool said"), f"allowed: {reply!r}")
    check("(is_error)" not in reply, f"allowed: {reply!r}")
    check(os.path.isfile(os.path.join(project, "allowed.txt")), "the allowed command did not run in the cwd")

    never = await ok(session, "run_task", {**coder, "prompt": "run: touch never.txt", "approval": "never"})
    reply = text(never)
    check(reply.startswith("tool said (is_error)"), f"never: {reply!r}")
    check(not os.path.exists(os.path.join(project, "never.txt")), "a command ran under approval never")

    await refused(session, "run_task", {**coder, "prompt": "hi", "approval": "maybe"}, "maybe")
    await refused(session, "run_task", {**coder, "prompt": "hi", "cwd": "/nonexistent/run-task-cwd"}, "/nonexistent/run-task-cwd")
    # Every task agent is gone afterwards.
    check(cli("list") == [], "a task agent outlived its task")


async def budget(session):
    await check_tools(session)
    spawned = await ok(session, "spawn_agent", {"name": "capped", "profile": "fake", "budget": "1usd/day"})
    check(spawned.structured_content["budget"] == "1usd/day", f"spawn: {spawned}")
    check("budget 1usd/day" in text(spawned), f"spawn text: {text(spawned)!r}")
    listed = await ok(session, "list_agents", {})
    agents = [(a["name"], a.get("budget")) for a in listed.structured_content["agents"]]
    check(agents == [("capped", "1usd/day")], f"list: {listed}")
    check("capped has its own budget: 1usd/day" in text(listed), f"list text: {text(listed)!r}")
    check([a["budget"] for a in cli("list")] == ["1usd/day"], "the CLI does not see the budget")

    # A worst case costs 0.503 USD: the first message fits in 1 USD, the second does not.
    first = await ok(session, "send_message", {"agent": "capped", "content": "hello there!"})
    check(text(first) == "fine", f"first: {text(first)!r}")
    await refused(
        session,
        "send_message",
        {"agent": "capped", "content": "hello there!"},
        "budget agent:capped/day (the agent's own), 1.00 usd has no room for this call",
        "resets at",
        "hint: a budget has no room",
    )
    # A budget the daemon cannot read: its sentence, and no agent.
    await refused(session, "spawn_agent", {"name": "bad", "profile": "fake", "budget": "lots"}, '"lots"', "2usd/day")

    # run_task's own budget: 10 tokens cannot hold a worst case of 103.
    tiny = await refused(
        session, "run_task", {"prompt": "hello there!", "profile": "fake", "budget": "10tokens"}, "the agent's own"
    )
    check("10 tokens has no room" in tiny and "never (period total)" in tiny, f"tiny: {tiny!r}")
    await refused(session, "run_task", {"prompt": "hi", "profile": "fake", "budget": "-1usd"}, "-1usd")
    # run_task on a base_url, with no key sent there.
    task = await ok(
        session,
        "run_task",
        {"prompt": "hello there!", "provider": "openai", "model": "gpt-test", "base_url": os.environ["MCP_FAKE_URL"]},
    )
    check(text(task) == "fine", f"task on base_url: {text(task)!r}")
    # Tools a config lacks: the daemon's refusal, as for spawn_agent.
    lacking = {"prompt": "hi", "provider": "openai", "base_url": os.environ["MCP_FAKE_URL"], "tools": ["nope"]}
    await refused(session, "run_task", lacking, "[mcp_servers.nope]")
    check([a["name"] for a in cli("list")] == ["capped"], "a task agent outlived its task")


async def tools(session):
    arguments = {
        "prompt": "what does notes.txt say?",
        "provider": "openai",
        "model": "m",
        "base_url": os.environ["MCP_FAKE_URL"],
        "tools": ["fs"],
    }
    task = await ok(session, "run_task", arguments)
    check(text(task).endswith("It says: hello from notes"), f"task: {text(task)!r}")
    reply = task.structured_content["messages"][-1]
    check(reply["metadata"].get("tool_rounds") == 1, f"reply: {reply}")
    check(cli("list") == [], "the task agent outlived its task")


MODES = {
    "scenario": scenario,
    "cancel": cancel,
    "unreachable": unreachable,
    "autostart": autostart,
    "approve": approve,
    "task": task,
    "budget": budget,
    "tools": tools,
}


def main():
    body = MODES[sys.argv[1]]
    protocol = anyio.run(session_for, body)
    print(json.dumps({"client": f"mcp {version('mcp')}", "protocol": protocol}))


if __name__ == "__main__":
    main()
