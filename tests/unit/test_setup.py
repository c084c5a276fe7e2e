"""What a fresh machine needs: bin/setup installs every package the tests and the desktop client read,
the local broker formats storage with any cluster id, and help texts name the extras they need."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from babelstream.cli import app
from streams.broker import new_cluster_id
from tests.audio import TEST_DATA, MissingTestData, data_path

REPO = Path(__file__).resolve().parents[2]


def _setup_packages() -> set[str]:
    text = (REPO / "bin" / "setup").read_text()
    calls = re.findall(r"need_pkg ((?:[^\n\\]|\\\n)+)", text)
    return {p for call in calls for p in call.replace("\\\n", " ").split() if not p.startswith('"')}


def test_setup_installs_every_test_data_package() -> None:
    missing = {pkg for pkg in TEST_DATA.values() if pkg not in _setup_packages()}
    assert not missing, f"bin/setup --test does not install {missing}"


def test_test_data_helper_names_the_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = tmp_path / "nowhere"
    monkeypatch.setitem(TEST_DATA, absent, "some-debian-package")
    with pytest.raises(MissingTestData, match="install the Debian package some-debian-package"):
        data_path(absent, "clip.wav")


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


def test_desktop_help_names_the_extra() -> None:
    out = CliRunner().invoke(app, ["desktop", "--help"], terminal_width=200).output
    assert "babelstream[desktop]" in out and "bin/setup --desktop" in out


def test_cluster_ids_never_begin_with_a_dash() -> None:
    dash_first = b"\xf8" + bytes(15)  # base64 "-A..."
    assert base64.urlsafe_b64encode(dash_first).decode().startswith("-")
    draws = iter([dash_first, dash_first, b"\x01" * 16])
    cid = new_cluster_id(lambda: next(draws))
    assert cid == base64.urlsafe_b64encode(b"\x01" * 16).decode().rstrip("=") and len(cid) == 22
    assert all(not new_cluster_id().startswith("-") for _ in range(2000))
