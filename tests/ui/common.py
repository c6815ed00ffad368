"""What the browser tests share: the command line tests/it/ui_browser.rs
passes, headless Chromium under Selenium, logging in with a one-time link,
and the waits and lookups every check uses. Waits are for things to appear,
never for time to pass.
"""

import argparse
import sys

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

PATIENCE = 20  # seconds before a wait fails
# Every script gets these from ui_browser.rs; each adds its own.
BROWSER_FLAGS = ("--link", "--screenshots", "--profile", "--chromium", "--chromedriver")


def chromium(args):
    """Headless Chromium with its profile in the test's temp dir."""
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
    return webdriver.Chrome(options=options, service=Service(executable_path=args.chromedriver))


def run(checks, extra_flags=(), passed="all browser checks passed"):
    """Parses the command line, runs `checks(driver, args).run()` in a
    browser, and exits 1 with the failed assertion's message."""
    parser = argparse.ArgumentParser()
    for flag in (*BROWSER_FLAGS, *extra_flags):
        parser.add_argument(flag, required=True)
    args = parser.parse_args()
    try:
        driver = chromium(args)
        try:
            checks(driver, args).run()
        finally:
            driver.quit()
    except AssertionError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        sys.exit(1)
    print(passed)


class Browser:
    """The page in one browser, with the helpers the checks use."""

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

    def log_in(self):
        """Opens the one-time link; the page trades its token for a session."""
        self.driver.get(self.args.link)
        self.until("the agents page after login", lambda: self.visible("page-agents"))

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

    def api(self, method, path, body=None):
        """A request as the page makes one (its session, its CSRF header):
        the JSON answer, for comparing what the page shows with the API."""
        return self.driver.execute_async_script(
            """
            const [method, path, body, done] = arguments;
            import('/ui/api.js')
              .then((api) => api.call(method, path, body ?? undefined))
              .then(done, (error) => done({ error: String(error.message ?? error) }));
            """,
            method,
            path,
            body,
        )
