"""The page in a real headless Chromium (Playwright's sync API): upload, recognise, read
the results, in both granularities, with a bad file and with the example clip.

Screenshots of each run are saved under test-artifacts/ at the repository root; with
E2V_UPDATE_SCREENSHOTS=1 the example's run also rewrites the docs' picture, docs/images/page.png.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from emotion2vec_ui import label_for
from emotion2vec_ui.audio.testdata import voice_like, write_audio
from tests.ui_server import REPO, ui_server  # noqa: F401  (ui_server is a fixture)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",  # a test tone as microphone
]
ARTIFACTS = REPO / "test-artifacts"
RUN = "🎯 开始识别 Recognise"
EXAMPLE = "🎧 识别示例 Run the example"  # loads the shipped clip and recognises it

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(apt-get install chromium fonts-noto-cjk fonts-noto-color-emoji)"),
]
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
expect.set_options(timeout=30_000)  # a recognition on a busy 2-core machine may take seconds


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_app(browser, url: str, width: int, height: int, permissions: tuple[str, ...] = ()):
    """(context, tab): a fresh browser context with the app's page loaded in a width x height window."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
    context.grant_permissions(list(permissions))
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    tab.goto(url)
    tab.get_by_role("button", name=RUN).wait_for()
    return context, tab


@pytest.fixture
def page(browser, ui_server):  # noqa: F811
    """A fresh tab on the app's page, loaded."""
    context, tab = open_app(browser, ui_server.url, 1400, 1000, ("microphone",))
    yield tab
    context.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A 30 s WAV (the recommended longest clip) and a 10-minute one (8 kHz 8-bit, to fit the
    test server's 5 MB upload limit), both voice-like."""
    folder = tmp_path_factory.mktemp("browser_audio")
    return {
        "30s": write_audio(folder / "speech_30s.wav", voice_like(30.0, 22_050, 1, seed=7), 22_050, "wav"),
        "10min": write_audio(folder / "lecture_10min.wav", voice_like(600.0, 8_000, 1, seed=8), 8_000, "wav_u8"),
    }


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"browser_{name}.png"), full_page=True)


DOCS_SCREENSHOT = REPO / "docs" / "images" / "page.png"  # the README's and the docs' picture of the page


def update_docs_screenshot(page) -> None:
    """With E2V_UPDATE_SCREENSHOTS=1, the page as a 1366x768 screen shows it, into DOCS_SCREENSHOT."""
    if os.environ.get("E2V_UPDATE_SCREENSHOTS") != "1":
        return
    page.set_viewport_size({"width": 1366, "height": 768})
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(800)  # let the layout and the plot settle at the new width
    DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_SCREENSHOT))


def upload(page, path: Path) -> None:
    """Put a file in the audio component through its file input and wait until it holds it."""
    page.locator("#e2v-audio input[type=file]").set_input_files(str(path))
    expect(page.locator("#e2v-audio a[download]")).to_have_attribute("href", re.compile(re.escape(path.name)))


def recognise(page, granularity: str = "utterance") -> None:
    """Choose the granularity, press the button, and wait for the processing log's last step."""
    page.get_by_label("帧级别 (frame)" if granularity == "frame" else "整句级别 (utterance)").check()
    page.get_by_role("button", name=RUN).click()
    expect(page.locator("#e2v-log textarea")).to_have_value(re.compile(r"\[4/4\] 保存 Saving: outputs_\d{8}_\d{6}"))


def expected_result(ui_server, path: Path, granularity: str) -> dict:  # noqa: F811
    """What the API says about `path`; the model is deterministic, so the page must agree."""
    from gradio_client import Client, handle_file

    client = Client(ui_server.url, verbose=False)
    return client.predict(handle_file(str(path)), granularity, False, api_name="/predict")[0]


def check_headline_and_chart(page, data: dict) -> None:
    headline = page.locator("#e2v-headline")
    expect(headline).to_contain_text(f"{data['emotion_display']} 置信度: {data['confidence']:.1%}")
    expect(headline).to_contain_text("confidence: the probability the model gives this emotion for the whole clip")
    bars = page.locator("#e2v-scores .e2v-score")
    expect(bars).to_have_count(len(data["scores"]))
    for row, (key, score) in zip(bars.all(), data["scores"].items()):  # every bar carries its percentage
        expect(row).to_contain_text(label_for(key).chinese)
        expect(row.locator(".e2v-score-value")).to_have_text(f"{score:.1%}")
    expect(page.locator("#e2v-scores .e2v-top")).to_contain_text(label_for(data["emotion"]).english)


def test_utterance_run_shows_emotion_chart_and_log(page, ui_server, clips):  # noqa: F811
    data = expected_result(ui_server, clips["30s"], "utterance")
    upload(page, clips["30s"])
    recognise(page, "utterance")
    check_headline_and_chart(page, data)
    log = page.locator("#e2v-log textarea").input_value()
    assert "[1/4] 校验 Validation: speech_30s.wav ✓" in log
    assert "22050 Hz 1 ch → 16000 Hz mono, 30.00 s" in log
    assert re.search(r"\[3/4\] 推理 Inference: utterance on cpu in \d+\.\d\d s", log)
    check_downloads(page, ["result.json", "processed_audio.wav"])
    expect(page.locator("#e2v-json")).to_contain_text('"emotion"')
    expect(page.locator("#e2v-track")).to_be_hidden()
    expect(page.locator("#e2v-audio").get_by_role("button", name=re.compile("^(分享|Share)$"))).to_have_count(0)
    screenshot(page, "utterance")


def check_downloads(page, names: list[str]) -> None:
    """The download list holds exactly `names` as links, says no more in its label, and has no remove buttons."""
    files = page.locator("#e2v-files")
    expect(files.locator("a[href*='gradio_api/file=']")).to_have_count(len(names))
    for name in names:
        expect(files.locator(f"a[href$='/{name}']")).to_have_count(1)
    expect(files).not_to_contain_text("embedding.npy" if "embedding.npy" not in names else "(")
    expect(files.get_by_role("button", name="Remove this file")).to_have_count(0)


@pytest.mark.parametrize("clip", ["30s", "10min"])
def test_frame_run_shows_time_plot_and_segments(page, ui_server, clips, clip):  # noqa: F811
    data = expected_result(ui_server, clips[clip], "frame")
    upload(page, clips[clip])
    page.get_by_label("提取 Embedding 特征").check()
    recognise(page, "frame")
    check_headline_and_chart(page, data)
    track = page.locator("#e2v-track")
    expect(track.locator("svg.marks")).to_be_visible()
    expect(track.locator(".mark-line path")).to_have_count(len(data["scores"]))
    expect(page.locator("#e2v-track-legend .e2v-key")).to_have_count(len(data["scores"]))
    expect(page.locator("#e2v-track-legend")).to_contain_text("moving average")
    table = page.locator("#e2v-segments")
    expect(table).to_contain_text("分段主导情绪 Dominant emotion per segment")
    displays = "|".join(re.escape(label_for(key).display) for key in data["scores"])
    expect(table.get_by_test_id("cell-0-0")).to_have_text("0.00")  # the first segment starts the clip
    expect(table.get_by_test_id("cell-0-3")).to_have_text(re.compile(rf"^\s*({displays})\s*$"))
    expect(page.locator("#e2v-track-legend")).to_contain_text("runs of one leading emotion in this smoothed track")
    check_downloads(page, ["result.json", "processed_audio.wav", "embedding.npy"])
    screenshot(page, f"frame_{clip}")


def test_bad_file_shows_a_toast_naming_it_and_the_page_goes_on(page, tmp_path):
    bad = tmp_path / "meeting_notes.wav"
    bad.write_text("these are meeting notes, not audio\n" * 20)
    upload(page, bad)
    page.get_by_role("button", name=RUN).click()
    toast = page.locator("[data-testid=toast-text]")
    expect(toast).to_contain_text("meeting_notes.wav: not a recognised audio file")
    # The page itself says so too: the headline and the processing log, not only a passing toast.
    expect(page.locator("#e2v-headline")).to_contain_text("无法使用这段音频 Cannot use this audio")
    expect(page.locator("#e2v-headline")).to_contain_text("meeting_notes.wav: not a recognised audio file")
    expect(page.locator("#e2v-log textarea")).to_have_value(re.compile("^错误 Error: meeting_notes.wav: not a recognised"))
    assert str(tmp_path) not in toast.inner_text() and "/gradio" not in toast.inner_text()
    expect(toast).to_be_visible()
    page.wait_for_timeout(800)  # let the toast finish sliding in
    screenshot(page, "bad_file")
    page.locator("[data-testid=toast-close]").first.click()

    page.get_by_role("button", name=EXAMPLE).click()  # loads the example and recognises it
    expect(page.locator("#e2v-audio a[download]")).to_have_attribute("href", re.compile("example_zh.wav"))
    expect(page.locator("#e2v-headline")).to_contain_text("example_zh.wav")


def test_example_button_loads_the_shipped_clip_and_recognises_it(page):
    page.get_by_label("帧级别 (frame)").check()
    page.get_by_role("button", name=EXAMPLE).click()  # no press of the run button: the example runs at once
    audio = page.locator("#e2v-audio")
    expect(audio.locator("a[download]")).to_have_attribute("href", re.compile("example_zh.wav"))
    expect(audio).to_contain_text("0:05")  # the player shows the clip's 4.65 s, rounded up
    expect(page.locator("#e2v-log textarea")).to_have_value(re.compile(r"\[4/4\] 保存 Saving: outputs_\d{8}_\d{6}"))
    expect(page.locator("#e2v-headline")).to_contain_text("example_zh.wav")
    log = page.locator("#e2v-log textarea").input_value()
    assert "16000 Hz 1 ch → 16000 Hz mono, 4.65 s" in log and "[3/4] 推理 Inference: frame on cpu" in log
    expect(page.locator("#e2v-track svg.marks")).to_be_visible()  # with the options chosen: frame mode
    screenshot(page, "example")
    update_docs_screenshot(page)


def test_every_button_is_in_view_at_1366x768_and_says_what_it_does_in_both_languages(browser, ui_server):  # noqa: F811
    """On a 1366x768 screen the run button needs no scrolling, with any granularity chosen,
    and the header warns that the test checkpoint's random weights make its emotions meaningless."""
    context, page = open_app(browser, ui_server.url, 1366, 768)
    try:
        def in_view(selector: str) -> None:
            box = page.locator(selector).bounding_box()
            assert box and box["y"] >= 0 and box["y"] + box["height"] <= 768 and box["x"] + box["width"] <= 1366, \
                (selector, box)

        assert page.evaluate("window.scrollY") == 0
        for granularity in ("整句级别 (utterance)", "帧级别 (frame)", "语段级别 (segment)"):
            page.get_by_label(granularity).check()
            page.wait_for_timeout(300)  # the speaker options open in segment mode
            in_view("#e2v-run")
            in_view("#e2v-example")
        expect(page.locator("#e2v-run")).to_have_text(RUN)
        expect(page.locator("#e2v-example")).to_have_text(EXAMPLE)
        banner = page.locator("#e2v-random-weights")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("Random-weight model: its emotions are meaningless")
        in_view("#e2v-random-weights")
        page.wait_for_timeout(300)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser_single_1366x768.png"))
        page.get_by_role("tab", name="批量处理 Batch").click()
        expect(page.locator("#e2v-batch-run")).to_have_text("📦 开始批量识别 Run the batch")
        in_view("#e2v-batch-run")
    finally:
        context.close()


def test_microphone_recording(page):
    audio = page.locator("#e2v-audio")
    audio.get_by_role("button", name="Record audio").click()
    audio.get_by_role("button", name=re.compile("^(录制|Record)$")).click()  # the page is in zh-CN
    page.wait_for_timeout(1500)
    audio.get_by_role("button", name=re.compile("^(停止|Stop)$")).first.click()
    expect(audio.locator("a[download]")).to_have_attribute("href", re.compile("gradio_api/file="))
    recognise(page)
    assert re.search(r"\[1/4\] 校验 Validation: \S+ ✓ .* \d+\.\d\d s", page.locator("#e2v-log textarea").input_value())
    screenshot(page, "microphone")


def test_no_audio_is_a_clear_message(page):
    page.get_by_role("button", name=RUN).click()
    expect(page.locator("[data-testid=toast-text]")).to_contain_text("No audio: upload or record an audio clip first")
    expect(page.locator("#e2v-headline")).to_contain_text("请先上传或录制一段音频")


def test_webm_from_a_browser_recording_uploads_and_is_recognised(page, tmp_path):
    """Browsers call .webm video/webm, which Gradio's own audio check refuses; the page takes it."""
    clip = write_audio(tmp_path / "speech_mic.webm", voice_like(3.0, 48_000, 1, seed=3), 48_000, "webm")
    accept = page.locator("#e2v-audio input[type=file]").get_attribute("accept")
    assert ".webm" in accept and ".opus" in accept and "audio/*" in accept
    upload(page, clip)
    expect(page.locator("[data-testid=toast-text]")).to_have_count(0)
    recognise(page)
    log = page.locator("#e2v-log textarea").input_value()
    assert "[1/4] 校验 Validation: speech_mic.webm ✓ (WEBM/Matroska, 1 ch, 48000 Hz, 3.00 s" in log
    expect(page.locator("#e2v-headline")).to_contain_text("speech_mic.webm")
    screenshot(page, "webm")


def test_a_new_file_clears_the_previous_result(page, clips, tmp_path):
    upload(page, clips["30s"])
    recognise(page)
    expect(page.locator("#e2v-headline")).to_contain_text("speech_30s.wav")
    quiet = write_audio(tmp_path / "short_silence.wav", np.zeros((8_000, 1), dtype=np.float32), 16_000, "wav")
    page.locator("#e2v-audio").get_by_role("button", name=re.compile("^(清除|Clear)$")).click()
    expect(page.locator("#e2v-headline")).to_contain_text("等待识别 · Waiting for audio")  # cleared with the audio
    upload(page, quiet)
    expect(page.locator("#e2v-headline")).to_contain_text("等待识别 · Waiting for audio")
    expect(page.locator("#e2v-scores .e2v-score")).to_have_count(0)
    expect(page.locator("#e2v-log textarea")).to_have_value("")
    expect(page.locator("#e2v-files a")).to_have_count(0)
    screenshot(page, "cleared")
    # The short, silent clip is recognised with a warning in the headline and the log.
    recognise(page)
    expect(page.locator("#e2v-headline")).to_contain_text("Short clip: 0.50 s, under the recommended 1 s")
    expect(page.locator("#e2v-headline")).to_contain_text("Nearly silent")
    log = page.locator("#e2v-log textarea").input_value()
    assert "注意 Note: 音频很短 Short clip" in log and "注意 Note: 几乎无声 Nearly silent" in log
    screenshot(page, "short_silent")


def test_webm_dropped_on_the_audio_input_is_taken(page, tmp_path):
    """A drop carries the browser's own type (video/webm for .webm), as a real drag from the desktop does."""
    import base64

    clip = write_audio(tmp_path / "dropped.webm", voice_like(2.0, 48_000, 1, seed=4), 48_000, "webm")
    page.evaluate(
        """([data, name]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: "video/webm"}));
            const target = document.querySelector("#e2v-audio .upload-container");
            target.dispatchEvent(new DragEvent("drop", {bubbles: true, cancelable: true, dataTransfer: transfer}));
        }""",
        [base64.b64encode(clip.read_bytes()).decode(), clip.name],
    )
    expect(page.locator("#e2v-audio a[download]")).to_have_attribute("href", re.compile("dropped.webm"))
    expect(page.locator("[data-testid=toast-text]")).to_have_count(0)
    recognise(page)
    expect(page.locator("#e2v-headline")).to_contain_text("dropped.webm")


# -- the batch tab --------------------------------------------------------------------------


def test_batch_tab_with_ten_files_two_of_them_bad(browser, ui_server, tmp_path):  # noqa: F811
    """10 files (8 clips in three formats, a text file named .wav, an empty .mp3): the table
    fills in, the bad ones show their errors, then the chart and the zip of every folder."""
    import zipfile

    formats = ["wav", "mp3", "flac"]
    files = [write_audio(tmp_path / f"call_{n:02d}{'.' + formats[n % 3]}", voice_like(2.0 + n % 3, 16_000, 1, seed=n),
                         16_000, formats[n % 3]) for n in range(8)]
    notes, empty = tmp_path / "meeting_notes.wav", tmp_path / "silent_take.mp3"
    notes.write_text("these are meeting notes, not audio\n" * 20)
    empty.write_bytes(b"")
    files[3:3] = [notes]
    files.append(empty)
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(ui_server.url)
        page.get_by_role("tab", name="批量处理 Batch").click()
        expect(page.locator("#e2v-batch-selection")).to_have_text("未选择文件 · No files chosen")
        page.locator("#e2v-batch-files input[type=file]").set_input_files([str(f) for f in files])
        expect(page.locator("#e2v-batch-files a[download]")).to_have_count(10)
        size = sum(f.stat().st_size for f in files)  # the box lists a few files; the line counts them all
        shown = f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 1024:.0f} KB"
        expect(page.locator("#e2v-batch-selection")).to_have_text(f"已选 10 个文件 · 10 files, {shown}")
        page.get_by_role("button", name="📦 开始批量识别 Run the batch").click()
        progress = page.locator("#e2v-batch-progress")
        expect(progress).to_contain_text("10 / 10", timeout=120_000)
        table = page.locator("#e2v-batch-table")
        expect(table.get_by_test_id("cell-9-0")).to_have_text("silent_take.mp3")
        expect(table.get_by_test_id("cell-3-0")).to_have_text("meeting_notes.wav")
        expect(table.get_by_test_id("cell-3-5")).to_contain_text("meeting_notes.wav: not a recognised audio file")
        expect(table.get_by_test_id("cell-9-5")).to_contain_text("silent_take.mp3")
        expect(table.get_by_test_id("cell-3-2")).to_have_text("❌ 失败 Failed")
        displays = "|".join(re.escape(label_for(key).display) for key in
                            ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"))
        for row in (0, 4, 8):
            expect(table.get_by_test_id(f"cell-{row}-2")).to_have_text(re.compile(rf"^\s*({displays})\s*$"))
            expect(table.get_by_test_id(f"cell-{row}-5")).to_have_text(re.compile(r"outputs_\d{8}_\d{6}"))
        expect(progress).to_contain_text("2 失败 failed")
        chart = page.locator("#e2v-batch-chart")
        expect(chart.locator("svg.marks")).to_be_visible()
        expect(chart.locator(".mark-rect path")).to_have_count(9)
        downloads = page.locator("#e2v-batch-downloads")
        expect(downloads).to_contain_text("summary.csv")
        expect(downloads.locator("a[download]")).to_have_count(2)
        expect(downloads.get_by_role("button", name="Remove this file")).to_have_count(0)  # output only
        expect(page.locator("#e2v-batch-files").get_by_role("button", name="Remove this file")).not_to_have_count(0)
        server_log = ui_server.stderr_path.read_text()  # one line per file, as each finished
        assert re.search(r"batch file 1/10: call_00\.wav \(2\.0 s of audio\): \w+ \d+\.\d% in \d+\.\d\d s.* -> "
                         r"outputs_\d{8}_\d{6}", server_log), server_log[-3000:]
        assert re.search(r"batch file 4/10: meeting_notes\.wav failed after \d+\.\d\d s: meeting_notes\.wav: not a "
                         r"recognised audio file", server_log)
        assert "batch file 10/10: silent_take.mp3 failed" in server_log
        assert "page batch of 10 files: 8 recognised, 2 failed" in server_log
        with page.expect_download() as download:
            downloads.locator("tr", has_text="emotion2vec_batch_").locator("a[download]").click()
        saved = tmp_path / "batch.zip"
        download.value.save_as(saved)
        with zipfile.ZipFile(saved) as archive:
            names = archive.namelist()
            summary = archive.read("summary.csv").decode("utf-8-sig")
        assert len({n.split("/")[0] for n in names if "/" in n}) == 8
        assert len(summary.splitlines()) == 11 and "meeting_notes.wav: not a recognised" in summary
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(500)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser_batch_1366x768.png"))
        page.screenshot(path=str(ARTIFACTS / "browser_batch_full.png"), full_page=True)
    finally:
        context.close()
