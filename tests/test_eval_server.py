"""`parley eval` against a real `parley serve` process running a tiny fused checkpoint."""

import json

import pytest

from app.cli.main import main
from models.vision import PatchFeatures
from tests.factories import tiny_fused
from tests.samples import document, encoded, speech_wav
from tests.server import NO_RATE_LIMITS, parley_test_server


@pytest.mark.slow
def test_eval_drives_a_server_and_writes_both_reports(redis_url, tmp_path):
    checkpoint = tiny_fused(tmp_path / "fused", image_dim=PatchFeatures.feature_dim)
    media = tmp_path / "data" / "media"
    media.mkdir(parents=True)
    (media / "r.png").write_bytes(encoded(document(["ACME STORE", "Order No: A7Q-4412"])))
    (media / "q.wav").write_bytes(speech_wav("where is my order"))
    rows = [
        {"id": "a", "context": [{"role": "user", "text": "my lamp arrived broken"},
                                {"role": "assistant", "text": "Sorry!"}],
         "text": "here is the receipt", "images": ["media/r.png"], "reply": "Thanks, order A7Q-4412 is noted.",
         "intent": "damaged_item", "slots": {"order_id": "A7Q-4412", "product": "lamp"}},
        {"id": "b", "audio": "media/q.wav", "reply": "What is your order number?", "intent": "order_status",
         "slots": {}},
    ]
    data = tmp_path / "data" / "set.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    env = {"PARLEY_DECODER": f"fused:{checkpoint}", "PARLEY_VISION_BACKBONE": "patches",
           **NO_RATE_LIMITS}
    with parley_test_server(redis_url, log_dir=tmp_path, env=env) as base:
        main(["eval", str(data), "--base-url", base, "--out", str(tmp_path / "report"), "--note", "tiny model"])
    result = json.loads((tmp_path / "report.json").read_text())
    assert result["decoder"] == f"fused:{checkpoint}" and result["note"] == "tiny model"
    assert set(result["by_modality"]) == {"text+image", "audio"}
    first, second = result["examples"]
    assert first["intent"] == "damaged_item" and first["slots"]["order_id"] == "A7Q-4412"
    assert second["intent"] == "order_status" and second["latency_ms"] > 0
    assert result["overall"]["slot_recall"] == 1.0 and result["overall"]["intent_accuracy"] == 1.0
    page = (tmp_path / "report.md").read_text()
    assert page.startswith(f"# parley eval: fused:{checkpoint}") and "| audio | 1 |" in page
