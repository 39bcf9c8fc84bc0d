"""Let the page's audio input take every format the decoder reads (formats.py).

Gradio's Audio component checks a chosen or dropped file against a fixed list of audio
MIME types and `audio/*`, but browsers call a `.webm` file (their own recording format)
`video/webm`, so Gradio refuses it. `upload_script` is page-load JavaScript that adds the
decoder's file name endings to the file chooser's `accept` list and relabels such files
`audio/<ending>` before Gradio looks at them; the bytes are untouched and the server
decodes them by content, as for any upload.
"""

from __future__ import annotations

import json

from ..audio.formats import AUDIO_SUFFIXES

_SCRIPT = """() => {
  const suffixes = __SUFFIXES__, root = __ROOT__;
  const readable = (file) => file.type.startsWith("audio/") ||
    !suffixes.some((suffix) => file.name.toLowerCase().endsWith(suffix));
  const relabelled = (files) => {
    const list = new DataTransfer();
    for (const file of files) {
      const type = "audio/" + file.name.split(".").pop().toLowerCase();
      list.items.add(readable(file) ? file : new File([file], file.name, {type, lastModified: file.lastModified}));
    }
    return list;
  };
  const inside = (node) => node instanceof Element && node.closest(root) !== null;
  document.addEventListener("change", (event) => {
    const input = event.target;
    if (inside(input) && input.type === "file" && input.files && ![...input.files].every(readable)) {
      input.files = relabelled(input.files).files;
    }
  }, true);
  document.addEventListener("drop", (event) => {
    const files = event.dataTransfer && event.dataTransfer.files;
    if (!inside(event.target) || !files || [...files].every(readable)) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    event.target.dispatchEvent(new DragEvent("drop", {bubbles: true, cancelable: true, dataTransfer: relabelled(files)}));
  }, true);
  const widen = () => document.querySelectorAll(root + " input[type=file]").forEach((input) => {
    const accept = input.getAttribute("accept");
    if (accept && !accept.includes(suffixes[0])) input.setAttribute("accept", accept + "," + suffixes.join(","));
  });
  new MutationObserver(widen).observe(document.body, {childList: true, subtree: true});
  widen();
}"""


def upload_script(element_id: str, suffixes: tuple[str, ...] = AUDIO_SUFFIXES) -> str:
    """The page-load function (Gradio's `js`) for the Audio component with `element_id`."""
    return _SCRIPT.replace("__SUFFIXES__", json.dumps(list(suffixes))).replace("__ROOT__", json.dumps(f"#{element_id}"))
