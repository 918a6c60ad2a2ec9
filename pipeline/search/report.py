"""The report of a search: a plain-text table, ``results.json`` with the sightings' thumbnails, and a
contact sheet (a grid of labelled person thumbnails, query crop first, drawn with OpenCV)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from reid_models.common import ImageReadError, decode_image, iso_time, read_image_bgr

from .rank import Sighting

TILE_W, IMAGE_H, LINE_H, PAD = 112, 192, 14, 4
FONT, FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.36
# BGR colours cycled per identity rank, so one identity's tiles share a border colour.
PALETTE = ((48, 130, 245), (75, 180, 60), (200, 130, 0), (180, 30, 145), (0, 200, 200),
           (60, 60, 220), (240, 160, 70), (140, 200, 40), (120, 120, 120), (0, 110, 255))


@dataclass(frozen=True)
class Tile:
    """One cell: image (H, W, 3) uint8 BGR or None (drawn as a grey box), up to 4 label lines,
    and the BGR border colour."""

    image: np.ndarray | None = field(repr=False)
    lines: tuple[str, ...]
    color: tuple[int, int, int] = (200, 200, 200)


def decode_thumbnail(data: bytes | None) -> np.ndarray | None:
    """JPEG/PNG bytes -> (H, W, 3) uint8 BGR, or None when absent or undecodable (drawn as "no image")."""
    if not data:
        return None
    try:
        return decode_image(data, "thumbnail")
    except ImageReadError:
        return None


def _fit(image: np.ndarray | None, w: int, h: int) -> np.ndarray:
    """Letterbox ``image`` into (h, w, 3) keeping its aspect ratio."""
    canvas = np.full((h, w, 3), 40, np.uint8)
    if image is None or image.size == 0:
        cv2.putText(canvas, "no image", (6, h // 2), FONT, FONT_SCALE, (160, 160, 160), 1, cv2.LINE_AA)
        return canvas
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    s = min(w / image.shape[1], h / image.shape[0])
    nw, nh = max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s))
    resized = cv2.resize(image[..., :3], (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    y, x = (h - nh) // 2, (w - nw) // 2
    canvas[y:y + nh, x:x + nw] = resized
    return canvas


def _clip_text(text: str, width: int) -> str:
    while text and cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0] > width:
        text = text[:-1]
    return text


def draw_tile(tile: Tile, n_lines: int = 4) -> np.ndarray:
    """(IMAGE_H + n_lines * LINE_H + 2 * PAD, TILE_W, 3) uint8 BGR cell."""
    h = IMAGE_H + n_lines * LINE_H + 2 * PAD
    cell = np.full((h, TILE_W, 3), 255, np.uint8)
    cell[PAD:PAD + IMAGE_H, PAD:TILE_W - PAD] = _fit(tile.image, TILE_W - 2 * PAD, IMAGE_H)
    for k, line in enumerate(tile.lines[:n_lines]):
        y = PAD + IMAGE_H + (k + 1) * LINE_H - 3
        cv2.putText(cell, _clip_text(line, TILE_W - 2 * PAD), (PAD, y), FONT, FONT_SCALE, (20, 20, 20), 1, cv2.LINE_AA)
    cv2.rectangle(cell, (0, 0), (TILE_W - 1, h - 1), tile.color, 2)
    return cell


def draw_contact_sheet(tiles: Sequence[Tile], columns: int = 8, title: str | None = None) -> np.ndarray:
    """Grid of tiles row by row, with an optional title bar; (H, W, 3) uint8 BGR."""
    cells = [draw_tile(t) for t in tiles] or [draw_tile(Tile(None, ("no results",)))]
    columns = max(1, min(columns, len(cells)))
    rows = -(-len(cells) // columns)
    ch, cw = cells[0].shape[:2]
    top = 28 if title else 0
    sheet = np.full((top + rows * ch, columns * cw, 3), 255, np.uint8)
    if title:
        cv2.putText(sheet, _clip_text(title, sheet.shape[1] - 8), (6, 19), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for k, cell in enumerate(cells):
        r, c = divmod(k, columns)
        sheet[top + r * ch:top + (r + 1) * ch, c * cw:(c + 1) * cw] = cell
    return sheet


def write_contact_sheet(path: str | Path, tiles: Sequence[Tile], columns: int = 8, title: str | None = None) -> Path:
    """Draw and save the sheet as PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), draw_contact_sheet(tiles, columns, title)):
        raise OSError(f"could not write {path}: check the folder is writable and the name ends in .png")
    return path


# ----------------------------------------------------------------------------- reports
def format_table(sightings: Sequence[Sighting]) -> str:
    """Plain-text table: rank, score, global id, camera, local track, start - end (UTC)."""
    cw = max([6] + [len(s.camera_id) for s in sightings])
    head = f"{'rank':>4}  {'score':>6}  {'global':>7}  {'camera':<{cw}}  {'track':>6}  start - end (UTC)"
    lines = [head, "-" * (len(head) + 32)]
    for s in sightings:
        gid = "-" if s.global_id is None else str(s.global_id)
        lines.append(f"{s.rank:>4}  {s.score:6.3f}  {gid:>7}  {s.camera_id:<{cw}}  {s.local_id:>6}  "
                     f"{iso_time(s.start_time)} - {iso_time(s.end_time)}")
    if not sightings:
        lines.append("(no tracks match the filters)")
    return "\n".join(lines)


def _load_query(query_image) -> np.ndarray | None:
    if query_image is None or isinstance(query_image, np.ndarray):
        return query_image
    if isinstance(query_image, (bytes, bytearray)):
        return decode_thumbnail(bytes(query_image))
    return read_image_bgr(query_image, "query image")


def write_results(sightings: Sequence[Sighting], out_dir: str | Path, query_image=None) -> dict[str, Path]:
    """Write ``results.json``, the best thumbnail of each sighting under ``thumbnails/`` and
    ``contact_sheet.png`` (query crop first; tiles labelled rank/global id, camera, time, score).

    query_image: (H, W, 3) BGR array, image path or encoded bytes, or None. Returns the paths.
    """
    out = Path(out_dir)
    (out / "thumbnails").mkdir(parents=True, exist_ok=True)
    records = []
    for s in sightings:
        d = s.to_dict()
        if s.thumbnail:
            name = f"thumbnails/{s.rank:03d}_track{s.track_id}.jpg"
            (out / name).write_bytes(s.thumbnail)
            d["thumbnail"] = name
        records.append(d)
    json_path = out / "results.json"
    json_path.write_text(json.dumps({"sightings": records}, indent=2))

    tiles = []
    query = _load_query(query_image)
    if query is not None:
        tiles.append(Tile(query, ("QUERY",), (0, 0, 0)))
    for s in sightings:
        gid = "-" if s.global_id is None else str(s.global_id)
        when = datetime.fromtimestamp(s.sample_time, timezone.utc).strftime("%m-%d %H:%M:%S")
        label = (f"#{s.rank} id {gid}", s.camera_id, when, f"score {s.score:.3f}")
        tiles.append(Tile(decode_thumbnail(s.thumbnail), label, PALETTE[(s.rank - 1) % len(PALETTE)]))
    n_ids = len({s.rank for s in sightings})
    sheet = write_contact_sheet(out / "contact_sheet.png", tiles,
                                title=f"{n_ids} identities, {len(sightings)} tracks (times UTC)")
    return {"json": json_path, "contact_sheet": sheet}
