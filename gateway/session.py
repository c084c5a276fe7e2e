"""One client's session, sans I/O: protocol messages and audio in, outputs (messages for the client,
audio events and session state for Kafka) out. The server (``gateway/server.py``) performs the I/O."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from babelstream.audio.pipeline import SpeechPipeline
from babelstream.audio.resample import AudioFormatError
from babelstream.audio.segmenter import Chunk, End, SegmenterConfig, SegmentEvent
from babelstream.audio.vad import DualVad
from babelstream.settings import Settings
from schemas.messages import (
    ErrorMsg,
    Flush,
    Langs,
    Ping,
    Pong,
    ProtocolError,
    Ready,
    ServerMessage,
    SetLangs,
    Start,
    Stop,
    Stopped,
    UtteranceEnd,
    UtteranceStart,
    result_message,
)
from schemas.records import AudioEvent, AudioEventKind, Result, ResultKind, SessionState, now_ms, utterance_id


@dataclass(frozen=True)
class ToClient:
    message: ServerMessage


@dataclass(frozen=True)
class Produce:
    event: AudioEvent


@dataclass(frozen=True)
class SaveState:
    state: SessionState


Output = ToClient | Produce | SaveState


class ClientSession:
    def __init__(self, settings: Settings, gateway_id: str, vad_factory: Callable[[], DualVad]) -> None:
        self.s = settings
        self.gateway_id = gateway_id
        self._vad_factory = vad_factory
        self.session_id: str | None = None
        self.state: SessionState | None = None
        self.pipeline: SpeechPipeline | None = None
        self.realtime = True
        self.stopped = False
        self.pending: set[int] = set()  # utterances sent to STT, FINAL not yet received
        self.delivered: set[tuple[ResultKind, int]] = set()
        self._dropped: set[int] = set()
        self._overload_reported = False
        self.audio_bytes_in = 0

    @property
    def started(self) -> bool:
        return self.pipeline is not None

    # -- control messages ---------------------------------------------------------------------------
    def start(self, msg: Start, prior: SessionState | None) -> list[Output]:
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
        if msg.translate and not msg.target_lang:
            raise ProtocolError("invalid_message", "translate=true needs a target_lang")
        resumed = prior is not None
        if prior is not None:  # fields the client does not repeat carry over from the stored session
            given = msg.model_fields_set
            msg = msg.model_copy(
                update={
                    f: getattr(prior, f)
                    for f in ("source_lang", "target_lang", "translate")
                    if f not in given and getattr(prior, f) is not None
                }
            )
        self.session_id = msg.session_id or uuid.uuid4().hex
        first_index = prior.next_utterance_index if prior else 0
        start_ms = prior.audio_ms_total if prior else 0
        self.state = SessionState(
            session_id=self.session_id,
            gateway_id=self.gateway_id,
            input_sample_rate_hz=msg.sample_rate,
            next_utterance_index=first_index,
            source_lang=msg.source_lang,
            target_lang=msg.target_lang,
            translate=msg.translate,
            channels=msg.channels,
            encoding=msg.encoding,
            audio_ms_total=start_ms,
            created_at_ms=prior.created_at_ms if prior else now_ms(),
        )
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
            target_lang=msg.target_lang,
            translate=msg.translate,
        )
        return [SaveState(self.state), ToClient(ready)]

    def handle(self, msg: SetLangs | Flush | Stop | Ping) -> list[Output]:
        if isinstance(msg, Ping):
            return [ToClient(Pong(time_ms=now_ms()))]
        if not self.started or self.state is None:
            raise ProtocolError("not_started", f"send a start message before {msg.type}")
        if isinstance(msg, SetLangs):
            st = self.state
            st.source_lang = msg.source_lang
            st.target_lang = msg.target_lang
            if msg.translate is not None:
                st.translate = msg.translate
            if st.translate and not st.target_lang:
                raise ProtocolError("invalid_message", "translate=true needs a target_lang")
            return [
                self._save(),
                ToClient(Langs(source_lang=st.source_lang, target_lang=st.target_lang, translate=st.translate)),
            ]
        reason = "flush" if isinstance(msg, Flush) else "stop"
        out = self._segments(self.pipeline.flush(reason))  # type: ignore[union-attr]
        if isinstance(msg, Stop):
            self.stopped = True
            out += [self._save(connected=False), ToClient(Stopped(pending=sorted(self.pending)))]
        return out

    def disconnect(self) -> list[Output]:
        if not self.started or self.stopped:
            return []
        out = self._segments(self.pipeline.flush("disconnect"))  # type: ignore[union-attr]
        return [*out, self._save(connected=False)]

    # -- audio ------------------------------------------------------------------------------------
    def audio(self, data: bytes) -> list[Output]:
        if not self.started:
            raise ProtocolError("not_started", "send a start message before audio frames")
        if self.stopped:
            raise ProtocolError("stopped", "the session was stopped; open a new one to send more audio")
        self.audio_bytes_in += len(data)
        try:
            return self._segments(self.pipeline.feed(data))  # type: ignore[union-attr]
        except AudioFormatError as e:
            raise ProtocolError("bad_audio", str(e)) from None

    def _segments(self, events: list[SegmentEvent]) -> list[Output]:
        st = self.state
        assert st is not None and self.session_id is not None
        out: list[Output] = []
        for e in events:
            idx = e.utterance_index
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
                    out.append(
                        ToClient(
                            UtteranceStart(
                                utterance_id=utterance_id(self.session_id, idx),
                                segment_id=idx,
                                audio_start_ms=e.offset_ms,
                            )
                        )
                    )
            if idx in self._dropped:
                if isinstance(e, End):
                    self._dropped.discard(idx)
                    st.next_utterance_index = idx + 1
                continue
            common = dict(
                session_id=self.session_id,
                utterance_index=idx,
                source_lang=st.source_lang,
                target_lang=st.target_lang,
                translate=st.translate,
                gateway_id=self.gateway_id,
            )
            if isinstance(e, Chunk):
                out.append(
                    Produce(
                        AudioEvent(
                            seq=e.seq, kind=AudioEventKind.CHUNK, pcm=e.pcm, audio_offset_ms=e.offset_ms, **common
                        )
                    )
                )  # type: ignore[arg-type]
            else:
                out.append(
                    Produce(
                        AudioEvent(
                            seq=e.seq,
                            kind=AudioEventKind.END,
                            pcm=b"",
                            audio_offset_ms=e.offset_ms,
                            end_reason=e.reason,
                            **common,
                        )
                    )
                )  # type: ignore[arg-type]
                self.pending.add(idx)
                st.next_utterance_index = idx + 1
                out.append(
                    ToClient(
                        UtteranceEnd(
                            utterance_id=utterance_id(self.session_id, idx),
                            segment_id=idx,
                            reason=e.reason,
                            audio_end_ms=e.offset_ms,
                        )
                    )
                )
                out.append(self._save())
        return out

    def _save(self, connected: bool = True) -> SaveState:
        st = self.state
        assert st is not None and self.pipeline is not None
        st.audio_ms_total = self.pipeline.segmenter.clock_ms
        st.updated_at_ms = now_ms()
        st.connected = connected
        st.gateway_id = self.gateway_id
        return SaveState(SessionState(**st.to_avro()))

    # -- results ----------------------------------------------------------------------------------
    def result(self, r: Result) -> ServerMessage | None:
        """The client message for a result of this session, or None for duplicates and unwanted kinds."""
        if r.kind is ResultKind.REALTIME:
            if not self.realtime or (ResultKind.FINAL, r.utterance_index) in self.delivered:
                return None
            return result_message(r)
        key = (r.kind, r.utterance_index)
        if key in self.delivered:
            return None  # redelivered after a worker failover
        self.delivered.add(key)
        ends_utterance = r.kind is ResultKind.FINAL or (r.error is not None and r.error.code == "stt_failed")
        if ends_utterance:
            self.pending.discard(r.utterance_index)
            if len(self.pending) < self.s.max_pending_utterances:
                self._overload_reported = False
        return result_message(r)
