"""Desktop client logic without a gateway: what gets typed, what the subtitle overlay shows (Qt offscreen)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def test_typing_planner() -> None:
    from babelstream.desktop.typing import TypingPlanner

    p = TypingPlanner()
    assert p.text_for({"type": "realtime", "utterance_index": 0, "text": "he"}) == ""
    assert p.text_for({"type": "final", "utterance_index": 0, "text": " He was  here. "}) == "He was here."
    assert p.text_for({"type": "final", "utterance_index": 0, "text": "He was here."}) == ""  # typed once
    assert p.text_for({"type": "final", "utterance_index": 1, "text": "Then left."}) == " Then left."


def test_overlay_shows_interim_then_final_and_translation() -> None:
    from PySide6.QtWidgets import QApplication

    from babelstream.desktop.overlay import SubtitleOverlay

    _app = QApplication.instance() or QApplication([])
    o = SubtitleOverlay(lines=2)
    o.on_message({"type": "realtime", "utterance_index": 0, "text": "he was"})
    assert o.text_label.text() == "he was" and not o.translation_label.isVisibleTo(o)
    o.on_message({"type": "final", "utterance_index": 0, "text": "He was not."})
    o.on_message({"type": "realtime", "utterance_index": 0, "text": "late interim"})  # ignored after the final
    o.on_message({"type": "translation", "utterance_index": 0, "text": "Ele não era."})
    for i in (1, 2):
        o.on_message({"type": "final", "utterance_index": i, "text": f"line {i}"})
    assert o.text_label.text() == "line 1\nline 2"  # only the last two segments
    assert o.windowOpacity() < 1.0
