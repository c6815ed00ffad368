"""The approvals panel in a real browser: headless Chromium driven by Selenium.

Run by tests/it/ui_browser.rs against an in-process daemon with a live
Claude Code agent (`--agent`, working in `--cwd`) whose model is a fake that
asks to run `touch FILE` for a message `run: touch FILE`. From the page it
sends two such messages: the first is approved with the keyboard and the
file must appear; the second is denied with a reason typed into the panel
and the file must not appear. Then, while a third waits for an answer, a
message sent behind it shows as 1 in the agents page's queue column, and 0
once the approval is denied from that page and both turns are answered.
Every check is an assertion; waits are for things to appear, never for time
to pass.
"""

import os

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from common import Browser, run


class Panel(Browser):
    def run(self):
        self.log_in()
        assert not self.visible("approvals"), "the panel shows with nothing pending"
        self.go(f"agent/{self.args.agent}", "conversation")
        self.approve_with_the_keyboard()
        self.deny_with_a_reason()
        self.queue_column()

    def ask(self, command):
        """Sends `run: COMMAND` from the page; returns the panel's entry for it."""
        prompt = self.driver.find_element(By.ID, "prompt")
        self.until("the prompt to be enabled", prompt.is_enabled)
        prompt.send_keys(f"run: {command}")
        self.driver.find_element(By.ID, "send").click()
        self.until("the approvals panel", lambda: self.visible("approvals"))
        entries = self.until("one pending approval", lambda: self.css("#approvals-list li.approval"))
        assert len(entries) == 1, [e.text for e in entries]
        entry = entries[0]
        agent = entry.find_element(By.CSS_SELECTOR, ".sender").text
        tool = entry.find_element(By.CSS_SELECTOR, ".tool").text
        summary = entry.find_element(By.CSS_SELECTOR, ".summary").text
        cwd = entry.find_element(By.CSS_SELECTOR, ".cwd").text
        age = entry.find_element(By.CSS_SELECTOR, ".age").text
        assert agent == self.args.agent, agent
        assert tool == "Bash", tool
        assert command in summary, summary
        assert cwd == f"in {self.args.cwd}", cwd
        assert age.strip().endswith("ago"), age
        count = self.driver.find_element(By.ID, "approvals-count").text
        assert count == "1", count
        return entry

    def answered(self, what):
        self.until(f"the panel to close after {what}", lambda: not self.visible("approvals"))
        self.until(f"the reply after {what}", lambda: self.status() == f"{self.args.agent} replied.")

    def approve_with_the_keyboard(self):
        entry = self.ask("touch approved.txt")
        self.shot("approvals-pending")
        button = entry.find_element(By.CSS_SELECTOR, "button.approve")
        # Enter on the focused button answers, as a click would.
        button.send_keys(Keys.ENTER)
        made = os.path.join(self.args.cwd, "approved.txt")
        self.until("the approved command's file", lambda: os.path.exists(made))
        self.answered("approving")
        self.shot("approvals-answered")

    def deny_with_a_reason(self):
        entry = self.ask("touch denied.txt")
        reason = entry.find_element(By.CSS_SELECTOR, "input.reason")
        # Enter in the reason denies.
        reason.send_keys("not this one", Keys.ENTER)
        self.answered("denying")
        assert not os.path.exists(os.path.join(self.args.cwd, "denied.txt")), "a denied command ran"

    def queue_cells(self):
        row = f'#agents-body tr[data-agent="{self.args.agent}"] td'
        return [c.text for c in self.css(row)]

    def queue_column(self):
        entry = self.ask("touch queued.txt")
        # A message behind the turn that waits for its approval, sent as the
        # page sends one (its session, its CSRF header); not awaited.
        self.driver.execute_async_script(
            """
            const [agent, done] = arguments;
            import('/ui/api.js').then((api) => {
              api.call('POST', api.path.message(agent), { content: 'behind it' }).catch(() => {});
              done();
            });
            """,
            self.args.agent,
        )
        self.go("agents", "agents")
        # State, provider, messages, queue, tokens, actions.
        cells = self.until("one message in the queue", lambda: [c for c in [self.queue_cells()] if len(c) > 3 and c[3] == "1"])
        assert cells[0][0] == "processing", cells
        self.shot("agents-queue")
        # The panel is on every page: deny from here.
        entry = self.until("the pending approval", lambda: self.css("#approvals-list li.approval"))[0]
        entry.find_element(By.CSS_SELECTOR, "input.reason").send_keys("not now", Keys.ENTER)
        self.until(
            "the queue to empty and the agent to go idle",
            lambda: [c for c in [self.queue_cells()] if len(c) > 3 and c[3] == "0" and c[0] == "idle"],
        )
        assert not os.path.exists(os.path.join(self.args.cwd, "queued.txt")), "a denied command ran"


if __name__ == "__main__":
    run(Panel, extra_flags=("--agent", "--cwd"), passed="all approval-panel checks passed")
