"""Colour segmentation: an RGB frame -> coloured blobs with the pixel measurements geometry needs.

Classical vision (OpenCV): HSV thresholds per colour class, connected components, and per blob
its bounding box, centroid, silhouette extremes, contour roundness and whether the pixels just
below it are floor (the object's foot is visible) or something else (occluded by another object).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from qwen_stack.perception.config import ColourClass


@dataclass(frozen=True)
class Blob:
    colour: str
    area: int                          # pixels
    left: int                          # bounding box, pixel indices (inclusive)
    top: int
    right: int
    bottom: int
    centroid: tuple[float, float]      # (col, row), continuous pixel coordinates (pixel centre = i + 0.5)
    bottom_point: tuple[float, float]  # (col, row) of the lowest silhouette point, at the pixel's lower edge
    circularity: float                 # 4 pi area / perimeter^2 of the outer contour (1 = disc)
    fill: float                        # area / bounding-box area
    face_share: float                  # share of pixels within 2 grey levels of the 3 commonest levels (flat faces: 1)
    foot_visible: bool                 # the pixels just below the lowest points are not another colour class
    touches_border: bool               # the blob reaches the image's left, right or bottom edge
    touches_bottom: bool               # ... the bottom edge: its foot is below the view
    mask: np.ndarray                   # [bottom-top+1, right-left+1] bool: the blob within its bounding box


def colour_masks(rgb: np.ndarray, colours: tuple[ColourClass, ...]) -> dict[str, np.ndarray]:
    """Colour name -> uint8 mask [H, W] (255 where the pixel has that colour)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    out = {}
    for c in colours:
        mask = None
        for lo, hi in c.hue:
            m = cv2.inRange(hsv, (lo, c.sat[0], c.val[0]), (hi, c.sat[1], c.val[1]))
            mask = m if mask is None else cv2.bitwise_or(mask, m)
        out[c.name] = mask
    return out


def find_blobs(rgb: np.ndarray, colours: tuple[ColourClass, ...], min_pixels: int,
               masked_out: dict[str, np.ndarray] | None = None) -> list[Blob]:
    """All blobs of at least min_pixels of each colour class, largest first. `masked_out`: colour
    name -> uint8 mask [H, W] of pixels not to count as that colour (e.g. where the held load is)."""
    h, w = rgb.shape[:2]
    masks = colour_masks(rgb, colours)
    for name, out in (masked_out or {}).items():
        masks[name] = cv2.bitwise_and(masks[name], cv2.bitwise_not(out))
    value = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    anything = np.zeros((h, w), np.uint8)
    for m in masks.values():
        anything |= m
    blobs: list[Blob] = []
    for name, mask in masks.items():
        if cv2.countNonZero(mask) < min_pixels:
            continue
        # components only inside the box around this colour's pixels: most colours cover little
        rx, ry, rw, rh = cv2.boundingRect(mask)
        n, labels, stats, cents = cv2.connectedComponentsWithStatsWithAlgorithm(
            mask[ry:ry + rh, rx:rx + rw], 8, cv2.CV_32S, cv2.CCL_BBDT)
        for i in range(1, n):
            x, y, bw, bh, area = (int(v) for v in stats[i])
            if area < min_pixels:
                continue
            sub = labels[y:y + bh, x:x + bw] == i
            blobs.append(_measure(name, sub, x + rx, y + ry, area, (cents[i][0] + rx, cents[i][1] + ry), value,
                                  anything, mask, w, h))
    blobs.sort(key=lambda b: -b.area)
    return blobs


def face_share(grey: np.ndarray) -> float:
    """Share of the pixels (uint8 grey levels) within 2 levels of one of their three commonest levels.
    A box shows at most three faces, each evenly lit in the render (1.0 on every cube and crate of
    80 held-out mission scenes); a ball's shading is a gradient (0.23-0.83 there). Tuned on the
    simulator's noiseless render: camera noise would widen the faces' levels."""
    h = np.bincount(grey.ravel(), minlength=256).astype(np.int64)
    got = 0
    for _ in range(3):
        win = np.convolve(h, np.ones(5, np.int64), mode="same")
        i = int(np.argmax(win))
        if win[i] == 0:
            break
        got += int(h[max(0, i - 2):i + 3].sum())
        h[max(0, i - 2):i + 3] = 0
    return got / max(grey.size, 1)


def _measure(colour: str, sub: np.ndarray, x: int, y: int, area: int, centroid, value: np.ndarray,
             anything: np.ndarray, own: np.ndarray, w: int, h: int) -> Blob:
    bh, bw = sub.shape
    # lowest blob pixel in each column of the box
    rows = np.where(sub.any(axis=0), bh - 1 - np.argmax(sub[::-1, :], axis=0), -1)  # [bw]
    low = int(rows.max())
    cols = np.nonzero(rows == low)[0]
    bottom_col = x + float(cols.mean()) + 0.5
    bottom_row = y + low + 1.0                     # the silhouette ends inside the pixel below the last one: lower edge
    # foot: the pixels right under the lowest points; another colour there means the foot is hidden
    below = y + low + 1
    foot_visible = True
    if below < h:
        under = anything[below:min(h, below + 2), x + cols]
        mine = own[below:min(h, below + 2), x + cols]
        foot_visible = not bool(((under > 0) & (mine == 0)).any())
    contours, _ = cv2.findContours(sub.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = max(cv2.arcLength(max(contours, key=cv2.contourArea), True), 1.0) if contours else 1.0
    circ = float(min(1.0, 4 * math.pi * area / perimeter ** 2))
    faces = face_share(value[y:y + bh, x:x + bw][sub])
    touches = x == 0 or x + bw >= w or y + bh >= h
    bottom = y + bh >= h
    return Blob(colour, area, x, y, x + bw - 1, y + bh - 1, (float(centroid[0]) + 0.5, float(centroid[1]) + 0.5),
                (bottom_col, bottom_row), circ, area / float(bw * bh), faces, foot_visible and not bottom, touches,
                bottom, sub)
