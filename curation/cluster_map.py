"""The 2-D map of a dedupe's embeddings: a projection on the two main axes, coloured by cluster, status,
tag, skill or domain: as a frame for the browser's interactive scatter plot (`map_frame`: hover shows the
text, a brushed band lists its rows), or as a static matplotlib figure (`cluster_map_figure`, object API,
no pyplot global state in a server)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from curation.dedupe import DedupeConfig, DedupePlan, row_vectors
from curation.errors import StudioError

MAP_COLOURINGS = ("cluster", "status", "tag", "skill", "domain")
_MAP_CATEGORIES = 10  # distinct colours before the rest is drawn grey as "other"


def projection_2d(vectors: np.ndarray) -> np.ndarray:
    """float32[n, 2]: PCA of float[n, d] onto its two main axes, signs fixed so reruns look alike.

    The axes come from the SVD of the d x d scatter matrix, not of the n x d data: one matrix product
    plus a tiny SVD, a fraction of a second at 100k rows.
    """
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) == 0:
        return np.zeros((0, 2), np.float32)
    x = x - x.mean(axis=0)
    axes = np.linalg.svd(x.T @ x)[0][:, :2]  # float[d, 2]
    axes *= np.where(axes[np.abs(axes).argmax(axis=0), [0, 1]] < 0, -1.0, 1.0)
    points = x @ axes
    if points.shape[1] < 2:  # one-dimensional input
        points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    return points.astype(np.float32)


def cluster_map_figure(points: np.ndarray, colour_by_labels: list, title: str = ""):
    """A matplotlib Figure of float[n, 2] points coloured by one label per point (cluster, status,
    tag...). The most frequent labels get their own colour; the rest are grey "other"."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure  # the object API: no pyplot global state in a server

    labels = pd.Series([str(x) for x in colour_by_labels], dtype=object)
    if len(labels) != len(points):
        raise StudioError(f"{len(points)} points but {len(labels)} colour labels")
    top = labels.value_counts().index[:_MAP_CATEGORIES].tolist()
    fig = Figure(figsize=(7, 5.5), layout="constrained")
    ax = fig.add_subplot()
    size = float(np.clip(60 / np.sqrt(max(len(points), 1)), 1, 20))  # smaller dots as the map fills
    other = ~labels.isin(top).to_numpy()
    if other.any():
        ax.scatter(points[other, 0], points[other, 1], s=size, color="#c8c8c8",
                   label=f"other ({int(other.sum())})", rasterized=True)
    for colour, name in zip(colormaps["tab10"].colors, top):
        mask = (labels == name).to_numpy()
        ax.scatter(points[mask, 0], points[mask, 1], s=size, color=colour, label=f"{name} ({int(mask.sum())})",
                   rasterized=True)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(points):
        ax.legend(loc="best", fontsize="small", markerscale=2, frameon=False)
    return fig


def map_data(store, config: DedupeConfig, colour_by: str = "cluster", plan: DedupePlan | None = None,
             max_points: int = 20_000) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(points float32[m, 2], a colour label per point, ids int64[m]) of the rows `config` covers,
    for `cluster_map_figure`. colour_by 'cluster' needs `plan`; other choices: status, tag, skill,
    domain. Above `max_points` rows a fixed random sample is drawn: a browser plot of 100k dots is
    slow and no more readable. The projection uses every row."""
    if colour_by not in MAP_COLOURINGS:
        raise StudioError(f"colour the map by one of {', '.join(MAP_COLOURINGS)} (got {colour_by!r})")
    if colour_by == "cluster" and plan is None:
        raise StudioError("colouring by cluster needs a dedupe plan: plan first")
    rows = store.dedupe_items(config.target)
    points = projection_2d(row_vectors(store, config, rows)) if len(rows) else np.zeros((0, 2), np.float32)
    labels = _map_labels(rows, colour_by, plan)
    ids = rows["id"].to_numpy(dtype=np.int64)
    if len(rows) > max_points:
        pick = np.sort(np.random.default_rng(0).choice(len(rows), max_points, replace=False))
        points, labels, ids = points[pick], [labels[i] for i in pick], ids[pick]
    return points, labels, ids


MAP_TEXT_CHARS = 140


def map_frame(store, config: DedupeConfig, colour_by: str = "cluster", plan: DedupePlan | None = None,
              max_points: int = 5_000) -> pd.DataFrame:
    """The map as rows for an interactive scatter plot: x, y, group (the colour, the most frequent labels by
    name, the rest "other"), id, text (its first characters). Fewer points than `map_data`'s default: a
    browser draws each one as a hoverable mark."""
    points, labels, ids = map_data(store, config, colour_by, plan, max_points)
    texts = store.dedupe_items(config.target).set_index("id")["text"]
    top = set(pd.Series(labels, dtype=object).value_counts().index[:_MAP_CATEGORIES])
    return pd.DataFrame({"x": points[:, 0].round(4), "y": points[:, 1].round(4),
                         "group": [g if g in top else "other" for g in labels], "id": ids,
                         "text": [_clip(texts.get(int(i), "")) for i in ids]})


def rows_in_band(frame: pd.DataFrame, x_range: list[float]) -> pd.DataFrame:
    """The map's rows whose x lies in a brushed band [x0, x1] (the plot's selection), left to right."""
    lo, hi = sorted(float(v) for v in x_range[:2])
    return frame[(frame["x"] >= lo) & (frame["x"] <= hi)].sort_values("x")[["id", "group", "text"]]


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAP_TEXT_CHARS else text[:MAP_TEXT_CHARS] + "…"


_MAP_COLUMNS = {"status": "status", "tag": "tags", "skill": "skill", "domain": "domain"}


def _map_labels(rows: pd.DataFrame, colour_by: str, plan: DedupePlan | None) -> list[str]:
    if colour_by == "cluster":
        cluster_of = plan.clusters.cluster_of()
        return [f"cluster {cluster_of[int(i)]}" if int(i) in cluster_of else "no duplicate" for i in rows["id"]]
    column = _MAP_COLUMNS[colour_by]
    if column not in rows.columns:
        raise StudioError(f"tasks have no {colour_by}; colour them by cluster, skill or domain")
    values = [v if isinstance(v, str) and v.strip() else "" for v in rows[column]]
    if colour_by == "tag":  # tags are one comma-separated string; a row takes its first tag's colour
        values = [v.split(",")[0].strip() for v in values]
    return [v or f"no {colour_by}" for v in values]
