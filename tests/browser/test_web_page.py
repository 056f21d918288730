"""The web chat page in a real browser: Debian's chromium, driven by playwright, against a real server.

Chromium's fake media devices stand in for the hardware: the microphone plays a WAV that espeak-ng
made ("my order number is four five one two"), the camera shows Chromium's test pattern. The server
runs the real text, speech and vision models (the voice turn must be transcribed, the photo read),
its default voice for spoken replies, and the tiny random decoder, so replies come from the policy's wording. API keys are on, so the
page's key field and its error display are exercised too. Screenshots go to test-output/web/.
"""

import io
import re
import shutil
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.factories import tiny_causal_lm
from tests.samples import document, encoded, photo_of, speech_wav
from tests.server import parley_test_server

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"  # Debian package `chromium` (make install-test); playwright's own browsers are not used
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "web"
API_KEY = "web-page-test-key"
RECEIPT = document(["ACME STORE", "Order No: A7Q-4412", "Total: $37.50"])
TURN_TIMEOUT_MS = 60_000  # a turn on 2 busy CPU cores, with OCR or speech recognition


@pytest.fixture(scope="module")
def server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "PARLEY_DECODER": str(tiny_causal_lm(tmp_path_factory.mktemp("decoder"))),
        "PARLEY_DECODER_MAX_NEW_TOKENS": "8",
        "PARLEY_API_KEYS": f"{API_KEY}:webtest",
    }
    with parley_test_server(redis_url, log_dir=tmp_path_factory.mktemp("log"), env=env) as base:
        yield base


def microphone_wav(path: Path, text: str) -> Path:
    """espeak-ng saying `text` after 0.4 s of silence (the page opens the microphone a moment after
    Chromium starts the file), then 1 s of silence."""
    with wave.open(io.BytesIO(speech_wav(text))) as spoken:
        params, frames = spoken.getparams(), spoken.readframes(spoken.getnframes())
    silence = b"\0\0" * params.framerate
    with wave.open(str(path), "wb") as out:
        out.setparams(params)
        out.writeframes(silence[: len(silence) * 2 // 5] + frames + silence)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(f"{CHROMIUM} is missing: run `make install-test` (Debian package chromium)")
    voice = microphone_wav(tmp_path_factory.mktemp("mic") / "voice.wav", "my order number is four five one two")
    args = [
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={voice}%noloop",  # played once from the start of each capture
    ]
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield launched
        launched.close()


def send_and_wait(page: Page, turn: int) -> None:
    page.click("#send")
    reply = page.locator(f'.msg.assistant[data-turn="{turn}"]')
    expect(reply).to_be_visible(timeout=TURN_TIMEOUT_MS)


def slot(page: Page, name: str):
    return page.locator(f'#slots tr[data-slot="{name}"]')


def test_text_photo_and_voice_turns(server: str, browser: Browser) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.goto(server)
    expect(page).to_have_title("Parley")

    # Without the key, the server's 401 is shown readably and the message is given back.
    page.fill("#text", "Hi, my lamp arrived broken")
    page.click("#send")
    error = page.locator(".msg.error").last
    expect(error).to_contain_text("unauthorized (401)")
    expect(error).to_contain_text("Enter a valid API key")
    expect(page.locator("#text")).to_have_value("Hi, my lamp arrived broken")

    # Text turn: the reply streams in (token events), then the state panel fills.
    page.fill("#api-key", API_KEY)
    page.dispatch_event("#api-key", "change")
    send_and_wait(page, 1)
    first = page.locator('.msg.assistant[data-turn="1"]')
    assert int(first.get_attribute("data-tokens")) >= 1  # tokens arrived as SSE before `done`
    assert first.locator(".body").inner_text().strip()
    expect(page.locator("#state-intent")).to_contain_text("damaged_item")
    expect(page.locator("#last-action")).to_contain_text("first word after")
    expect(slot(page, "product").locator(".value")).to_have_text("lamp")
    expect(slot(page, "product").locator(".badge")).to_have_text("text")
    assert page.evaluate("localStorage.getItem('parley.apiKey')") == API_KEY

    # Photo turn: a tilted JPEG of a receipt, picked as a file; the order id is read off it.
    page.fill("#text", "here is the receipt")
    page.set_input_files("#photo-input", files=[{
        "name": "receipt.jpg", "mimeType": "image/jpeg",
        "buffer": encoded(photo_of(RECEIPT, degrees=5), "JPEG", quality=90),
    }])
    expect(page.locator("#attachments img")).to_have_count(1)
    send_and_wait(page, 2)
    expect(slot(page, "order_id").locator(".value")).to_have_text("A7Q-4412")
    expect(slot(page, "order_id").locator(".badge")).to_have_text("image")
    expect(page.locator(".msg.user .reading.ocr").last).to_contain_text("A7Q-4412")
    expect(page.locator("#attachments li")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOTS / "after-photo-turn.png"), full_page=True)

    # The camera button gives a photo attachment (Chromium's fake camera); it is removed again, unsent.
    page.click("#camera")
    expect(page.locator("#camera-dialog video")).to_be_visible()
    page.wait_for_function("document.querySelector('#camera-dialog video').videoWidth > 0")
    page.click("#camera-take")
    expect(page.locator("#attachments img")).to_have_count(1)
    page.click("#attachments .remove")
    expect(page.locator("#attachments li")).to_have_count(0)

    # Voice turn, with "speak replies" on: record from the (fake) microphone, stop, send the WAV the
    # page encoded; the reply comes back spoken too, and the page plays it.
    page.check("#speak")
    page.click("#record")
    expect(page.locator("#record")).to_have_class(re.compile("recording"))
    page.wait_for_timeout(3500)
    page.click("#record")
    expect(page.locator("#attachments .voice")).to_be_visible()
    send_and_wait(page, 3)
    transcript = page.locator(".msg.user .reading.transcript").last.inner_text().lower()
    assert "four five one two" in transcript or "4512" in transcript.replace(" ", ""), transcript
    expect(slot(page, "order_id").locator(".value")).to_have_text("4512")
    expect(slot(page, "order_id").locator(".badge")).to_have_text("audio")
    expect(page.locator("#state-turns")).to_have_text("3")
    spoken = page.locator('.msg.assistant[data-turn="3"] audio')
    assert spoken.get_attribute("src").startswith("data:audio/wav;base64,")
    expect(page.locator('.msg.assistant[data-turn="3"]')).to_have_attribute("data-spoken", "playing")
    seconds = spoken.evaluate("a => a.readyState >= 1 ? a.duration : new Promise(r => a.onloadedmetadata = () => r(a.duration))")
    assert seconds > 1, seconds  # a whole sentence, not an empty clip
    assert page.evaluate("localStorage.getItem('parley.speakReplies')") == "true"
    expect(page.locator("#state-handed-off")).to_have_text("no")
    page.screenshot(path=str(SCREENSHOTS / "after-voice-turn.png"), full_page=True)

    # Asking for a person: the panel shows the handoff.
    page.fill("#text", "I want to talk to a human agent")
    send_and_wait(page, 4)
    expect(page.locator("#state-handed-off")).to_contain_text("yes")

    # A reload restores the conversation and the state from the server: the replies shown while
    # streaming are the ones stored.
    shown = page.locator(".msg.assistant .body").all_inner_texts()
    page.reload()
    expect(page.locator(".msg.assistant")).to_have_count(4)
    assert page.locator(".msg.assistant").all_inner_texts() == shown
    expect(slot(page, "order_id").locator(".value")).to_have_text("4512")
    expect(page.locator("#state-handed-off")).to_contain_text("yes")

    assert page_errors == []
    context.close()
