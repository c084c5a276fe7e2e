"""The speech state machine, driven by hand-made VAD decisions (pure logic, no models)."""

from __future__ import annotations

import itertools

from core.audio.segmenter import Chunk, End, Pause, Segmenter, SegmenterConfig, State

FRAME_MS = 30
FRAME = bytes(16 * 2 * FRAME_MS)


def run(pattern: str, cfg: SegmenterConfig, seg: Segmenter | None = None) -> tuple[Segmenter, list]:
    """pattern: one character per frame, 'S' speech, '.' silence."""
    seg = seg or Segmenter(cfg)
    events = []
    for i, c in enumerate(pattern):
        frame = i.to_bytes(2, "little") * (len(FRAME) // 2)  # distinct content per frame
        events += seg.push(frame, c == "S")
    return seg, events


def test_opens_after_min_speech_with_pre_roll_and_closes_after_silence() -> None:
    cfg = SegmenterConfig(frame_ms=30, pre_speech_ms=300, min_speech_ms=90, silence_ms=180, chunk_ms=60)
    seg, ev = run("." * 20 + "S" * 10 + "." * 6 + "." * 5, cfg)
    ends = [e for e in ev if isinstance(e, End)]
    assert len(ends) == 1 and ends[0].reason == "silence" and ends[0].utterance_index == 0
    chunks = [e for e in ev if isinstance(e, Chunk)]
    audio = b"".join(c.pcm for c in chunks)
    # pre-roll: 10 frames (300 ms) ending with the 3rd speech frame, then 7 speech + 6 silence frames
    assert len(audio) == (10 + 7 + 6) * len(FRAME)
    assert chunks[0].offset_ms == (23 - 10) * FRAME_MS
    assert [c.seq for c in chunks] == list(range(len(chunks))) and ends[0].seq == len(chunks)
    offsets = [c.offset_ms for c in chunks]
    assert offsets == sorted(offsets) and all(
        b.offset_ms == a.offset_ms + len(a.pcm) // 32 for a, b in itertools.pairwise(chunks)
    )
    assert seg.state is State.INACTIVE


def test_short_blip_does_not_open_and_short_pause_does_not_close() -> None:
    cfg = SegmenterConfig(frame_ms=30, pre_speech_ms=300, min_speech_ms=90, silence_ms=300, chunk_ms=60)
    _, ev = run("..SS....SS.." + "SSSS" + ".." + "SSSS" + "." * 12, cfg)
    ends = [e for e in ev if isinstance(e, End)]
    assert len(ends) == 1  # the 2-frame blips never open; the 2-frame pause never closes


def test_state_transitions() -> None:
    cfg = SegmenterConfig(frame_ms=30, pre_speech_ms=90, min_speech_ms=30, silence_ms=90, chunk_ms=30)
    seg = Segmenter(cfg)
    seen = []
    for c in "..SS.S...":
        seg.push(FRAME, c == "S")
        seen.append(seg.state.value[0])
    assert "".join(seen) == "IIAASASSI"  # 3 silent frames (90 ms) close it


def test_max_length_cut_keeps_every_sample() -> None:
    cfg = SegmenterConfig(
        frame_ms=30, pre_speech_ms=90, min_speech_ms=30, silence_ms=300, max_utterance_ms=600, chunk_ms=90
    )
    _, ev = run("S" * 70 + "." * 12, cfg)
    ends = [e for e in ev if isinstance(e, End)]
    assert [e.reason for e in ends][:3] == ["max_length"] * 3 and ends[-1].reason == "silence"
    assert [e.utterance_index for e in ends] == list(range(len(ends)))
    total = sum(len(e.pcm) for e in ev if isinstance(e, Chunk))
    assert total == (70 + 10) * len(FRAME)  # all speech + trailing silence up to the close, no duplicates
    for e in ends:
        assert e.duration_ms <= 600


def test_flush_closes_open_utterance_and_indices_continue() -> None:
    cfg = SegmenterConfig(frame_ms=30, pre_speech_ms=90, min_speech_ms=30, silence_ms=300, chunk_ms=300)
    seg = Segmenter(cfg, first_utterance_index=7, start_offset_ms=5000)
    seg, _ev = run("SSSS", cfg, seg)
    out = seg.flush("flush")
    assert isinstance(out[-1], End) and out[-1].reason == "flush" and out[-1].utterance_index == 7
    assert isinstance(out[0], Chunk) and out[0].offset_ms == 5000
    assert seg.flush() == [] and seg.next_index == 8


def test_end_says_where_speech_begins_and_ends_within_the_utterance() -> None:
    cfg = SegmenterConfig(frame_ms=30, pre_speech_ms=300, min_speech_ms=90, silence_ms=180, chunk_ms=60)
    _, ev = run("." * 20 + "S" * 10 + ".." + "SS" + "." * 6, cfg)
    end = next(e for e in ev if isinstance(e, End))
    # utterance: 7 pre-roll silence frames, 10 speech, 2 silence, 2 speech, 6 closing silence frames
    assert (end.speech_start_ms, end.speech_end_ms) == (7 * FRAME_MS, (7 + 10 + 2 + 2) * FRAME_MS)
    assert end.duration_ms == (7 + 10 + 2 + 2 + 6) * FRAME_MS
    seg, _ = run("." * 3 + "S" * 10, cfg)  # flushed mid-speech: speech runs to the end
    end = next(e for e in seg.flush() if isinstance(e, End))
    assert (end.speech_start_ms, end.speech_end_ms) == (3 * FRAME_MS, 13 * FRAME_MS)


def test_a_pause_is_announced_once_with_all_audio_so_far() -> None:
    cfg = SegmenterConfig(frame_ms=30, pre_speech_ms=90, min_speech_ms=90, silence_ms=300, chunk_ms=300, pause_ms=120)
    _, ev = run("SSSSS" + "...." + "SS" + "." * 10, cfg)
    kinds = [type(e).__name__ for e in ev]
    assert kinds.count("Pause") == 2 and kinds[-1] == "End"  # one pause per silence run that reached 120 ms
    assert [e.seq for e in ev] == list(range(len(ev)))
    first = ev.index(next(e for e in ev if isinstance(e, Pause)))
    before = sum(len(e.pcm) for e in ev[:first] if isinstance(e, Chunk))
    assert before == (5 + 4) * len(FRAME)  # pending audio went out before the pause
    pause = ev[first]
    assert (pause.speech_start_ms, pause.speech_end_ms) == (0, 5 * FRAME_MS)
    assert next(e for e in ev if isinstance(e, End)).speech_end_ms == (5 + 4 + 2) * FRAME_MS
    _, quiet = run("SSSSS" + "." * 12, SegmenterConfig(frame_ms=30, pre_speech_ms=90, min_speech_ms=90, silence_ms=300))
    assert not any(isinstance(e, Pause) for e in quiet)  # pause_ms=0: no pauses
