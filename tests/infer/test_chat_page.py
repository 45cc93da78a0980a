"""The chat page in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by
Selenium types a message, the page streams the answer from /v1/chat/completions, and the answer shown is the
server's. Skips when chromium, chromedriver or selenium is absent. ``LMFS_CHAT_SCREENSHOT=path.png`` saves a
screenshot of the answered chat."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import httpx
import pytest
import torch

from lmfs.infer.server import Limits

from .test_engine import CharTokenizer, make_model
from .test_server import MODEL, Running, SlowEngine

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver"
)


def browser(user_dir: str):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1000,700",
        f"--user-data-dir={user_dir}",
    ):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def test_chat_page_answers_in_a_browser():
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model = make_model(seed=2, dtype=torch.float32, context_length=256)
    running = Running(SlowEngine(model, CharTokenizer(), max_batch=2, max_seq=256), Limits(max_tokens=64))
    user_dir = tempfile.mkdtemp(prefix="lmfs-chromium-")
    driver = browser(user_dir)
    try:
        driver.get(running.url + "/")
        assert MODEL in driver.title
        driver.find_element(By.ID, "temperature").clear()
        driver.find_element(By.ID, "temperature").send_keys("0")
        driver.find_element(By.ID, "max_tokens").clear()
        driver.find_element(By.ID, "max_tokens").send_keys("20")
        driver.find_element(By.ID, "input").send_keys("hello there")
        driver.find_element(By.ID, "send").click()
        WebDriverWait(driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".assistant[data-state=done], .error")
        )
        assert not driver.find_elements(By.CSS_SELECTOR, ".error")
        shown = driver.find_element(By.CSS_SELECTOR, ".assistant").text
        want = httpx.post(
            running.url + "/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "hello there"}],
                "max_tokens": 20,
                "temperature": 0,
            },
            timeout=30,
        ).json()["choices"][0]["message"]["content"]
        assert shown.startswith(want.strip()[:10]) and "20 tokens in" in shown
        assert driver.find_element(By.CSS_SELECTOR, ".user").text == "hello there"
        shot = os.environ.get("LMFS_CHAT_SCREENSHOT")
        if shot:
            driver.save_screenshot(shot)
    finally:
        driver.quit()
        running.stop()
        time.sleep(0.1)
        shutil.rmtree(user_dir, ignore_errors=True)
