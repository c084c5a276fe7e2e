"""The viewer page and the speaker's Share panel in headless Chromium: a speaker broadcasts English speech
from the web client's microphone, its Share panel shows the viewer link and a QR code that decodes to it
(zbarimg), the viewer page at that link shows the captions in Portuguese and, switched, in English, and
the overlay mode for OBS is transparent and shows the last lines only."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.audio import librivox, silence, wer
from tests.e2e.test_web_client import chromium, write_wav
from tests.stack import Stack

pytestmark = pytest.mark.timeout(300)

ZBARIMG = shutil.which("zbarimg")


def decode_qr(png: bytes, tmp: Path) -> str:
    assert ZBARIMG, "zbarimg is required (bin/setup --test installs zbar-tools)"
    path = tmp / "qr.png"
    path.write_bytes(png)
    out = subprocess.run([ZBARIMG, "--raw", "-q", str(path)], capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


async def test_the_share_panel_qr_code_and_the_viewer_page_with_its_overlay(stack: Stack, tmp_path: Path) -> None:
    first, _, ref1 = librivox("sense_and_sensibility_01_austen_64kb-0870")
    second, _, ref2 = librivox("sense_and_sensibility_01_austen_64kb-0880")
    ref = f"{ref1} {ref2}"
    mic = write_wav(tmp_path / "mic.wav", silence(1000) + first + silence(1500) + second + silence(6000))
    base = f"http://127.0.0.1:{stack.health_port}"
    async with chromium(mic) as browser:
        speaker = await browser.new_page()
        await speaker.goto(f"{base}/?source=en&broadcast=1&autostart=1")
        await speaker.wait_for_selector("#share:not([hidden])", timeout=30_000)
        link = await speaker.inner_text("#share-link")
        qr_src = await speaker.get_attribute("#share-qr", "src")
        assert link.startswith(f"{base}/watch/") and "token=" in link, link
        png = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{base}{qr_src}", timeout=10).read())
        assert decode_qr(png, tmp_path) == link

        viewer = await browser.new_page()
        await viewer.goto(f"{link}&lang=pt")
        # a Portuguese caption, translated (the first finals may come untranslated, then be back-filled)
        await viewer.wait_for_function(
            "() => [...document.querySelectorAll('.caption.final:not(.untranslated) .text')]"
            ".some((t) => t.textContent.length > 10)",
            timeout=180_000,
        )
        options = await viewer.locator("#lang option").all_inner_texts()
        portuguese = await viewer.locator(".caption.final:not(.untranslated) .text").all_inner_texts()
        originals = await viewer.locator(".caption.final:not(.untranslated) .original").all_inner_texts()
        await viewer.select_option("#lang", "")  # the speaker's own language
        await viewer.wait_for_function(
            "() => window.babelstream.lang === '' && document.querySelectorAll('.caption.final').length > 0"
            " && document.querySelector('#status').textContent === 'live'",
            timeout=60_000,
        )
        await speaker.wait_for_function(
            "[...window.babelstream.utterances.values()].filter((u) => u.text).length >= 2", timeout=120_000
        )
        await viewer.wait_for_function("() => document.querySelectorAll('.caption.final').length >= 2", timeout=60_000)
        english = await viewer.locator(".caption.final .text").all_inner_texts()

        overlay = await browser.new_page()
        await overlay.goto(f"{link}&lang=pt&overlay=1&lines=1&size=40")
        await overlay.wait_for_function("() => document.querySelectorAll('.caption.final').length >= 2", timeout=60_000)
        look = await overlay.evaluate(
            """() => ({
                background: getComputedStyle(document.body).backgroundColor,
                header: getComputedStyle(document.querySelector('header')).display,
                shown: [...document.querySelectorAll('.caption')].filter((c) => !c.hidden).length,
                size: getComputedStyle(document.querySelector('#captions')).fontSize,
            })"""
        )
        await viewer.screenshot(path=str(tmp_path / "viewer.png"))
    assert "English (the speaker's)" in options[0] and "Portuguese" in options, options
    assert any(o.strip() for o in originals) and portuguese != originals
    assert wer(ref, " ".join(english)) < 0.35, english
    assert look == {"background": "rgba(0, 0, 0, 0)", "header": "none", "shown": 1, "size": "40px"}, look
