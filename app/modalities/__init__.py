"""The modalities a turn can carry besides text, in the order their evidence is read (a clip's words, then
photos). Registering one is its line here; see app/modalities/registry.py for what it provides."""

from app.modalities.audio import AUDIO
from app.modalities.image import IMAGE
from app.modalities.registry import Modality

MODALITIES: dict[str, Modality] = {modality.name: modality for modality in (AUDIO, IMAGE)}

__all__ = ["MODALITIES", "Modality"]
