"""The one check of a recognition's options; the page, REST and the CLI translate its errors.

    speakers, names = check_options("segment", False, "2", ["agent", "customer"])

Raises `OptionError` (a bad granularity or embedding) or `SpeakerOptionError` (speaker
options outside segment mode, or a speaker mode or names that do not fit). The error's
`option` names the argument at fault, so a front end can name its own flag for it.
"""

from __future__ import annotations

import numpy as np

from ..errors import OptionError, SpeakerOptionError
from ..results import GRANULARITIES
from ..segments.conversation import check_speaker_names, check_speakers


def check_granularity(granularity) -> str:
    if granularity not in GRANULARITIES:
        raise OptionError(f"granularity must be one of {', '.join(GRANULARITIES)}, not {granularity!r}",
                          option="granularity")
    return granularity


def check_options(granularity, embedding=False, speakers=None, speaker_names=None) -> tuple:
    """(speakers, speaker names) as the engine takes them: speakers None, "channels",
    "auto" or a count; names a list of stripped names or None. Nothing is decoded."""
    check_granularity(granularity)
    if not isinstance(embedding, (bool, np.bool_)):
        raise OptionError(f"embedding must be true or false (a boolean), not {embedding!r}", option="embedding")
    mode = check_speakers(speakers)
    if granularity != "segment" and (mode is not None or speaker_names):
        raise SpeakerOptionError(f'speakers and speaker names apply to granularity "segment" only, not to '
                                 f"{granularity!r}", option="speakers" if mode is not None else "speaker_names")
    return mode, check_speaker_names(speaker_names, mode)
