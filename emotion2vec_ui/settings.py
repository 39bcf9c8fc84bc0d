"""Every setting of the app and the command line, defined once (torch-free).

Each `Option` names its command-line flag, its environment variable, its default and
its allowed values. `add_options(parser, "server" | "cli")` adds that program's flags;
`parse_settings` (or `resolve` after parsing) fills what the command line leaves out from
the environment, then from the default, and returns a frozen `Settings`. Only this module
reads the environment: the engine gets every value passed explicitly.

A shared server accepts less than one person's command line, so the input limits have
a default per program (`server_default`).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .audio.decode import MAX_DURATION_S, MAX_FILE_MB, AudioLimits
from .audio.vad import VAD_JOIN_GAP_S, VAD_MAX_SEGMENT_S, VAD_MIN_SPEECH_S, VAD_THRESHOLD, VadSettings
from .engine.backend import BACKENDS, MAX_WINDOW_S, MIN_WINDOW_S, PRECISIONS, check_device
from .engine.hub import DEFAULT_MODEL, HUBS

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
PROGRAMS = ("server", "cli")
MODEL_PROGRAMS = ("server", "cli", "export")  # export: `export-onnx` takes only the checkpoint's options


@dataclass(frozen=True)
class Option:
    """One setting: `name` is its attribute on Settings and its flag (--name-with-dashes)."""

    name: str
    env: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    choices: tuple | None = None
    programs: tuple[str, ...] = PROGRAMS
    server_default: Any = None  # the server's default where it differs from the CLI's
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def default_for(self, program: str) -> Any:
        return self.server_default if program == "server" and self.server_default is not None else self.default

    def shown_default(self, program: str) -> str:
        """The default as help texts and the docs show it: "none", "1024", "fp32"."""
        default = self.default_for(program)
        return "none" if default is None else f"{default:g}" if isinstance(default, float) else str(default)


def _window_s(text: str) -> float:
    value = float(text)
    if not MIN_WINDOW_S <= value <= MAX_WINDOW_S:
        raise ValueError(f"must be between {MIN_WINDOW_S:g} and {MAX_WINDOW_S:g} seconds")
    return value


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise ValueError("must be positive")
        return value
    parse.__name__ = kind.__name__
    return parse


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise ValueError("must be between 0 and 1")
    return value


def _max_segment_s(text: str) -> float:
    value = float(text)
    if not 1 <= value <= MAX_WINDOW_S:
        raise ValueError(f"must be between 1 and {MAX_WINDOW_S:g} seconds")
    return value


def _lanes(text: str) -> str | int:
    if text == "auto":
        return text
    value = int(text)
    if value < 1:
        raise ValueError("must be auto or a whole number of at least 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError("must be 1-65535")
    return value


OPTIONS = (
    Option("model", "E2V_MODEL", DEFAULT_MODEL, "hub id or local checkpoint folder", metavar="ID_OR_DIR",
           programs=MODEL_PROGRAMS),
    Option("hub", "E2V_HUB", "ms", "where a hub id is downloaded from: ms (ModelScope) or hf (Hugging Face)",
           choices=tuple(HUBS), programs=MODEL_PROGRAMS),
    Option("device", "E2V_DEVICE", None, "cpu, cuda, cuda:1, ... (default: CUDA when torch sees a GPU)",
           parse=check_device),
    Option("precision", "E2V_PRECISION", "fp32", "matmul precision: fp32 (exact), bf16, fp16 or int8 (CPU)",
           choices=PRECISIONS),
    Option("backend", "E2V_BACKEND", "torch", "torch, or onnx to run a folder written by export-onnx",
           choices=BACKENDS),
    Option("lanes", "E2V_LANES", "auto", "CPU: batches run side by side, each on its share of the cores "
           "(auto: 2 where there are 2 cores or more; 1 on a GPU and with --backend onnx, where lanes hold "
           "more copies of the weights: one more on 2 cores)", parse=_lanes, metavar="N"),
    Option("window_s", "E2V_WINDOW_S", 30.0, f"longest piece of audio the model sees at once, "
           f"{MIN_WINDOW_S:g}-{MAX_WINDOW_S:g} s", parse=_window_s, metavar="SECONDS"),
    Option("vad_threshold", "E2V_VAD_THRESHOLD", VAD_THRESHOLD, "segment mode: speech probability that starts "
           "a segment, 0-1 (lower finds quieter speech)", parse=_probability, metavar="P"),
    Option("vad_min_speech_s", "E2V_VAD_MIN_SPEECH_S", VAD_MIN_SPEECH_S, "segment mode: shorter bursts of speech "
           "are dropped", parse=_non_negative, metavar="SECONDS"),
    Option("vad_join_gap_s", "E2V_VAD_JOIN_GAP_S", VAD_JOIN_GAP_S, "segment mode: pauses shorter than this do "
           "not end a segment", parse=_non_negative, metavar="SECONDS"),
    Option("vad_max_segment_s", "E2V_VAD_MAX_SEGMENT_S", VAD_MAX_SEGMENT_S, "segment mode: longer speech is "
           "split at its quietest point", parse=_max_segment_s, metavar="SECONDS"),
    Option("output_dir", "E2V_OUTPUT_DIR", "outputs", "where the outputs_YYYYMMDD_HHMMSS folders go", metavar="DIR"),
    Option("max_file_mb", "E2V_MAX_FILE_MB", MAX_FILE_MB, "largest input file, MB", parse=_positive(float),
           server_default=200.0, metavar="MB"),
    Option("max_duration_s", "E2V_MAX_DURATION_S", MAX_DURATION_S, "longest input, seconds of audio",
           parse=_positive(float), server_default=3600.0, metavar="SECONDS"),
    Option("min_free_disk_mb", "E2V_MIN_FREE_DISK_MB", 500.0, "refuse a recognition when the output folder's "
           "disk has less free space than this, MB", parse=_non_negative, metavar="MB"),
    Option("log_level", "E2V_LOG_LEVEL", "INFO", "log messages from this level up", choices=LOG_LEVELS,
           programs=MODEL_PROGRAMS),
    Option("host", "E2V_HOST", "127.0.0.1", "address to bind (0.0.0.0 for every interface)", programs=("server",)),
    Option("port", "E2V_PORT", 7860, "port", parse=_port, programs=("server",)),
    Option("auth", "E2V_AUTH", None, "require this login (prefer E2V_AUTH or --auth-file: a flag shows in ps)",
           programs=("server",), metavar="USER:PASSWORD"),
    Option("auth_file", "E2V_AUTH_FILE", None, "file whose first line is user:password", programs=("server",),
           metavar="FILE"),
    Option("queue_size", "E2V_QUEUE_SIZE", 16, "requests that may wait for the model", parse=_positive(int),
           programs=("server",)),
    Option("cache_minutes", "E2V_CACHE_MINUTES", 60.0, "uploads and served downloads are deleted after this "
           "many minutes", parse=_positive(float), programs=("server",), metavar="MINUTES"),
    Option("batch_max_files", "E2V_BATCH_MAX_FILES", 50, "the page's batches: most audio files per batch "
           "(a .zip counts its audio files)", parse=_positive(int), programs=("server",), metavar="N"),
    Option("batch_max_mb", "E2V_BATCH_MAX_MB", 500.0, "the page's batches: most audio per batch, MB",
           parse=_positive(float), programs=("server",), metavar="MB"),
)


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one program run (see OPTIONS for each field's meaning)."""

    model: str
    hub: str
    device: str | None
    precision: str
    backend: str
    lanes: str | int  # "auto" or a count
    window_s: float
    vad_threshold: float
    vad_min_speech_s: float
    vad_join_gap_s: float
    vad_max_segment_s: float
    output_dir: str
    max_file_mb: float
    max_duration_s: float
    min_free_disk_mb: float
    log_level: str
    host: str
    port: int
    auth: tuple[str, str] | None
    auth_file: str | None
    queue_size: int
    cache_minutes: float
    batch_max_files: int
    batch_max_mb: float

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)

    @property
    def binds_beyond_loopback(self) -> bool:
        return self.host not in ("127.0.0.1", "localhost", "::1") and not self.host.startswith("127.")

    def engine_options(self) -> dict:
        """Keyword arguments of `load_model` (the model is its first argument)."""

        return {
            "hub": self.hub, "device": self.device, "precision": self.precision, "backend": self.backend,
            "lanes": None if self.lanes == "auto" else self.lanes, "window_s": self.window_s,
            "vad": VadSettings(threshold=self.vad_threshold, min_speech_s=self.vad_min_speech_s,
                               join_gap_s=self.vad_join_gap_s, max_segment_s=self.vad_max_segment_s),
            "limits": AudioLimits(max_file_bytes=self.max_file_bytes, max_duration_s=self.max_duration_s),
        }


def add_options(parser: argparse.ArgumentParser, program: str) -> None:
    """Add the flags of `program`'s options; unset flags stay None so the environment can fill them."""
    for option in OPTIONS:
        if program not in option.programs:
            continue
        parser.add_argument(
            option.flag, dest=option.name, default=None, choices=option.choices, metavar=option.metavar,
            help=f"{option.help} (env {option.env}; default {option.shown_default(program)})",
        )


def resolve(args: argparse.Namespace, program: str, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from parsed flags, then `environ` (default os.environ), then the defaults.

    Raises ValueError naming the flag and its variable when a value is not allowed.
    """
    environ = os.environ if environ is None else environ
    values, given = {}, {}  # given: how the user wrote a value, for messages ("--lanes 2", "E2V_LANES=2")
    for option in OPTIONS:
        text, source = getattr(args, option.name, None), option.flag
        if text is None and environ.get(option.env):
            text, source = environ[option.env], option.env
        if text is None:
            values[option.name] = option.default_for(program)
            continue
        given[option.name] = f"{source}={text}" if source == option.env else f"{source} {text}"
        try:
            value = option.parse(text) if isinstance(text, str) else text
        except ValueError as e:
            raise ValueError(f"{source}: {text!r} {_reason(e)}") from e
        if option.choices and value not in option.choices:
            raise ValueError(f"{source}: {text!r} is not one of {', '.join(map(str, option.choices))}")
        values[option.name] = value
    values["auth"] = read_auth(values["auth"], values["auth_file"])
    if values.get("backend") == "onnx" and values.get("precision", "fp32") != "fp32":
        raise ValueError(f"{given['precision']} does not apply to {given['backend']}: an exported "
                         "folder runs the precision it was exported with (export-onnx --int8 for int8)")
    return Settings(**values)


def default_settings(program: str = "cli", **overrides) -> Settings:
    """`program`'s defaults, ignoring the environment, with `overrides` (already parsed values)."""

    return replace(resolve(argparse.Namespace(), program, environ={}), **overrides)


def _reason(error: ValueError) -> str:
    text = str(error)
    return text if text.startswith("must") else "is not a valid value"


def read_auth(text: str | None, auth_file: str | None) -> tuple[str, str] | None:
    """"user:password" (from the flag or E2V_AUTH, else the first line of `auth_file`) -> (user, password)."""
    if not text and auth_file:
        try:
            text = Path(auth_file).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError) as e:
            raise ValueError(f"--auth-file: cannot read a user:password line from {auth_file}") from e
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth / E2V_AUTH / --auth-file must hold user:password")
    return user, password


def parse_settings(
    parser: argparse.ArgumentParser,
    program: str,
    argv: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    strict: bool = True,
) -> tuple[argparse.Namespace, Settings]:
    """Parse `argv` with `parser` (which has `add_options(parser, program)`), then resolve.

    Bad values end the program through `parser.error` (exit code 2) with the reason.
    When not `strict`, unknown arguments are ignored (the app imported by another program).
    """
    args, unknown = parser.parse_known_args(argv)
    if strict and unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args, resolve(args, program, environ)
    except ValueError as e:
        parser.error(str(e))
        raise  # parser.error exits; this keeps type checkers content


def configure_logging(level: str) -> None:
    """One line per message on stderr for this package's loggers, at `level`."""
    logger = logging.getLogger("emotion2vec_ui")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def settings_table(program: str) -> str:
    """The docs' markdown table of `program`'s settings: flag, environment, default."""
    rows = ["| setting | flag | environment | default |", "| --- | --- | --- | --- |"]
    for option in OPTIONS:
        if program in option.programs:
            allowed = f" ({' / '.join(map(str, option.choices))})" if option.choices else ""
            rows.append(f"| {option.help}{allowed} | `{option.flag}` | `{option.env}` | `{option.shown_default(program)}` |")
    return "\n".join(rows)
