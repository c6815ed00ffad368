"""Runs one command on a real pseudo-terminal and answers its questions.

Usage: python3 answer.py ANSWER COMMAND [ARG...]

The command gets a new pseudo-terminal as its stdin, stdout and stderr (a
terminal, as a person's shell would give it). Each time its output ends in
the question `[y/N]`, ANSWER and Enter are typed. When it exits, everything
it wrote is printed on stdout (as the terminal showed it) and this script
exits with the command's status. A command silent for 90 seconds (say, one
waiting for an answer it never asked for) is killed, and the script exits 3. Used by tests/it/coding_terminal.rs; only
the standard library, so any python3 runs it.
"""

import os
import pty
import select
import signal
import sys

PATIENCE = 90  # seconds of silence before the command is given up on


def main():
    answer = sys.argv[1].encode()
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(sys.argv[2], sys.argv[2:])
    seen = b""
    asked = 0
    while True:
        ready, _, _ = select.select([fd], [], [], PATIENCE)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            sys.stdout.write(seen.decode("utf-8", "replace"))
            sys.stdout.write(f"\n[silent for {PATIENCE} s: killed]\n")
            sys.exit(3)
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the command exited and the terminal closed
            break
        if not chunk:
            break
        seen += chunk
        # Answer each question once, as it appears.
        if seen.count(b"[y/N]") > asked:
            asked = seen.count(b"[y/N]")
            os.write(fd, answer + b"\r")
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(seen.decode("utf-8", "replace"))
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
