"""Set-up logic: the local broker formats storage with any cluster id, a missing test-data package is
named, help texts name the extras they need (what bin/setup installed is checked in tests/machine)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from typer.testing import CliRunner

from babelstream.cli import app
from streams.broker import new_cluster_id
from tests.audio import TEST_DATA, MissingTestData, data_path


def test_test_data_helper_names_the_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = tmp_path / "nowhere"
    monkeypatch.setitem(TEST_DATA, absent, "some-debian-package")
    with pytest.raises(MissingTestData, match="install the Debian package some-debian-package"):
        data_path(absent, "clip.wav")


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
