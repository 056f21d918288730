"""TextEncoder: sentence embeddings (mean-pooled, L2-normalised), all-MiniLM-L6-v2 by default."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.registry import Placement, load_pretrained

MAX_TOKENS = 128  # utterances are short; all-MiniLM-L6-v2 was trained on 128-token inputs


class TextEncoder:
    def __init__(self, model: Any, tokenizer, *, placement: Placement) -> None:  # a transformers model
        self.model = model
        self.tokenizer = tokenizer
        self.placement = placement

    @classmethod
    def load(cls, source: str, *, placement: Placement, offline: bool) -> TextEncoder:
        from transformers import AutoModel

        model, tokenizer = load_pretrained(AutoModel, source, placement=placement, offline=offline)
        return cls(model, tokenizer, placement=placement)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def predict_batch(self, texts: list[str]) -> np.ndarray:
        """texts -> float32 array (N, D), each row of unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        ).to(self.placement.device)
        hidden = self.model(**batch).last_hidden_state  # (N, T, D)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (N, T, 1)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (N, D)
        pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
        return pooled.cpu().numpy()
