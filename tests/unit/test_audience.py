"""Who watches which broadcast in which language, sans I/O: this gateway's viewers become audience
records (written on change and refreshed; a language kept for the grace period; a broadcast nobody watches
tombstoned), and every gateway's records become each broadcast's languages, the most watched first."""

from __future__ import annotations

import pytest

from gateway.audience import AudienceIndex, LocalAudience, Tombstone
from schemas.records import Audience, WatchedLang

pytestmark = pytest.mark.unit

GRACE = 60_000


def test_local_viewers_become_records_on_change_and_on_refresh() -> None:
    local = LocalAudience("gw", GRACE, 20_000)
    local.joined("b", "s", "pt", 1000)
    local.joined("b", "s", "pt", 1000)
    local.joined("b", "s", None, 1000)  # the speaker's language
    [rec] = local.due(1000)
    assert isinstance(rec, Audience) and rec.key == "b@gw" and rec.session_id == "s"
    assert {(x.lang, x.viewers) for x in rec.langs} == {("", 1), ("pt", 2)}
    assert local.due(2000) == []  # nothing changed, not due
    [again] = local.due(21_000)  # refreshed: the others see this gateway is alive
    assert isinstance(again, Audience) and all(x.watched_at_ms == 21_000 for x in again.langs)
    assert local.viewers("b") == 3


def test_a_language_nobody_watches_is_kept_for_the_grace_period_then_the_broadcast_is_tombstoned() -> None:
    local = LocalAudience("gw", GRACE, 20_000)
    local.joined("b", "s", "pt", 0)
    local.due(0)
    local.left("b", "pt", 5000)
    local.left("b", "pt", 5000)  # once too often: ignored
    [rec] = local.due(5000)
    assert isinstance(rec, Audience) and rec.langs == [WatchedLang("pt", 0, 5000)]
    assert local.due(5000 + 10_000) == []
    [refresh] = local.due(5000 + GRACE)  # still within the grace period: refreshed as it is
    assert isinstance(refresh, Audience) and refresh.langs == [WatchedLang("pt", 0, 5000)]
    assert local.due(5001 + GRACE) == [Tombstone("b@gw", "s")]
    assert local.viewers("b") == 0


def test_the_index_gives_each_broadcast_the_languages_watched_anywhere_within_the_grace_period() -> None:
    index = AudienceIndex(GRACE, max_langs=2)
    now = 100_000
    a = Audience("b", "s", "gw1", [WatchedLang("pt", 3, now), WatchedLang("", 9, now)], now)
    b = Audience("b", "s", "gw2", [WatchedLang("en", 5, now), WatchedLang("fr", 1, now - GRACE - 1)], now)
    assert index.apply(a.key, a) == "s" and index.apply(b.key, b) == "s"
    assert index.langs("s", now) == ["en", "pt"]  # the most watched first; fr's grace ran out; "" never
    assert index.viewers("s", now) == 18 and index.viewers("s", now, except_gateway="gw1") == 6
    assert index.viewers("s", now + GRACE + 1) == 0  # neither gateway refreshed: both gone
    c = Audience("b", "s", "gw3", [WatchedLang("de", 9, now), WatchedLang("it", 8, now)], now)
    index.apply(c.key, c)
    assert index.langs("s", now) == ["de", "it"]  # at most max_langs
    assert index.apply(c.key, None) == "s"  # tombstone
    assert index.langs("s", now) == ["en", "pt"] and index.langs("other", now) == []
    assert index.apply("nobody@gw", None) is None


def test_a_hostile_audience_record_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Audience.from_avro(
            {
                "broadcast_id": "b",
                "session_id": "s",
                "gateway_id": "g",
                "langs": [{"lang": "pt", "viewers": -1, "watched_at_ms": 0}],
                "updated_at_ms": 0,
            }
        )
    with pytest.raises(ValueError, match="empty"):
        Audience.from_avro({"broadcast_id": "", "session_id": "s", "gateway_id": "g", "langs": [], "updated_at_ms": 0})
