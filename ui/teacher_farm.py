"""The teacher box's farm: a table of OpenAI-compatible endpoints that serve one teacher (curation/farm.py).

Layout and form values only: the rows become a `TeacherFarm`, which checks them.
"""
from __future__ import annotations

import gradio as gr

from curation.farm_config import ENDPOINT_FIELDS, TeacherFarm, farm_from_rows

EMPTY_ROW = ["", "", "", "", 16, "", ""]


def farm_section() -> dict:
    """The farm's name and its endpoints table, inside the teacher box."""
    with gr.Accordion("Teacher farm (optional): several endpoints behind this teacher", open=False):
        gr.Markdown("Fill in rows to spread the calls over several OpenAI-compatible endpoints serving the model "
                    "above (leave the base URL above empty). Each call goes to the least loaded endpoint within "
                    "its concurrency and requests / tokens per minute (empty: no limit); one that dies is rested "
                    "and its calls go to the others. Keys come from the environment variable named in "
                    "api_key_env (empty: $OPENAI_API_KEY), never from this page. The farm's name is its identity in "
                    "the request keys: keep it, and answers already stored are never asked for again.")
        farm_name = gr.Textbox(label="Farm name", value="farm", elem_id="gen-farm-name")
        farm_endpoints = gr.Dataframe(value=[EMPTY_ROW], headers=list(ENDPOINT_FIELDS), type="array",
                                      interactive=True, column_count=len(ENDPOINT_FIELDS),
                                      column_limits=(len(ENDPOINT_FIELDS), len(ENDPOINT_FIELDS)),
                                      label="Endpoints (name, base_url, model, api_key_env, concurrency, rpm, tpm)",
                                      elem_id="gen-farm-endpoints")
    return dict(farm_name=farm_name, farm_endpoints=farm_endpoints)


def farm_of(form: dict) -> TeacherFarm | None:
    """The form's farm, or None when no endpoint row has a base URL."""
    return farm_from_rows(form.get("farm_name") or "farm", "", form.get("farm_endpoints") or [])


def endpoint_detail(endpoints: dict | None) -> str:
    """A running farm job's per-endpoint counts, for the progress line."""
    if not endpoints:
        return ""
    return " · " + ", ".join(
        f"{name}: {c['ok']} ok, {c['in_flight']} in flight" + (f", {c['state']}" if c["state"] != "up" else "")
        + (f", {c['failed_over']} sent elsewhere" if c["failed_over"] else "") for name, c in endpoints.items())
