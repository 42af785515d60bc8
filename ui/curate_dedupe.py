"""Curate › Dedupe: plan duplicates, review the clusters, pick what each keeps, mark the rest, undo.

The threshold slider reads counts that `preview_counts` computed once per setting (target, method,
model, rule) and that sit in a gr.State, so dragging it costs a dictionary lookup, not a search; letting it go
re-clusters at that stop from the neighbour graph the counts were computed from (curation.neighbours.ReusedSearch).
"""
from __future__ import annotations

import functools
import html
import json
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from curation.cluster_map import MAP_COLOURINGS, map_frame, rows_in_band
from curation.dedupe import (METHODS, REPRESENTATIVE_RULES, TARGETS, DedupeConfig, apply_dedupe, plan_dedupe,
                             preview_counts)
from curation.embed import embed_items, embedder_key
from curation.errors import StudioError
from curation.hybrid import is_hybrid
from curation.neighbours import ReusedSearch
from curation.int8_embed import INT8_EMBEDDER
from curation.int8_embed import first_use_note as int8_first_use_note
from curation.static_embed import STATIC_EMBEDDER, first_use_note
from ui.common import guarded

THRESHOLDS = [round(0.5 + i / 100, 2) for i in range(51)]  # the slider's stops
CLUSTER_COLUMNS = ["cluster", "size", "kept", "kept by", "marked", "kept text"]
MAX_CARDS = 24  # members drawn side by side; the dropdown lists them all
TABLE_CLUSTERS = 1000  # rows of the cluster table, largest clusters first
RULE_WORDS = {"judge_score": "highest judge score", "longest": "longest", "earliest": "earliest"}


DEFAULT = DedupeConfig()  # the controls start at the config's own defaults, as the CLI's flags do


def dedupe_config(target, method, model, representative, threshold) -> DedupeConfig:
    return DedupeConfig(target=target, method=method, threshold=float(threshold), representative=representative,
                        model=(model or "").strip() or None)


def settings_key(config: DedupeConfig) -> tuple:
    """What the cached slider counts depend on: everything but the threshold."""
    return config.target, config.method, config.model, config.representative


def kept_id(cluster, overrides: dict) -> int:
    return int(overrides.get(cluster.index, cluster.representative))


def clusters_frame(plan, overrides: dict) -> pd.DataFrame:
    """The cluster table: the TABLE_CLUSTERS largest (a gr.Dataframe sends every row to the browser, and a 1M-row
    workspace has ~200k clusters); the Cluster box opens any of them, and applying marks them all."""
    rows = []
    for c in plan.clusters[:TABLE_CLUSTERS] if plan else ():
        keep = kept_id(c, overrides)
        rows.append([c.index, len(c.members), keep, "you" if c.index in overrides else "rule",
                     c.rows_marked_keeping(keep), c.member(keep).text[:160]])
    return pd.DataFrame(rows, columns=CLUSTER_COLUMNS)


def plan_summary(plan, overrides: dict) -> str:
    if plan is None:
        return "_Press **Preview** to find the duplicates._"
    # The rule's count, corrected for the clusters a person chose another member of (not a walk over 200k clusters)
    chosen = ((plan.clusters[i - 1], keep) for i, keep in overrides.items())  # each cluster built once
    marked = plan.rows_marked + sum(c.rows_marked_keeping(keep) - c.rows_marked for c, keep in chosen)
    cfg = plan.config
    how = f"cosine ≥ {cfg.threshold:g}" if cfg.method == "semantic" else f"{cfg.method} text"
    clusters = f"{len(plan.clusters)} cluster{'' if len(plan.clusters) == 1 else 's'}"
    text = (f"**{marked} of {plan.rows_total} generations** would be marked rejected: {clusters} "
            f"among {plan.items_total} {cfg.target} ({how}; each keeps its {RULE_WORDS[cfg.representative]} member"
            + (f", {len(overrides)} chosen by you" if overrides else "") + ").")
    if len(plan.clusters) > TABLE_CLUSTERS:
        text += (f" The table lists the {TABLE_CLUSTERS} largest clusters; type any number from 1 to "
                 f"{len(plan.clusters)} in the Cluster box to open it.")
    return text + "".join(f"\n\n> {n}" for n in plan.notes)


def members_html(cluster, keep: int) -> str:
    """The members of one cluster side by side, the kept one first and outlined."""
    members = sorted(cluster.members, key=lambda m: (m.id != keep, m.id))
    cards = []
    for m in members[:MAX_CARDS]:
        kept = m.id == keep
        score = "unjudged" if m.score is None else f"judge {m.score:g}"
        cards.append(
            f'<div style="border:2px solid {"#2f9e44" if kept else "#d0d4d9"};border-radius:8px;padding:8px">'
            f'<div style="font-size:.85em;margin-bottom:4px"><b>{"✔ kept" if kept else "duplicate"}</b> · '
            f'id {m.id} · similarity {m.similarity:.3f} · {score} · {m.length} chars · '
            f'{len(m.generation_ids)} generations</div>'
            f'<div style="white-space:pre-wrap;max-height:260px;overflow:auto">{html.escape(m.text[:3000])}</div>'
            '</div>')
    more = (f"<p>… and {len(members) - MAX_CARDS} more members (all in the keep list).</p>"
            if len(members) > MAX_CARDS else "")
    return (f'<h4>Cluster {cluster.index}: {len(members)} members</h4>'
            '<div style="display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:8px">'
            + "".join(cards) + "</div>" + more)


def keep_choices(cluster, keep: int) -> gr.update:
    choices = [(f"id {m.id}" + (" (rule's choice)" if m.id == cluster.representative else "") + f": {m.text[:60]}",
                m.id) for m in cluster.members]
    return gr.update(choices=choices, value=keep)


def loading_note(store, model) -> str:
    """The progress line while the model loads: the static one is distilled on first use, which takes minutes, and
    the int8 one is quantised on first use (seconds)."""
    if embedder_key(model) == STATIC_EMBEDDER or is_hybrid(model):
        return first_use_note(Path(store.workspace) / "models") or "loading the embedding model"
    if embedder_key(model) == INT8_EMBEDDER:
        return int8_first_use_note(Path(store.workspace) / "models") or "loading the embedding model"
    return "loading the embedding model"


# ---- handlers: each takes the store first (bound in `build`), then the form's values ----------------
def counts_for(store, config: DedupeConfig, cache: dict | None, on_progress=None) -> dict:
    """The slider's counts for `config`'s settings: the cached ones, or one `preview_counts` call. The cache also
    keeps that call's neighbour graph (a ReusedSearch), so the clusters at any stop come without a new search.
    `on_progress(cells searched, cells)` follows the search when there is one."""
    if cache and cache["key"] == settings_key(config):
        return cache
    search = ReusedSearch()
    search.on_progress = on_progress
    return {"key": settings_key(config), "counts": preview_counts(store, config, THRESHOLDS, search=search),
            "search": search}


def count_text(config: DedupeConfig, cache: dict) -> str:
    n = cache["counts"][round(config.threshold, 2)]
    at = f" at similarity ≥ {config.threshold:g}" if config.method == "semantic" else ""
    return f"### {n} generations would be marked{at}"


@guarded
def preview(store, target, method, model, rule, threshold, cache, progress=gr.Progress()):
    config = dedupe_config(target, method, model, rule, threshold)
    if config.method == "semantic":  # embed what is new first (a no-op when every vector is fresh), with a bar
        progress(0, desc=loading_note(store, config.model))
        embed_items(store, config.item_kind, config.model,
                    on_progress=lambda done, total: progress((done, total), desc="embedding", unit="rows"))
    cache = counts_for(store, config, cache, on_progress=lambda done, total: progress(
        (done, total), desc="finding near duplicates for every stop of the slider", unit="cells"))
    cache["search"].on_progress = None  # the bar belongs to this request, the search to the session
    progress(0.9, desc="clustering at the chosen threshold")
    plan = plan_dedupe(store, config, search=cache["search"])
    first = plan.clusters[0] if plan.clusters else None
    return (count_text(config, cache), plan_summary(plan, {}), clusters_frame(plan, {}),
            first.index if first else None, members_html(first, first.representative) if first else "",
            keep_choices(first, first.representative) if first else gr.update(choices=[], value=None),
            plan, {}, cache, "")


def slide(store, target, method, model, rule, threshold, cache):
    # Runs on every slider move: an error is shown in place, never as one popup per step.
    try:
        config = dedupe_config(target, method, model, rule, threshold)
        cache = counts_for(store, config, cache)
    except StudioError as exc:
        return f"_{exc}_", cache
    return count_text(config, cache), cache


def show_cluster(index, plan, overrides):
    if plan is None or index is None or not 1 <= int(index) <= len(plan.clusters):
        return "", gr.update(choices=[], value=None)
    cluster = plan.clusters[int(index) - 1]
    chosen = kept_id(cluster, overrides)
    return members_html(cluster, chosen), keep_choices(cluster, chosen)


def select_cluster(frame, plan, overrides, evt: gr.SelectData):
    index = int(frame.iloc[evt.index[0]]["cluster"])
    return (index, *show_cluster(index, plan, overrides))


@guarded
def keep_member(index, member_id, plan, overrides):
    if plan is None or index is None or member_id is None:
        raise gr.Error("preview, then pick a cluster and the member to keep")
    cluster = plan.clusters[int(index) - 1]
    cluster.member(int(member_id))  # refuses an id from another cluster
    overrides = {**overrides, cluster.index: int(member_id)}
    return (plan_summary(plan, overrides), clusters_frame(plan, overrides), *show_cluster(index, plan, overrides),
            overrides)


@guarded
def apply(store, plan, overrides):
    if plan is None:
        raise gr.Error("press Preview first: the marking applies the clusters you reviewed")
    batch, marked, skipped = apply_dedupe(store, plan, overrides)
    note = (f"marked {marked} generations rejected as duplicates (batch {batch}); Undo puts them back"
            if batch else "nothing to mark")
    if skipped:
        note += (f"; left {len(skipped)} as they are: labelled after the preview (generation "
                 f"{', '.join(map(str, skipped[:10]))}{'…' if len(skipped) > 10 else ''})")
    # The plan is spent: the marked rows are out of the next comparison, so counts and clusters reset.
    return note, batch, None, {}, None, plan_summary(None, {}), clusters_frame(None, {}), "", ""


@guarded
def undo(store, batch):
    if batch is None:
        raise gr.Error("nothing to undo: no dedupe was applied in this tab")
    n = store.undo_batch(int(batch))
    return f"undid batch {batch}: {n} generations back to their earlier status", None, None


@guarded
def embed(store, target, model, progress=gr.Progress()):
    config = dedupe_config(target, "semantic", model, "earliest", 0.9)
    progress(0, desc=loading_note(store, config.model))
    result = embed_items(store, config.item_kind, config.model,
                         on_progress=lambda done, total: progress((done, total), desc="embedding", unit="rows"))
    return (f"embedded {result['encoded']} {config.target} with {result['model']} "
            f"({result['reused']} already up to date)")


@guarded
def draw_map(store, target, method, model, rule, threshold, colour, plan):
    config = plan.config if plan is not None else dedupe_config(target, method, model, rule, threshold)
    frame = map_frame(store, config, colour, plan)
    note = (f"{len(frame)} {config.target} coloured by {colour}: hover a point to read it; drag across the plot "
            "to list the rows in that band below")
    return frame, note, frame, pd.DataFrame(columns=["id", "group", "text"])


def select_on_map(frame, evt: gr.SelectData):
    """A brushed band of the map: its rows, for reading or opening one on the Review tab."""
    if frame is None or not isinstance(evt.index, (list, tuple)) or len(evt.index) < 2:
        return gr.skip(), gr.skip()
    picked = rows_in_band(frame, list(evt.index))
    return picked, f"{len(picked)} rows in the band x {min(evt.index):.3f} … {max(evt.index):.3f}"


CURVE = Path(__file__).resolve().parents[1] / "data" / "paraphrases" / "curve.json"


def calibration() -> tuple[pd.DataFrame, str]:
    """The threshold curve bench/dedupe_threshold.py measured on labelled paraphrases, as plot rows and a note."""
    if not CURVE.is_file():
        return pd.DataFrame(columns=["threshold", "value", "measure"]), "No calibration curve in this checkout."
    data = json.loads(CURVE.read_text(encoding="utf-8"))
    rows = [(r["threshold"], r[m], m) for r in data["curve"] for m in ("precision", "recall")]
    b = data["best"]
    note = (f"{data['pairs']} hand-written pairs of tasks and answers (half paraphrases, half the same template "
            f"with another meaning), {data['model']}. The default {b['threshold']} has the best F0.5 — a false pair "
            f"rejects a distinct row, so precision weighs twice: precision {b['precision']:.2f}, recall "
            f"{b['recall']:.2f}. Reproduce: `python bench/dedupe_threshold.py`.")
    return pd.DataFrame(rows, columns=["threshold", "value", "measure"]), note


# ---- layout and wiring --------------------------------------------------------------------------
def _layout() -> SimpleNamespace:
    ui = SimpleNamespace()
    gr.Markdown("Find exact, normalised or semantic duplicates, review each cluster, and mark all but one member "
                "of each rejected (with the reason; nothing is deleted, Undo puts them back).")
    with gr.Row():
        ui.target = gr.Radio(list(TARGETS), value=DEFAULT.target, label="Compare", elem_id="dedupe-target")
        ui.method = gr.Radio(list(METHODS), value=DEFAULT.method, label="Method", elem_id="dedupe-method")
        ui.rule = gr.Dropdown([(RULE_WORDS[r], r) for r in REPRESENTATIVE_RULES], value=DEFAULT.representative,
                              label="Each cluster keeps the", elem_id="dedupe-rule")
        ui.model = gr.Textbox(DEFAULT.model or "", label="Embedding model (empty: bundled all-MiniLM-L6-v2)",
                              info="'minilm-int8': ~2.5x faster, MiniLM's recall, its own vectors; "
                                   "'static': ~100x faster, finds fewer paraphrases (its best threshold ~0.81); "
                                   "'static+minilm': static finds look-alikes, MiniLM judges them",
                              elem_id="dedupe-model")
    with gr.Row():
        ui.threshold = gr.Slider(THRESHOLDS[0], THRESHOLDS[-1], value=DEFAULT.threshold, step=0.01, scale=3,
                                 label="Similarity threshold (semantic)", elem_id="dedupe-threshold")
        ui.count = gr.Markdown(elem_id="dedupe-count")
    with gr.Accordion("How the default threshold was chosen (labelled paraphrases)", open=False):
        frame, note = calibration()
        gr.Markdown(note, elem_id="dedupe-calibration-note")
        gr.LinePlot(frame, x="threshold", y="value", color="measure", height=260, y_lim=[0, 1],
                    label="Precision and recall of semantic dedupe by threshold", elem_id="dedupe-calibration")
    with gr.Row():
        ui.embed = gr.Button("Compute embeddings", elem_id="dedupe-embed")
        ui.preview = gr.Button("Preview", variant="primary", elem_id="dedupe-preview")
        ui.apply = gr.Button("Mark duplicates rejected", variant="stop", elem_id="dedupe-apply")
        ui.undo = gr.Button("Undo", elem_id="dedupe-undo")
    ui.summary = gr.Markdown(plan_summary(None, {}), elem_id="dedupe-summary")
    ui.message = gr.Markdown(elem_id="dedupe-message")
    ui.clusters = gr.Dataframe(pd.DataFrame(columns=CLUSTER_COLUMNS), interactive=False, wrap=True, max_height=320,
                               label="Clusters, largest first (click one)", elem_id="dedupe-clusters",
                               column_widths=["8%", "7%", "8%", "8%", "8%", "61%"])
    with gr.Row():
        ui.cluster_no = gr.Number(label="Cluster", precision=0, minimum=1, elem_id="dedupe-cluster")
        ui.keep = gr.Dropdown([], label="Keep this member instead", scale=3, elem_id="dedupe-keep")
        ui.keep_btn = gr.Button("Keep it", elem_id="dedupe-keep-btn")
    ui.members = gr.HTML(elem_id="dedupe-members")
    with gr.Accordion("2-D map of the embeddings", open=False):
        with gr.Row():
            ui.colour_by = gr.Radio(list(MAP_COLOURINGS), value="cluster", label="Colour by", elem_id="dedupe-colour")
            ui.map_btn = gr.Button("Draw map", elem_id="dedupe-map-btn")
        ui.map_note = gr.Markdown(elem_id="dedupe-map-note")
        ui.map = gr.ScatterPlot(x="x", y="y", color="group", tooltip=["id", "group", "text"], height=480,
                                label="Embedding map (PCA)", x_title="first axis", y_title="second axis",
                                elem_id="dedupe-map")
        ui.map_rows = gr.Dataframe(pd.DataFrame(columns=["id", "group", "text"]), interactive=False, wrap=True,
                                   max_height=300, label="Rows in the selected band", elem_id="dedupe-map-rows")
        ui.map_frame = gr.State(None)
    # Per tab: the reviewed plan, the hand-picked members, the slider's counts, the last batch marked.
    ui.plan, ui.overrides, ui.counts, ui.batch = gr.State(None), gr.State({}), gr.State(None), gr.State(None)
    return ui


def build(studio):
    ui = _layout()
    bound = functools.partial
    store = studio.store
    settings = [ui.target, ui.method, ui.model, ui.rule, ui.threshold]
    plan_outputs = [ui.count, ui.summary, ui.clusters, ui.cluster_no, ui.members, ui.keep, ui.plan, ui.overrides,
                    ui.counts, ui.message]
    ui.preview.click(bound(preview, store), [*settings, ui.counts], plan_outputs, api_name="dedupe_preview")
    ui.threshold.input(bound(slide, store), [*settings, ui.counts], [ui.count, ui.counts], show_progress="hidden",
                       trigger_mode="always_last", api_visibility="private")
    ui.threshold.release(bound(preview, store), [*settings, ui.counts], plan_outputs, api_visibility="private")
    ui.clusters.select(select_cluster, [ui.clusters, ui.plan, ui.overrides], [ui.cluster_no, ui.members, ui.keep],
                       api_visibility="private")
    ui.cluster_no.submit(show_cluster, [ui.cluster_no, ui.plan, ui.overrides], [ui.members, ui.keep],
                         api_visibility="private")
    ui.keep_btn.click(keep_member, [ui.cluster_no, ui.keep, ui.plan, ui.overrides],
                      [ui.summary, ui.clusters, ui.members, ui.keep, ui.overrides], api_name="dedupe_keep")
    ui.apply.click(bound(apply, store), [ui.plan, ui.overrides],
                   [ui.message, ui.batch, ui.plan, ui.overrides, ui.counts, ui.summary, ui.clusters, ui.members,
                    ui.count], api_name="dedupe_apply")
    ui.undo.click(bound(undo, store), [ui.batch], [ui.message, ui.batch, ui.counts], api_name="dedupe_undo")
    ui.embed.click(bound(embed, store), [ui.target, ui.model], [ui.message], api_name="dedupe_embed")
    ui.map_btn.click(bound(draw_map, store), [*settings, ui.colour_by, ui.plan],
                     [ui.map, ui.map_note, ui.map_frame, ui.map_rows], api_name="dedupe_map")
    ui.map.select(select_on_map, [ui.map_frame], [ui.map_rows, ui.map_note], api_visibility="private")
