"""Sample grids: one row per class, one column per kind of image the run made.

For each class the grid follows one real image through every set: it picks the real id
that is a source (directly, or through an image of another set) of images in the most
columns, and shows, per column, an image made from it. Columns of methods that start from
no real image (txt2img, SDI) show any image of the class. Images are written enlarged with
nearest-neighbour so that 16x16 pocket digits stay sharp and visible; large images are
shrunk to a thumbnail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from genaug.data.images import load_rgb
from genaug.manifest import SampleRecord, record_file
from genaug.report.run import RunFolder, StageSet

log = logging.getLogger(__name__)

#: Displayed side of small images (integer nearest-neighbour factor up to this) and the
#: thumbnail side of large ones, in pixels.
DISPLAY_SIDE = 96
THUMBNAIL_SIDE = 160
#: At most this many classes get a row (spread over the labels) so that 100- or 200-class
#: datasets keep a page of reasonable length.
MAX_GRID_CLASSES = 24

#: Column of each method that is not an editor's, in the order the pipeline makes them (editors
#: state their own column, ``Editor.report_label``, and come first); unknown methods get their own column.
METHOD_COLUMNS = {
    "concat": "Concatenated",
    "rect": "Rectangles",
    "fractal": "Blended (fractal)",
    "shb": "SHB",
    "sdi": "SDI",
}
ORIGINAL = "Original"
SHB_COLUMN = METHOD_COLUMNS["shb"]
HEATMAP = "SHB heatmap"


@dataclass
class Cell:
    """One image of the grid: its file (relative to the report), caption and tooltip."""

    src: str
    caption: str = ""
    title: str = ""


@dataclass
class GridRow:
    class_name: str
    cells: list[Cell | None]


@dataclass
class SampleGrid:
    columns: list[str]
    rows: list[GridRow]
    shown_classes: int
    total_classes: int
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Located:
    """A record and the set it belongs to."""

    record: SampleRecord
    set: StageSet

    @property
    def file(self) -> Path:
        return record_file(self.set.dir, self.record)


def build_sample_grid(run: RunFolder, sets: list[StageSet], report_dir: Path, real=None) -> SampleGrid | None:
    """Choose the images, write them enlarged under ``report_dir/samples`` and return the grid.

    ``real`` is the run's real dataset as ``{split: RealDataset}`` (None: no original column).
    """
    located = [Located(record, s) for s in sets for record in s.records]
    if not located:
        return None
    by_id: dict[str, Located] = {}
    for item in located:
        by_id.setdefault(item.record.id, item)
    sources = RealSources(by_id)
    real_rows = _real_rows(real)
    columns = _columns(located)
    labels = sorted({item.record.label for item in located})
    shown = _spread(labels, MAX_GRID_CLASSES)
    has_heatmap = any(item.record.method == "shb" and "heatmap" in item.record.params for item in located)
    titles = [ORIGINAL] if real_rows else []
    for column in columns:
        titles += [column, HEATMAP] if column == SHB_COLUMN and has_heatmap else [column]

    samples_dir = report_dir / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for label in shown:
        of_class = [item for item in located if item.record.label == label]
        chosen = best_real_source(of_class, sources, set(real_rows))
        picks = {column: pick_image(of_class, column, chosen, sources) for column in columns}
        cells: list[Cell | None] = []
        if real_rows:
            cells.append(_real_cell(real_rows, chosen, samples_dir, label))
        for index, column in enumerate(columns):
            cells.append(_synthetic_cell(picks[column], samples_dir, f"class{label:04d}-col{index}"))
            if column == SHB_COLUMN and has_heatmap:
                cells.append(_heatmap_cell(picks[column], samples_dir, f"class{label:04d}-heatmap"))
        rows.append(GridRow(class_display_name(run, of_class[0].record), cells))
    notes = []
    if real is None:
        notes.append("The real dataset could not be loaded here, so the original images are not shown.")
    return SampleGrid(titles, rows, shown_classes=len(shown), total_classes=len(labels), notes=notes)


def class_display_name(run: RunFolder, record: SampleRecord) -> str:
    """The dataset's name for the record's label (the records' own name if the run lacks it)."""
    names = run.class_names
    return names[record.label] if record.label < len(names) else record.class_name


def _spread(labels: list[int], limit: int) -> list[int]:
    if len(labels) <= limit:
        return labels
    picks = np.linspace(0, len(labels) - 1, limit).round().astype(int)
    return [labels[i] for i in sorted(set(picks))]


def method_columns() -> dict[str, str]:
    """Method -> column: each registered editor's ``report_label`` (by its manifest ``method``), then
    :data:`METHOD_COLUMNS`."""
    from genaug.generation.editors import EDITORS

    editors = [EDITORS[name] for name in EDITORS.names()]
    by_label = sorted(editors, key=lambda cls: (cls.report_label != "Edited", cls.report_label != "Generated", cls.name))
    return {**{cls.method: cls.report_label for cls in by_label}, **METHOD_COLUMNS}


def _columns(located: list[Located]) -> list[str]:
    columns = method_columns()
    present = {columns.get(item.record.method, item.record.method) for item in located}
    known = [title for title in dict.fromkeys(columns.values()) if title in present]
    return known + sorted(present - set(known))


def column_of(record: SampleRecord) -> str:
    return method_columns().get(record.method, record.method)


class RealSources:
    """The real ids an image was made from, following source ids through other sets."""

    def __init__(self, by_id: dict[str, Located]) -> None:
        self.by_id = by_id
        self._memo: dict[str, frozenset[str]] = {}

    def of(self, record: SampleRecord) -> frozenset[str]:
        return self._resolve(record.id, record, frozenset())

    def _resolve(self, record_id: str, record: SampleRecord, visiting: frozenset[str]) -> frozenset[str]:
        if record_id in self._memo:
            return self._memo[record_id]
        found: set[str] = set()
        for source in record.source_ids:
            if source in self.by_id and source not in visiting and source != record_id:
                found |= self._resolve(source, self.by_id[source].record, visiting | {record_id})
            elif source not in self.by_id:
                found.add(source)
        self._memo[record_id] = frozenset(found)
        return self._memo[record_id]


def best_real_source(of_class: list[Located], sources: RealSources, loadable: set[str]) -> str | None:
    """The real id behind images in the most columns; ids whose image can be shown win ties,
    then the smallest id (so the choice is stable)."""
    columns: dict[str, set[str]] = {}
    for item in of_class:
        for real_id in sources.of(item.record):
            columns.setdefault(real_id, set()).add(column_of(item.record))
    if not columns:
        return None
    return max(sorted(columns), key=lambda real_id: (len(columns[real_id]), real_id in loadable))


def pick_image(of_class: list[Located], column: str, real_id: str | None, sources: RealSources) -> Located | None:
    """The column's image made from ``real_id`` (any image of the class when the column's
    images have no real source); kept images first, then by id."""
    candidates = [item for item in of_class if column_of(item.record) == column]
    from_source = [item for item in candidates if real_id is not None and real_id in sources.of(item.record)]
    if from_source:
        candidates = from_source
    elif any(sources.of(item.record) for item in candidates):
        return None  # this column's images come from other real images: leave the cell empty
    candidates.sort(key=lambda item: (item.record.kept is False, item.record.id))
    return candidates[0] if candidates else None


# ---------------------------------------------------------------------------- cells


def _real_rows(real: dict[str, Any] | None) -> dict[str, tuple[Any, int]]:
    """Real id -> (dataset, row), over every split."""
    if real is None:
        return {}
    return {image_id: (dataset, row) for dataset in real.values() for row, image_id in enumerate(dataset.ids)}


def _real_cell(real_rows, real_id: str | None, samples_dir: Path, label: int) -> Cell | None:
    if real_id is None or real_id not in real_rows:
        return None
    dataset, row = real_rows[real_id]
    try:
        image = dataset.image(row)
    except (OSError, ValueError) as error:
        log.warning("real image %s not shown: %s", real_id, error)
        return None
    name = f"class{label:04d}-original.png"
    enlarge(image).save(samples_dir / name)
    return Cell(f"samples/{name}", caption=real_id, title=real_id)


def _synthetic_cell(item: Located | None, samples_dir: Path, stem: str) -> Cell | None:
    image = _open_rgb(item.file) if item is not None else None
    if image is None:
        return None
    enlarge(image).save(samples_dir / f"{stem}.png")
    return Cell(f"samples/{stem}.png", caption=_caption(item.record), title=f"{item.record.id} ({item.record.method})")


def _caption(record: SampleRecord) -> str:
    if record.method == "shb" and isinstance(record.params.get("replaced_fraction"), (int, float)):
        return f"replaced {record.params['replaced_fraction']:.0%}"
    if record.method == "sdi" and record.embedding:
        return str(record.embedding.get("sampler", ""))
    if record.prompt:
        return record.prompt
    return ""


def _heatmap_cell(item: Located | None, samples_dir: Path, stem: str) -> Cell | None:
    if item is None or not isinstance(item.record.params.get("heatmap"), str):
        return None
    try:
        heatmap_path = item.set.dir / item.record.params["heatmap"]
        with Image.open(heatmap_path) as heatmap:
            coloured = colour_heatmap(heatmap)
        with Image.open(item.file) as blended:
            size = blended.size
    except (OSError, ValueError) as error:
        log.warning("heatmap of %s not shown: %s", item.record.id, error)
        return None
    coloured = coloured.resize(size, Image.Resampling.NEAREST)
    enlarge(coloured).save(samples_dir / f"{stem}.png")
    return Cell(f"samples/{stem}.png", caption="heatmap", title=item.record.params["heatmap"])


def colour_heatmap(heatmap: Image.Image) -> Image.Image:
    """A single-channel heatmap in the magma colour map (colour images are kept as they are)."""
    from matplotlib import colormaps

    if heatmap.mode in ("RGB", "RGBA", "P"):
        return heatmap.convert("RGB")
    values = np.asarray(heatmap, dtype=np.float64)
    if values.ndim == 3:
        values = values[..., 0]
    top = {"L": 255.0, "LA": 255.0, "I;16": 65535.0, "I": 65535.0}.get(heatmap.mode, 1.0)
    rgba = colormaps["magma"](np.clip(values / top, 0.0, 1.0))
    return Image.fromarray((rgba[..., :3] * 255).round().astype(np.uint8))


def _open_rgb(path: Path) -> Image.Image | None:
    try:
        return load_rgb(path)
    except (OSError, ValueError) as error:
        log.warning("sample %s not shown: %s", path, error)
        return None


def enlarge(image: Image.Image) -> Image.Image:
    """Small images scaled up by an integer factor with nearest-neighbour (pixels stay square
    and sharp); large ones shrunk to a thumbnail."""
    image = image.convert("RGB")
    side = max(image.size)
    if side > THUMBNAIL_SIDE:
        image = image.copy()
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
        return image
    factor = max(1, DISPLAY_SIDE // side)
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
