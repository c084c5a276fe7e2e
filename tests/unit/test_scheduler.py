"""The STT worker's decode policy (pure logic): finals first, coalesced interims, fairness, language reuse."""

from __future__ import annotations

from core.scheduler import DecodeScheduler, LanguageMemory
from core.utterances import Utterance


def utt(sid: str, idx: int = 0, partition: int = 0) -> Utterance:
    return Utterance(sid, idx, f"{sid}:{idx}", 0, None, None, False, partition)


def sched(**kw: int) -> DecodeScheduler:
    return DecodeScheduler(interim_settle_ms=0, **kw)  # settling has a test of its own


def drain(s: DecodeScheduler, now_ms: int = 0) -> list[tuple[str, bool, int]]:
    out = []
    while (job := s.next(now_ms)) is not None:
        out.append((job.key, job.final, job.revision))
    return out


def test_finals_come_first_oldest_first() -> None:
    s = sched()
    s.submit_interim(utt("a"), 1, now_ms=0)
    s.submit_final(utt("b"), now_ms=1)
    s.submit_final(utt("c"), now_ms=2)
    assert drain(s) == [("b:0", True, 0), ("c:0", True, 0), ("a:0", False, 1)]


def test_newer_interims_replace_older_and_a_final_drops_its_interim() -> None:
    s = sched()
    a, b = utt("a"), utt("b")
    for rev in (1, 2, 3):
        s.submit_interim(a, rev, now_ms=rev)
    s.submit_interim(b, 1, now_ms=4)
    s.submit_final(b, now_ms=5)
    s.submit_interim(b, 2, now_ms=6)  # a late interim of a finalised utterance is not wanted
    assert drain(s, now_ms=10) == [("b:0", True, 0), ("a:0", False, 3)]
    assert len(s) == 0


def test_interims_are_fair_across_sessions() -> None:
    s = sched()
    for i in range(3):  # a talkative session with three utterances waiting
        s.submit_interim(utt("loud", i), 1, now_ms=i)
    s.submit_interim(utt("quiet"), 1, now_ms=5)
    order = [key for key, _, _ in drain(s, now_ms=10)]
    assert order.index("quiet:0") == 1  # served right after the first of the talkative session


def test_stale_interims_are_dropped_and_the_queue_is_bounded() -> None:
    s = sched(interim_max_wait_ms=100, max_interims=3)
    s.submit_interim(utt("old"), 1, now_ms=0)
    s.submit_interim(utt("new"), 1, now_ms=190)
    assert drain(s, now_ms=200) == [("new:0", False, 1)] and s.dropped == 1
    for i in range(5):
        s.submit_interim(utt(f"s{i}"), 1, now_ms=1000 + i)
    assert len(s) == 3 and [k for k, _, _ in drain(s, now_ms=1010)] == ["s2:0", "s3:0", "s4:0"]


def test_revoked_partitions_lose_their_decodes() -> None:
    s = sched()
    s.submit_final(utt("a", partition=1), now_ms=0)
    s.submit_interim(utt("b", partition=2), 1, now_ms=0)
    s.submit_final(utt("c", partition=2), now_ms=0)
    s.drop_partitions({2})
    assert drain(s) == [("a:0", True, 0)]


def test_language_is_settled_by_the_whole_utterance_then_by_the_session() -> None:
    mem = LanguageMemory(stable_after=2, redetect_every=4, min_probability=0.7)
    first = utt("s", 0)
    assert mem.language_for(first, given=None, final=False) is None  # nothing known: detect
    mem.observe(first, "ar", 0.8, whole=False)  # an interim's first seconds: Whisper's guess wanders
    assert mem.language_for(first, given=None, final=False) is None  # so an unsure one is not kept
    mem.observe(first, "pt", 0.95, whole=False)  # a sure one is, for the utterance's later interims only
    assert mem.language_for(first, given=None, final=False) == "pt"
    assert mem.language_for(first, given=None, final=True) is None  # the final detects from all of it
    assert mem.language_for(utt("s", 1), given=None, final=False) is None  # and no other utterance uses it
    mem.observe(first, "fr", 0.4, whole=True)  # not confident: detect again next time
    assert mem.language_for(first, given=None, final=True) is None
    mem.observe(first, "es", 0.95, whole=True)  # a guess at the final, at a pause
    assert mem.language_for(first, given=None, final=True) == "es"  # the final reuses it
    assert mem.language_for(first, given="en", final=True) == "en"  # a language the client named always wins
    mem.finished(first, "es", 1.0)
    second = utt("s", 1)
    assert mem.language_for(second, given=None, final=False) == "es"  # interims: the session's language
    assert mem.language_for(second, given=None, final=True) is None  # one utterance is not yet a stable session
    mem.finished(second, "it", 0.5)  # an unsure final neither grows nor breaks the streak
    mem.finished(second, "es", 0.9)
    third = utt("s", 2)
    assert mem.language_for(third, given=None, final=True) == "es"  # stable after two: no detection at all
    mem.finished(third, "es", 1.0)
    mem.finished(utt("s", 3), "es", 1.0)
    assert mem.language_for(utt("s", 4), given=None, final=True) is None  # every 4th utterance checks again
    assert mem.language_for(utt("s", 4), given=None, final=False) == "es"
    mem.finished(utt("s", 4), "de", 0.99)  # they switched: a new streak
    assert mem.language_for(utt("s", 5), given=None, final=True) is None
    assert mem.language_for(utt("s", 5), given=None, final=False) == "de"
    assert mem.language_for(utt("other"), given=None, final=False) is None  # sessions do not share


def test_speculative_finals_only_run_when_nothing_else_waits() -> None:
    s = sched()
    s.submit_interim(utt("a"), 1, now_ms=0)
    s.submit_speculative(utt("b"), 900, now_ms=1)
    s.submit_final(utt("c"), now_ms=3)
    assert [(j, k) for j, k, _ in drain_kinds(s)] == [("c:0", "final"), ("a:0", "interim"), ("b:0", "speculative")]
    s.submit_speculative(utt("e"), 900, now_ms=4)
    s.submit_interim(utt("e"), 2, now_ms=5)  # more speech after the pause: the guess would be wasted
    assert [(j, k) for j, k, _ in drain_kinds(s)] == [("e:0", "interim")]
    s.submit_speculative(utt("d"), 500, now_ms=10)
    s.submit_final(utt("d"), now_ms=11)  # ended before its speculative began: the final does the work
    assert [(j, k) for j, k, _ in drain_kinds(s, now_ms=12)] == [("d:0", "final")]


def drain_kinds(s: DecodeScheduler, now_ms: int = 5) -> list[tuple[str, str, int | None]]:
    out = []
    while (job := s.next(now_ms)) is not None:
        out.append((job.key, job.kind, job.speech_end_ms))
    return out


def test_an_interim_settles_first_so_a_pause_right_behind_it_wins() -> None:
    s = DecodeScheduler(interim_settle_ms=100)
    u = utt("a")
    s.submit_interim(u, 1, now_ms=1000)  # the chunk that completed the utterance made an interim due
    assert s.next(now_ms=1050) is None and s.wake_at_ms(1050) == 1100
    s.submit_speculative(u, 700, now_ms=1060)  # ...and the pause came right behind it: nothing else waits
    job = s.next(now_ms=1070)
    assert job is not None and job.kind == "speculative" and s.next(now_ms=5000) is None
    s.submit_interim(utt("b"), 1, now_ms=2000)
    assert s.next(now_ms=2099) is None and s.next(now_ms=2100) is not None  # alone, it starts once settled


def test_a_batch_is_one_kind_finals_oldest_first_up_to_its_size() -> None:
    s = sched(max_batch_size=3)
    for i, sid in enumerate("abcd"):
        s.submit_final(utt(sid), now_ms=i)
    s.submit_interim(utt("e"), 1, now_ms=0)
    assert [j.key for j in s.next_batch(10)] == ["a:0", "b:0", "c:0"]
    assert [j.key for j in s.next_batch(10)] == ["d:0"]  # never mixed with the interim behind it
    assert [(j.key, j.final) for j in s.next_batch(10)] == [("e:0", False)]


def test_an_interim_batch_takes_one_utterance_per_session_in_turn() -> None:
    s = sched(max_batch_size=2)
    s.submit_interim(utt("a", 0), 1, now_ms=0)
    s.submit_interim(utt("a", 1), 1, now_ms=1)
    s.submit_interim(utt("b", 0), 1, now_ms=2)
    s.submit_interim(utt("c", 0), 1, now_ms=3)
    assert [j.key for j in s.next_batch(10)] == ["a:0", "b:0"]
    assert [j.key for j in s.next_batch(10)] == ["c:0", "a:1"]  # a was served: it comes after c


def test_a_batch_that_is_not_full_waits_batch_wait_ms_for_company() -> None:
    s = sched(max_batch_size=2, batch_wait_ms=50)
    s.submit_final(utt("a"), now_ms=0)
    assert s.next_batch(10) == [] and s.wake_at_ms(10) == 50
    s.submit_final(utt("b"), now_ms=20)
    assert [j.key for j in s.next_batch(20)] == ["a:0", "b:0"]  # full: at once
    s.submit_final(utt("c"), now_ms=100)
    assert s.next_batch(120) == []
    assert [j.key for j in s.next_batch(150)] == ["c:0"]  # waited long enough: alone
    s.submit_interim(utt("d"), 1, now_ms=200)
    assert s.next_batch(240) == [] and len(s) == 1  # held, and still queued
    s.submit_interim(utt("e"), 1, now_ms=245)
    assert [j.key for j in s.next_batch(250)] == ["d:0", "e:0"]  # e came in time to join d


def test_wake_at_ms_is_always_in_the_future() -> None:
    s = DecodeScheduler(interim_settle_ms=100, max_batch_size=4, batch_wait_ms=30)
    s.submit_interim(utt("a"), 1, now_ms=0)
    assert s.wake_at_ms(0) == 100 and s.wake_at_ms(100) == 130 and s.wake_at_ms(130) is None


def test_the_next_utterance_interims_use_a_language_heard_at_a_pause_before_its_final_is_sent() -> None:
    """A confident detection from a whole utterance (the guess at its pause) is known at once to the
    session's next utterance's interims: they need not detect (a 30 s encoder pass each) while the first
    utterance's final is still on its way."""
    mem = LanguageMemory()
    first, second = utt("s", 0), utt("s", 1)
    mem.observe(first, "es", 0.95, whole=True)
    assert mem.language_for(second, given=None, final=False) == "es"
    assert mem.language_for(second, given=None, final=True) is None  # no final of the session yet: detect
    mem.observe(first, "fr", 0.99, whole=False)  # an interim's guess is never kept
    assert mem.language_for(utt("s", 2), given=None, final=False) == "es"
    mem.finished(first, "es", 0.95)
    assert mem.language_for(second, given=None, final=True) == "es"  # one confident final: the session's


def test_a_very_sure_detection_from_enough_of_an_utterance_settles_it() -> None:
    mem = LanguageMemory(interim_min_probability=0.9, settle_ms=3000)
    u = utt("s", 0)
    mem.observe(u, "es", 0.97, whole=False, heard_ms=2000)  # sure, but from too little: interims only
    assert mem.language_for(u, given=None, final=True) is None
    mem.observe(u, "es", 0.85, whole=False, heard_ms=4000)  # enough audio, not sure enough
    assert mem.language_for(u, given=None, final=True) is None
    mem.observe(u, "es", 0.95, whole=False, heard_ms=3000)
    assert mem.language_for(u, given=None, final=True) == "es"  # the final need not detect
    assert mem.language_for(utt("s", 1), given=None, final=False) == "es"  # the session was heard in it
