"""parley eval's scoring and report on hand-made outcomes (the HTTP side is measured in bench/results)."""

import pytest

from app.cli.evaluate import Outcome, markdown, report


def outcome(id, modalities, reply, reference, *, intent="order_status", slots=None, expected=None, grounded=True,
            latency=100.0):
    return Outcome(id=id, modalities=modalities, reply=reply, reference=reference, intent=intent,
                   expected_intent="order_status", slots=slots or {}, expected_slots=expected or {},
                   grounded=grounded, latency_ms=latency)


def test_scores_overall_and_per_modality(tmp_path):
    outcomes = [
        outcome("a", "text", "Your order 4512 has shipped.", "Your order 4512 has shipped.",
                slots={"order_id": "4512"}, expected={"order_id": "4512"}),
        outcome("b", "text+image", "Order ab-1 is late.", "Your order AB-1 is on its way.", intent="complaint",
                slots={"order_id": "AB-1", "email": "x@y.z"}, expected={"order_id": "ab-1", "product": "lamp"},
                grounded=False, latency=300.0),
    ]
    result = report(outcomes, decoder="default", base_url="http://x", data=tmp_path / "d.jsonl")
    text_only, mixed = result["by_modality"]["text"], result["by_modality"]["text+image"]
    assert text_only["bleu"] == pytest.approx(100.0) and text_only["rouge_l"] == pytest.approx(1.0)
    assert text_only["slot_f1"] == 1.0 and text_only["intent_accuracy"] == 1.0
    assert mixed["intent_accuracy"] == 0.0 and mixed["slot_precision"] == 0.5 and mixed["slot_recall"] == 0.5
    assert 0 < mixed["rouge_l"] < 1 and mixed["bleu"] < 100
    overall = result["overall"]
    assert overall["n"] == 2 and overall["intent_accuracy"] == 0.5 and overall["grounded_rate"] == 0.5
    assert overall["slot_precision"] == overall["slot_recall"] == round(2 / 3, 4)
    assert overall["latency_ms_p50"] == 200.0 and overall["latency_ms_p95"] == 300.0
    page = markdown(result)
    assert "| text+image | 1 |" in page and "| b | text+image | complaint (order_status) |" in page
