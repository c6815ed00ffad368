"""A tiny stdio MCP server for the daemon's tests of its MCP client, on the
official MCP Python SDK (`mcp`, pinned in scripts/test.sh; `MCPServer`, which
the SDK called `FastMCP` before 2.0). Run by tests/it/tool_servers.rs as

    python slow_server.py

with these variables in its environment (its config table's `env`), each
naming a file the test waits for:

  SLOW_SERVER_PID      written at start: the server's pid, for kill -9
  SLOW_SERVER_STARTED  written when a `wait` call begins
  SLOW_SERVER_CANCELLED
                       written when a `wait` call is cancelled: the SDK
                       cancels a handler's task on `notifications/cancelled`

and, optionally:

  SLOW_SERVER_NOISE    a number N: before serving, the server writes N lines
                       to its stderr (a server that floods its log)

Tools: `wait` (waits `seconds`, then answers "waited") and `echo` (answers
its `text` at once). Both are annotated read-only, so config's default
policy lets them run without asking.
"""

import os
import sys
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("slow")
READ_ONLY = ToolAnnotations(readOnlyHint=True)


def note(variable: str, text: str) -> None:
    """Writes `text` to the file `variable` names, if it names one; the file
    appears whole (written aside, then renamed) so a reader never sees half."""
    path = os.environ.get(variable)
    if not path:
        return
    partial = Path(path + ".partial")
    partial.write_text(text)
    partial.rename(path)


@server.tool(annotations=READ_ONLY)
async def wait(seconds: float = 3600) -> str:
    """Waits `seconds`, then answers "waited"."""
    note("SLOW_SERVER_STARTED", "started")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        note("SLOW_SERVER_CANCELLED", "cancelled")
        raise
    return "waited"


@server.tool(annotations=READ_ONLY)
def echo(text: str) -> str:
    """Answers `text`."""
    return text


if __name__ == "__main__":
    note("SLOW_SERVER_PID", str(os.getpid()))
    noise = int(os.environ.get("SLOW_SERVER_NOISE", "0"))
    for line in range(noise):
        sys.stderr.write(f"noise {line}\n")
    sys.stderr.flush()
    server.run("stdio")
