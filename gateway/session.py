"""One client's session, sans I/O: protocol messages and audio in, outputs (messages for the client,
audio events and session state for Kafka) out. The server (``gateway/server.py``) performs the I/O."""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from core.audio.pipeline import SpeechPipeline
from core.audio.resample import AudioFormatError
from core.audio.segmenter import Chunk, End, Pause, SegmenterConfig, SegmentEvent
from core.audio.vad import DualVad
from core.settings import Settings
from gateway.broadcast import announce, asked, broadcasting, carry_or_begin, control, wanted
from schemas.messages import (
    TRANSLATION_ERRORS,
    Control,
    EndBroadcast,
    ErrorMsg,
    Flush,
    Langs,
    Ping,
    Pong,
    ProtocolError,
    Ready,
    RotateViewerToken,
    ServerMessage,
    SetLangs,
    Start,
    Stop,
    Stopped,
    UtteranceEnd,
    UtteranceStart,
    result_message,
)
from schemas.records import (
    TAKEOVER_SEQ,
    AudioEvent,
    AudioEventKind,
    Result,
    ResultKind,
    SessionState,
    now_ms,
    secret_digest,
    utterance_id,
)


@dataclass(frozen=True)
class ToClient:
    message: ServerMessage


@dataclass(frozen=True)
class Produce:
    event: AudioEvent


@dataclass(frozen=True)
class SaveState:
    state: SessionState
    durable: bool = False  # the handler waits until Kafka has stored it (a new session's first state)


Output = ToClient | Produce | SaveState


def delivery_key(r: Result) -> tuple[ResultKind, str, str | None]:
    """What a client receives once (Kafka may deliver a result again after a worker failover): an
    utterance's FINAL, its translation into each target language, each of its errors."""
    if r.kind is ResultKind.TRANSLATION and r.translation is not None:
        return r.kind, r.utterance_id, r.translation.target_lang
    if r.kind is ResultKind.ERROR and r.error is not None:
        return (
            r.kind,
            r.utterance_id,
            f"{r.error.code}>{r.target_lang}" if r.error.code in TRANSLATION_ERRORS else r.error.code,
        )
    return r.kind, r.utterance_id, None


class ClientSession:
    def __init__(
        self,
        settings: Settings,
        gateway_id: str,
        vad_factory: Callable[[], DualVad],
        clock_ms: Callable[[], int] = now_ms,
        secret: Callable[[int], str] = secrets.token_urlsafe,
        new_session_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        """``clock_ms``: the wall clock (Unix ms) the session's epochs and timestamps come from; ``secret``:
        ``n`` random bytes as text, for resume tokens; ``new_session_id``: the id of a new session."""
        self.s = settings
        self._clock_ms = clock_ms
        self._secret = secret
        self._new_session_id = new_session_id
        self.gateway_id = gateway_id
        self._vad_factory = vad_factory
        self.session_id: str | None = None
        self.epoch = 0  # this connection's identity within the session (see SessionState.epoch)
        self.superseded = False  # another connection took the session over: write no more state
        self.closed = False
        self.state: SessionState | None = None
        self.pipeline: SpeechPipeline | None = None
        self.realtime = True
        self.stopped = False
        self.pending: set[int] = set()  # utterances sent to STT, FINAL not yet received
        self.delivered: set[tuple[ResultKind, str, str | None]] = set()
        self._dropped: set[int] = set()
        self._overload_reported = False
        self.audio_bytes_in = 0
        self.audience_langs: list[str] = []  # a broadcast's viewers read these (the server keeps it current)

    @property
    def started(self) -> bool:
        return self.pipeline is not None

    @property
    def broadcasting(self) -> bool:
        """A broadcast that has not ended: its viewers' languages are translated too."""
        return self.state is not None and broadcasting(self.state)

    def _pipeline(self, before: str) -> SpeechPipeline:
        """The started session's speech pipeline; ``not_started`` before its ``start``."""
        if self.pipeline is None:
            raise ProtocolError("not_started", f"send a start message before {before}")
        return self.pipeline

    # -- control messages ---------------------------------------------------------------------------
    def start(
        self, msg: Start, prior: SessionState | None, owner: str = "anonymous", min_epoch: int = 0
    ) -> list[Output]:
        """``owner``: who asks (a key's name or a JWT's subject); ``min_epoch``: the connection's epoch is
        above it (the server keeps epochs unique)."""
        self.validate(msg)
        token = self.authorize_resume(msg, prior, owner)
        return self._start(msg, prior, token, owner, min_epoch)

    def validate(self, msg: Start) -> None:
        """What can be checked of a start before anything happens (the server checks it before a takeover)."""
        if self.started:
            raise ProtocolError("already_started", "the session is already started; send set_langs instead")
        s = self.s
        if not s.min_sample_rate_hz <= msg.sample_rate <= s.max_sample_rate_hz:
            raise ProtocolError(
                "bad_sample_rate",
                f"sample_rate {msg.sample_rate} Hz is outside {s.min_sample_rate_hz}..{s.max_sample_rate_hz} Hz",
            )
        if msg.channels > s.max_channels:
            raise ProtocolError("bad_channels", f"channels must be 1..{s.max_channels}")
        if msg.translate and not msg.targets:
            raise ProtocolError("invalid_message", "translate=true needs a target_lang (or target_langs)")

    def _start(self, msg: Start, prior: SessionState | None, token: str, owner: str, min_epoch: int) -> list[Output]:
        s = self.s
        resumed = prior is not None
        if prior is not None:  # fields the client does not repeat carry over from the stored session
            given = msg.model_fields_set
            carried = {
                f: getattr(prior, f)
                for f in ("source_lang", "translate", "prompt", "hotwords")
                if f not in given and getattr(prior, f) is not None
            }
            if not given & {"target_lang", "target_langs"}:
                carried.update(target_lang=None, target_langs=prior.targets)
            msg = msg.model_copy(update=carried)
        targets = msg.targets
        self.session_id = prior.session_id if prior else self._new_session_id()
        self.epoch = max(self._clock_ms(), prior.epoch + 1 if prior else 0, min_epoch)
        first_index = prior.next_utterance_index if prior else 0
        start_ms = prior.audio_ms_total if prior else 0
        self.state = SessionState(
            session_id=self.session_id,
            gateway_id=self.gateway_id,
            input_sample_rate_hz=msg.sample_rate,
            next_utterance_index=first_index,
            source_lang=msg.source_lang,
            target_lang=targets[0] if targets else None,
            target_langs=targets,
            translate=msg.translate,
            channels=msg.channels,
            encoding=msg.encoding,
            audio_ms_total=start_ms,
            created_at_ms=prior.created_at_ms if prior else self._clock_ms(),
            epoch=self.epoch,
            resume_token_sha256=secret_digest(token),  # a new token on every resume: the old one is spent
            owner=owner,
            prompt=msg.prompt,
            hotwords=msg.hotwords,
        )
        viewer_token = carry_or_begin(self.state, msg, prior, self._secret)
        self.realtime = msg.realtime
        try:
            self.pipeline = SpeechPipeline(
                self._vad_factory(),
                SegmenterConfig.from_settings(s),
                msg.sample_rate,
                msg.channels,
                msg.encoding,
                first_index,
                start_ms,
            )
        except AudioFormatError as e:
            raise ProtocolError("bad_audio_format", str(e)) from None
        ready = Ready(
            session_id=self.session_id,
            resumed=resumed,
            next_utterance_index=first_index,
            sample_rate=msg.sample_rate,
            encoding=msg.encoding,
            channels=msg.channels,
            source_lang=msg.source_lang,
            target_lang=targets[0] if targets else None,
            target_langs=targets,
            translate=msg.translate,
            resume_token=token,
            broadcast=announce(self.state, viewer_token),
        )
        out: list[Output] = []
        if prior is not None and prior.open_utterance_index is not None:
            # the connection before this one began an utterance and never ended it (its gateway died, or it
            # is being closed now): close it on the STT side with what it has
            out.append(
                Produce(
                    AudioEvent(
                        session_id=self.session_id,
                        utterance_index=prior.open_utterance_index,
                        utterance_id=utterance_id(self.session_id, prior.open_utterance_index, prior.epoch),
                        seq=TAKEOVER_SEQ,
                        kind=AudioEventKind.END,
                        pcm=b"",
                        audio_offset_ms=start_ms,
                        end_reason="takeover",
                        gateway_id=self.gateway_id,
                    )
                )
            )
        return [*out, SaveState(self.state, durable=True), ToClient(ready)]

    def _broadcast_control(self, msg: RotateViewerToken | EndBroadcast) -> list[Output]:
        assert self.state is not None
        told = control(self.state, msg, self._secret)
        # stored before the speaker hears of it: no viewer is let in by the old token once it has the new one
        return [*self._save(durable=True), ToClient(told)]

    def authorize_resume(self, msg: Start, prior: SessionState | None, owner: str) -> str:
        """Session ids are issued by the server, and resuming needs the secret token of the latest ``ready``
        and the principal that started the session. Returns the token for this connection's ``ready``: a
        new one for a new session and for every resume (so a token that leaked is spent by the owner's
        next reconnect). A stranger learns nothing: a session that does not exist and a wrong token get
        the same answer."""
        if msg.session_id is None:
            return self._secret(32)
        given = secret_digest(msg.resume_token) if msg.resume_token else ""
        stored = prior.resume_token_sha256 if prior is not None else None
        # compared even when there is nothing to compare with: the answer takes as long either way
        matches = hmac.compare_digest(given, stored or secret_digest(self._secret(16)))
        if prior is None or not stored or not matches:
            raise ProtocolError(
                "unknown_session",
                f"no session {msg.session_id!r} that this resume_token resumes (ids and tokens are issued in"
                " 'ready', a new token on every resume); start without a session_id for a new session",
            )
        if prior.owner is not None and prior.owner != owner:
            raise ProtocolError("forbidden", "this session was started with another API key or JWT subject")
        return self._secret(32)

    def handle(self, msg: Control) -> list[Output]:
        if isinstance(msg, Ping):
            return [ToClient(Pong(time_ms=self._clock_ms()))]
        if not self.started or self.state is None:
            raise ProtocolError("not_started", f"send a start message before {msg.type}")
        if isinstance(msg, RotateViewerToken | EndBroadcast):
            return self._broadcast_control(msg)
        if isinstance(msg, SetLangs):
            st = self.state
            targets = msg.targets
            if (st.translate if msg.translate is None else msg.translate) and not targets:
                raise ProtocolError("invalid_message", "translate=true needs a target_lang (or target_langs)")
            st.source_lang = msg.source_lang
            st.target_lang, st.target_langs = (targets[0] if targets else None), targets
            if msg.translate is not None:
                st.translate = msg.translate
            langs = Langs(
                source_lang=st.source_lang, target_lang=st.target_lang, target_langs=targets, translate=st.translate
            )
            return [*self._save(), ToClient(langs)]
        reason = "flush" if isinstance(msg, Flush) else "stop"
        out = self.segments(self._pipeline(msg.type).flush(reason))
        if isinstance(msg, Stop):
            self.stopped = True
            out += [*self._save(connected=False), ToClient(Stopped(pending=sorted(self.pending)))]
        return out

    def disconnect(self) -> list[Output]:
        """The connection is gone: end its open utterance; its state says it is away (unless superseded)."""
        if self.pipeline is None or self.stopped or self.closed:
            return []
        self.closed = True
        out = self.segments(self.pipeline.flush("disconnect"))
        return [*out, *self._save(connected=False)]

    def keepalive(self) -> list[Output]:
        """The state again with a fresh ``updated_at_ms``, so a live session is never expired."""
        if not self.started or self.closed:
            return []
        return self._save(connected=not self.stopped)

    # -- audio ------------------------------------------------------------------------------------
    def frame_seconds(self, nbytes: int) -> float:
        """Seconds of audio in a binary frame of the declared format."""
        st = self.state
        if st is None:
            return 0.0
        width = 4 if st.encoding == "pcm_f32le" else 2
        return nbytes / (st.input_sample_rate_hz * st.channels * width)

    def audio(self, data: bytes) -> list[Output]:
        return self.segments(self.analyse(data))

    def analyse(self, data: bytes) -> list[SegmentEvent]:
        """Resample and run the VAD over a frame: the CPU-heavy half of :meth:`audio`, touching only the
        pipeline, so the server may run it off the event loop (one frame at a time per session)."""
        pipeline = self._pipeline("audio frames")
        if self.stopped or self.closed:
            raise ProtocolError("stopped", "the session was stopped; open a new one to send more audio")
        self.audio_bytes_in += len(data)
        try:
            return pipeline.feed(data)
        except AudioFormatError as e:
            raise ProtocolError("bad_audio", str(e)) from None

    def segments(self, events: list[SegmentEvent]) -> list[Output]:
        """The outputs for segmenter events (from :meth:`analyse` or a flush)."""
        st = self.state
        assert st is not None and self.session_id is not None
        out: list[Output] = []
        for e in events:
            idx = e.utterance_index
            uid = utterance_id(self.session_id, idx, self.epoch)
            if isinstance(e, Chunk) and e.seq == 0:
                if len(self.pending) >= self.s.max_pending_utterances:
                    self._dropped.add(idx)
                    if not self._overload_reported:
                        self._overload_reported = True
                        out.append(
                            ToClient(
                                ErrorMsg(
                                    code="overloaded",
                                    message=f"{len(self.pending)} utterances await transcription;"
                                    " new speech is dropped until they finish",
                                )
                            )
                        )
                else:
                    # reserve the index before any of its audio reaches Kafka: a later connection of this
                    # session never reuses it, even if this gateway dies the next moment
                    st.next_utterance_index = idx + 1
                    st.open_utterance_index = idx
                    out += self._save()  # stored before the utterance's audio: the outbox keeps the order
                    out.append(
                        ToClient(UtteranceStart(utterance_id=uid, utterance_index=idx, audio_start_ms=e.offset_ms))
                    )
            if idx in self._dropped:
                if isinstance(e, End):
                    self._dropped.discard(idx)
                    st.next_utterance_index = idx + 1
                continue
            assert self.session_id is not None
            target_lang, target_langs, translate = wanted(st, self.audience_langs)
            event = partial(  # what every event of this utterance carries
                AudioEvent,
                session_id=self.session_id,
                utterance_index=idx,
                source_lang=st.source_lang,
                target_lang=target_lang,
                target_langs=target_langs,
                translate=translate,
                gateway_id=self.gateway_id,
                utterance_id=uid,
                realtime=self.realtime,
                created_at_ms=self._clock_ms(),
            )
            if isinstance(e, Chunk):
                first = e.seq == 0  # the first chunk carries the client's prompt and where speech began
                chunk = event(
                    seq=e.seq,
                    kind=AudioEventKind.CHUNK,
                    pcm=e.pcm,
                    audio_offset_ms=e.offset_ms,
                    prompt=st.prompt if first else None,
                    hotwords=st.hotwords if first else None,
                    speech_start_ms=e.speech_start_ms if first else None,
                )
                out.append(Produce(chunk))
                continue
            # PAUSE and END: no audio, where speech began and ended so far
            marker = event(
                seq=e.seq,
                kind=AudioEventKind.PAUSE if isinstance(e, Pause) else AudioEventKind.END,
                pcm=b"",
                audio_offset_ms=e.offset_ms,
                end_reason=e.reason if isinstance(e, End) else None,
                speech_start_ms=e.speech_start_ms,
                speech_end_ms=e.speech_end_ms,
            )
            out.append(Produce(marker))
            if isinstance(e, End):
                self.pending.add(idx)
                st.next_utterance_index = max(st.next_utterance_index, idx + 1)
                st.open_utterance_index = None
                out.append(
                    ToClient(
                        UtteranceEnd(utterance_id=uid, utterance_index=idx, reason=e.reason, audio_end_ms=e.offset_ms)
                    )
                )
                out += self._save()
        return out

    def _save(self, connected: bool = True, durable: bool = False) -> list[Output]:
        """The session state to store, or nothing once another connection owns the session."""
        st = self.state
        assert st is not None and self.pipeline is not None
        if self.superseded:
            return []
        st.audio_ms_total = self.pipeline.segmenter.clock_ms
        st.updated_at_ms = self._clock_ms()
        st.connected = connected
        st.gateway_id = self.gateway_id
        return [SaveState(SessionState(**st.to_avro()), durable)]

    # -- results ----------------------------------------------------------------------------------
    def result(self, r: Result) -> ServerMessage | None:
        """The client message for a result of this session, or None for duplicates, unwanted kinds and a
        broadcast's translations for its viewers only."""
        if self.state is not None and not asked(self.state, r):
            return None
        if r.kind is ResultKind.REALTIME:
            if not self.realtime or (ResultKind.FINAL, r.utterance_id, None) in self.delivered:
                return None
            return result_message(r)
        key = delivery_key(r)
        if key in self.delivered:
            return None  # redelivered after a worker failover
        self.delivered.add(key)
        ends_utterance = r.kind is ResultKind.FINAL or (r.error is not None and r.error.code == "stt_failed")
        if ends_utterance:
            self.pending.discard(r.utterance_index)
            if len(self.pending) < self.s.max_pending_utterances:
                self._overload_reported = False
        return result_message(r)
