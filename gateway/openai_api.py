"""The OpenAI-compatible audio API on the gateway's HTTP port (``HEALTH_PORT``).

A request becomes a session like a WebSocket one: the uploaded file is decoded with PyAV (any container
ffmpeg reads), run through the same resampler, VAD and segmenter, and its utterances go through Kafka to
the STT (and translation) workers, so they are replayable and reach analytics; the answer is assembled
from the session's finals (and translations). Same credentials and session limits as the WebSocket.
Audio goes in as fast as the workers take it: never more than MAX_PENDING_UTTERANCES - 1 of its
utterances wait for a final, so none is dropped as ``overloaded``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Literal

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage
from prometheus_client import Counter, Histogram

from gateway.auth import ANONYMOUS, AuthError, Principal
from gateway.link import ClientLink, SessionHost
from gateway.session import ClientSession
from schemas.messages import ErrorMsg, Final, ProtocolError, ServerMessage, Start, Stop, TranslationOut
from schemas.openai_api import API_MODEL_ALIASES, ApiError, AudioRequest, ModelCard, ModelList, render
from schemas.records import AUDIO_BYTES_PER_S, AUDIO_SAMPLE_RATE_HZ, PCM16_SAMPLE_BYTES
from schemas.subtitles import Cue, transcript_cues
from streams.errors import KafkaRejected, KafkaUnavailable

log = logging.getLogger(__name__)

REQUESTS = Counter("babelstream_api_requests_total", "OpenAI-compatible API requests", ["endpoint", "status"])
REQUEST_S = Histogram(
    "babelstream_api_request_seconds", "OpenAI-compatible audio requests, upload to answer", ["endpoint"]
)
AUDIO_BLOCK_BYTES = 8000  # 0.25 s of 16 kHz PCM16 per VAD step (at most one utterance can end in one)
MAX_FORM_FIELDS = 32
MAX_FIELD_BYTES = 8192
SESSION_HEADER = "X-Babelstream-Session"
BUSY_CODES = {"server_busy": 503, "too_many_sessions": 429}


def refused(e: ProtocolError) -> ApiError:
    """A session the gateway's limits refuse (server_busy, too_many_sessions), as the API answers it."""
    return ApiError(BUSY_CODES.get(e.code, 400), e.message, code=e.code, type="server_error")


def decode_upload(data: bytes, max_audio_s: float) -> bytes:
    """16 kHz mono PCM16 of an uploaded file in any container and codec PyAV (ffmpeg) reads, decoded frame
    by frame and refused as soon as it passes ``max_audio_s`` (a small file may hold hours of audio)."""
    import av

    limit_bytes = int(max_audio_s * AUDIO_SAMPLE_RATE_HZ) * PCM16_SAMPLE_BYTES
    out = bytearray()
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise ApiError(400, "the file holds no audio stream", code="invalid_file", param="file")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_SAMPLE_RATE_HZ)
            for frame in container.decode(audio=0):
                for piece in resampler.resample(frame):
                    out += piece.to_ndarray().tobytes()
                if len(out) > limit_bytes:
                    raise ApiError(
                        400, f"the audio is longer than API_MAX_AUDIO_S={max_audio_s:g} s", code="audio_too_long"
                    )
            for piece in resampler.resample(None):
                out += piece.to_ndarray().tobytes()
    except ApiError:
        raise
    except Exception as e:  # PyAV raises its own errors for every kind of unreadable input
        raise ApiError(400, f"could not decode the audio file: {e}", code="invalid_file", param="file") from None
    if not out:
        raise ApiError(400, "the audio file holds no audio", code="invalid_file", param="file")
    return bytes(out[:limit_bytes])


class UploadLink(ClientLink):
    """A session that an HTTP request holds: the messages for the client are kept for the answer instead
    of sent. Its audio goes as fast as the workers take it (no pacer of its own; KEY_REALTIME_FACTOR
    still applies), and nobody reads a ``rate_limited`` notice."""

    def __init__(self, session: ClientSession, principal: Principal) -> None:
        super().__init__(session, principal, pacer=None, tells_pacing=False)
        self.changed = asyncio.Event()
        self.fatal: ErrorMsg | None = None
        self.finals: dict[int, Final] = {}
        self.translations: dict[int, TranslationOut] = {}
        self.errors: dict[int, ErrorMsg] = {}

    def enqueue(self, msg: ServerMessage) -> None:
        if isinstance(msg, Final):
            self.finals[msg.utterance_index] = msg
        elif isinstance(msg, TranslationOut):
            self.translations[msg.utterance_index] = msg
        elif isinstance(msg, ErrorMsg) and msg.utterance_index is not None:
            self.errors[msg.utterance_index] = msg
        elif isinstance(msg, ErrorMsg) and msg.fatal:
            self.fatal = msg
        self.changed.set()

    def close_with(self, error: ErrorMsg, code: int = 1008) -> None:
        self.fatal = error
        self.changed.set()

    async def until(self, ready: bool, timeout_s: float) -> None:
        """Wait for the next message unless ``ready``; raise when none comes for ``timeout_s``."""
        if self.fatal is not None:
            status = 409 if self.fatal.code == "session_taken_over" else 503
            raise ApiError(status, self.fatal.message, code=self.fatal.code, type="server_error")
        if ready:
            return
        self.changed.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await self.changed.wait()
        except TimeoutError:
            raise ApiError(
                504,
                f"no result for API_TIMEOUT_S={timeout_s:g} s: are the workers running?",
                code="timeout",
                type="server_error",
            ) from None


class AudioApi:
    def __init__(self, gateway: SessionHost) -> None:
        self.gw = gateway
        s = gateway.s
        self.model_name = (s.model_path.name if s.model_path else s.model_size) or "whisper"
        self.models = list(dict.fromkeys([*API_MODEL_ALIASES, self.model_name]))
        self._working = 0  # requests past admission, being read, decoded, transcribed

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/audio/transcriptions", self.transcriptions)
        app.router.add_post("/v1/audio/translations", self.translations)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_get("/v1/models/{model}", self.get_model)

    async def transcriptions(self, request: web.Request) -> web.Response:
        return await self._answer(request, "transcribe")

    async def translations(self, request: web.Request) -> web.Response:
        return await self._answer(request, "translate")

    async def list_models(self, request: web.Request) -> web.Response:
        return await self._respond(request, "models", self._models)

    async def get_model(self, request: web.Request) -> web.Response:
        return await self._respond(request, "models", self._model)

    async def _models(self, request: web.Request) -> web.Response:
        self._principal(request)
        body = ModelList(data=[ModelCard(id=m) for m in self.models])
        return web.Response(text=body.model_dump_json(), content_type="application/json")

    async def _model(self, request: web.Request) -> web.Response:
        self._principal(request)
        name = request.match_info["model"]
        if name not in self.models:
            raise ApiError(404, f"the model {name!r} does not exist", code="model_not_found", param="model")
        return web.Response(text=ModelCard(id=name).model_dump_json(), content_type="application/json")

    async def _answer(self, request: web.Request, task: Literal["transcribe", "translate"]) -> web.Response:
        endpoint = "transcriptions" if task == "transcribe" else "translations"
        t0 = time.monotonic()
        try:
            return await self._respond(request, endpoint, lambda r: self._run(r, task))
        finally:
            REQUEST_S.labels(endpoint).observe(time.monotonic() - t0)

    async def _respond(
        self, request: web.Request, endpoint: str, handle: Callable[[web.Request], Awaitable[web.Response]]
    ) -> web.Response:
        """OpenAI-shaped errors for every way a request can fail; counted by endpoint and status."""
        try:
            response = await handle(request)
        except ApiError as e:
            response = web.json_response(e.body(), status=e.status)
        except KafkaUnavailable:
            away = ApiError(
                503, "the message broker cannot be reached; try again shortly", code="unavailable", type="server_error"
            )
            response = web.json_response(away.body(), status=away.status)
        except KafkaRejected as e:
            log.error("API request %s: Kafka refused its data: %s", request.path, e)
            refused = ApiError(
                502, f"the message broker refused the request's data: {e}", code="rejected", type="server_error"
            )
            response = web.json_response(refused.body(), status=refused.status)
        except Exception:
            log.exception("API request %s failed", request.path)
            failed = ApiError(500, "internal error", code="internal", type="server_error")
            response = web.json_response(failed.body(), status=failed.status)
        REQUESTS.labels(endpoint, str(response.status)).inc()
        return response

    def _principal(self, request: web.Request) -> Principal:
        try:
            return self.gw.auth.authenticate(request.headers.get("Authorization"), request.path_qs)
        except AuthError as e:
            if not self.gw.auth.required:
                return ANONYMOUS  # OpenAI's clients always send some key: with no keys set up, any will do
            raise ApiError(e.status, e.message, code="invalid_api_key") from None

    async def _form(self, request: web.Request) -> tuple[dict[str, list[str]], bytes]:
        """The text fields and the file of a multipart form, each bounded."""
        if not request.content_type.startswith("multipart/"):
            raise ApiError(400, "send the audio as multipart/form-data with a 'file' part", code="invalid_request")
        try:
            return await self._read_form(request)
        except (ValueError, BadHttpMessage) as e:  # aiohttp's word for a truncated or ill-formed body
            raise ApiError(400, f"the multipart form is malformed: {e}", code="invalid_request") from None

    async def _read_form(self, request: web.Request) -> tuple[dict[str, list[str]], bytes]:
        limit = self.gw.s.api_max_upload_bytes
        fields: dict[str, list[str]] = defaultdict(list)
        data: bytes | None = None
        reader = await request.multipart()
        for count in range(MAX_FORM_FIELDS + 1):
            part = await reader.next()
            if part is None:
                break
            if count == MAX_FORM_FIELDS:
                raise ApiError(400, f"more than {MAX_FORM_FIELDS} form fields", code="invalid_request")
            if not isinstance(part, BodyPartReader) or not part.name:
                raise ApiError(400, "nested or unnamed form parts are not accepted", code="invalid_request")
            if part.name == "file":
                buf = bytearray()
                while chunk := await part.read_chunk(1 << 16):
                    buf += chunk
                    if len(buf) > limit:
                        raise ApiError(
                            413, f"the file is over API_MAX_UPLOAD_BYTES={limit}", code="file_too_large", param="file"
                        )
                data = bytes(buf)
            else:
                value = bytearray()
                while chunk := await part.read_chunk():
                    value += chunk
                    if len(value) > MAX_FIELD_BYTES:
                        raise ApiError(
                            400, f"form field {part.name!r} is too long", code="invalid_value", param=part.name
                        )
                fields[part.name].append(value.decode("utf-8", errors="replace"))
        if data is None:
            raise ApiError(400, "the form has no 'file'", code="invalid_request", param="file")
        return fields, data

    async def _run(self, request: web.Request, task: Literal["transcribe", "translate"]) -> web.Response:
        principal = self._principal(request)
        try:
            self.gw.admissible(principal)  # limits first: a refused request costs no upload and no decoding
        except ProtocolError as e:
            raise refused(e) from None
        if self._working >= self.gw.s.api_max_concurrent_requests:
            raise ApiError(
                429,
                f"API_MAX_CONCURRENT_REQUESTS={self.gw.s.api_max_concurrent_requests} requests are being"
                " transcribed here; retry shortly",
                code="rate_limit_exceeded",
                type="requests",
            )
        self._working += 1
        try:
            return await self._transcribe(request, principal, task)
        finally:
            self._working -= 1

    async def _transcribe(
        self, request: web.Request, principal: Principal, task: Literal["transcribe", "translate"]
    ) -> web.Response:
        fields, data = await self._form(request)
        req = AudioRequest.from_form(fields, translation=task == "translate")
        if req.model not in self.models:
            raise ApiError(
                400,
                f"model {req.model!r} is not served here; GET /v1/models lists {self.models}",
                code="model_not_found",
                param="model",
            )
        pcm = await asyncio.to_thread(decode_upload, data, self.gw.s.api_max_audio_s)
        conn = await self._open(principal, req, task)
        try:
            await self._feed(conn, pcm)
            cues, language = await self._collect(conn, task)
        finally:
            await self.gw.release(conn)
        body, content_type = render(req, cues, task=task, language=language, duration_s=len(pcm) / AUDIO_BYTES_PER_S)
        response = web.Response(text=body, content_type=content_type.split(";")[0], charset="utf-8")
        response.headers[SESSION_HEADER] = conn.session.session_id or ""  # its records on Kafka: replay, export
        return response

    async def _open(self, principal: Principal, req: AudioRequest, task: str) -> UploadLink:
        gw = self.gw
        session = ClientSession(gw.s, gw.gateway_id, gw.vad)
        conn = UploadLink(session, principal)
        translate = task == "translate"
        start = Start(
            type="start",
            sample_rate=AUDIO_SAMPLE_RATE_HZ,
            source_lang=req.language,
            target_lang="en" if translate else None,
            translate=translate,
            prompt=req.prompt or None,
            realtime=False,
        )
        try:
            outputs = await gw.begin(conn, start)
        except ProtocolError as e:
            raise refused(e) from None
        try:
            await gw.apply(conn, outputs)
        except BaseException:
            await gw.release(conn)
            raise
        return conn

    async def _feed(self, conn: UploadLink, pcm: bytes) -> None:
        gw, session = self.gw, conn.session
        most = max(1, gw.s.max_pending_utterances - 1)
        for off in range(0, len(pcm), AUDIO_BLOCK_BYTES):
            while len(session.pending) >= most:  # the workers are behind: wait for a final
                await conn.until(False, gw.s.api_timeout_s)
            block = pcm[off : off + AUDIO_BLOCK_BYTES]
            await gw.pace(conn, len(block) / AUDIO_BYTES_PER_S)
            await gw.apply(conn, session.segments(await asyncio.to_thread(session.analyse, block)))
        await gw.apply(conn, session.handle(Stop(type="stop")))

    async def _collect(self, conn: UploadLink, task: str) -> tuple[list[Cue], str | None]:
        """Wait for every utterance's final (and translation); the answer's cues and language."""
        session = conn.session

        def complete() -> bool:
            if session.pending:
                return False
            if task != "translate":
                return True
            return all(i in conn.translations or i in conn.errors for i, f in conn.finals.items() if f.text.strip())

        while True:
            await conn.until(complete(), self.gw.s.api_timeout_s)
            if complete():
                break
        if conn.errors:
            first = conn.errors[min(conn.errors)]
            raise ApiError(
                502, f"utterance {first.utterance_index}: {first.message}", code=first.code, type="server_error"
            )
        finals = [conn.finals[i] for i in sorted(conn.finals)]
        seconds: dict[str, float] = defaultdict(float)
        for f in finals:
            if f.language:
                seconds[f.language] += f.audio_end_ms - f.audio_start_ms
        language = max(seconds, key=seconds.__getitem__) if seconds else None
        if task == "translate":
            cues = [
                Cue(f.audio_start_ms, f.audio_end_ms, conn.translations[f.utterance_index].text.strip())
                for f in finals
                if f.utterance_index in conn.translations
            ]
            return cues, language
        return transcript_cues(finals), language
