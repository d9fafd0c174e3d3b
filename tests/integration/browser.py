"""Real headless Chromium for the playground tests: Debian's ``chromium`` (installed by
``scripts/setup.sh --with-browser``) driven by Playwright through ``executable_path`` (Playwright's own browser
download is never used), with a WAV file as the microphone."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.server import TEST_SECRET, Server
from harness.speech import speech_pcm16k
from protocol.tokens import issue_token
from speech.audio import INPUT_RATE, write_wav

SCREENSHOTS = Path(__file__).resolve().parents[1] / ".cache" / "screenshots"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("no chromium on PATH: run scripts/setup.sh --with-browser (apt-get install chromium)")
    return found


def microphone_wav(path: Path, sentence: str | None, lead_s: float, tail_s: float = 40.0) -> Path:
    """What the fake microphone plays from the moment the page opens it: silence, the spoken sentence
    (Piper, as the other tests' speech), silence. Chromium loops the file: the tail outlasts a test."""
    speech = speech_pcm16k(sentence) if sentence else b""
    silence = b"\x00\x00" * int(INPUT_RATE * lead_s)
    write_wav(path, silence + speech + b"\x00\x00" * int(INPUT_RATE * tail_s), INPUT_RATE)
    return path


@contextmanager
def browser_page(wav: Path | None = None, *, width: int = 1000, height: int = 800,
                 ignore_https_errors: bool = False) -> Iterator[object]:
    """A page in a fresh headless Chromium whose microphone plays ``wav`` (silence when None); its console
    errors are collected in ``page.console_errors``."""
    from playwright.sync_api import sync_playwright

    args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required"]
    if wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={wav}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=args, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height},
                                          ignore_https_errors=ignore_https_errors)
            page = context.new_page()
            page.console_errors = []
            page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
            page.on("response", lambda r: page.console_errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            yield page
        finally:
            browser.close()


def screenshot(page: object, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def page_url(server: Server, token: str | None = None, **query: str) -> str:
    token = token or issue_token(TEST_SECRET, "playground-test")
    return f"{server.http_url}/?" + "&".join(f"{k}={v}" for k, v in {"token": token, **query}.items())


def debug(page) -> dict:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.voiPlayground))")


def wait_latency_bar(page, reply_id: str | None = None, timeout_ms: int = 60_000):
    selector = f".msg.assistant[data-id='{reply_id}'] .latency" if reply_id else ".msg.assistant .latency"
    bar = page.locator(selector).last
    bar.wait_for(timeout=timeout_ms)
    return bar


def no_errors(page) -> None:
    errors = [e for e in page.console_errors if not e.startswith("Failed to load resource")]  # named by URL too
    assert not errors, page.console_errors
    assert not debug(page)["errors"], debug(page)["errors"]
