"""Per-utterance state of the STT stream processor, sans I/O.

Audio events arrive append-only (CHUNK ... END) per utterance. :class:`UtteranceAssembler` rebuilds each
utterance's audio, decides when an interim (REALTIME) decode is due, and hands out the whole utterance on
END. Redelivered events (after a worker failover) are recognised by sequence number and ignored.
Interims are skipped when the audio is older than ``interim_max_lag_ms`` (the worker is behind: it spends
its time on finals instead). Utterances whose END never comes (their gateway died) are finalised after
``abandon_after_ms`` without an event, by the worker's own clock: times stamped in records are never
trusted for it (a record stamped in the future must not end other utterances early).

An utterance its connection left inside speech (closed by a takeover, or by a disconnect) is held for
``seam_wait_ms``: if the session's next utterance begins at once (less than ``join_within_ms`` of session
audio after the resume, i.e. the speaker went on), the cut utterance keeps what precedes its last quiet
moment and the rest is carried into the next one (``core.audio.seam``), so no word is split
across the seam; otherwise it is finalised whole.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from core.audio.resample import pcm16_to_float, peak_normalize
from core.audio.seam import seam_cut_ms
from core.engines.stt import Transcription, Vocabulary
from schemas.records import (
    AUDIO_BYTES_PER_MS,
    AUDIO_SAMPLES_PER_MS,
    TAKEOVER_SEQ,
    AudioEvent,
    AudioEventKind,
    ErrorInfo,
    Result,
    ResultKind,
    Segment,
    wanted_targets,
)


@dataclass
class Utterance:
    session_id: str
    utterance_index: int
    utterance_id: str
    start_ms: int
    source_lang: str | None
    target_lang: str | None
    translate: bool
    partition: int = -1
    target_langs: list[str] = field(default_factory=list)  # every target, target_lang first (or empty)
    chunks: list[bytes] = field(default_factory=list)
    next_seq: int = 0
    audio_ms: int = 0
    last_created_at_ms: int = 0
    last_seen_ms: int = 0  # the worker's clock when its newest event arrived
    last_interim_audio_ms: int = 0
    interim_count: int = 0
    gaps: int = 0
    end_reason: str | None = None
    language: str | None = None  # detected by an earlier decode of this utterance (see scheduler.LanguageMemory)
    interim_language: str | None = None  # a sure guess of an interim, for its later interims only
    prompt: str | None = None  # the client's domain text and favoured words, from the first chunk
    hotwords: str | None = None
    speech_start_ms: int | None = None  # from the gateway's VAD, carried by END
    speech_end_ms: int | None = None
    tags: list[object] = field(default_factory=list)  # opaque handles (e.g. Faust events to ack)
    carried_ms: int = 0  # audio at the start carried over from the session's cut utterance before this one

    @property
    def targets(self) -> list[str]:
        """Every language the session wants this utterance translated into (when ``translate``)."""
        return wanted_targets(self.target_lang, self.target_langs)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.audio_ms

    def audio(self) -> np.ndarray:
        return pcm16_to_float(b"".join(self.chunks))

    def speech_range(self, ev: AudioEvent) -> tuple[int | None, int | None]:
        """The speech a PAUSE or END marks, in this utterance's audio (which may begin with carried speech)."""
        if not self.carried_ms:
            return ev.speech_start_ms, ev.speech_end_ms
        end = None if ev.speech_end_ms is None else ev.speech_end_ms + self.carried_ms
        return 0, end

    def cut(self, keep_ms: int) -> bytes:
        """Keep the first ``keep_ms`` of audio; return the rest (PCM16)."""
        pcm = b"".join(self.chunks)
        head, tail = pcm[: keep_ms * AUDIO_BYTES_PER_MS], pcm[keep_ms * AUDIO_BYTES_PER_MS :]
        self.chunks, self.audio_ms = ([head] if head else []), len(head) // AUDIO_BYTES_PER_MS
        for name in ("speech_start_ms", "speech_end_ms"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, min(value, self.audio_ms))
        return tail

    def carry(self, pcm: bytes) -> None:
        """Begin with ``pcm``, the speech the session's cut utterance was left in (this one's first chunk)."""
        ms = len(pcm) // AUDIO_BYTES_PER_MS
        self.chunks.insert(0, pcm)
        self.carried_ms, self.audio_ms = ms, self.audio_ms + ms
        self.start_ms = max(0, self.start_ms - ms)

    @property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary(self.prompt, self.hotwords)

    def speech(self, margin_ms: int, normalize: bool = False) -> tuple[np.ndarray, int]:
        """The audio to decode and where it starts (ms into the utterance): the speech the gateway's VAD
        found, with ``margin_ms`` either side (negative, or no known range: all of it), peak-normalised
        if asked (NORMALIZE_AUDIO)."""
        audio, start_ms = self.audio(), 0
        if self.speech_start_ms is not None and self.speech_end_ms is not None and margin_ms >= 0:
            start_ms = max(0, self.speech_start_ms - margin_ms)
            end_ms = min(self.audio_ms, self.speech_end_ms + margin_ms)
            if end_ms - start_ms >= 100:  # else nothing sensible to cut to
                audio = audio[start_ms * AUDIO_SAMPLES_PER_MS : end_ms * AUDIO_SAMPLES_PER_MS]
            else:
                start_ms = 0
        return (peak_normalize(audio) if normalize else audio), start_ms


# What the assembler asks for (a client's "realtime" and "final" messages are schemas.messages' Realtime
# and Final: what comes of these decodes)
@dataclass(frozen=True)
class DecodeInterim:
    """Time for an interim ("realtime") decode of the utterance so far: its ``revision``-th."""

    utterance: Utterance
    revision: int


@dataclass(frozen=True)
class DecodeFinal:
    """The utterance is whole: decode it for its final."""

    utterance: Utterance


@dataclass(frozen=True)
class Speculate:
    """Speech paused: the utterance may be complete. Decoding it now may give its final early."""

    utterance: Utterance
    speech_end_ms: int | None  # within the utterance; the final may reuse this decode if END says the same


@dataclass(frozen=True)
class Discard:
    """The event belongs to no utterance this worker assembles: ack it and go on."""

    reason: str


Action = DecodeInterim | Speculate | DecodeFinal | Discard

CLOSED_REMEMBERED = 10_000  # ids of utterances closed by a takeover whose late audio is discarded
LEFT_REASONS = frozenset({"takeover", "disconnect"})  # an END for these: the connection left, maybe mid-word


@dataclass
class Seam:
    """A session's utterance left inside speech, held until its next utterance says whether speech went on."""

    utterance: Utterance
    keep_ms: int  # what it keeps if the speech goes on in the next utterance (0: all of it is carried)
    resumed_at_ms: int  # session audio time where the next connection (or this one, back) began
    held_since_ms: int  # the worker's clock


class UtteranceAssembler:
    def __init__(
        self,
        interim_interval_ms: int = 1000,
        interim_max_lag_ms: int = 2000,
        abandon_after_ms: int = 60_000,
        *,
        seam_wait_ms: int = 0,
        join_within_ms: int = 600,
    ) -> None:
        """``seam_wait_ms``: how long an utterance left inside speech waits for its session's next one (0:
        never, each is finalised as it was left); ``join_within_ms``: the silence (session audio) after the
        resume within which the next utterance continues the cut one (the silence that ends an utterance)."""
        self.interim_interval_ms = interim_interval_ms
        self.interim_max_lag_ms = interim_max_lag_ms
        self.abandon_after_ms = abandon_after_ms
        self.seam_wait_ms = seam_wait_ms
        self.join_within_ms = join_within_ms
        self.open: dict[str, Utterance] = {}
        self.seams: dict[str, Seam] = {}  # by session id
        self._taken_over: OrderedDict[str, None] = OrderedDict()

    def add(self, ev: AudioEvent, now_ms: int, partition: int = -1, tag: object = None) -> Action | None:
        u = self.open.get(ev.utterance_id)
        if ev.kind is AudioEventKind.END and ev.seq == TAKEOVER_SEQ:
            return self._take_over(ev, u, tag, now_ms)
        if u is None and ev.utterance_id in self._taken_over:
            return Discard("taken_over")  # audio the old connection sent after the session moved on
        released: DecodeFinal | None = None
        if u is None and ev.kind is AudioEventKind.CHUNK and ev.session_id in self.seams:
            released, u = self._resume(self.seams.pop(ev.session_id), ev, partition)
        if u is None:
            u = self._begin(ev, partition)
        if tag is not None:
            u.tags.append(tag)
        if ev.seq < u.next_seq:
            return None  # duplicate from a redelivery
        if ev.seq > u.next_seq:
            u.gaps += ev.seq - u.next_seq  # lost audio: keep going with what we have
        u.next_seq = ev.seq + 1
        u.last_created_at_ms = max(u.last_created_at_ms, min(ev.created_at_ms, now_ms or ev.created_at_ms))
        u.last_seen_ms = now_ms
        u.source_lang, u.target_lang, u.translate = ev.source_lang, ev.target_lang, ev.translate
        u.target_langs = ev.target_langs
        u.prompt, u.hotwords = ev.prompt or u.prompt, ev.hotwords or u.hotwords
        if ev.kind is AudioEventKind.PAUSE:
            u.speech_start_ms, u.speech_end_ms = u.speech_range(ev)
            return Speculate(u, u.speech_end_ms)
        if ev.kind is AudioEventKind.END:
            u.end_reason = ev.end_reason or "end"
            u.speech_start_ms, u.speech_end_ms = u.speech_range(ev)
            del self.open[ev.utterance_id]
            return self._left(u, ev, now_ms) if u.end_reason in LEFT_REASONS else DecodeFinal(u)
        u.chunks.append(ev.pcm)
        u.audio_ms += ev.duration_ms
        if released is not None:
            return released  # this chunk's interim, if one was due, comes with the next chunk
        due = ev.realtime and u.audio_ms - u.last_interim_audio_ms >= self.interim_interval_ms
        fresh = now_ms - ev.created_at_ms <= self.interim_max_lag_ms
        if due and fresh and self.interim_interval_ms > 0:
            u.last_interim_audio_ms = u.audio_ms
            u.interim_count += 1
            return DecodeInterim(u, u.interim_count)
        return None

    def _take_over(self, ev: AudioEvent, u: Utterance | None, tag: object, now_ms: int) -> DecodeFinal | Discard | None:
        """Another connection took the session over: close the utterance with what it has, if still open."""
        if u is None:
            return Discard("already_ended")  # ended normally, or finalised before a redelivery
        if tag is not None:
            u.tags.append(tag)
        u.end_reason = ev.end_reason or "takeover"
        u.speech_end_ms = None  # no END said where speech ended: the last pause's word does not hold
        del self.open[ev.utterance_id]
        self._taken_over[ev.utterance_id] = None
        while len(self._taken_over) > CLOSED_REMEMBERED:
            self._taken_over.popitem(last=False)
        return self._left(u, ev, now_ms)

    def _left(self, u: Utterance, ev: AudioEvent, now_ms: int) -> DecodeFinal | None:
        """``u``'s connection left it (``ev``: the END saying so): held if it was left inside speech."""
        keep_ms = seam_cut_ms(u.audio()) if self.seam_wait_ms > 0 else None
        if keep_ms is None:
            return DecodeFinal(u)  # it ends quietly: no word was cut
        earlier = self.seams.pop(u.session_id, None)
        self.seams[u.session_id] = Seam(u, keep_ms, ev.audio_offset_ms, now_ms)
        return None if earlier is None else DecodeFinal(earlier.utterance)  # (never waits behind one of its own)

    def _resume(self, seam: Seam, ev: AudioEvent, partition: int) -> tuple[DecodeFinal, Utterance | None]:
        """The session's next chunk after ``seam``'s utterance was left: if it begins an utterance at once
        (the speaker went on), the speech after the cut's quiet moment begins that utterance too."""
        cut = seam.utterance
        went_on = (
            ev.seq == 0
            and ev.utterance_index > cut.utterance_index
            # speech began within the silence that would have ended the cut utterance (where the VAD heard
            # it begin; a gateway that does not say: where the utterance's audio begins)
            and ev.audio_offset_ms + (ev.speech_start_ms or 0) - seam.resumed_at_ms < self.join_within_ms
        )
        if not went_on:
            return DecodeFinal(cut), None
        u = self._begin(ev, partition)
        u.carry(cut.cut(seam.keep_ms))
        return DecodeFinal(cut), u

    def _begin(self, ev: AudioEvent, partition: int) -> Utterance:
        u = Utterance(
            ev.session_id,
            ev.utterance_index,
            ev.utterance_id,
            ev.audio_offset_ms,
            ev.source_lang,
            ev.target_lang,
            ev.translate,
            partition,
        )
        self.open[ev.utterance_id] = u
        return u

    def abandoned(self, clock_ms: int) -> list[DecodeFinal]:
        """Utterances with no event for ``abandon_after_ms`` by the worker's clock: finalise what they have;
        and utterances left inside speech whose session did not go on within ``seam_wait_ms``: whole."""
        out = []
        for uid, u in list(self.open.items()):
            if clock_ms - u.last_seen_ms > self.abandon_after_ms:
                u.end_reason = "abandoned"
                u.speech_end_ms = None
                del self.open[uid]
                out.append(DecodeFinal(u))
        for sid, seam in list(self.seams.items()):
            if clock_ms - seam.held_since_ms >= self.seam_wait_ms:
                del self.seams[sid]
                out.append(DecodeFinal(seam.utterance))
        return out

    def drop_partitions(self, partitions: set[int]) -> list[Utterance]:
        """Forget utterances of partitions this worker no longer owns (their new owner replays them)."""
        dropped = [u for u in self.open.values() if u.partition in partitions]
        for u in dropped:
            del self.open[u.utterance_id]
        for sid, seam in list(self.seams.items()):
            if seam.utterance.partition in partitions:
                del self.seams[sid]
                dropped.append(seam.utterance)
        return dropped


def utterance_result(
    u: Utterance,
    kind: ResultKind,
    model: str,
    version: str,
    t: Transcription | None = None,
    *,
    revision: int = 0,
    error: ErrorInfo | None = None,
    decoded_from_ms: int = 0,
) -> Result:
    """The result record for an utterance (timings in session audio time, segments only for FINAL).
    ``decoded_from_ms``: where in the utterance the decoded audio began (see :meth:`Utterance.speech`)."""
    r = Result(
        session_id=u.session_id,
        utterance_index=u.utterance_index,
        utterance_id=u.utterance_id,
        kind=kind,
        seq=revision,
        audio_start_ms=u.start_ms,
        audio_end_ms=u.end_ms,
        model=model,
        version=version,
        audio_created_at_ms=u.last_created_at_ms,
        target_lang=u.target_lang,
        target_langs=list(u.target_langs),
        translate=u.translate,
        error=error,
    )
    if t is not None:
        r.text, r.language, r.language_probability = t.text, t.language, t.language_probability
        r.processing_ms = t.processing_ms
        if kind is ResultKind.FINAL:
            at = u.start_ms + decoded_from_ms
            r.segments = [Segment(at + p.start_ms, at + p.end_ms, p.text) for p in t.segments]
            if not t.timed and u.speech_start_ms is not None and u.speech_end_ms is not None:
                # no times from the model (FINAL_TIMESTAMPS=false): the speech the VAD heard, not the padding
                lo, hi = u.start_ms + u.speech_start_ms, u.start_ms + u.speech_end_ms
                r.segments = [
                    Segment(min(max(sg.start_ms, lo), hi), max(min(sg.end_ms, hi), lo), sg.text) for sg in r.segments
                ]
    return r
