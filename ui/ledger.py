"""The Generate tab's ledger (every teacher call: state, attempts, error, cost; paged in the store) with
"retry failed" for all or one call, and the per-model price table that costs and budgets use."""
from __future__ import annotations

import math

import gradio as gr

from curation.errors import StudioError
from curation.methods import METHODS
from curation.store import Store
from ui.common import guarded

PAGE_SIZE = 25
STATES = ["all", *Store.LEDGER_STATES]
RETRY_WITH = ["teacher", "judge endpoint"]
# request_key run method stage task gen state attempts error prompt completion cost latency updated
COLUMN_WIDTHS = ["13%", "4%", "6%", "5%", "4%", "5%", "5%", "5%", "23%", "6%", "6%", "5%", "5%", "8%"]


def run_choices(store) -> list[tuple[str, str]]:
    runs = [(f"run {r['id']} · {r['config'].get('method', '?')} · {r['status']}", str(r["id"]))
            for r in store.runs(kind="generate")[:100]]
    return [("latest run", "latest"), ("all runs", "all"), *runs]


def resolve_run(store, run: str) -> int | None:
    """'latest' → the newest generation run, 'all' → None (no run filter), else the run id typed or chosen."""
    if run in ("", "all", None):
        return None
    if run == "latest":
        runs = store.runs(kind="generate")
        return runs[0]["id"] if runs else None
    try:
        return int(run)
    except ValueError:
        raise gr.Error(f"run must be 'latest', 'all' or a run id (got {run!r})") from None


@guarded
def ledger_view(store, run: str, state: str, method: str, page: int):
    run_id = resolve_run(store, run)
    state, method = ("" if v in ("all", None) else v for v in (state, method))
    page = max(1, int(page or 1))
    frame, total = store.ledger_page(run_id, state, method, page, PAGE_SIZE)
    frame = frame.assign(latency_s=frame["latency_s"].round(2), updated_at=frame["updated_at"].astype(str).str[:19])
    s = store.ledger_summary(run_id)
    counts = ", ".join(f"{n} {st}" for st, n in s["by_state"].items() if n)
    cost = f" · ${s['cost_usd']:.4f}" if s["cost_usd"] is not None else ""
    scope = f"run {run_id}" if run_id is not None else "all runs"
    return frame, (f"{scope}: {counts or 'no calls'} · {s['prompt_tokens'] + s['completion_tokens']} tokens{cost} · "
                   f"page {page} of {max(1, math.ceil(total / PAGE_SIZE))} · {total} matching calls")


@guarded
def retry(studio, form: dict, teacher_of, keys: list[str] | None) -> str:
    teacher = teacher_of(form, judge=form.get("retry_with") == "judge endpoint")
    n = studio.generation.retry_failed(teacher, keys)
    where = "the embedded teacher" if teacher.embedded else teacher.base_url or teacher.endpoint_id
    return (f"retrying {n} failed call{'s' if n != 1 else ''} with {where} ({teacher.model_name}); "
            "the ledger updates when it is done")


@guarded
def retry_selected(studio, form: dict, teacher_of) -> str:
    key = (form.get("key") or "").strip()
    if not key:
        raise gr.Error("select a failed call in the ledger first (or use Retry all failed)")
    return retry(studio, form, teacher_of, [key])


@guarded
def set_price(store, model: str, input_usd: float | None, output_usd: float | None):
    if input_usd is None or output_usd is None:
        raise StudioError("give both the input and the output price (USD per million tokens)")
    store.set_price(model, input_usd, output_usd)
    return store.prices(), f"price of {model.strip()}: ${input_usd:g} in, ${output_usd:g} out per million tokens"


@guarded
def delete_price(store, model: str):
    model = (model or "").strip()
    if not store.delete_price(model):
        raise StudioError(f"no price for model {model!r} to delete")
    return store.prices(), f"deleted the price of {model}"


def _selected_row(frame, evt: gr.SelectData):
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return frame.iloc[row]


def _ledger_section(studio, teacher_inputs: dict, teacher_of, timer: gr.Timer):
    store = studio.store
    with gr.Row():
        run = gr.Dropdown(run_choices(store), value="latest", label="Run", allow_custom_value=True, scale=2,
                          elem_id="ledger-run")
        state = gr.Dropdown(STATES, value="all", label="State", scale=1, elem_id="ledger-state")
        method = gr.Dropdown(["all", *METHODS], value="all", label="Method", scale=1, elem_id="ledger-method")
        page = gr.Number(value=1, label="Page", precision=0, minimum=1, scale=1, elem_id="ledger-page")
        refresh = gr.Button("Refresh", size="sm", elem_id="ledger-refresh")
    info = gr.Markdown(elem_id="ledger-info")
    table = gr.Dataframe(interactive=False, wrap=True, elem_id="ledger-table", column_widths=COLUMN_WIDTHS)
    _retry_section(studio, table, teacher_inputs, teacher_of)
    seen = gr.State("")

    page_inputs = [run, state, method, page]

    def page_of(run: str, state: str, method: str, page: int):
        return ledger_view(store, run, state, method, page)

    def load(*filters):
        return (gr.update(choices=run_choices(store)), *page_of(*filters))

    def refresh_when_job_moves(last, *filters):
        # The table follows the job: it reloads when the job's state changes (started, finished), not every tick.
        status = studio.generation.status()
        now = f"{status.started_at}:{status.state}"  # a job that starts and ends between two ticks still moves
        if now == last:
            return gr.skip(), gr.skip(), gr.skip(), last
        return (*load(*filters), now)

    refresh.click(page_of, page_inputs, [table, info], api_name="ledger_page")
    refresh.click(lambda: gr.update(choices=run_choices(store)), None, [run], api_visibility="private")
    for trigger in (run.change, state.change, method.change, page.submit):
        trigger(page_of, page_inputs, [table, info], api_visibility="private")
    timer.tick(refresh_when_job_moves, [seen, *page_inputs], [run, table, info, seen], show_progress="hidden",
               api_visibility="private")


def _retry_section(studio, table: gr.Dataframe, teacher_inputs: dict, teacher_of):
    """A clicked ledger row selects its call; retry it, or every failed call of the teacher (or judge) form."""
    with gr.Row():
        key = gr.Textbox(label="Selected call (request key; click a row)", value="", scale=3, elem_id="ledger-key")
        retry_with = gr.Radio(RETRY_WITH, value="teacher", label="Retry with", scale=1)
        retry_one = gr.Button("Retry selected", elem_id="ledger-retry-one")
        retry_all = gr.Button("Retry all failed", elem_id="ledger-retry-all")
    message = gr.Markdown(elem_id="ledger-message")

    def on_select(frame, evt: gr.SelectData):
        return _selected_row(frame, evt)["request_key"]

    table.select(on_select, [table], [key], api_visibility="private")
    form = {**teacher_inputs, "retry_with": retry_with}
    retry_all.click(lambda **f: retry(studio, f, teacher_of, None), inputs_kwargs=form, outputs=[message],
                    api_name="retry_failed")
    retry_one.click(lambda **f: retry_selected(studio, f, teacher_of), inputs_kwargs={**form, "key": key},
                    outputs=[message], api_name="retry_selected")


def _prices_section(store):
    gr.Markdown("USD per million tokens, per model name as the endpoint knows it; used for cost and USD budgets.")
    prices = gr.Dataframe(value=store.prices, interactive=False, elem_id="prices-table")
    with gr.Row():
        model = gr.Textbox(label="Model", value="", elem_id="price-model")
        input_usd = gr.Number(label="Input USD / M tokens", value=0, minimum=0, elem_id="price-input")
        output_usd = gr.Number(label="Output USD / M tokens", value=0, minimum=0, elem_id="price-output")
        save = gr.Button("Set price", elem_id="price-set")
        delete = gr.Button("Delete price", variant="stop", elem_id="price-delete")
    message = gr.Markdown(elem_id="price-message")

    def on_select(frame, evt: gr.SelectData):
        row = _selected_row(frame, evt)
        return row["model"], float(row["input_usd_per_mtok"]), float(row["output_usd_per_mtok"])

    def save_price(model: str, input_usd_per_mtok: float, output_usd_per_mtok: float):
        return set_price(store, model, input_usd_per_mtok, output_usd_per_mtok)

    prices.select(on_select, [prices], [model, input_usd, output_usd], api_visibility="private")
    save.click(save_price, [model, input_usd, output_usd], [prices, message], api_name="set_price")
    delete.click(lambda model: delete_price(store, model), [model], [prices, message], api_name="delete_price")


def build(studio, teacher_inputs: dict, teacher_of, timer: gr.Timer):
    """teacher_inputs: the form's teacher and judge-endpoint components; teacher_of(form, judge) -> TeacherConfig."""
    with gr.Accordion("Ledger: every teacher call", open=True):
        _ledger_section(studio, teacher_inputs, teacher_of, timer)
    with gr.Accordion("Prices", open=False):
        _prices_section(studio.store)
