"""Segment mode on the page, in a real headless Chromium at a laptop's 1366x768: a stereo
call recognised one speaker per channel (timeline lanes, speaker cards, segment table,
downloads), and the conversation views of a 60-minute session as the page draws them.

Screenshots are saved under test-artifacts/ at the repository root.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emotion2vec_ui.audio.decode import SAMPLE_RATE
from emotion2vec_ui.audio.testdata import write_audio
from emotion2vec_ui.web.conversation import clock, conversation_outputs
from tests.test_browser import ARTIFACTS, CHROMIUM, RUN, browser, expect, open_app, upload  # noqa: F401  (browser is a fixture)
from tests.ui_server import ui_server  # noqa: F401  (ui_server is a fixture)

from .speech import stereo_call
from .test_ui_conversation import session

LAPTOP = {"width": 1366, "height": 768}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


@pytest.fixture
def laptop_page(browser, ui_server):  # noqa: F811
    """A fresh tab on the app's page in a 1366x768 window."""
    ARTIFACTS.mkdir(exist_ok=True)
    context, tab = open_app(browser, ui_server.url, LAPTOP["width"], LAPTOP["height"])
    yield tab
    context.close()


@pytest.fixture(scope="module")
def call_file(tmp_path_factory) -> Path:
    stereo, _ = stereo_call()
    return write_audio(tmp_path_factory.mktemp("browser_call") / "support_call.wav", stereo, SAMPLE_RATE, "wav")


def test_a_stereo_call_by_channel(laptop_page, ui_server, call_file):  # noqa: F811
    from gradio_client import Client, handle_file

    page = laptop_page
    data = Client(ui_server.url, verbose=False).predict(
        handle_file(str(call_file)), "segment", False, "channels", "agent, customer", api_name="/predict")[0]
    options = page.locator("#e2v-speakers")
    expect(options).to_be_hidden()  # speaker options belong to segment mode only
    upload(page, call_file)
    page.get_by_label("语段级别 (segment)").check()
    expect(options).to_be_visible()
    page.get_by_label("立体声分轨 · one per channel").check()
    page.locator("#e2v-speaker-names input").fill("agent, customer")
    page.screenshot(path=str(ARTIFACTS / "conversation_options_1366.png"))
    page.get_by_role("button", name=RUN).click()
    expect(page.locator("#e2v-log textarea")).to_have_value(re.compile(r"\[4/4\] 保存 Saving: outputs_\d{8}_\d{6}"))

    timeline = page.locator("#e2v-timeline")
    expect(timeline.locator(".e2v-tl-lane")).to_have_count(2)
    expect(timeline.locator(".e2v-tl-name")).to_have_text(["agent", "customer"])
    expect(timeline.locator(".e2v-tl-lane span")).to_have_count(len(data["segments"]))
    expect(timeline).to_contain_text(f"{len(data['segments'])} 个语段 segments")
    expect(timeline).to_contain_text(re.compile(r"分析用时 analysis took \d+\.\d\d s"))
    first = data["segments"][0]
    lane = 0 if first["speaker"] == "agent" else 1
    bar = timeline.locator(".e2v-tl-lane").nth(lane).locator("span").first
    expect(bar).to_have_attribute("title", re.compile(re.escape(f"{clock(first['start_s'])}–{clock(first['end_s'])} · "
                                                                f"{first['speaker']} · {first['emotion_display']}")))
    assert bar.bounding_box()["width"] > 10  # a 2-second turn of a 20-second call is plainly visible

    cards = page.locator("#e2v-speaker-summary .e2v-spk")
    expect(cards).to_have_count(2)
    for card, speaker in zip((cards.nth(0), cards.nth(1)), data["speakers"]):
        expect(card.locator(".e2v-spk-name")).to_have_text(speaker["speaker"])
        expect(card).to_contain_text(f"{speaker['num_segments']} 段 segments")
        expect(card).to_contain_text(speaker["dominant_emotion_display"])

    table = page.locator("#e2v-conv-segments")
    expect(table.get_by_test_id("cell-0-0")).to_have_text(f"{clock(first['start_s'])}–{clock(first['end_s'])}")
    expect(table.get_by_test_id("cell-0-2")).to_have_text(first["speaker"])
    expect(table.get_by_test_id("cell-0-3")).to_have_text(first["emotion_display"])
    expect(table.get_by_test_id("cell-0-4")).to_have_text(f"{first['confidence']:.1%}")
    files = page.locator("#e2v-files")
    for name in ("result.json", "processed_audio.wav", "segments.csv", "segments.srt", "segments.vtt"):
        expect(files.locator(f'a[href$="/{name}"]')).to_have_count(1)
    expect(page.locator("#e2v-frame-views")).to_be_hidden()

    page.locator("#e2v-headline").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "conversation_call_1366.png"))
    page.screenshot(path=str(ARTIFACTS / "conversation_call_full.png"), full_page=True)

    # Back to utterance: the speaker options hide again.
    page.get_by_label("整句级别 (utterance)").check()
    expect(options).to_be_hidden()


def test_a_60_minute_session_stays_readable(browser):  # noqa: F811
    """The views of a one-hour, two-speaker session drawn with the page's styles in a
    result-column-wide box: 12 rows of 5 minutes, every turn at least 2 px wide."""
    from emotion2vec_ui.web.page import CSS

    result = session(60)
    visible, summary, timeline, table = conversation_outputs(result)
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_content(
        f"<html><head><style>body {{ font-family: sans-serif; --body-text-color: #222; "
        "--body-text-color-subdued: #666; --border-color-primary: #ddd; --background-fill-secondary: #f7f7f9; }"
        f"{CSS}</style></head><body><div style='width: 640px'>{timeline}{summary}</div></body></html>"
    )
    page.screenshot(path=str(ARTIFACTS / "conversation_60min_1366.png"), full_page=True)
    rows = page.locator(".e2v-tl-row")
    expect(rows).to_have_count(12)
    bars = page.locator(".e2v-tl-lane span")
    widths = bars.evaluate_all("spans => spans.map(s => s.getBoundingClientRect().width)")
    assert len(widths) >= len(result.segments) and min(widths) >= 2
    height = page.locator(".e2v-tl").bounding_box()["height"]
    assert height < 768, height  # the whole hour fits one laptop screen
    context.close()
