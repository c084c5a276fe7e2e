"""The Qt desktop client, offscreen: a file as the microphone, voice typing and the subtitle overlay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.audio import librivox, silence, wer
from tests.e2e.test_web_client import write_wav
from tests.stack import Stack
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.timeout(240)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


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

    def translated() -> bool:
        app.processEvents()
        return any(m.get("type") == "translation" for m in win.messages)

    wait_until_sync(translated, 120, lambda: f"no translation: {win.messages}", every_s=0.02)
    app.processEvents()
    assert win.status.text().startswith("listening: session")
    assert wer(ref, editor.text()) < 0.2, editor.text()
    assert "Dashwood" in win.overlay.text_label.text() and "Dashwood" in win.overlay.translation_label.text()
    assert win.overlay.isVisible()
    assert win.overlay.grab().save(str(tmp_path / "overlay.png")) and (tmp_path / "overlay.png").stat().st_size > 0
    win.close()
