"""What a fresh machine needs, checked on this one: bin/setup installs every package the tests and the
desktop client read, and what it installed is there and loads."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.audio import TEST_DATA

REPO = Path(__file__).resolve().parents[2]


def _setup_packages() -> set[str]:
    text = (REPO / "bin" / "setup").read_text()
    calls = re.findall(r"need_pkg ((?:[^\n\\]|\\\n)+)", text)
    return {p for call in calls for p in call.replace("\\\n", " ").split() if not p.startswith('"')}


def test_setup_installs_every_test_data_package() -> None:
    missing = {pkg for pkg in TEST_DATA.values() if pkg not in _setup_packages()}
    assert not missing, f"bin/setup --test does not install {missing}"


def test_test_data_is_installed() -> None:
    for path, pkg in TEST_DATA.items():
        assert path.exists(), f"{path} missing: bin/setup --test should have installed {pkg}"


def test_qt_xcb_platform_plugin_finds_its_libraries() -> None:
    """A real X11 desktop loads Qt's xcb plugin: every library it links, and xcb-cursor (loaded at run
    time by Qt >= 6.5), must resolve after bin/setup --desktop."""
    qt = Path(__import__("PySide6").__file__).parent / "Qt"
    for lib in (qt / "plugins" / "platforms" / "libqxcb.so", *sorted((qt / "lib").glob("libQt6XcbQpa.so*"))[:1]):
        out = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, check=True, timeout=30).stdout
        assert "not found" not in out, f"{lib.name}: {[x for x in out.splitlines() if 'not found' in x]}"
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True, timeout=30).stdout
    assert "libxcb-cursor.so.0" in cache
