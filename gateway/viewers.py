"""A broadcast's viewers on this gateway: who is let in, what each one is sent, and the audience records.

The I/O shell around :mod:`gateway.captions` (a language's captions, made once for all its viewers),
:mod:`gateway.audience` (who watches what, through the audiences topic) and :func:`gateway.broadcast.may_watch`.
A viewer (:class:`ViewerLink`, carried by WebSocket or Server-Sent Events: :mod:`gateway.watch`) names a
broadcast, its token and a language; it gets ``watching``, the transcript so far, ``live``, then live
captions. Each viewer's queue is bounded (past ``VIEWER_QUEUE_MAX`` captions unread it is dropped, never
slowing the others; the transcript it joins with does not count against it). Viewers are counted apart
from speakers' sessions (``MAX_VIEWERS`` per gateway, ``MAX_VIEWERS_PER_BROADCAST`` on all gateways
together, ``MAX_BROADCAST_LANGS`` per broadcast). Rotating the viewer token lets go of the viewers
holding the old one; ending the broadcast (or its session's expiry) sends them ``ended``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable

from core.settings import Settings
from gateway import metrics as m
from gateway.audience import AudienceIndex, LocalAudience, Tombstone
from gateway.broadcast import may_watch
from gateway.captions import CaptionChannel, LoadOverflow, Sent, sent
from gateway.store import SessionStore
from schemas.messages import ErrorMsg, ProtocolError
from schemas.records import Audience, Result, SessionState, now_ms
from schemas.viewers import BroadcastInfo, Ended, Live, ViewerOut, Watch, Watching

log = logging.getLogger(__name__)

Key = tuple[str, str | None]  # (session id, language) of a channel
LOAD_TIMEOUT_S = 60.0  # a transcript not read from the results topic in this long: its viewers are told
END_DRAIN_S = 15.0  # an ended broadcast's last finals are awaited this long before its viewers get ended


class ViewerLink(ABC):
    """One viewer. What it is sent waits in :attr:`items`; its carrier's writer takes them out
    (:meth:`next`). ``None`` ends the stream."""

    def __init__(self, queue_max: int, backlog_max: int = 20_000) -> None:
        self.queue_max = queue_max
        self.backlog_max = backlog_max  # transcript items waiting, at most (a channel keeps no more)
        self.items: deque[tuple[Sent | None, bool]] = deque()  # (item, of the transcript it joined with)
        self._backlog = 0  # items of the transcript it joined with waiting: not counted against queue_max
        self._ready = asyncio.Event()
        self.key: Key | None = None  # the channel it reads
        self.broadcast_id: str | None = None
        self.token_sha256: str | None = None
        self.after = -1  # the last position it has (a reconnect's)
        self.slow = False
        self.ended = False  # its stream was ended (fatal error, ended broadcast, dropped)

    def send(self, item: Sent, backlog: bool = False) -> None:
        if self.ended:
            return
        waiting, limit = (
            (self._backlog, self.backlog_max) if backlog else (len(self.items) - self._backlog, self.queue_max)
        )
        if waiting >= limit:
            self.slow = True
            m.VIEWERS_DROPPED.labels("slow").inc()
            log.info("dropping a slow viewer of %s (%d captions unread)", self.broadcast_id, len(self.items))
            self.items.clear()
            self._backlog = 0
            self.end()
            self.abort()
            return
        self._backlog += backlog
        self.items.append((item, backlog))
        self._ready.set()

    def send_msg(self, msg: ViewerOut) -> None:
        self.send(sent(msg))

    def end(self, last: ViewerOut | None = None) -> None:
        """Send ``last`` (an error, ``ended``), then end the stream."""
        if self.ended:
            return
        if last is not None:
            self.items.append((sent(last), False))
        self.items.append((None, False))
        self.ended = True
        self._ready.set()

    async def next(self) -> Sent | None:
        while not self.items:
            self._ready.clear()
            await self._ready.wait()
        item, backlog = self.items.popleft()
        if backlog:
            self._backlog -= 1
        return item

    @abstractmethod
    def abort(self) -> None:
        """Close the connection now (a slow viewer): what is unsent is dropped."""


class Viewers:
    """This gateway's viewers (see the module's docstring)."""

    def __init__(
        self,
        settings: Settings,
        gateway_id: str,
        store: SessionStore,
        read_results: Callable[[str], Awaitable[list[tuple[int, Result]]]],
        write_audience: Callable[[Audience], Awaitable[Awaitable[object]]],
        delete_audience: Callable[[str, str], Awaitable[Awaitable[object]]],
        reachable: Callable[[str | None], frozenset[str]],
        on_audience: Callable[[str | None], None],
    ) -> None:
        """``read_results(session_id)``: its results so far with their positions; ``reachable(source)``:
        the languages a broadcast spoken in ``source`` (None: not said) can be read in; ``on_audience(sid)``:
        a session's audience changed (its speaker's gateway asks for other languages; None: any may have,
        as time passed)."""
        self.s = settings
        self.gateway_id = gateway_id
        self.store = store
        self.read_results = read_results
        self.write_audience = write_audience
        self.delete_audience = delete_audience
        self.reachable = reachable
        self.on_audience = on_audience
        grace_ms = int(settings.broadcast_lang_grace_s * 1000)
        self.refresh_s = settings.broadcast_lang_grace_s / 3
        self.local = LocalAudience(gateway_id, grace_ms, int(self.refresh_s * 1000))
        self.index = AudienceIndex(grace_ms, settings.max_broadcast_langs)
        self.connected = 0  # viewer connections, watching or yet to say what
        self.channels: dict[str, dict[str | None, CaptionChannel]] = {}  # by session, then language
        self.members: dict[Key, set[ViewerLink]] = {}
        self._idle_since: dict[Key, float] = {}  # channels nobody reads, since when (loop time)
        self._loads: set[asyncio.Task[None]] = set()
        self._ending: dict[str, asyncio.Task[None]] = {}  # broadcasts ended, their last finals awaited
        self._unwritten: list[Tombstone] = []  # tombstones a write failed (written again next round)
        self._wake = asyncio.Event()

    # -- admission --------------------------------------------------------------------------------
    def admit(self) -> bool:
        """Whether another viewer connection fits MAX_VIEWERS (then it is counted until :meth:`release`)."""
        if self.connected >= self.s.max_viewers:
            m.VIEWERS_REFUSED.labels("too_many_viewers").inc()
            return False
        self.connected += 1
        m.VIEWERS.set(self.connected)
        return True

    def release(self, link: ViewerLink) -> None:
        self._leave(link)
        link.end()
        self.connected -= 1
        m.VIEWERS.set(self.connected)

    async def watch(self, link: ViewerLink, msg: Watch) -> None:
        """Let the viewer in, or raise :class:`ProtocolError` (fatal) saying why not."""
        state = await self._watchable(msg.broadcast_id, msg.viewer_token)
        self._check_lang(state, msg.lang, fatal=True)
        if self._viewers(state) >= self.s.max_viewers_per_broadcast:
            m.VIEWERS_REFUSED.labels("broadcast_full").inc()
            raise ProtocolError(
                "broadcast_full",
                f"this broadcast has its {self.s.max_viewers_per_broadcast} viewers (MAX_VIEWERS_PER_BROADCAST)",
                fatal=True,
            )
        link.broadcast_id = msg.broadcast_id
        link.token_sha256 = state.viewer_token_sha256
        link.after = -1 if msg.after is None else msg.after
        self._join(link, state, msg.lang)

    async def describe(self, broadcast_id: str, viewer_token: str | None) -> BroadcastInfo:
        """What a viewer may know of a broadcast before watching it (``GET /v1/broadcasts/{id}``)."""
        state = await self._watchable(broadcast_id, viewer_token)
        return BroadcastInfo(
            broadcast_id=broadcast_id,
            source_lang=state.source_lang,
            langs=self.index.langs(state.session_id, now_ms()),
            viewers=self._viewers(state),
            ended=state.broadcast_ended,
        )

    def _viewers(self, state: SessionState) -> int:
        """The broadcast's viewers: on the other gateways (their records) and here (as they come)."""
        elsewhere = self.index.viewers(state.session_id, now_ms(), except_gateway=self.gateway_id)
        return elsewhere + self.local.viewers(state.broadcast_id or "")

    async def _watchable(self, broadcast_id: str, viewer_token: str | None) -> SessionState:
        try:
            state = await self.store.broadcast(broadcast_id, self.s.kafka_write_timeout_s)
        except TimeoutError:
            raise ProtocolError("unavailable", "the sessions topic cannot be read just now", fatal=True) from None
        if not may_watch(state, broadcast_id, viewer_token):
            m.VIEWERS_REFUSED.labels("unknown_broadcast").inc()
            raise ProtocolError(
                "unknown_broadcast", "no broadcast with this id that this viewer token watches", fatal=True
            )
        assert state is not None
        return state

    def set_lang(self, link: ViewerLink, lang: str | None) -> None:
        """The viewer reads on in ``lang``: the transcript so far again in it, then its live captions."""
        if link.key is None:
            raise ProtocolError("not_watching", "send watch first", fatal=True)
        state = self.store.states.get(link.key[0])
        if state is None:
            raise ProtocolError("broadcast_ended", "the broadcast is gone", fatal=True)
        self._check_lang(state, lang, fatal=False)
        self._leave(link)
        link.after = -1
        self._join(link, state, lang)

    def _check_lang(self, state: SessionState, lang: str | None, fatal: bool) -> None:
        if lang is None or lang == state.source_lang:
            return
        reachable = self.reachable(state.source_lang)
        if lang not in reachable:
            m.VIEWERS_REFUSED.labels("unsupported_language").inc()
            spoken = state.source_lang or "the speaker's language, detected"
            raise ProtocolError(
                "unsupported_language",
                f"no translation reaches {lang} from {spoken}; reachable: {', '.join(sorted(reachable)) or 'none'}",
                fatal=fatal,
            )
        watched = self._langs(state)
        if lang not in watched and len(watched) >= self.s.max_broadcast_langs:
            m.VIEWERS_REFUSED.labels("too_many_languages").inc()
            raise ProtocolError(
                "too_many_languages",
                f"this broadcast is read in its {self.s.max_broadcast_langs} languages (MAX_BROADCAST_LANGS):"
                f" {', '.join(watched)}; pick one of them",
                fatal=fatal,
            )

    def _langs(self, state: SessionState) -> list[str]:
        """The languages the broadcast is translated into: everywhere's, and this gateway's own as they are
        now (a language a viewer here just left is still in its grace period)."""
        langs = self.index.langs(state.session_id, now_ms())
        return list(dict.fromkeys([*langs, *self.local.langs(state.broadcast_id or "")]))

    # -- channels ---------------------------------------------------------------------------------
    def _join(self, link: ViewerLink, state: SessionState, lang: str | None) -> None:
        assert link.broadcast_id is not None
        key = (state.session_id, lang)
        link.key = key
        self.local.joined(link.broadcast_id, state.session_id, lang, now_ms())
        self._wake.set()  # its audience record goes out now: the speaker's gateway asks for the language
        link.send_msg(
            Watching(
                broadcast_id=link.broadcast_id,
                lang=lang,
                source_lang=state.source_lang,
                langs=self._langs(state),
                ended=state.broadcast_ended,
            )
        )
        self.members.setdefault(key, set()).add(link)
        self._idle_since.pop(key, None)
        channel = self._channel(key)
        if channel is None:
            channel = self.channels.setdefault(key[0], {})[lang] = CaptionChannel(lang)
            m.CHANNEL_LOADS.inc()
            task = asyncio.get_running_loop().create_task(self._load(key, channel))
            self._loads.add(task)
            task.add_done_callback(self._loads.discard)
        elif channel.loaded:
            self._caught_up(link, channel)

    def _leave(self, link: ViewerLink) -> None:
        key, link.key = link.key, None
        if key is None:
            return
        assert link.broadcast_id is not None
        self.local.left(link.broadcast_id, key[1], now_ms())
        self._wake.set()
        members = self.members.get(key)
        if members is not None:
            members.discard(link)
            if not members:
                del self.members[key]
                self._idle_since[key] = asyncio.get_running_loop().time()

    def _caught_up(self, link: ViewerLink, channel: CaptionChannel) -> None:
        """The transcript after the viewer's last position, ``live``, and ``ended`` if it is over."""
        backlog = channel.since(link.after)
        for item in backlog:
            link.send(item, backlog=True)
        link.send_msg(Live(position=backlog[-1].position if backlog and backlog[-1].position is not None else -1))
        m.BACKLOG_CAPTIONS.inc(len(backlog))
        assert link.key is not None
        state = self.store.states.get(link.key[0])
        if state is None or (state.broadcast_ended and state.session_id not in self._ending):
            link.end(Ended(broadcast_id=link.broadcast_id or ""))  # (while it drains, the drain ends it)

    async def _load(self, key: Key, channel: CaptionChannel) -> None:
        """Read the transcript so far into a new channel, then give it to the viewers who waited."""
        try:
            async with asyncio.timeout(LOAD_TIMEOUT_S):
                stored = await self.read_results(key[0])
            channel.load(stored)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # Kafka away, or a transcript past what a channel holds
            log.error("the transcript of session %s could not be read: %r", key[0], e)
            if self._channel(key) is channel:
                self._drop_channel(key, channel)
                for link in list(self.members.get(key, ())):
                    link.end(ErrorMsg(code="unavailable", message="the transcript cannot be read just now", fatal=True))
                    self._leave(link)
            return
        if self._channel(key) is not channel:
            return  # dropped meanwhile (nobody read it for the grace period): a newer one serves its viewers
        for link in list(self.members.get(key, ())):
            self._caught_up(link, channel)

    def _channel(self, key: Key) -> CaptionChannel | None:
        return self.channels.get(key[0], {}).get(key[1])

    def _loaded(self, key: Key) -> bool:
        channel = self._channel(key)
        return channel is not None and channel.loaded

    def _links_of(self, session_id: str, loaded_only: bool = False) -> list[ViewerLink]:
        """The viewers of a session's broadcast here (those of a loaded channel only: the others wait for
        their transcript)."""
        keys = [k for k in self.members if k[0] == session_id and (not loaded_only or self._loaded(k))]
        return [link for k in keys for link in self.members[k]]

    def _drop_channel(self, key: Key, channel: CaptionChannel | None = None) -> None:
        langs = self.channels.get(key[0], {})
        if key[1] in langs and (channel is None or langs[key[1]] is channel):
            del langs[key[1]]
            if not langs:
                del self.channels[key[0]]

    def deliver(self, r: Result, position: int) -> None:
        """A live result: to every viewer of its broadcast here, made once per language."""
        for lang, channel in list(self.channels.get(r.session_id, {}).items()):
            key = (r.session_id, lang)
            try:
                items = channel.result(position, r)
            except LoadOverflow as e:
                log.error("channel %s: %s", key, e)
                continue
            for item in items:
                m.CAPTIONS.labels(item.type, lang or "original").inc()
                if item.untranslated == "not_requested" and (state := self.store.states.get(r.session_id)):
                    # made before its gateway heard of this language: the translation workers look again
                    self.local.touch(state.broadcast_id or "")
                    self._wake.set()
                for link in list(self.members.get(key, ())):
                    link.send(item)

    # -- the speaker's side -------------------------------------------------------------------------
    def state_changed(self, state: SessionState) -> None:
        """A broadcast session's newer state: viewers of an old token are let go; an ended broadcast's
        viewers get ``ended``."""
        if state.broadcast_id is None:
            return
        for link in self._links_of(state.session_id):
            if link.token_sha256 != state.viewer_token_sha256:
                m.VIEWERS_DROPPED.labels("token_rotated").inc()
                link.end(
                    ErrorMsg(
                        code="viewer_token_rotated",
                        message="the speaker issued a new viewer token; ask for the new link",
                        fatal=True,
                    )
                )
                self._leave(link)
        if state.broadcast_ended and state.session_id not in self._ending:
            task = asyncio.get_running_loop().create_task(self._end(state))
            self._ending[state.session_id] = task
            task.add_done_callback(lambda _: self._ending.pop(state.session_id, None))

    async def _end(self, state: SessionState) -> None:
        """The speaker ended the broadcast: its viewers get the finals still on their way (until every
        utterance it began has one here, or END_DRAIN_S), then ``ended``."""
        deadline = asyncio.get_running_loop().time() + END_DRAIN_S
        while asyncio.get_running_loop().time() < deadline:
            channels = self.channels.get(state.session_id, {}).values()
            if all(c.loaded and c.has_finals_before(state.next_utterance_index) for c in channels):
                break
            await asyncio.sleep(0.2)
        self._ended(state, self._links_of(state.session_id, loaded_only=True))

    def session_gone(self, state: SessionState) -> None:
        """The broadcast's session expired (tombstoned): its viewers have the whole transcript."""
        self._ended(state, self._links_of(state.session_id))

    def _ended(self, state: SessionState, links: list[ViewerLink]) -> None:
        for link in links:
            link.end(Ended(broadcast_id=state.broadcast_id or ""))
            self._leave(link)

    def audience_record(self, key: bytes | None, audience: Audience | None, offset: int) -> None:
        """A record of the audiences topic (every gateway's viewers)."""
        if key is None:
            return
        sid = self.index.apply(key.decode(errors="replace"), audience)
        if sid is not None:
            self.on_audience(sid)

    def audience_langs(self, session_id: str) -> list[str]:
        """The languages a broadcast session's audio is to be translated into now."""
        return self.index.langs(session_id, now_ms())

    # -- upkeep -----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Write this gateway's audience records when they change and every grace period / 3; let go of
        channels nobody read for the grace period; tell the speakers of languages whose grace ran out."""
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self.refresh_s, 5.0)):
                    await self._wake.wait()
            self._wake.clear()
            records, self._unwritten = [*self._unwritten, *self.local.due(now_ms())], []
            for i, record in enumerate(records):
                try:
                    if isinstance(record, Tombstone):
                        await (await self.delete_audience(record.key, record.session_id))
                    else:
                        await (await self.write_audience(record))
                except Exception as e:  # Kafka away: the next round writes them again
                    log.warning("could not write an audience record: %r", e)
                    self.local.changed_all()
                    self._unwritten = [r for r in records[i:] if isinstance(r, Tombstone)]
                    break
            idle_s = self.s.broadcast_lang_grace_s
            for key, since in list(self._idle_since.items()):
                if loop.time() - since > idle_s and key not in self.members:
                    del self._idle_since[key]
                    self._drop_channel(key)
            self.on_audience(None)  # languages whose grace ran out

    async def stop(self) -> None:
        tasks = [*self._loads, *self._ending.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
