"""What the STT worker decodes next, sans I/O.

The Faust agent keeps consuming audio while decodes run; every decode it wants goes here, and one
decoder loop takes :meth:`DecodeScheduler.next` and runs it. The policy:

* finals first, oldest first: committed text is what users wait for, and an event is acked only once
  its utterance's final is stored;
* speculative finals only when nothing else waits: speech paused (a PAUSE event), so the utterance may
  be complete, and decoding it now lets its final go out as soon as END confirms that no speech
  followed; but when speech goes on the decode was wasted, so it must never take time from real work;
* at most one interim per utterance waits: a newer revision replaces the older one (coalesced away), and
  a final drops its utterance's waiting interim;
* interims are served round-robin across sessions, so one talkative session cannot starve the others;
* an interim waits ``interim_settle_ms`` before it may start, so a pause or an end that follows right
  behind it (the chunk that completes an utterance often makes an interim due) takes its place;
* interims that waited longer than ``interim_max_wait_ms`` are dropped (their text would arrive after
  newer speech anyway); finals are never dropped;
* the queue of interims is bounded (``max_interims``): past it the oldest is dropped;
* decodes of one kind are handed out together, up to ``max_batch_size`` (the engine runs them as one
  batch): finals oldest first, interims one per session in turn; with ``batch_wait_ms`` a batch that is
  not full waits that long after its oldest decode became due, for others to join it.

:class:`LanguageMemory` lets decodes skip language detection (an encoder pass over a whole 30 s window)
once an utterance, or a session, has shown its language.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from core.utterances import Utterance

JobKind = Literal["final", "speculative", "interim"]


@dataclass(frozen=True)
class Job:
    utterance: Utterance
    kind: JobKind
    revision: int = 0
    queued_ms: int = 0
    speech_end_ms: int | None = None  # speculative: where speech had ended when it paused

    @property
    def key(self) -> str:
        return self.utterance.utterance_id

    @property
    def final(self) -> bool:
        return self.kind == "final"


@dataclass
class DecodeScheduler:
    interim_max_wait_ms: int = 1500
    interim_settle_ms: int = 100
    max_interims: int = 1000
    max_batch_size: int = 1
    batch_wait_ms: int = 0
    finals: OrderedDict[str, Job] = field(default_factory=OrderedDict)
    speculative: OrderedDict[str, Job] = field(default_factory=OrderedDict)
    interims: dict[str, OrderedDict[str, Job]] = field(default_factory=dict)  # session -> utterance -> job
    _turn: OrderedDict[str, None] = field(default_factory=OrderedDict)  # sessions, least recently served first
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.finals) + len(self.speculative) + sum(len(q) for q in self.interims.values())

    def submit_final(self, u: Utterance, now_ms: int) -> None:
        self._remove_interim(u.session_id, u.utterance_id)
        self.speculative.pop(u.utterance_id, None)  # not started yet: the final decode does the work
        self.finals[u.utterance_id] = Job(u, "final", queued_ms=now_ms)

    def submit_speculative(self, u: Utterance, speech_end_ms: int | None, now_ms: int) -> None:
        if u.utterance_id in self.finals:
            return
        self._remove_interim(u.session_id, u.utterance_id)
        self.speculative.pop(u.utterance_id, None)  # an earlier pause of the same utterance
        self.speculative[u.utterance_id] = Job(u, "speculative", queued_ms=now_ms, speech_end_ms=speech_end_ms)

    def submit_interim(self, u: Utterance, revision: int, now_ms: int) -> None:
        if u.utterance_id in self.finals:
            return
        self.speculative.pop(u.utterance_id, None)  # more audio came after the pause: speech went on
        queue = self.interims.setdefault(u.session_id, OrderedDict())
        queue.pop(u.utterance_id, None)  # an older revision waiting: the newer one replaces it
        queue[u.utterance_id] = Job(u, "interim", revision, now_ms)
        self._turn.setdefault(u.session_id, None)
        while sum(len(q) for q in self.interims.values()) > self.max_interims:
            self._drop_oldest_interim()

    def next(self, now_ms: int) -> Job | None:
        """The decode to run now, or None when nothing waits."""
        batch = self.next_batch(now_ms, 1)
        return batch[0] if batch else None

    def next_batch(self, now_ms: int, max_size: int | None = None) -> list[Job]:
        """The decodes to run now as one batch, all of one kind (empty: nothing to do yet)."""
        size = max_size or self.max_batch_size
        if self.finals:
            if self._holding(self.finals.values(), now_ms, size):
                return []
            return [self.finals.popitem(last=False)[1] for _ in range(min(size, len(self.finals)))]
        turn = list(self._turn)
        interims: list[Job] = []
        while len(interims) < size and (job := self._next_interim(now_ms)) is not None:
            interims.append(job)
        if interims:
            if len(interims) < size and self._holding(interims, now_ms - self.interim_settle_ms, size):
                for job in interims:  # not yet: back in line, as they were
                    self.interims.setdefault(job.utterance.session_id, OrderedDict())[job.key] = job
                self._turn = OrderedDict((sid, None) for sid in turn if sid in self.interims)
                return []
            return interims
        if self.speculative and not any(self.interims.values()):  # idle otherwise: worth a guess
            return [self.speculative.popitem(last=False)[1] for _ in range(min(size, len(self.speculative)))]
        return []

    def _holding(self, jobs: Iterable[Job], due_ms: int, size: int) -> bool:
        """A batch of fewer than ``size`` that may still wait for company (``batch_wait_ms``)."""
        waiting = list(jobs)
        if self.batch_wait_ms <= 0 or len(waiting) >= size:
            return False
        return due_ms - min(job.queued_ms for job in waiting) < self.batch_wait_ms

    def _next_interim(self, now_ms: int) -> Job | None:
        for sid in list(self._turn):  # least recently served session first
            queue = self.interims.get(sid)
            if not queue:
                self._forget(sid)
                continue
            for uid, job in list(queue.items()):
                if now_ms - job.queued_ms > self.interim_max_wait_ms:
                    del queue[uid]
                    self.dropped += 1
                elif now_ms - job.queued_ms >= self.interim_settle_ms:
                    del queue[uid]
                    self._turn.move_to_end(sid)  # served: to the back of the line
                    if not queue:
                        self._forget(sid)
                    return job
            if not queue:
                self._forget(sid)
        return None

    def wake_at_ms(self, now_ms: int) -> int | None:
        """When the decoder should look again if nothing new arrives: a waiting interim settles, or a
        batch held for company has waited long enough (None: only a new decode can change anything)."""
        times = []
        for queue in self.interims.values():
            for job in queue.values():
                due = job.queued_ms + self.interim_settle_ms
                times.append(due if due > now_ms else due + self.batch_wait_ms)
        if self.batch_wait_ms > 0:
            times += [job.queued_ms + self.batch_wait_ms for job in self.finals.values()]
        future = [t for t in times if t > now_ms]
        return min(future) if future else None

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget the decodes of partitions this worker no longer owns (their new owner redoes them)."""
        for jobs in (self.finals, self.speculative):
            for uid, job in list(jobs.items()):
                if job.utterance.partition in partitions:
                    del jobs[uid]
        for sid, queue in list(self.interims.items()):
            for uid, job in list(queue.items()):
                if job.utterance.partition in partitions:
                    del queue[uid]
            if not queue:
                self._forget(sid)

    def _remove_interim(self, sid: str, uid: str) -> None:
        queue = self.interims.get(sid)
        if queue is not None and queue.pop(uid, None) is not None and not queue:
            self._forget(sid)

    def _drop_oldest_interim(self) -> None:
        oldest = min(
            ((sid, uid, job) for sid, q in self.interims.items() for uid, job in q.items()),
            key=lambda x: x[2].queued_ms,
        )
        self._remove_interim(oldest[0], oldest[1])
        self.dropped += 1

    def _forget(self, sid: str) -> None:
        self.interims.pop(sid, None)
        self._turn.pop(sid, None)


@dataclass
class LanguageMemory:
    """Languages detected per session, so that decodes detect (a 30 s encoder pass) only where it matters.

    Whisper's detection from an utterance's first second or two wanders (Spanish read as Portuguese, Hindi,
    then Arabic, before it settles). So an utterance's language is settled by a confident detection from
    the whole of it (a final's, or the guess at one made at a pause), or by a very sure one
    (``interim_min_probability``) from at least ``settle_ms`` of it: its final then need not detect again.
    A very sure detection from less is kept for the utterance's later interims only. Interims with nothing
    of their own use the language the session was last confidently heard in (no detection, and no flash of
    another language), or detect when there is none yet. A session whose last ``stable_after`` confident
    finals were all one language skips detection for finals too, but on every ``redetect_every``-th
    utterance (people switch). One final is enough: a detection from the whole 30 s window is what offline
    Whisper trusts, and each costs an encoder pass over that window (as much as decoding a 6 s utterance
    here); detecting on every interim of a session's first utterances and on its first three finals made
    first text and finals 1.5 to 3 times later under three sessions (``bench.sessions``)."""

    stable_after: int = 1
    redetect_every: int = 10
    min_probability: float = 0.7
    interim_min_probability: float = 0.9
    settle_ms: int = 3000
    max_sessions: int = 10_000
    _streaks: OrderedDict[str, tuple[str, int]] = field(default_factory=OrderedDict)
    _heard: OrderedDict[str, str] = field(default_factory=OrderedDict)  # last confident whole detection

    def language_for(self, u: Utterance, given: str | None, *, final: bool) -> str | None:
        """The language to decode ``u`` in (``final``: the whole utterance); None means: detect."""
        if given:
            return given
        if u.language is not None:
            return u.language
        lang, streak = self._streaks.get(u.session_id, (None, 0))
        if streak >= self.stable_after and streak % self.redetect_every != 0:
            return lang
        return None if final else self._heard.get(u.session_id, u.interim_language)

    def observe(
        self, u: Utterance, language: str | None, probability: float | None, *, whole: bool, heard_ms: int = 0
    ) -> None:
        """A decode of ``u`` without a given language found ``language``; ``whole``: from all of its audio
        so far (a final or a guess at one), not an interim's; ``heard_ms``: the audio it was found from."""
        p = probability or 0.0
        if not language or u.language is not None:
            return
        if (whole and p >= self.min_probability) or (heard_ms >= self.settle_ms and p >= self.interim_min_probability):
            u.language = language
            self._remember(self._heard, u.session_id, language)
        elif p >= self.interim_min_probability:
            u.interim_language = language

    def finished(self, u: Utterance, language: str | None, probability: float | None) -> None:
        """``u``'s final is in ``language``: a confident one grows the session's streak (or starts one)."""
        if not language or (probability or 0.0) < self.min_probability:
            return
        lang, streak = self._streaks.pop(u.session_id, (None, 0))
        self._remember(self._streaks, u.session_id, (language, streak + 1 if lang == language else 1))
        self._remember(self._heard, u.session_id, language)

    def _remember(self, memory: OrderedDict[str, Any], session_id: str, value: Any) -> None:
        """Newest last; the sessions least recently heard from are forgotten past ``max_sessions``."""
        memory.pop(session_id, None)
        memory[session_id] = value
        while len(memory) > self.max_sessions:
            memory.popitem(last=False)
