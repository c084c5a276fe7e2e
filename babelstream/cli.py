"""``babelstream`` command line: run the local stack, a single service, or stream a file."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from core.settings import load_settings
from schemas.records import AUDIO_SAMPLE_RATE_HZ, secret_digest

app = typer.Typer(add_completion=False, help="Babelstream: real-time speech transcription and translation on Kafka")
console = Console(stderr=True)


def _logging(level: str) -> None:
    from babelstream.logs import configure

    configure(level)


@app.command()
def broker(data_dir: Path = typer.Option(None, help="default: $STATE_DIR/kafka")) -> None:
    """Run a local single-node Kafka (KRaft) broker in the foreground."""
    from streams.broker import LocalKafka

    _logging("info")
    s = load_settings()
    k = LocalKafka(data_dir or s.state_dir / "kafka", version=s.kafka_version, heap_mb=s.kafka_heap_mb).start()
    console.print(f"Kafka ready: KAFKA_BOOTSTRAP_SERVERS={k.bootstrap}")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        k.stop()


@app.command(name="kafka-libs")
def kafka_libs(
    version: str = typer.Option("3.9.1", help="Kafka version"),
    into: Path = typer.Option(None, help="copy the jars here (docker/kafka-libs: the offline Kafka image)"),
) -> None:
    """Fetch the Kafka broker's jars from Maven Central (cached) and print their folder, or copy them into
    ``--into`` (what compose.offline.yaml builds its Kafka image from)."""
    import shutil

    from streams.broker import fetch_jars

    libs = fetch_jars(version)
    if into is not None:
        into.mkdir(parents=True, exist_ok=True)
        for old in into.glob("*.jar"):
            old.unlink()
        for jar in libs.glob("*.jar"):
            shutil.copy2(jar, into / jar.name)
        libs = into
    print(libs)


@app.command()
def worker(role: str = typer.Argument(..., help="stt, translate, stats or archive"), loglevel: str = "info") -> None:
    """Run a Faust worker (scale by starting more; partitions bound parallelism)."""
    from babelstream.worker import run_worker

    _logging(loglevel)
    run_worker(load_settings(), role, loglevel)


@app.command()
def gateway(loglevel: str = "info") -> None:
    """Run the WebSocket gateway."""
    from gateway.server import run_gateway

    _logging(loglevel)
    asyncio.run(run_gateway(load_settings()))


@app.command()
def up(
    stt_workers: int = typer.Option(1, help="STT worker processes"),
    translate_workers: int = typer.Option(1, help="translation worker processes"),
    analytics: bool = typer.Option(True, help="also run the stats and archive workers"),
    loglevel: str = "info",
    verbose: bool = typer.Option(False, "--verbose", "-v", help="every line of every service, not just errors"),
) -> None:
    """Run the whole stack locally: Kafka (unless KAFKA_BOOTSTRAP_SERVERS is set), gateway and workers.
    One line per service as it is ready, then the URLs; each service's log is in STATE_DIR/logs."""
    from babelstream.supervisor import Service, Supervisor
    from streams.broker import LocalKafka, free_port

    _logging(loglevel if verbose else "warning")  # its own lines: the supervisor says what matters
    s = load_settings()
    for sig in (signal.SIGINT, signal.SIGTERM):  # also when started in the background (SIGINT ignored)
        signal.signal(sig, _interrupt)
    k = None
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    sup = Supervisor(console, s.state_dir / "logs", verbose=verbose)
    try:
        if not s.kafka_bootstrap_servers:
            console.print("starting Kafka (its first run fetches the jars with Maven)...")
            t0 = time.monotonic()
            k = LocalKafka(s.state_dir / "kafka", version=s.kafka_version, heap_mb=s.kafka_heap_mb)
            k.port = s.kafka_port or free_port()
            k.start()
            env["KAFKA_BOOTSTRAP_SERVERS"] = k.bootstrap
            console.print(f"[green]✓[/] Kafka ready ({time.monotonic() - t0:.0f} s)", highlight=False)
        cmd = [sys.executable, "-m", "babelstream.cli"]
        local = "127.0.0.1" if s.gateway_host in ("0.0.0.0", "::", "") else s.gateway_host
        scheme = "https" if s.tls_cert_file else "http"
        sup.start(
            Service(
                "gateway", [*cmd, "gateway", "--loglevel", loglevel], env, f"{scheme}://{local}:{s.health_port}/healthz"
            )
        )
        roles = ["stt"] * stt_workers + ["translate"] * translate_workers + (["stats", "archive"] if analytics else [])
        ports: dict[str, int] = {}
        for i, role in enumerate(roles):  # worker web ports: WORKER_WEB_PORT, +1, +2... in this order
            port = s.worker_web_port + i
            ports.setdefault(role, port)
            name = role if roles.count(role) == 1 else f"{role}-{roles[:i].count(role) + 1}"
            sup.start(
                Service(
                    name,
                    [*cmd, "worker", role, "--loglevel", loglevel],
                    {**env, "WORKER_WEB_PORT": str(port)},
                    f"http://{s.worker_web_host}:{port}/healthz",
                )
            )
        if sup.wait_ready():
            host, ws = s.gateway_host, "wss" if s.tls_cert_file else "ws"
            console.print(
                f"[bold green]Babelstream is up[/]: web page {scheme}://{host}:{s.health_port}/ ,"
                f" WebSocket {ws}://{host}:{s.gateway_port} , Kafka {env['KAFKA_BOOTSTRAP_SERVERS']}"
                + (f", stats http://{s.worker_web_host}:{ports['stats']}/stats" if analytics else "")
                + f". Logs in {sup.log_dir}. Ctrl-C stops everything."
            )
            while not sup.exited():
                time.sleep(0.5)
        sup.report_exits()
        raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        sup.stop()
        if k is not None:
            k.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def stream(
    file: Path = typer.Argument(..., exists=True, help="any audio file ffmpeg/PyAV can read"),
    url: str = typer.Option("ws://127.0.0.1:5026", help="gateway WebSocket URL"),
    source_lang: str = typer.Option(None, help="ISO 639-1; default: detect"),
    target_lang: list[str] = typer.Option(
        None, help="translate into this language (repeat the option for several, or give them comma-separated)"
    ),
    pace: float = typer.Option(1.0, help="1 = real time, 0 = as fast as possible"),
    api_key: str = typer.Option(None, envvar="BABELSTREAM_API_KEY", help="API key or JWT, if the gateway needs one"),
    broadcast: bool = typer.Option(False, help="let viewers watch it (the viewer link is printed)"),
    public: bool = typer.Option(False, help="with --broadcast: viewers need no token"),
    http_url: str = typer.Option("http://127.0.0.1:8080", help="the gateway's HTTP port, for the viewer link"),
) -> None:
    """Stream an audio file to the gateway and print interim, final and translated text."""
    from faster_whisper.audio import decode_audio
    from rich.markup import escape

    from babelstream.client import stream_audio
    from core.audio.resample import float_to_pcm16

    pcm = float_to_pcm16(decode_audio(str(file), sampling_rate=AUDIO_SAMPLE_RATE_HZ))
    targets = [lang.strip() for value in target_lang or [] for lang in value.split(",") if lang.strip()]

    def show(msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "ready" and msg.get("broadcast"):
            b = msg["broadcast"]
            query = f"?token={b['viewer_token']}" if b.get("viewer_token") else ""
            console.print(f"viewers watch at {http_url.rstrip('/')}/watch/{b['broadcast_id']}{query}")
        elif kind == "realtime":
            console.print(f"[dim]… {escape(str(msg['text']))}[/]")
        elif kind == "final":
            console.print(f"[bold]{msg['utterance_index']}[/] ({msg.get('language')}) {escape(str(msg['text']))}")
        elif kind == "translation":
            console.print(
                f"[bold]{msg['utterance_index']}[/] [green]→ {msg['target_lang']}[/] {escape(str(msg['text']))}"
            )
        elif kind == "error":
            console.print(f"[red]error {msg['code']}: {escape(str(msg['message']))}[/]")

    asyncio.run(
        stream_audio(
            url,
            pcm,
            source_lang=source_lang,
            target_langs=targets or None,
            translate=bool(targets),
            pace=pace,
            on_message=show,
            timeout_s=3600,
            api_key=api_key,
            broadcast=broadcast,
            public=public,
        )
    )


@app.command()
def watch(
    broadcast_id: str = typer.Argument(..., help="the broadcast_id of the speaker's ready (the viewer link's)"),
    token: str = typer.Option(None, help="its viewer token (none for a public broadcast)"),
    lang: str = typer.Option(None, help="read in this language (default: the speaker's)"),
    url: str = typer.Option("ws://127.0.0.1:5026", help="gateway WebSocket URL"),
) -> None:
    """Watch a broadcast: the transcript so far, then its live captions, until it ends."""
    from rich.markup import escape

    from babelstream.client import watch_broadcast

    def show(msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "final":
            console.print(f"[bold]{msg['utterance_index']}[/] ({msg.get('lang')}) {escape(str(msg['text']))}")
        elif kind == "live":
            console.print("[dim]— live —[/]")
        elif kind == "ended":
            console.print("[dim]the broadcast has ended[/]")
        elif kind == "error":
            console.print(f"[red]error {msg['code']}: {escape(str(msg['message']))}[/]")

    asyncio.run(watch_broadcast(url, broadcast_id, viewer_token=token, lang=lang, on_message=show))


keys = typer.Typer(help="API keys for the gateway (AUTH, API_KEYS, API_KEYS_FILE)")
app.add_typer(keys, name="keys")


@keys.command("new")
def keys_new(
    name: str = typer.Argument(..., help="who the key is for (letters, digits, - and _)"),
    max_sessions: int = typer.Option(None, help="concurrent sessions for this key (default MAX_SESSIONS_PER_KEY)"),
) -> None:
    """Make an API key: give the key to the client; put only the entry line into API_KEYS_FILE."""
    import re

    from gateway.auth import new_api_key

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise typer.BadParameter("use letters, digits, - and _ (at most 64)")
    key = new_api_key()
    entry = f"{name}:{secret_digest(key)}" + (f":{max_sessions}" if max_sessions else "")
    print(f"key (shown once; the gateway keeps only its digest): {key}")
    print(f"entry for API_KEYS_FILE: {entry}")


@app.command()
def load(
    file: Path = typer.Argument(..., exists=True, help="any audio file ffmpeg/PyAV can read"),
    clients: int = typer.Option(10, help="concurrent sessions"),
    url: str = typer.Option("ws://127.0.0.1:5026", help="gateway WebSocket URL"),
    pace: float = typer.Option(1.0, help="1 = real time, 0 = as fast as possible"),
    source_lang: str = typer.Option(None, help="ISO 639-1; default: detect"),
    api_key: str = typer.Option(None, envvar="BABELSTREAM_API_KEY", help="API key or JWT, if the gateway needs one"),
) -> None:
    """Load test: N clients stream the file at once; prints latency percentiles."""
    from faster_whisper.audio import decode_audio
    from rich.table import Table

    from babelstream.load import run_load, summarize
    from core.audio.resample import float_to_pcm16

    pcm = float_to_pcm16(decode_audio(str(file), sampling_rate=AUDIO_SAMPLE_RATE_HZ))
    reports, failed = asyncio.run(run_load(url, pcm, clients, pace=pace, source_lang=source_lang, api_key=api_key))
    summary = summarize(reports, failed)
    table = Table(title=f"{clients} clients, pace {pace}")
    for col in ("metric", "p50", "p90", "p99"):
        table.add_column(col)
    for name, pct in (
        ("speech end -> final (s)", summary.final_after_end_s),
        ("speech start -> first interim (s)", summary.first_interim_s),
    ):
        table.add_row(name, *[f"{pct.get(k, float('nan')):.3f}" for k in ("p50", "p90", "p99")])
    Console().print(table)
    console.print(f"{summary.utterances} finals, {summary.failed} failed clients, {summary.overloaded} overload errors")


@app.command()
def desktop(
    url: str = typer.Option("ws://127.0.0.1:5026", help="gateway WebSocket URL"),
    file: Path = typer.Option(None, exists=True, help="stream this file instead of a microphone"),
) -> None:
    """Desktop client: voice typing into the focused window and a subtitle overlay.

    Needs the desktop extra and its system libraries: bin/setup --desktop (or pip install 'babelstream\\[desktop]'
    plus the Qt xcb libraries the README lists).
    """
    try:
        from babelstream.desktop.app import main as desktop_main
    except ImportError as e:
        console.print(f"the desktop client needs the desktop extra ({e.name} is missing): run bin/setup --desktop")
        raise typer.Exit(1) from None

    desktop_main(url, file)


def _parse_time_ms(value: str | None) -> int | None:
    """Epoch milliseconds, or an ISO 8601 date/time (UTC if no zone)."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    from datetime import UTC, datetime

    dt = datetime.fromisoformat(value)
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


@app.command()
def replay(
    tag: str = typer.Option(..., help="version tag: results go to <prefix>.results.<tag>.v1"),
    session: str = typer.Option(None, help="only this session"),
    since: str = typer.Option(None, help="start time (ISO 8601 or epoch ms)"),
    until: str = typer.Option(None, help="end time (ISO 8601 or epoch ms)"),
    from_offset: int = typer.Option(None, help="start offset in each partition"),
    model_size: str = typer.Option(None, help="override MODEL_SIZE"),
    beam_size: int = typer.Option(None, help="override BEAM_SIZE (1 = greedy, reproducible)"),
) -> None:
    """Re-transcribe stored audio from the audio topic with another model or settings."""
    from rich.progress import Progress

    from babelstream.replay import replay as run_replay
    from core.engines.factory import make_stt_engine

    overrides: dict[str, object] = {}
    if model_size:
        overrides["model_size"] = model_size
    if beam_size:
        overrides["beam_size"] = beam_size
    s = load_settings(**overrides)
    engine = make_stt_engine(s)
    with Progress(console=console) as bar:
        task = bar.add_task(f"replaying into {tag}", total=None)
        stats = asyncio.run(
            run_replay(
                s,
                engine,
                tag,
                session_id=session,
                since_ms=_parse_time_ms(since),
                until_ms=_parse_time_ms(until),
                from_offset=from_offset,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        )
    console.print(
        f"{stats.utterances} utterances ({stats.audio_s:.1f} s of audio, {stats.records} events)"
        f" transcribed into {stats.topic}"
    )


@app.command()
def export(
    session: str = typer.Argument(..., help="session id"),
    fmt: str = typer.Option("srt", "--format", help="srt, vtt or jsonl"),
    translated: bool = typer.Option(False, help="subtitles of the translations instead of the transcript"),
    version: str = typer.Option("live", help="results version (a replay tag)"),
) -> None:
    """Print a session's transcript as SRT, WebVTT or JSON Lines."""
    from core.analytics import subtitles
    from streams.reader import stored_session_results

    results = asyncio.run(stored_session_results(load_settings(), session, version))
    if fmt == "srt":
        out = subtitles.to_srt(results, translated)
    elif fmt == "vtt":
        out = subtitles.to_vtt(results, translated)
    elif fmt == "jsonl":
        out = subtitles.to_jsonl(results)
    else:
        raise typer.BadParameter("format must be srt, vtt or jsonl")
    sys.stdout.write(out)


@app.command()
def query(sql: str = typer.Argument(..., help="SQL over the view `results`")) -> None:
    """Query the Parquet archive written by the archive worker (ARCHIVE_DIR) with DuckDB."""
    from rich.table import Table

    from core.analytics.archive import query_archive

    rows = query_archive(load_settings().archive_path, sql)
    table = Table(show_header=False)
    for row in rows:
        table.add_row(*[str(v) for v in row])
    Console().print(table)


@app.command()
def languages(source: str = typer.Option(None, help="only this spoken language")) -> None:
    """Where speech in each language can be translated, and how (what the gateway's GET /languages says):
    a text model, whisper (Whisper's English from the speech), or whisper+<model> (through English)."""
    from rich.table import Table

    from core.engines.translate import TranslationRouter
    from schemas.langs import LANGUAGES, normalize_lang

    routes = TranslationRouter.from_settings(load_settings()).routes()
    if source:
        code = normalize_lang(source) or ""
        routes = {code: routes.get(code, {})}
    by_way: dict[tuple[str, str], list[str]] = {}
    for spoken, reach in routes.items():
        for target, route in reach.items():
            by_way.setdefault((target, route), []).append(spoken)
    table = Table("target", "route", "from")
    for (target, route), speakers in sorted(by_way.items()):
        names = ", ".join(speakers) if len(speakers) <= 8 else f"{len(speakers)} languages"
        table.add_row(f"{target} ({LANGUAGES.get(target, target)})", route, names)
    Console().print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
