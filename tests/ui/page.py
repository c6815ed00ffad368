"""The web page in a real browser: headless Chromium driven by Selenium.

Run by tests/it/ui_browser.rs against an in-process daemon with the echo
provider, which passes two one-time login links (the first is used twice),
the directory for screenshots and a scratch directory for the browser's
profile. Every check is an assertion; the exit status says whether all held.
Waits are for things to appear, never for time to pass.
"""

import argparse
import sys

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

PATIENCE = 20  # seconds before a wait fails
XSS = '<img src=x onerror="window.__pwned = true">'


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--link", required=True)
    parser.add_argument("--second-link", required=True)
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--chromedriver", required=True)
    args = parser.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={args.profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=args.chromedriver))
    try:
        Page(driver, args).run()
    finally:
        driver.quit()
    print("all browser checks passed")


class Page:
    def __init__(self, driver, args):
        self.driver = driver
        self.args = args
        # A list the page re-renders while a wait reads it is read again.
        self.wait = WebDriverWait(
            driver,
            PATIENCE,
            poll_frequency=0.05,
            ignored_exceptions=(StaleElementReferenceException,),
        )

    def run(self):
        self.login()
        self.second_use_is_refused()
        self.spawn("web")
        self.conversation()
        self.model_output_is_text()
        self.search()
        self.spawn("other")
        self.fan_out()
        self.follows_the_colour_scheme()
        self.reflows_at_200_percent()

    # helpers

    def until(self, what, condition):
        try:
            return self.wait.until(lambda _: condition())
        except TimeoutException:
            self.shot("failed")
            raise AssertionError(f"timed out waiting for {what}; status: {self.status()!r}")

    def css(self, selector):
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def click(self, selector):
        """Clicks the element, found again if the page re-rendered it meanwhile."""

        def clicked():
            found = self.css(selector)
            if found:
                found[0].click()
            return bool(found)

        self.until(f"{selector} to click", clicked)

    def visible(self, element_id):
        found = self.driver.find_elements(By.ID, element_id)
        return bool(found) and found[0].is_displayed()

    def status(self):
        found = self.driver.find_elements(By.ID, "status")
        return found[0].text if found else ""

    def shot(self, name):
        self.driver.save_screenshot(f"{self.args.screenshots}/{name}.png")

    def go(self, fragment, page):
        self.driver.execute_script("location.hash = arguments[0]", fragment)
        self.until(f"the {page} page", lambda: self.visible(f"page-{page}"))

    # the checks

    def login(self):
        self.driver.get(self.args.link)
        self.until("the agents page after login", lambda: self.visible("page-agents"))
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

    def spawn(self, name):
        self.go("agents", "agents")
        self.driver.find_element(By.ID, "spawn-name").send_keys(name)
        self.driver.find_element(By.ID, "spawn-provider").send_keys("echo")
        self.driver.find_element(By.ID, "spawn-submit").click()
        row = f'#agents-body tr[data-agent="{name}"] td'
        # Read in one go inside the wait: the table is re-rendered as events arrive.
        cells = self.until(f"{name} in the agents table", lambda: [c.text for c in self.css(row)])
        assert cells[0] == "idle", cells
        assert cells[1].startswith("echo"), cells
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
        for fragment, page in (("agents", "agents"), ("agent/web", "conversation"), ("fanout", "fanout")):
            self.go(fragment, page)
            wide = self.driver.execute_script(
                "return document.documentElement.scrollWidth > document.documentElement.clientWidth"
            )
            assert not wide, f"the {page} page scrolls sideways at 640 px"
            self.shot(f"narrow-{page}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        sys.exit(1)
