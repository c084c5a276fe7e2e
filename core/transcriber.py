"""What the STT worker decides, sans I/O: audio events in, batches to decode out, results to send out.

The agent (``agents/stt.py``) is the shell: it hands each event to :meth:`Transcriber.on_event` with its
partition, offset and a handle (a Faust event), runs :meth:`next_batch` in the engine (in a thread),
gives the transcriptions to :meth:`finish`, sends each :class:`Send`'s results in order and only then
acks what :meth:`sent` returns; a final whose send failed goes back through :meth:`retry`. Clocks are
passed in. The rules kept here:

* events are acked only once the FINAL of their utterance is stored (``InOrderAcks``: the committed
  offset of a partition never passes an unfinished utterance);
* a final whose guess at its pause still holds (no speech after the pause) is not decoded again;
* after a pause, an interim is wanted only once more speech came than the silence that ends an utterance;
* a final while other finals wait is decoded in the cheaper ``BUSY_ENCODER_PAD_MS`` window;
* an utterance its connection left inside speech waits up to ``SEAM_WAIT_MS`` for the session's next one,
  which begins with its speech after its last quiet moment (``UtteranceAssembler``): a final left with no
  audio says nothing and is not decoded;
* the languages a final needs: its targets, Whisper's English where a target's route goes through the
  speech (``english_unless``); the language is detected once per utterance or session
  (``scheduler.LanguageMemory``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from core.acks import InOrderAcks
from core.engines.stt import DecodeRequest, Transcription
from core.engines.translate import WHISPER, TranslationRouter
from core.scheduler import DecodeScheduler, Job, LanguageMemory
from core.settings import Settings
from core.utterances import (
    DecodeFinal,
    DecodeInterim,
    Discard,
    Speculate,
    Utterance,
    UtteranceAssembler,
    utterance_result,
)
from schemas.langs import UnknownLanguage, normalize_lang
from schemas.records import AUDIO_SAMPLES_PER_MS, AudioEvent, ErrorInfo, Result, ResultKind, Translation

T = TypeVar("T")  # the shell's handle of one consumed record (a Faust event)
V = TypeVar("V")
MAX_NOTES = 1000  # per-utterance notes kept for utterances that may never end here (revoked, abandoned)
NOTHING_SAID = Transcription("", None, None)


@dataclass(frozen=True)
class Guess:
    """A final decoded at a pause, kept until the utterance's END says whether speech went on."""

    transcription: Transcription
    speech_end_ms: int | None
    from_ms: int


@dataclass(frozen=True)
class Decode:
    """One decode for the engine, and where its audio starts in the utterance."""

    job: Job
    request: DecodeRequest
    from_ms: int


@dataclass(frozen=True)
class Batch:
    """What the scheduler handed out: ``decodes`` for the engine (one call), and the finals whose guess at
    their pause held (``reused``: nothing to decode)."""

    jobs: list[Job]
    decodes: list[Decode]
    reused: dict[str, tuple[Transcription, int]]
    behind: bool  # more finals waited: these were decoded the cheaper way
    misses: int  # finals whose guess was wasted (speech went on after the pause)
    unprepared: dict[str, Exception] = field(default_factory=dict)  # jobs whose audio could not be prepared


@dataclass(frozen=True)
class Send(Generic[T]):
    """The results of one decode, to send in order; then :meth:`Transcriber.sent` says what to ack."""

    job: Job
    results: list[Result]
    acks: list[tuple[int, int, T]] = field(default_factory=list)  # (partition, offset, handle)
    failed: Exception | None = None  # the engine's error, reported in an ERROR result
    speech_translated: bool = False  # Whisper's English is the translation into English


@dataclass(frozen=True)
class EventOutcome(Generic[T]):
    acks: list[T]  # handles to ack now (an unreadable or discarded event)
    problem: str | None = None  # why, for the metrics: bad_event, or the discard's reason
    wanted: bool = False  # a decode was asked for


def remember(notes: OrderedDict[str, V], key: str, value: V) -> None:
    """Keep a per-utterance note, forgetting the oldest beyond MAX_NOTES."""
    notes[key] = value
    notes.move_to_end(key)
    while len(notes) > MAX_NOTES:
        notes.popitem(last=False)


class Transcriber(Generic[T]):
    def __init__(self, s: Settings, model: str, results_version: str, router: TranslationRouter | None = None) -> None:
        """``router``: the translation routes, when this worker translates speech to English itself
        (Whisper's ``task=translate``) for sessions whose target has no text model from their language."""
        self.s, self.model, self.results_version, self.router = s, model, results_version, router
        self.assembler = UtteranceAssembler(
            s.interim_interval_ms,
            s.interim_max_lag_ms,
            abandon_after_ms=int(s.max_utterance_s * 1000) * 4,
            seam_wait_ms=s.seam_wait_ms,
            join_within_ms=s.silence_ms,
        )
        self.scheduler = DecodeScheduler(
            interim_max_wait_ms=s.interim_max_wait_ms,
            interim_settle_ms=s.interim_settle_ms,
            max_batch_size=s.max_batch_size,
            batch_wait_ms=s.batch_wait_ms,
        )
        self.languages = LanguageMemory()
        self.acks: InOrderAcks[T] = InOrderAcks()
        self.guesses: OrderedDict[str, Guess] = OrderedDict()  # by utterance id, newest last
        self.paused_at_ms: OrderedDict[str, int] = OrderedDict()  # utterance id -> its audio at its last pause
        self.silence_tail_ms = max(0, s.silence_ms - s.pause_ms) + s.chunk_ms  # audio a pause may be followed by

    # -- events ---------------------------------------------------------------------------------------
    def on_event(self, ev: AudioEvent | None, partition: int, offset: int, handle: T, clock_ms: int) -> EventOutcome[T]:
        """One consumed record (``ev`` None: it could not be read, and is dead-lettered by the shell)."""
        self.acks.consumed(partition, offset, handle)
        if ev is None:
            return EventOutcome(self.acks.done(partition, offset), "bad_event")
        action = self.assembler.add(ev, clock_ms, partition=partition, tag=(partition, offset, handle))
        if isinstance(action, DecodeInterim | Speculate | DecodeFinal):
            self._want(action, clock_ms)
            return EventOutcome([], wanted=True)
        if isinstance(action, Discard):
            return EventOutcome(self.acks.done(partition, offset), action.reason)
        return EventOutcome([])

    @property
    def timer_interval_s(self) -> float:
        """How often :meth:`on_timer` is worth calling."""
        a = self.assembler
        wait_ms = min(a.abandon_after_ms, a.seam_wait_ms) if a.seam_wait_ms else a.abandon_after_ms
        return max(0.5, wait_ms / 4000)

    def on_timer(self, clock_ms: int) -> None:
        """Finalise utterances abandoned by their gateway (no event for ``abandon_after_ms``), and those left
        inside speech whose session did not go on within ``seam_wait_ms``."""
        for stale in self.assembler.abandoned(clock_ms):
            self._want(stale, clock_ms)

    def revoke(self, partitions: set[int]) -> list[Utterance]:
        """This worker no longer owns ``partitions``: their open utterances are left to the new owner."""
        dropped = self.assembler.drop_partitions(partitions)
        self.scheduler.drop_partitions(partitions)
        self.acks.drop_partitions(partitions)
        return dropped

    @property
    def open_utterances(self) -> int:
        return len(self.assembler.open)

    def _want(self, action: DecodeFinal | Speculate | DecodeInterim, clock_ms: int) -> None:
        if isinstance(action, DecodeFinal):
            self.scheduler.submit_final(action.utterance, clock_ms)
        elif isinstance(action, Speculate):
            remember(self.paused_at_ms, action.utterance.utterance_id, action.utterance.audio_ms)
            self.scheduler.submit_speculative(action.utterance, action.speech_end_ms, clock_ms)
        else:
            u = action.utterance
            paused = self.paused_at_ms.get(u.utterance_id)
            if paused is not None and u.audio_ms - paused <= self.silence_tail_ms:
                return  # only the silence that will end the utterance came since the pause: nothing to say
            self.scheduler.submit_interim(u, action.revision, clock_ms)  # speech went on after the pause

    # -- decoding -------------------------------------------------------------------------------------
    def next_batch(self, clock_ms: int) -> Batch | None:
        """The decodes most worth doing now, as one batch; None: nothing yet (see :meth:`wake_at_ms`)."""
        jobs = self.scheduler.next_batch(clock_ms)
        if not jobs:
            return None
        behind = bool(self.scheduler.finals)  # more finals wait behind these: decode them the cheaper way
        decodes: list[Decode] = []
        reused: dict[str, tuple[Transcription, int]] = {}
        unprepared: dict[str, Exception] = {}
        misses = 0
        for job in jobs:
            if job.kind == "final" and job.utterance.audio_ms == 0:
                reused[job.key] = (NOTHING_SAID, 0)  # all its speech was carried into the next utterance
                continue
            if job.kind == "final":
                self.paused_at_ms.pop(job.key, None)
                guess = self.guesses.pop(job.key, None)
                if guess is not None and guess.speech_end_ms is not None:
                    if guess.speech_end_ms == job.utterance.speech_end_ms:  # no speech after the pause
                        reused[job.key] = (guess.transcription, guess.from_ms)
                        continue
                if guess is not None:
                    misses += 1
            try:
                decodes.append(Decode(job, *self._request(job, behind)))
            except Exception as e:  # reported as its ERROR (a final), as an engine failure would be
                unprepared[job.key] = e
        return Batch(jobs, decodes, reused, behind, misses, unprepared)

    def wake_at_ms(self, clock_ms: int) -> int | None:
        return self.scheduler.wake_at_ms(clock_ms)

    @property
    def queued(self) -> int:
        return len(self.scheduler)

    def finish(self, batch: Batch, transcriptions: list[Transcription | Exception]) -> list[Send[T]]:
        """The engine's answers to ``batch.decodes``, in order: what to send for each job."""
        done: dict[str, tuple[Transcription | Exception, int]] = dict(batch.reused)
        done.update((key, (e, 0)) for key, e in batch.unprepared.items())
        for d, t in zip(batch.decodes, transcriptions, strict=True):
            if isinstance(t, Transcription) and d.request.language is None:
                heard_ms = len(d.request.audio) // AUDIO_SAMPLES_PER_MS
                self.languages.observe(
                    d.job.utterance, t.language, t.language_probability, whole=d.request.final, heard_ms=heard_ms
                )
            done[d.job.key] = (t, d.from_ms)
        out = []
        for job in batch.jobs:
            send = self._complete(job, *done[job.key])
            if send is not None:
                out.append(send)
        return out

    def sent(self, send: Send[T]) -> list[T]:
        """``send``'s results are stored: the handles whose offsets may now be committed, in order."""
        ready: list[T] = []
        for partition, offset, _ in send.acks:
            ready += self.acks.done(partition, offset)
        return ready

    def retry(self, job: Job, clock_ms: int) -> None:
        """Sending a final failed (Kafka away): decode and send it again; its events stay unacked."""
        self.scheduler.submit_final(job.utterance, clock_ms)

    def _complete(self, job: Job, t: Transcription | Exception, from_ms: int) -> Send[T] | None:
        u = job.utterance
        if job.kind == "speculative":
            if isinstance(t, Transcription):
                remember(self.guesses, u.utterance_id, Guess(t, job.speech_end_ms, from_ms))
            return None
        if job.kind == "interim":
            if not isinstance(t, Transcription):
                return None
            return Send(job, [self._result(u, ResultKind.REALTIME, t, revision=job.revision)])
        acks: list[tuple[int, int, T]] = list(u.tags)  # type: ignore[arg-type]  # what on_event tagged
        if isinstance(t, Exception):
            error = ErrorInfo("stt_failed", str(t)[:500])
            return Send(job, [self._result(u, ResultKind.ERROR, error=error)], acks, failed=t)
        if not self._given_language(u):  # one more final in this language: the session's streak grows
            self.languages.finished(u, t.language, t.language_probability)
        final = self._result(u, ResultKind.FINAL, t, decoded_from_ms=from_ms)
        final.translation = self._speech_translation(u, t)  # the translation worker goes on from it (a pivot)
        results = [final]
        english = final.translation is not None and "en" in self._targets(u)
        if english:
            # English was a target: this is its translation (the translation worker goes by the record and
            # does not translate into English again, whatever routes it would choose)
            results.append(replace(final, kind=ResultKind.TRANSLATION, segments=[], created_at_ms=final.created_at_ms))
        return Send(job, results, acks, speech_translated=english)

    def _result(self, u: Utterance, kind: ResultKind, t: Transcription | None = None, **kw: object) -> Result:
        return utterance_result(u, kind, self.model, self.results_version, t, **kw)  # type: ignore[arg-type]

    def _given_language(self, u: Utterance) -> str | None:
        return u.source_lang or self.s.stt_language

    def _request(self, job: Job, behind: bool) -> tuple[DecodeRequest, int]:
        """What the engine decodes for ``job`` (in the utterance's language if known, with the client's
        vocabulary; a final or a guess at one decodes the speech range if TRIM_MARGIN_MS asks; a final
        while other finals wait, ``behind``, the cheaper BUSY_ENCODER_PAD_MS window), and where that audio
        starts in the utterance."""
        u, s = job.utterance, self.s
        final = job.kind != "interim"  # a final, or a guess at one
        audio, from_ms = u.speech(s.trim_margin_ms if final else -1, s.normalize_audio)
        language = self.languages.language_for(u, self._given_language(u), final=final)
        pad_ms = s.busy_encoder_pad_ms if behind and job.kind == "final" and s.busy_encoder_pad_ms >= 0 else None
        english = self._english_unless(u) if final else None
        request = DecodeRequest(audio, language, final, u.vocabulary, encoder_pad_ms=pad_ms, english_unless=english)
        return request, from_ms

    def _targets(self, u: Utterance) -> list[str]:
        """The languages the session wants this utterance in (unknown ones: the translation worker reports)."""
        if not u.translate:
            return []
        out = []
        for lang in u.targets:
            try:
                code = normalize_lang(lang)
            except UnknownLanguage:
                continue
            if code:
                out.append(code)
        return out

    def _english_unless(self, u: Utterance) -> frozenset[str] | None:
        """For a session that wants translations: the languages its speech needs no Whisper English for
        (to reach every target English leads to)."""
        router = self.router
        if router is None or not router.speech_to_english:
            return None
        useful = [to for to in self._targets(u) if to == "en" or router.route("en", to) is not None]
        if not useful:
            return None  # English would lead nowhere
        return frozenset.intersection(*(router.english_unless(to) for to in useful))

    def _speech_route(self, language: str, to: str) -> bool:
        route = self.router.route(language, to) if self.router is not None else None
        return route is not None and route.speech

    def _speech_translation(self, u: Utterance, t: Transcription) -> Translation | None:
        """Whisper's English for this final, when a target's route goes through the speech."""
        try:
            language = normalize_lang(t.language)
        except UnknownLanguage:
            return None
        if not t.english or not language or not any(self._speech_route(language, to) for to in self._targets(u)):
            return None
        return Translation(language, "en", t.english, WHISPER)
