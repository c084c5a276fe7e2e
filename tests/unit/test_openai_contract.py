"""The OpenAI-compatible API's contract (pure): form fields as OpenAI's clients send them, errors in
OpenAI's shape, and the answer in each response format."""

from __future__ import annotations

import json
import re

import pytest

from schemas.openai_api import ApiError, AudioRequest, render
from schemas.subtitles import Cue, to_srt, to_vtt


def form(**fields: str | list[str]) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in fields.items()}


def test_fields_as_the_openai_client_sends_them() -> None:
    req = AudioRequest.from_form(
        form(
            model="whisper-1", language="Spanish", response_format="srt", **{"timestamp_granularities[]": ["segment"]}
        ),
        translation=False,
    )
    assert (req.model, req.language, req.response_format, req.timestamp_granularities) == (
        "whisper-1",
        "es",
        "srt",
        ["segment"],
    )
    # a translation is always into English: a language field is not an error, and not used
    assert AudioRequest.from_form(form(model="whisper-1", language="fr"), translation=True).language is None
    # fields OpenAI may add later are ignored, as its own API ignores what it does not know
    assert (
        AudioRequest.from_form(form(model="m", chunking_strategy="auto"), translation=False).response_format == "json"
    )


@pytest.mark.parametrize(
    ("fields", "status", "code", "param"),
    [
        ({"model": "whisper-1", "language": "klingon"}, 400, "unsupported_language", "language"),
        ({"model": "whisper-1", "response_format": "docx"}, 400, "invalid_value", "response_format"),
        (
            {"model": "whisper-1", "timestamp_granularities[]": ["word"]},
            400,
            "unsupported_value",
            "timestamp_granularities",
        ),
        ({"model": "whisper-1", "stream": "true"}, 400, "unsupported_value", "stream"),
        ({"model": "whisper-1", "temperature": "7"}, 400, "invalid_value", "temperature"),
        ({"language": "en"}, 400, "invalid_value", "model"),
        ({"model": "whisper-1", "prompt": "x" * 801}, 400, "invalid_value", "prompt"),
    ],
)
def test_bad_fields_are_openai_shaped_errors(fields: dict, status: int, code: str, param: str) -> None:
    with pytest.raises(ApiError) as e:
        AudioRequest.from_form(form(**fields), translation=False)
    assert (e.value.status, e.value.code, e.value.param) == (status, code, param)
    body = e.value.body()["error"]
    assert body["type"] == "invalid_request_error" and body["message"] and body["param"] == param


CUES = [Cue(500, 2250, "Hello there."), Cue(3_661_000, 3_662_004, "An hour later.")]


def test_srt_and_vtt() -> None:
    assert to_srt(CUES) == (
        "1\n00:00:00,500 --> 00:00:02,250\nHello there.\n\n2\n01:01:01,000 --> 01:01:02,004\nAn hour later.\n\n"
    )
    vtt = to_vtt(CUES)
    assert vtt.startswith("WEBVTT\n\n00:00:00.500 --> 00:00:02.250\nHello there.\n\n")
    assert re.fullmatch(r"WEBVTT\n\n(\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}\n[^\n]+\n\n)+", vtt)


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_every_response_format(fmt: str) -> None:
    req = AudioRequest.from_form(form(model="whisper-1", response_format=fmt), translation=False)
    body, content_type = render(req, CUES, task="transcribe", language="en", duration_s=3662.5)
    if fmt == "json":
        assert json.loads(body) == {
            "text": "Hello there. An hour later.",
            "usage": {"type": "duration", "seconds": 3662},
        }
    elif fmt == "text":
        assert body == "Hello there. An hour later.\n" and content_type.startswith("text/plain")
    elif fmt == "verbose_json":
        v = json.loads(body)
        assert (v["task"], v["language"], v["language_code"], v["duration"]) == ("transcribe", "english", "en", 3662.5)
        assert [(s["id"], s["start"], s["end"], s["text"]) for s in v["segments"]] == [
            (0, 0.5, 2.25, "Hello there."),
            (1, 3661.0, 3662.004, "An hour later."),
        ]
        assert {"seek", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob"} <= set(
            v["segments"][0]
        )
    else:
        assert body == (to_srt(CUES) if fmt == "srt" else to_vtt(CUES))
    # nothing was said: every format still answers
    assert render(req, [], task="transcribe", language=None, duration_s=0.2)[0] is not None
