"""The engine's option check for a command's flags, before any model loads."""

from __future__ import annotations

import argparse

from ..engine.options import check_options
from ..errors import OptionError
from ..segments.conversation import check_speakers

FLAGS = {"granularity": "--granularity", "embedding": "--embedding", "speakers": "--speakers",
         "speaker_names": "--speaker-names"}


def speakers_option(text: str):
    """The --speakers flag's type: "one", "channels", "auto" or a count."""
    try:
        return check_speakers(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def check_recognition_flags(args: argparse.Namespace) -> None:
    """Set `args.speakers` and `args.speaker_names` as the engine takes them, or end the
    program through the command's parser (usage line, exit code 2) with the engine's message
    under the flag at fault."""
    try:
        args.speakers, args.speaker_names = check_options(
            args.granularity, args.embedding, args.speakers, getattr(args, "speaker_names", None))
    except OptionError as e:
        args.command_parser.error(f"{FLAGS.get(e.option, 'options')}: {e}")
