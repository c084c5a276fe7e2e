"""The desktop client window: device and language selection, start/stop, voice typing, subtitle overlay."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from babelstream.desktop.audio import AudioSource, FileSource, MicrophoneSource, list_input_devices
from babelstream.desktop.overlay import SubtitleOverlay
from babelstream.desktop.streaming import StreamingThread
from babelstream.desktop.typing import Keyboard, TypingPlanner, system_keyboard
from schemas.langs import LANGUAGES


class MainWindow(QWidget):
    def __init__(
        self, url: str = "ws://127.0.0.1:5026", keyboard: Keyboard | None = None, file: Path | None = None
    ) -> None:
        super().__init__()
        self.setWindowTitle("Babelstream")
        self.url = QLineEdit(url)
        self.device = QComboBox()
        self.file = file
        if file is not None:
            self.device.addItem(f"file: {file.name}", None)
        else:
            try:
                for d in list_input_devices():
                    self.device.addItem(d.name + (" (default)" if d.default else ""), d.index)
            except Exception as e:  # no PortAudio or no device: say so, keep the window usable
                self.device.addItem(f"no input devices ({e})", None)
        self.source_lang = QComboBox()
        self.target_lang = QComboBox()
        self.source_lang.addItem("detect", None)
        self.target_lang.addItem("no translation", None)
        for code, name in sorted(LANGUAGES.items(), key=lambda kv: kv[1]):
            self.source_lang.addItem(name, code)
            self.target_lang.addItem(name, code)
        self.type_into_focus = QCheckBox("Type final text into the focused window")
        self.show_overlay = QCheckBox("Show subtitle overlay")
        self.show_overlay.setChecked(True)
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.status = QLabel("idle")
        form = QFormLayout(self)
        form.addRow("Gateway", self.url)
        form.addRow("Microphone", self.device)
        form.addRow("Spoken language", self.source_lang)
        form.addRow("Translate into", self.target_lang)
        form.addRow(self.type_into_focus)
        form.addRow(self.show_overlay)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        form.addRow(buttons)
        form.addRow(self.status)
        self.overlay = SubtitleOverlay()
        self.planner = TypingPlanner()
        self.keyboard = keyboard
        self.streaming: StreamingThread | None = None
        self.messages: list[dict[str, Any]] = []
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)

    def _source(self) -> AudioSource:
        if self.file is not None:
            return FileSource(self.file)
        return MicrophoneSource(self.device.currentData())

    def start(self) -> None:
        self.streaming = StreamingThread(
            self.url.text(), self._source(), self.source_lang.currentData(), self.target_lang.currentData()
        )
        self.streaming.message.connect(self.on_message)
        self.streaming.failed.connect(lambda err: self.status.setText(f"error: {err}"))
        self.streaming.start()
        if self.show_overlay.isChecked():
            self.overlay.show()
            self.overlay.place_bottom()
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.status.setText("connecting…")

    def stop(self) -> None:
        if self.streaming is not None:
            self.streaming.stop()
            self.streaming.wait(10_000)
            self.streaming = None
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.status.setText("stopped")

    def on_message(self, msg: dict[str, Any]) -> None:
        self.messages.append(msg)
        kind = msg.get("type")
        if kind == "ready":
            self.status.setText(f"listening: session {msg['session_id']}")
        elif kind == "error":
            self.status.setText(f"{msg['code']}: {msg['message']}")
        self.overlay.on_message(msg)
        if self.type_into_focus.isChecked():
            text = self.planner.text_for(msg)
            if text:
                if self.keyboard is None:
                    self.keyboard = system_keyboard()
                self.keyboard.type(text)

    def closeEvent(self, event: Any) -> None:  # Qt API name
        self.stop()
        self.overlay.close()
        super().closeEvent(event)


def main(url: str = "ws://127.0.0.1:5026", file: Path | None = None) -> None:
    app = QApplication.instance() or QApplication(sys.argv)
    window = MainWindow(url, file=file)
    window.show()
    app.exec()
