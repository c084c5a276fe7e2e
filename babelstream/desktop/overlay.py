"""A semi-transparent, always-on-top subtitle overlay that lets clicks through."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget


class SubtitleOverlay(QWidget):
    def __init__(self, lines: int = 2, opacity: float = 0.8) -> None:
        super().__init__(
            None,
            Qt.WindowType.FramelessWindowHint
            | Qt.WindowType.WindowStaysOnTopHint
            | Qt.WindowType.Tool
            | Qt.WindowType.WindowTransparentForInput,
        )
        self.setAttribute(Qt.WidgetAttribute.WA_TranslucentBackground)
        self.setAttribute(Qt.WidgetAttribute.WA_ShowWithoutActivating)
        self.setWindowOpacity(opacity)
        self.lines = lines
        self.segments: dict[int, dict[str, str]] = {}
        self.text_label = QLabel()
        self.translation_label = QLabel()
        for label, color in ((self.text_label, "#ffffff"), (self.translation_label, "#8fd3ff")):
            label.setWordWrap(True)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setStyleSheet(f"color: {color}; font-size: 22px; background: rgba(0,0,0,160); padding: 6px;")
        layout = QVBoxLayout(self)
        layout.addWidget(self.text_label)
        layout.addWidget(self.translation_label)
        self.resize(900, 140)

    def on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind not in ("realtime", "final", "translation"):
            return
        seg = self.segments.setdefault(msg["utterance_index"], {"text": "", "translation": "", "state": "interim"})
        if kind == "translation":
            seg["translation"] = msg["text"]
        elif kind == "final" or seg["state"] == "interim":
            seg["text"] = msg["text"]
            seg["state"] = "final" if kind == "final" else "interim"
        recent = [self.segments[k] for k in sorted(self.segments)[-self.lines :]]
        self.text_label.setText("\n".join(s["text"] for s in recent if s["text"]))
        self.translation_label.setText("\n".join(s["translation"] for s in recent if s["translation"]))
        self.translation_label.setVisible(any(s["translation"] for s in recent))

    def place_bottom(self) -> None:
        screen = self.screen().availableGeometry()
        self.move(screen.center().x() - self.width() // 2, screen.bottom() - self.height() - 40)
