"""The Qt desktop client, offscreen: a file as the microphone, voice typing and the subtitle overlay."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.audio import librivox, silence, wer
from tests.e2e.test_web_client import write_wav
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def test_typing_planner() -> None:
    from babelstream.desktop.typing import TypingPlanner

    p = TypingPlanner()
    assert p.text_for({"type": "realtime", "segment_id": 0, "text": "he"}) == ""
    assert p.text_for({"type": "final", "segment_id": 0, "text": " He was  here. "}) == "He was here."
    assert p.text_for({"type": "final", "segment_id": 0, "text": "He was here."}) == ""  # typed once
    assert p.text_for({"type": "final", "segment_id": 1, "text": "Then left."}) == " Then left."


def test_overlay_shows_interim_then_final_and_translation() -> None:
    from PySide6.QtWidgets import QApplication

    from babelstream.desktop.overlay import SubtitleOverlay

    _app = QApplication.instance() or QApplication([])
    o = SubtitleOverlay(lines=2)
    o.on_message({"type": "realtime", "segment_id": 0, "text": "he was"})
    assert o.text_label.text() == "he was" and not o.translation_label.isVisibleTo(o)
    o.on_message({"type": "final", "segment_id": 0, "text": "He was not."})
    o.on_message({"type": "realtime", "segment_id": 0, "text": "late interim"})  # ignored after the final
    o.on_message({"type": "translation", "segment_id": 0, "text": "Ele não era."})
    for i in (1, 2):
        o.on_message({"type": "final", "segment_id": i, "text": f"line {i}"})
    assert o.text_label.text() == "line 1\nline 2"  # only the last two segments
    assert o.windowOpacity() < 1.0


def test_desktop_client_types_and_shows_subtitles(stack: Stack, tmp_path: Path) -> None:
    from PySide6.QtWidgets import QApplication, QLineEdit

    from babelstream.desktop.app import MainWindow
    from babelstream.desktop.typing import QtKeyboard

    app = QApplication.instance() or QApplication([])
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0870")
    wav = write_wav(tmp_path / "speech.wav", silence(500) + pcm)
    editor = QLineEdit()
    editor.show()
    win = MainWindow(stack.ws_url, keyboard=QtKeyboard(editor), file=wav)
    win.type_into_focus.setChecked(True)
    win.target_lang.setCurrentIndex(win.target_lang.findData("pt"))
    win.show()
    win.start_button.click()
    deadline = time.monotonic() + 120
    while not any(m.get("type") == "translation" for m in win.messages):
        assert time.monotonic() < deadline, win.messages
        app.processEvents()
        time.sleep(0.02)
    app.processEvents()
    assert win.status.text().startswith("listening: session")
    assert wer(ref, editor.text()) < 0.2, editor.text()
    assert "Dashwood" in win.overlay.text_label.text() and "Dashwood" in win.overlay.translation_label.text()
    assert win.overlay.isVisible()
    assert win.overlay.grab().save(str(tmp_path / "overlay.png")) and (tmp_path / "overlay.png").stat().st_size > 0
    win.close()
