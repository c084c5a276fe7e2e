"""Desktop client (Qt): voice typing into the focused window and a subtitle overlay.

Install with ``pip install babelstream[desktop]`` (PySide6, sounddevice, pynput); run ``babelstream desktop``.
"""
