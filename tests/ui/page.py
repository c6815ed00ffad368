"""The web page in a real browser: headless Chromium driven by Selenium.

Run by tests/it/ui_browser.rs against an in-process daemon with the echo
provider and a profile "fake" on a fake model server that has two replies,
each reporting 3 tokens in and 100 out (0.503 USD at the config's price),
and two [[budgets]] on that profile (5 USD a day, 100000 tokens a month).
It passes two one-time login links (the first is used twice), the directory
for screenshots and a scratch directory for the browser's profile. Every
check is an assertion; the exit status says whether all held. Waits are for
things to appear, never for time to pass.
"""

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from common import Browser, run

XSS = '<img src=x onerror="window.__pwned = true">'


class Page(Browser):
    def run(self):
        self.login()
        self.second_use_is_refused()
        self.spawn("web")
        self.conversation()
        self.model_output_is_text()
        self.search()
        self.spawn("other")
        self.fan_out()
        self.budgets_and_spending()
        self.follows_the_colour_scheme()
        self.reflows_at_200_percent()

    # the checks

    def login(self):
        self.log_in()
        url = self.driver.current_url
        assert "#t=" not in url, f"the token stayed in the address bar: {url}"
        cookies = self.driver.get_cookies()
        session = [c for c in cookies if c["name"].startswith("orchestration-")]
        assert len(session) == 1, cookies
        assert session[0]["httpOnly"], session
        assert session[0].get("sameSite") == "Strict", session
        # HttpOnly: the page's own script cannot read it either.
        assert "orchestration-" not in self.driver.execute_script("return document.cookie")
        self.shot("agents-empty")

    def second_use_is_refused(self):
        first = self.driver.current_window_handle
        self.driver.switch_to.new_window("tab")
        self.driver.get(self.args.link)
        self.until("the not-logged-in page", lambda: self.visible("page-login"))
        reason = self.driver.find_element(By.ID, "login-reason").text
        assert "already used" in reason, reason
        self.shot("login-refused")
        self.driver.close()
        self.driver.switch_to.window(first)
        # A fresh link in a fresh tab works, beside the first session.
        self.driver.switch_to.new_window("tab")
        self.driver.get(self.args.second_link)
        self.until("the agents page after a second login", lambda: self.visible("page-agents"))
        self.driver.close()
        self.driver.switch_to.window(first)

    def spawn(self, name, **fields):
        """Spawns from the form: the echo provider unless `fields` name
        others (by the form's ids: provider, profile, budget…)."""
        self.go("agents", "agents")
        self.driver.find_element(By.ID, "spawn-name").send_keys(name)
        for field, value in (fields or {"provider": "echo"}).items():
            self.driver.find_element(By.ID, f"spawn-{field}").send_keys(value)
        self.driver.find_element(By.ID, "spawn-submit").click()
        row = f'#agents-body tr[data-agent="{name}"] td'
        # Read in one go inside the wait: the table is re-rendered as events arrive.
        cells = self.until(f"{name} in the agents table", lambda: [c.text for c in self.css(row)])
        assert cells[0] == "idle", cells
        assert cells[1].startswith(fields.get("profile", "echo")), cells
        assert cells[3] == "0", f"queue column: {cells}"
        self.shot(f"agents-{name}")

    def conversation(self):
        self.click('#agents-body tr[data-agent="web"] a')
        self.until("the conversation page", lambda: self.visible("page-conversation"))
        prompt = self.driver.find_element(By.ID, "prompt")
        # The page focuses the prompt once the history has loaded.
        self.until("the prompt to have focus", lambda: self.driver.switch_to.active_element == prompt)
        words = " ".join(f"word{i}" for i in range(40))
        text = f"hello from the page {words}"
        prompt.send_keys(text)
        # Ctrl+Enter sends.
        prompt.send_keys(Keys.CONTROL, Keys.ENTER)
        self.until("the reply streaming in", lambda: self.css("#messages li.streaming"))
        self.shot("conversation-streaming")
        self.until(
            "the finished reply",
            lambda: [m for m in self.css("#messages li.agent .content") if m.text == text],
        )
        human = self.until("the human message", lambda: [m.text for m in self.css("#messages li.human .content")])
        assert human == [text], human
        assert not self.css("#messages li.streaming"), "the streaming reply was not replaced"
        self.shot("conversation")

    def model_output_is_text(self):
        prompt = self.driver.find_element(By.ID, "prompt")
        prompt.send_keys(XSS)
        self.driver.find_element(By.ID, "send").click()
        self.until(
            "the reply with markup in it",
            lambda: [m for m in self.css("#messages li.agent .content") if m.text == XSS],
        )
        assert not self.css("#messages img"), "a reply became an element"
        assert self.driver.execute_script("return window.__pwned === undefined")
        self.shot("conversation-markup")

    def search(self):
        self.go("search", "search")
        box = self.driver.find_element(By.ID, "search-q")
        box.send_keys("hello")
        box.send_keys(Keys.ENTER)
        self.until("a search hit", lambda: self.css("#search-results .hit mark"))
        marks = [m.text.lower() for m in self.css("#search-results .hit mark")]
        assert "hello" in marks, marks
        agents = {a.text for a in self.css("#search-results .hit .meta a")}
        assert agents == {"web"}, agents
        # Markup in a hit is text too.
        box.clear()
        box.send_keys("onerror")
        box.send_keys(Keys.ENTER)
        self.until(
            "a hit with markup",
            lambda: [h for h in self.css("#search-results .hit .content") if "<img" in h.text],
        )
        assert not self.css("#search-results img")
        self.shot("search")

    def fan_out(self):
        self.go("fanout", "fanout")
        self.until("two agents to choose", lambda: len(self.css("#fanout-agents input")) == 2)
        for box in self.css("#fanout-agents input"):
            box.click()
        prompt = self.driver.find_element(By.ID, "fanout-prompt")
        prompt.send_keys("side by side")
        prompt.send_keys(Keys.CONTROL, Keys.ENTER)
        self.until("both replies", lambda: len(self.css("#fanout-replies .reply.done")) == 2)
        replies = self.css("#fanout-replies .reply")
        texts = {r.get_attribute("data-agent"): r.find_element(By.CSS_SELECTOR, ".content").text for r in replies}
        assert texts == {"web": "side by side", "other": "side by side"}, texts
        left, right = (r.rect for r in replies)
        assert left["y"] == right["y"] and left["x"] + left["width"] <= right["x"], (left, right)
        self.shot("fanout")

    def budget_cells(self, scope, period):
        row = f'#budgets-body tr[data-scope="{scope}"][data-period="{period}"]'
        found = self.css(row)
        if not found:
            return None
        return {
            cell: found[0].find_element(By.CSS_SELECTOR, f".{cell}").text
            for cell in ("spent", "reserved", "remaining", "resets")
        } | {"own": bool(found[0].find_elements(By.CSS_SELECTOR, "th .tag"))}

    def shows(self, scope, period, spent):
        """Waits until the budget's row says `spent` ("spent / limit unit")."""
        self.until(
            f"{scope}/{period} to show {spent}",
            lambda: (self.budget_cells(scope, period) or {}).get("spent") == spent,
        )
        return self.budget_cells(scope, period)

    def budgets_and_spending(self):
        # The config's budgets, nothing spent yet.
        self.go("usage", "usage")
        day = self.shows("profile:fake", "day", "0.00 / 5.00 usd")
        assert day["remaining"] == "5.00" and not day["own"], day
        self.shows("profile:fake", "month", "0 / 100000 tokens")

        # An agent with a budget of its own shows it in its conversation's header.
        self.spawn("paid", profile="fake", budget="2usd/day")
        self.go("agent/paid", "conversation")
        header = lambda: self.driver.find_element(By.ID, "conversation-budget").text
        self.until("the agent's own budget", lambda: header().startswith("Budget 2usd/day: 0.00 / 2.00 usd spent"))
        prompt = self.driver.find_element(By.ID, "prompt")
        self.until("the prompt to have focus", lambda: self.driver.switch_to.active_element == prompt)
        prompt.send_keys("hello there!")
        self.driver.find_element(By.ID, "send").click()
        self.until("the paid reply", lambda: [m for m in self.css("#messages li.agent .content") if m.text == "fine"])
        # The usage event brings the header up to date: 3 in and 100 out cost 0.503.
        self.until("the header's spending", lambda: "0.503 / 2.00 usd spent, 1.497 left" in header())
        self.shot("conversation-budget")

        # The usage page shows what GET /usage says.
        self.go("usage", "usage")
        self.shows("profile:fake", "day", "0.503 / 5.00 usd")
        # A call while the page is open: the event stream brings the new figures.
        answer = self.api("POST", "/agents/paid/message", {"content": "hello there!"})
        assert answer.get("messages", [{}])[0].get("content") == "fine", answer
        day = self.shows("profile:fake", "day", "1.006 / 5.00 usd")
        month = self.shows("profile:fake", "month", "206 / 100000 tokens")
        own = self.shows("agent:paid", "day", "1.006 / 2.00 usd")
        usage = self.api("GET", "/usage")
        states = {(b["scope"], b["period"]): b for b in usage["budgets"]}
        api_day = states[("profile:fake", "day")]
        assert (api_day["spent"], api_day["limit"], api_day["remaining"]) == (1.006, 5.0, 3.994), api_day
        assert day["remaining"] == "3.994" and day["reserved"] == "0.00", day
        api_month = states[("profile:fake", "month")]
        assert (api_month["spent"], api_month["limit"], api_month["remaining"]) == (206, 100000, 99794), api_month
        assert month["remaining"] == "99794", month
        api_own = states[("agent:paid", "day")]
        assert api_own["source"] == "spawn" and api_own["remaining"] == 0.994, api_own
        assert own["own"] and own["remaining"] == "0.994", own
        # The reset time is the API's, in a <time> a reader's browser shows locally.
        resets = self.css('#budgets-body tr[data-scope="profile:fake"][data-period="day"] .resets time')
        assert resets and resets[0].get_attribute("datetime") == api_day["resets"], api_day
        # The totals and the agent's share are the ledger's.
        totals = {dd.get_attribute("data-total"): dd.text for dd in self.css("#usage-totals dd")}
        total = usage["total"]
        assert totals["Calls"] == str(total["calls"]), (totals, total)
        assert totals["Input tokens"] == str(total["input_tokens"]), (totals, total)
        assert totals["Output tokens"] == str(total["output_tokens"]), (totals, total)
        paid = [c.text for c in self.css('#usage-agents-body tr[data-agent="paid"] td')]
        assert paid == ["2", "6 / 200", "1.006"], paid
        self.shot("usage")

    def follows_the_colour_scheme(self):
        background = "return getComputedStyle(document.body).backgroundColor"
        seen = {}
        for scheme in ("dark", "light"):
            self.driver.execute_cdp_cmd(
                "Emulation.setEmulatedMedia",
                {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
            )
            seen[scheme] = self.driver.execute_script(background)
            self.shot(f"fanout-{scheme}")
        assert seen["dark"] != seen["light"], seen
        dark = [int(c) for c in seen["dark"].strip("rgba()").split(",")[:3]]
        assert sum(dark) < 3 * 64, f"the dark scheme is not dark: {seen}"

    def reflows_at_200_percent(self):
        # 200% zoom of a 1280-pixel window lays the page out in 640 CSS pixels.
        self.driver.set_window_size(640, 900)
        for fragment, page in (
            ("agents", "agents"),
            ("agent/web", "conversation"),
            ("fanout", "fanout"),
            ("usage", "usage"),
        ):
            self.go(fragment, page)
            wide = self.driver.execute_script(
                "return document.documentElement.scrollWidth > document.documentElement.clientWidth"
            )
            assert not wide, f"the {page} page scrolls sideways at 640 px"
            self.shot(f"narrow-{page}")


if __name__ == "__main__":
    run(Page, extra_flags=("--second-link",))
