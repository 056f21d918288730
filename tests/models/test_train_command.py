"""`parley train` on a small fixed set in the generated data's format, and the reply metrics it reports."""

import json
import random
from pathlib import Path

import pytest

from app.cli.main import main
from app.reply_metrics import ActOf, Scored, distinct_2, kept, score, scored, slot_errors
from models.fused import FusedSeq2Seq
from models.fused_decoder import FusedSeq2SeqDecoder
from models.registry import resolve_placement, shipped_fused_checkpoint
from models.train import read_jsonl

ACTS = {  # act -> (decision template, reply phrasings, required)
    "respond": ("act=respond intent=order_status ask=none acted=no sentiment={s} handoff=no say: order_id status",
                ["Order [order_id] is [status].", "Your order [order_id] is [status] right now."],
                ["order_id", "status"]),
    "ask_slot": ("act=ask_slot intent=order_status ask=order_id acted=no sentiment={s} handoff=no",
                 ["What is your order number?", "Could you tell me your order number?"], []),
    "recall": ("act=recall intent=order_status ask=none acted=no sentiment={s} handoff=no say: order_id",
               ["Your order number is [order_id].", "Of course: order [order_id]."], ["order_id"]),
}


def dataset_lines(n: int = 60, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        act = list(ACTS)[i % 3]
        template, phrasings, required = ACTS[act]
        values = {"order_id": f"{rng.choice('ABCZ')}{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
                  "status": rng.choice(["shipped", "delayed", "out for delivery"])}
        heldout = i % 6 == 5
        lines.append({
            "id": f"d{i}", "split": "heldout" if heldout else "train",
            "holdout": ["phrasing", "values", "flow"][i // 6 % 3] if heldout else None,
            "context": [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "Hello! How can I help?"}],
            "text": f"where is my order {values['order_id']}", "images": [], "audio": None,
            "decision": template.format(s=rng.choice(["neutral", "negative"])),
            "values": values, "required": required, "reply": rng.choice(phrasings), "act": act,
            "intent": "order_status", "slots": {"order_id": values["order_id"]},
        })
    return lines


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "turns.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in dataset_lines()))
    return path


@pytest.mark.usefixtures("one_torch_thread")
def test_train_writes_a_card_and_held_out_scores_and_resumes(data, tmp_path):
    out = tmp_path / "out"
    common = [str(data), "--out", str(out), "--text-only", "--device", "cpu", "--vocab-size", "300",
              "--d-model", "32", "--heads", "4", "--ffn-dim", "64", "--text-layers", "1", "--decoder-layers", "1",
              "--batch-size", "10", "--lr", "0.003", "--checkpoint-every", "3"]
    main(["train", *common, "--epochs", "2"])
    history = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and history[1]["val_loss"] < history[0]["val_loss"]
    heldout = json.loads((out / "heldout.json").read_text())["metrics"]
    assert heldout["all"]["n"] == 10 and {"phrasing", "values", "flow"} <= set(heldout)
    assert {"slot_error_rate", "act_accuracy", "bleu", "rouge_l", "distinct_2", "kept"} <= set(heldout["all"])
    card = (out / "README.md").read_text()
    assert "slot error" in card and "--text-only" in card or "seed 0" in card
    decoder = FusedSeq2SeqDecoder.load(out, placement=resolve_placement("cpu"))  # the production loader
    ids = decoder.tokenizer("Order [order_id] is [status].", add_special_tokens=False)["input_ids"]
    assert decoder.tokenizer.convert_ids_to_tokens(ids).count("[order_id]") == 1  # one whole token
    assert decoder.tokenizer.decode(ids) == "Order [order_id] is [status]."
    assert decoder.model.config.vocab_size <= 300 + 10 and decoder.model.config.image_dim == 0
    weights = FusedSeq2Seq.from_pretrained(out)
    assert next(weights.parameters()).dtype.itemsize == 2  # stored as float16

    features = sorted(out.glob("features-train-*.pt"))
    main(["train", *common, "--epochs", "3", "--resume"])
    assert sorted(out.glob("features-train-*.pt")) == features  # the cache was reused, not rebuilt
    resumed = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in resumed] == [1, 2, 3] and resumed[:2] == history


def test_slot_errors_count_missing_wrong_and_invented():
    values, required = {"order_id": "A1-2", "status": "shipped"}, ("order_id", "status")
    assert slot_errors("Order [order_id] is [status].", values, required) == (0, 0, 0)
    assert slot_errors("Order [order_id] is on its way.", values, required) == (1, 0, 0)
    assert slot_errors("Order [order_id] is [status], arriving [eta].", values, required) == (0, 0, 1)
    assert slot_errors("Hello!", values, ()) == (0, 0, 0)
    assert kept("Order [order_id] is [status].", values, required)
    assert not kept("Order [order_id] arrives [eta] and is [status].", values, required)
    assert not kept("", {}, ())
    handed = "I've passed your conversation to our support team."
    assert kept(handed, {}, (), acted=True) and not kept(handed, {}, ())  # a claim only when the handoff ran


def test_scores_over_a_set():
    act_of = ActOf(["Order [order_id] is [status].", "What is your order number?"], ["respond", "ask_slot"])
    examples = [Scored("Order [order_id] is [status].", "Order [order_id] is [status].", "respond",
                       {"order_id": "A", "status": "late"}, ("order_id", "status")),
                Scored("Could you give me your order number?", "What is your order number?", "ask_slot", {}, ()),
                Scored("Order [order_id] is here.", "Order [order_id] is [status].", "respond",
                       {"order_id": "A", "status": "late"}, ("order_id", "status"))]
    result = score(examples, act_of)
    assert result["slot_error_rate"] == pytest.approx(1 / 4) and result["missing"] == 1
    assert result["act_accuracy"] == 1.0 and result["kept"] == pytest.approx(2 / 3, abs=1e-4)
    assert 0 < result["bleu"] < 100 and 0 < result["rouge_l"] < 1
    assert distinct_2(["a b a b", "a b"]) == pytest.approx(2 / 4)


HELDOUT = Path(__file__).parents[1] / "data" / "fused_heldout.jsonl"  # held-out turns of the generated set


def test_the_shipped_checkpoint_states_the_facts_and_the_act():
    """The packaged model, loaded as the server loads it, on turns from held-out dialogues (every 4th turn of the
    generated set's held-out split, media left out as in training). On the whole split it states every one of
    the 702 required facts (issue 15's target is at most 1% wrong) and keeps all its replies."""
    from models.train import featurise

    checkpoint = shipped_fused_checkpoint()
    assert checkpoint is not None and (checkpoint / "README.md").exists()  # the model card ships with it
    assert (checkpoint / "model.safetensors").stat().st_size <= 40 * 2**20
    decoder = FusedSeq2SeqDecoder.load(checkpoint, placement=resolve_placement("cpu"))
    examples = read_jsonl(HELDOUT)
    items = featurise(examples, decoder.tokenizer, config=decoder.model.config)
    replies = decoder.write_all(items, max_new_tokens=decoder.model.config.max_target_positions)
    act_of = ActOf([e.reply for e in examples], [e.act or "" for e in examples])
    result = score(scored(replies, examples), act_of)
    assert result["slot_error_rate"] <= 0.01  # none of the 165 facts wrong here
    assert result["act_accuracy"] >= 0.95 and result["kept"] >= 0.99  # 97.2% and 100% here
