"""A call's raw values -> checked ones, or a `RequestError` that says what is wrong.

`check_request` is the single recognition's check (page and REST `/predict`); the option
rules themselves are the engine's (`check_options` raises `OptionError`), translated here
into `RequestError`s; `malformed_call_message` explains a call Gradio could not even hand
to a handler.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..engine.options import check_options as check_engine_options
from ..errors import SpeakerOptionError
from .conversation import DEFAULT_SPEAKERS, parse_speaker_names, parse_speakers

API_INPUTS = ("audio", "granularity", "embedding", "speakers", "speaker_names")
API_DEFAULTS = (DEFAULT_SPEAKERS, "")  # what calls that stop after the first three inputs get for the last two
API_REQUIRED = len(API_INPUTS) - len(API_DEFAULTS)
API_EXAMPLE = 'client.predict(handle_file("a.wav"), "utterance", False, api_name="/predict")'


class RequestError(ValueError):
    """A call whose values cannot be used; the message says which and how to call instead."""




class UserFacingError(Exception):
    """A message for the person or program that made the call (plain text) and its title."""

    def __init__(self, message: str, title: str):
        super().__init__(message)
        self.message, self.title = message, title


def input_name(audio) -> str:
    return Path(audio).name if isinstance(audio, str) and audio else "a call without audio"



def check_request(audio, granularity, embedding, speakers=DEFAULT_SPEAKERS, speaker_names="") -> tuple:
    """The checked (audio path, granularity, embedding, speakers, speaker names) of a call,
    or RequestError.

    `audio` is what Gradio's Audio component hands over: a path in its upload folder.
    `embedding` must be a real boolean: "false", "no", 5 or [1] are refused rather than
    guessed at. `speakers` ("one", "channels", "auto" or a count) and `speaker_names`
    ("agent, customer") become `predict`'s, for granularity "segment" only.
    """
    speakers, names = check_options(granularity, embedding, speakers, speaker_names)
    if audio is None or audio == "":
        raise RequestError("No audio: upload or record an audio clip first (请先上传或录制一段音频).")
    if not isinstance(audio, str):
        raise RequestError(f"audio must be an uploaded file, not a {type(audio).__name__}. Call: {API_EXAMPLE}")
    return audio, granularity, embedding, speakers, names


def check_options(granularity, embedding, speakers=DEFAULT_SPEAKERS, speaker_names="") -> tuple:
    """The engine's option check (`engine.options.check_options`) on a call's values, with
    the speaker mode and names as the page and REST send them ("2", "agent, customer");
    returns (speakers, speaker names) as `predict` takes them, or RequestError."""
    try:
        speakers = parse_speakers(speakers)
        return check_engine_options(granularity, embedding, speakers, parse_speaker_names(speaker_names, speakers))
    except SpeakerOptionError as e:
        if e.option == "speakers" and granularity != "segment":
            raise RequestError(f'{e}. Send "one" and "" (or leave them out).') from e
        raise RequestError(_sentence(str(e))) from e
    except ValueError as e:  # OptionError, or a value of the wrong type
        raise RequestError(_sentence(str(e))) from e


def _sentence(text: str) -> str:
    return text if text.endswith(".") else f"{text}."


def malformed_call_message(inputs: list, error: Exception) -> str:
    """What is wrong with a call that Gradio could not even hand to a handler.

    `inputs` are the call's raw values; `error` what Gradio raised preparing them.
    """
    if len(inputs) < API_REQUIRED:
        return (f"predict takes {API_REQUIRED} to {len(API_INPUTS)} inputs ({', '.join(API_INPUTS)}); this call "
                f"sent {len(inputs)}. Call: {API_EXAMPLE}")
    audio, granularity, embedding, speakers, speaker_names = api_values(inputs)[: len(API_INPUTS)]
    try:
        check_options(granularity, embedding, speakers, speaker_names)
    except RequestError as e:
        return str(e)
    upload_hint = ("Upload the file first (gradio_client's handle_file, or POST /gradio_api/upload) and pass "
                   '{"path": <the returned path>, "meta": {"_type": "gradio.FileData"}}.')
    if isinstance(audio, dict) and isinstance(audio.get("path"), str) and audio["path"]:
        path = audio["path"]
        if path.startswith(("http://", "https://")):
            return f"audio: URLs are not fetched by this server. {upload_hint}"
        return f"audio: {Path(path).name} was not uploaded to this server, so it cannot be read. {upload_hint}"
    if isinstance(audio, str) and audio:
        return (f"audio: {Path(audio).name} was sent as a path, and this server reads only files uploaded to it. "
                f"{upload_hint}")
    if audio is not None:
        shown = json.dumps(audio)
        return f"audio must be an uploaded file, not {shown if len(shown) <= 80 else shown[:77] + '...'}. {upload_hint}"
    return f"The call's values cannot be used ({str(error).splitlines()[0][:200]}). Call: {API_EXAMPLE}"


def api_values(inputs: list) -> list:
    """A /predict call's values: the optional inputs it left out get their defaults, and
    speaker names sent as a list of strings are joined ("agent, customer")."""
    missing = len(API_INPUTS) - len(inputs)
    values = [*inputs, *API_DEFAULTS[len(API_DEFAULTS) - missing :]] if 0 < missing <= len(API_DEFAULTS) else list(inputs)
    names = values[API_INPUTS.index("speaker_names")] if len(values) == len(API_INPUTS) else None
    if isinstance(names, list) and all(isinstance(name, str) for name in names):
        values[API_INPUTS.index("speaker_names")] = ", ".join(names)
    return values

