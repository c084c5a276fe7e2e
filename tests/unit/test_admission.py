"""The gateway's admission policy decides; the core executes (gateway.admission)."""

from __future__ import annotations

import pytest

from gateway.admission import Admission
from gateway.auth import ANONYMOUS, Principal
from schemas.messages import ProtocolError

KEY = Principal("key-a")


def test_past_the_unstarted_limit_the_connection_that_waited_longest_is_returned_to_close() -> None:
    adm: Admission[str] = Admission(max_sessions=10, max_sessions_per_key=2, max_unstarted=2)
    assert adm.connected("a") is None and adm.connected("b") is None
    assert adm.connected("c") == "a"
    assert adm.unstarted == 2
    adm.started("b", ANONYMOUS)  # a started connection no longer waits
    assert adm.connected("d") is None and adm.connected("e") == "c"


def test_a_gateway_at_max_sessions_is_busy_for_everyone() -> None:
    adm: Admission[str] = Admission(max_sessions=3, max_sessions_per_key=5, max_unstarted=10)
    adm.check(ANONYMOUS, sessions=2)
    assert not adm.saturated(2) and adm.saturated(3)
    with pytest.raises(ProtocolError) as e:
        adm.check(KEY, sessions=3)
    assert e.value.code == "server_busy" and e.value.fatal


def test_a_key_has_its_own_limit_and_its_slots_come_back_when_released() -> None:
    adm: Admission[str] = Admission(max_sessions=100, max_sessions_per_key=2, max_unstarted=10)
    for link in ("a", "b"):
        adm.connected(link)
        adm.check(KEY, sessions=0)
        adm.started(link, KEY)
    with pytest.raises(ProtocolError) as e:
        adm.check(KEY, sessions=2)
    assert e.value.code == "too_many_sessions"
    adm.check(Principal("key-b"), sessions=2)  # another key is not limited by this one's sessions
    adm.released("a", KEY, started=True)
    adm.check(KEY, sessions=1)
    adm.released("b", KEY, started=True)
    assert not adm.sessions_of  # nothing left counted


def test_a_key_of_its_own_limit_and_anonymous_clients() -> None:
    adm: Admission[str] = Admission(max_sessions=100, max_sessions_per_key=1, max_unstarted=10)
    big = Principal("big", max_sessions=3)
    for link in ("a", "b", "c"):
        adm.check(big, sessions=0)
        adm.started(link, big)
    with pytest.raises(ProtocolError):
        adm.check(big, sessions=3)
    for link in ("x", "y"):  # anonymous sessions share only MAX_SESSIONS
        adm.check(ANONYMOUS, sessions=3)
        adm.started(link, ANONYMOUS)
    adm.released("never-started", ANONYMOUS, started=False)
    assert adm.sessions_of[ANONYMOUS.name] == 2
