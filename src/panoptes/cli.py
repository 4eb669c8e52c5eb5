"""The ``panoptes`` command: run, validate, inspect, demo, serve, models."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from panoptes.core.bus import Message, MessageType
from panoptes.core.errors import PanoptesError

EXIT_FAILED_STREAMS = 1
EXIT_BAD_CONFIG = 2


def _echo(text: str) -> None:
    click.echo(text, err=True)


def _short(name: str) -> str:
    """A stream's name for a console line: a long path or URL shortened to its last part."""
    if len(name) <= 24 or "/" not in name:
        return name
    return name.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or name


def _format_perf(data: dict[str, Any]) -> str:
    parts = [
        f"{_short(v['name'])} {v['fps']:.1f} ({v['avg_fps']:.1f})" for v in data["streams"].values()
    ]
    return f"**PERF: total {data['total_fps']:.1f} fps | " + " | ".join(parts)


def _summary_table(summary: Any) -> str:
    rows = [("stream", "state", "frames", "fps", "dropped", "corrupt", "errors")]
    for s in summary.streams:
        rows.append(
            (
                _short(s.name),
                s.state,
                str(s.frames),
                f"{s.fps:.1f}",
                str(s.dropped),
                str(s.corrupt),
                str(s.errors),
            )
        )
    rows.append(
        ("total", "", str(summary.frames), f"{summary.fps:.1f}", "", "", str(len(summary.errors)))
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines) + f"\n{summary.elapsed_s:.1f} s"


def run_pipeline(pipeline: Any, *, quiet: bool = False, progress: bool | None = None) -> int:
    """Run ``pipeline`` as the CLI does: bus messages and PERF lines on stderr, a progress bar on a
    terminal, Ctrl-C and SIGTERM stopping cleanly, a summary at the end. Returns the exit code."""
    lock = threading.Lock()
    bar: Any = None

    def on_message(message: Message) -> None:
        if message.type is MessageType.PERF:
            if quiet:
                return
            text = _format_perf(message.data)
        elif message.type in (MessageType.ERROR, MessageType.WARNING):
            text = f"{message.type.value.upper()}: {message.origin}: {message.text}"
        elif message.type is MessageType.STREAM_ENDED and not quiet:
            text = f"end of stream: {message.origin}"
        elif message.type is MessageType.INFO and not quiet and _worth_saying(message):
            text = f"{message.origin}: {message.text}"
        else:
            return
        with lock:
            if bar is not None:
                bar.write(text, file=sys.stderr)
            else:
                _echo(text)

    pipeline.bus.subscribe(on_message)
    stop_requests: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        # Only note it: the handler runs between bytecodes of the main thread, which may hold the
        # pipeline's locks at that moment; the loop below does the stopping.
        stop_requests.append(signal.Signals(signum).name)
        if len(stop_requests) > 1:
            os._exit(130)

    in_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        pipeline.start()
        show_bar = progress if progress is not None else (sys.stderr.isatty() and not quiet)
        stopping = False

        def update_bar(final: bool = False) -> None:
            nonlocal bar
            if show_bar and bar is None:
                total = pipeline.expected_frames()
                if total:
                    from tqdm import tqdm

                    with lock:
                        bar = tqdm(total=total, unit="frame", file=sys.stderr, dynamic_ncols=True)
            if bar is not None:
                bar.n = pipeline.frames_out()
                bar.refresh()
                if final:
                    bar.close()
                    bar = None

        while not pipeline.wait(0.25):
            if stop_requests and not stopping:
                stopping = True
                with lock:
                    _echo(f"{stop_requests[0]}: stopping (again to quit at once)")
                pipeline.stop()
            update_bar()
        update_bar(final=True)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    summary = pipeline.summary()
    if not quiet:
        _echo(_summary_table(summary))
    return 0 if summary.ok else EXIT_FAILED_STREAMS


def _worth_saying(message: Message) -> bool:
    """INFO messages a user of the CLI needs: where an output is served (an RTSP URL), where
    frames leave the GPU, which clip was recorded."""
    data = message.data or {}
    return any(key in data for key in ("url", "memory", "duration_s"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="panoptes")
def main() -> None:
    """Real-time video analytics over many cameras."""


def _parse(
    config: str, overrides: Sequence[str], *, quiet: bool = False, http_port: int | None = None
) -> tuple[Any, Path]:
    """The validated config and the folder of its relative paths, with ``--http``'s port."""
    from panoptes.config.loader import load_config

    translations: list[Any] = []
    parsed, base_dir = load_config(config, overrides, translations=translations)
    if http_port is not None:
        from panoptes.elements.web_view import HttpProperties

        http = (parsed.http or HttpProperties()).model_copy(update={"port": http_port})
        parsed = parsed.model_copy(update={"http": http})
    # What a DeepStream file asked for that is not done as it is, said before anything runs.
    for note in (note for translation in translations for note in translation.notes):
        if note.status != "approximated" or not quiet:
            _echo(f"warning: {note}")
    return parsed, base_dir


def _supervisor(
    parsed: Any, base_dir: Path, workers: int | None, gpus: str | None, share: str | None
) -> Any:
    """A supervisor of worker processes when ``--workers``, ``--gpus``, ``--share`` or the
    config's ``workers`` section ask for several (or a share); None: one pipeline in this
    process."""
    from pydantic import ValidationError

    from panoptes.config.schema import WorkersProperties
    from panoptes.core.errors import ConfigError
    from panoptes.workers import Share, Supervisor, worker_gpus

    props = parsed.workers
    try:
        chosen = WorkersProperties(gpus=gpus).gpus if gpus is not None else props.gpus
    except ValidationError as error:
        raise ConfigError(
            error.errors()[0]["msg"].removeprefix("Value error, "), "--gpus"
        ) from None
    count = workers or props.count
    if count in (None, 1) and chosen is None and share is None:
        return None
    return Supervisor(
        parsed,
        gpus=worker_gpus(count, chosen),
        base_dir=base_dir,
        share=Share.parse(share) if share is not None else None,
    )


def _print_config(config: str, overrides: Sequence[str]) -> None:
    """The native YAML a config (a DeepStream file, say) becomes, with the overrides."""
    import yaml

    from panoptes.config.loader import apply_overrides, parse_config, read_native_or_deepstream

    data = apply_overrides(read_native_or_deepstream(Path(config)), overrides)
    parse_config(data, origin=config)  # only a valid config is printed
    click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=None), nl=False)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY.PATH=VALUE",
    help="Override a config value, e.g. --set mux.batch_size=4 --set infer[0].threshold=0.5.",
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors and warnings.")
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar (default: on a terminal)."
)
@click.option(
    "--print-config",
    is_flag=True,
    help="Print the native YAML that CONFIG becomes (a DeepStream file translated) and exit.",
)
@click.option(
    "--http",
    "http_port",
    type=click.IntRange(0, 65535),
    default=None,
    metavar="PORT",
    help="Serve the browser view, the REST API and /metrics on this port (0 = any free); "
    "the config's http section sets the rest.",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=None,
    metavar="N",
    help="Run N pipeline processes, the sources shared out evenly; the console, REST API and "
    "/metrics show the whole, and a worker that dies is started again (see docs/workers.md).",
)
@click.option(
    "--gpus",
    default=None,
    metavar="all|IDS",
    help="One worker per GPU: 'all' found, or ids such as 0,1; each worker's decoders and "
    "models run on its GPU.",
)
@click.option(
    "--share",
    default=None,
    metavar="K/N",
    help="Run only share K of N of the config's sources (those whose index is K modulo N), "
    "e.g. a StatefulSet pod's ordinal and the replica count.",
)
def run(
    config: str,
    overrides: tuple[str, ...],
    quiet: bool,
    progress: bool | None,
    print_config: bool,
    http_port: int | None,
    workers: int | None,
    gpus: str | None,
    share: str | None,
) -> None:
    """Run a pipeline from CONFIG: panoptes YAML, or a deepstream-app configuration (INI or
    YAML) with the nvinfer and tracker files it names."""
    server = None
    supervisor = None
    try:
        if print_config:
            _print_config(config, overrides)
            return
        parsed, base_dir = _parse(config, overrides, quiet=quiet, http_port=http_port)
        supervisor = _supervisor(parsed, base_dir, workers, gpus, share)
        if supervisor is not None:
            from panoptes.workers.app import start_supervisor_http

            supervisor.build()
            pipeline = supervisor
            if not quiet:
                for line in supervisor.describe():
                    _echo(line)
            if parsed.http is not None:
                server = start_supervisor_http(supervisor, parsed.http)
                _echo(f"REST API and /metrics of the workers at {server.url}")
        else:
            from panoptes.core.pipeline import Pipeline

            pipeline = Pipeline(parsed, base_dir=base_dir)
            pipeline.build()
            if pipeline.config.http is not None:
                from panoptes.server import start_http

                server = start_http(pipeline, pipeline.config.http)
                _echo(f"browser view and REST API at {server.url}")
    except PanoptesError as error:
        if supervisor is not None:
            supervisor.close()
        _echo(f"error: {error}")
        sys.exit(EXIT_BAD_CONFIG)
    except KeyboardInterrupt:  # Ctrl-C while the workers load their models
        if supervisor is not None:
            supervisor.close()
        sys.exit(130)
    try:
        code = run_pipeline(pipeline, quiet=quiet, progress=progress)
        if supervisor is not None and not quiet:
            _echo(supervisor.workers_table())
    finally:
        if server is not None:
            server.stop()
        if supervisor is not None:
            supervisor.close()
    sys.exit(code)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="As for run.")
def validate(config: str, overrides: tuple[str, ...]) -> None:
    """Check CONFIG without running it: schema, source files, models, outputs; for a DeepStream
    file, also what is honoured, approximated and not supported."""
    from panoptes.config.validate import check_config

    translations: list[Any] = []
    try:
        problems = check_config(config, overrides, translations=translations)
    except PanoptesError as error:
        _echo(f"error: {error}")
        sys.exit(EXIT_BAD_CONFIG)
    for translation in translations:
        click.echo(translation.report())
    for problem in problems:
        _echo(f"error: {problem}")
    if problems:
        sys.exit(EXIT_BAD_CONFIG)
    click.echo(f"{config}: valid")


@main.command()
@click.argument("kind", required=False)
def inspect(kind: str | None) -> None:
    """List element kinds, or show every property of KIND."""
    from panoptes.config.inspect import describe_kind, list_kinds

    try:
        click.echo(describe_kind(kind) if kind else list_kinds())
    except PanoptesError as error:
        _echo(f"error: {error}")
        sys.exit(EXIT_BAD_CONFIG)


@main.command()
@click.option(
    "--videos",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of clips to use (default: clips made from scikit-image's photos).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("out/demo/meta.jsonl"),
    show_default=True,
    help="Metadata output.",
)
@click.option("--model", default="yolox-nano", show_default=True, help="Detector.")
@click.option(
    "--max-frames", type=int, default=None, help="Stop each stream after this many frames."
)
def demo(videos: Path | None, output: Path, model: str, max_frames: int | None) -> None:
    """Run the default detector and tracker over several sample camera streams."""
    from panoptes.core.pipeline import Pipeline
    from panoptes.demo import demo_config, demo_video

    try:
        config = demo_config(videos, output=output, model=model, max_frames=max_frames)
        _echo("demo: " + ", ".join(s["uri"] for s in config["sources"]) + f" -> {output}")
        pipeline = Pipeline(config, base_dir=Path.cwd())
        pipeline.build()
    except PanoptesError as error:
        _echo(f"error: {error}")
        sys.exit(EXIT_BAD_CONFIG)
    code = run_pipeline(pipeline)
    _echo(f"metadata written to {output}, tiled video to {demo_video(output)}")
    sys.exit(code)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8554,
    show_default=True,
    help="RTSP port (0: any free port).",
)
def serve(files: tuple[Path, ...], host: str, port: int) -> None:
    """Serve video FILES over RTSP, each looped at its real speed at rtsp://HOST:PORT/<file
    name without extension>, until Ctrl-C. H.264 is sent as it is; other codecs are transcoded
    to H.264. The URLs are printed on stdout."""
    from panoptes.media.rtsp import serve_files

    try:
        code = serve_files(files, host=host, port=port, show_url=click.echo, show_note=_echo)
    except PanoptesError as error:
        _echo(f"error: {error}")
        sys.exit(EXIT_BAD_CONFIG)
    sys.exit(code)


@main.group()
def models() -> None:
    """The model zoo."""


@models.command("list")
def models_list() -> None:
    """List the zoo's models and where each is on disk."""
    from panoptes.models.zoo import list_models

    for entry, path in list_models():
        where = str(path) if path else "not downloaded"
        click.echo(f"{entry.name:<14} {entry.license:<14} {where}")


@models.command("pull")
@click.argument("name")
def models_pull(name: str) -> None:
    """Download a zoo model into the cache (checked against its sha256)."""
    from panoptes.models.zoo import pull

    try:
        click.echo(str(pull(name)))
    except PanoptesError as error:
        _echo(f"error: {error}")
        sys.exit(EXIT_BAD_CONFIG)


if __name__ == "__main__":
    main()
