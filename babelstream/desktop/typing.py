"""Voice typing: which text to type for each final transcript, and keyboards that type it. The planner is
pure logic; the keyboards are thin adapters (pynput for X11/Windows/macOS, xdotool, or a Qt widget)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any, Protocol


class Keyboard(Protocol):
    def type(self, text: str) -> None: ...


class TypingPlanner:
    """Turns final results into text to type: each segment once, in order, separated by single spaces."""

    def __init__(self) -> None:
        self.typed_segments: set[int] = set()
        self.last_char = " "

    def text_for(self, msg: dict[str, Any]) -> str:
        if msg.get("type") != "final" or msg["utterance_index"] in self.typed_segments:
            return ""
        self.typed_segments.add(msg["utterance_index"])
        text = " ".join(str(msg.get("text", "")).split())
        if not text:
            return ""
        if not self.last_char.isspace():
            text = " " + text
        self.last_char = text[-1]
        return text


class PynputKeyboard:
    def __init__(self) -> None:
        from pynput.keyboard import Controller

        self._kb = Controller()

    def type(self, text: str) -> None:
        self._kb.type(text)


class XdotoolKeyboard:
    def __init__(self) -> None:
        if shutil.which("xdotool") is None:
            raise RuntimeError("xdotool is not installed")

    def type(self, text: str) -> None:
        subprocess.run(["xdotool", "type", "--clearmodifiers", "--", text], check=True, timeout=30)


class QtKeyboard:
    """Types into a Qt widget, by default the application's focused one (in-app dictation, and tests)."""

    def __init__(self, widget: Any = None) -> None:
        self.widget = widget

    def type(self, text: str) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtGui import QKeyEvent
        from PySide6.QtWidgets import QApplication

        widget = self.widget or QApplication.focusWidget()
        if widget is None:
            return
        for ch in text:
            for kind in (QKeyEvent.Type.KeyPress, QKeyEvent.Type.KeyRelease):
                QApplication.sendEvent(widget, QKeyEvent(kind, 0, Qt.KeyboardModifier.NoModifier, ch))


def system_keyboard() -> Keyboard:
    try:
        return PynputKeyboard()
    except Exception:
        return XdotoolKeyboard()
