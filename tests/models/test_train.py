"""`parley train` end to end on a tiny image-only set: output folder, per-epoch validation, resume."""

import json

import pytest
import torch
from PIL import Image

from app.cli.main import main
from models.fused import FusedSeq2Seq
from tests.factories import tiny_tokenizer
from tests.samples import encoded


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_set(directory):
    (directory / "media").mkdir(parents=True)
    rows = []
    for i, colour in enumerate(["red", "blue", "green", "red", "blue", "green"]):
        (directory / "media" / f"{i}.png").write_bytes(encoded(Image.new("RGB", (40, 40), colour)))
        rows.append({"id": f"x{i}", "context": [{"role": "user", "text": "hello"}, {"role": "assistant", "text": "hi"}],
                     "text": "what colour?", "images": [f"media/{i}.png"], "reply": colour})
    (directory / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return directory / "set.jsonl"


def test_train_writes_a_servable_model_and_resumes(tmp_path):
    data = write_set(tmp_path / "data")
    tiny_tokenizer(tmp_path / "tok")
    out = tmp_path / "out"
    common = [str(data), "--val", str(data), "--out", str(out), "--tokenizer", str(tmp_path / "tok"), "--device", "cpu",
              "--d-model", "32", "--heads", "4", "--text-layers", "1", "--decoder-layers", "1", "--batch-size", "2",
              "--checkpoint-every", "2", "--lr", "0.003"]
    main(["train", *common, "--epochs", "2"])
    history = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"train_loss", "val_loss", "val_bleu", "val_exact_match"} <= set(history[0])
    assert (out / "checkpoint" / "trainer_state.pt").exists()
    model = FusedSeq2Seq.from_pretrained(out)
    assert model.config.image_dim == 192 and model.config.image_features == "patches" and model.config.audio_dim == 0

    main(["train", *common, "--epochs", "3", "--resume"])
    resumed = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in resumed] == [1, 2, 3]
    assert resumed[:2] == history and resumed[2]["step"] == history[1]["step"] + 3  # 6 examples / batch 2


def test_only_projectors_leaves_the_decoder_untouched(tmp_path):
    from models.train import trainable

    tiny_tokenizer(tmp_path / "tok")
    data = write_set(tmp_path / "data")
    main(["train", str(data), "--val", str(data), "--out", str(tmp_path / "a"), "--tokenizer", str(tmp_path / "tok"),
          "--device", "cpu", "--d-model", "32", "--heads", "4", "--text-layers", "1", "--decoder-layers", "1",
          "--epochs", "1", "--batch-size", "3"])
    before = FusedSeq2Seq.from_pretrained(tmp_path / "a")
    main(["train", str(data), "--val", str(data), "--out", str(tmp_path / "b"), "--init", str(tmp_path / "a"),
          "--device", "cpu", "--epochs", "1", "--batch-size", "3", "--only-projectors"])
    after = FusedSeq2Seq.from_pretrained(tmp_path / "b")
    trainable(before, only_projectors=True)
    names = [n for n, p in before.named_parameters() if p.requires_grad]
    assert names and all(n.startswith("encoder.") for n in names)
    same = {n: torch.equal(p, dict(after.named_parameters())[n]) for n, p in before.named_parameters()}
    assert all(same[n] for n in same if n.startswith("decoder.") or n == "embed_tokens.weight")
    assert not same["encoder.image_proj.net.1.weight"]
