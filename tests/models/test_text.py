import numpy as np

from models.registry import resolve_placement
from models.text import TextEncoder
from tests.factories import tiny_sentence_encoder


def test_tiny_encoder_loads_and_embeds_unit_rows(tmp_path):
    encoder = TextEncoder.load(str(tiny_sentence_encoder(tmp_path / "enc")), placement=resolve_placement("cpu"), offline=True)
    vectors = encoder.predict_batch(["hello", "my lamp arrived broken and the order number is A7Q-4412"])
    assert vectors.shape == (2, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_padding_does_not_change_an_embedding(tmp_path):
    encoder = TextEncoder.load(str(tiny_sentence_encoder(tmp_path / "enc")), placement=resolve_placement("cpu"), offline=True)
    alone = encoder.predict_batch(["hello"])[0]
    padded = encoder.predict_batch(["hello", "a much longer sentence about a refund for my headphones"])[0]
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_empty_batch(tmp_path):
    encoder = TextEncoder.load(str(tiny_sentence_encoder(tmp_path / "enc")), placement=resolve_placement("cpu"), offline=True)
    assert encoder.predict_batch([]).shape == (0, 32)


def test_default_model_is_real_minilm():
    from models.registry import default_text_model

    encoder = TextEncoder.load(str(default_text_model()), placement=resolve_placement("cpu"), offline=True)
    a, b, c = encoder.predict_batch(["my parcel arrived damaged", "the package came broken", "what a lovely sunny day"])
    assert encoder.dim == 384
    assert float(a @ b) > float(a @ c) + 0.2
