"""The batched Whisper engine's pure parts: window sizes, loop detection, faster-whisper's segment cuts."""

from __future__ import annotations

from core.engines.stt import looks_degenerate
from core.engines.whisper import WINDOW_FRAMES, max_new_tokens, split_by_timestamps, window_frames

TB = 50364  # <|0.00|>
WORD, DOT = 1000, 13


def ts(seconds: float) -> int:
    return TB + round(seconds / 0.02)


def test_the_encoder_window_is_the_audio_plus_padding_in_whole_seconds_at_most_30_s() -> None:
    assert window_frames(412, 2000) == 700
    assert window_frames(400, 0) == 400
    assert window_frames(2900, 2000) == WINDOW_FRAMES
    assert window_frames(412, -1) == WINDOW_FRAMES  # -1: faster-whisper's full window always


def test_a_finished_window_is_cut_at_each_timestamp_pair() -> None:
    tokens = [ts(0), WORD, DOT, ts(2.5), ts(2.5), WORD, WORD, ts(4.0)]
    spans, resume = split_by_timestamps(tokens, TB, duration_s=5.0)
    assert spans == [(0.0, 2.5, [WORD, DOT]), (2.5, 4.0, [WORD, WORD])]
    assert resume is None  # a single timestamp at the end: nothing left


def test_an_unfinished_last_segment_is_decoded_again_from_the_last_timestamp() -> None:
    tokens = [ts(0), WORD, ts(2.0), ts(2.0), WORD, WORD]
    spans, resume = split_by_timestamps(tokens, TB, duration_s=5.0)
    assert spans == [(0.0, 2.0, [WORD])]
    assert resume == 200  # mel frames: 2.0 s


def test_tokens_without_timestamp_pairs_are_one_segment() -> None:
    spans, resume = split_by_timestamps([ts(0), WORD, WORD, ts(3.0)], TB, duration_s=5.0)
    assert spans == [(0.0, 3.0, [WORD, WORD])] and resume is None
    spans, resume = split_by_timestamps([WORD, WORD], TB, duration_s=5.0)
    assert spans == [(0.0, 5.0, [WORD, WORD])] and resume is None


def test_loops_are_recognised_and_ordinary_speech_is_not() -> None:
    assert looks_degenerate("Gracias. Gracias. Gracias.")
    sentence = "And Mr. John Dashwood had then leisure to consider how much there might be"
    assert looks_degenerate(f"{sentence} {sentence}")  # a whole sentence said twice: a short window's loop
    assert not looks_degenerate(sentence)
    assert not looks_degenerate("I think that I think that is right.")


def test_a_loop_is_cut_short_long_before_the_models_limit() -> None:
    assert max_new_tokens(100) == 36  # 1 s of audio
    assert max_new_tokens(1500) < 448 // 2
