"""Generate tab: the tools method's option group (layout only; the method is curation/methods/tools.py)."""
from __future__ import annotations

import gradio as gr

from curation.methods.tools import MAX_CALLS

TEACHER_NOTE = (
    "Requests that need the tools of a tool set (Seeds tab → Tools), answered by the teacher with tool calls; each "
    "call is checked against its function's JSON Schema and an invalid one is marked (Review shows the calls as a "
    "table; the *invalid_calls* filter on the Curate tab rejects them). **What the embedded 135M teacher can and "
    "cannot do:** its chat template takes no tools, so through the tools API it never calls one (0 calls in 30 "
    "answers); call mode *auto* therefore asks it for calls as JSON held to the tools' schemas. Measured on the "
    "bundled tools (bench/tools.py): all 30 of its calls were valid, 21 of 30 named the tool the request was "
    "written for, but only 9 of 60 text arguments came from the request (it answers \"Paris\", \"USD\" to "
    "anything), and many of its requests are not requests at all (\"Paris, France\", a date). Review them, or use "
    "a stronger teacher endpoint (through the tools API) for data worth training on.")


def tools_group(groups: dict) -> dict:
    with gr.Group(visible=False) as groups["tools"]:
        gr.Markdown(TEACHER_NOTE, elem_id="gen-tools-note")
        with gr.Row():
            toolset = gr.Textbox(label="Tool set (id or name; empty: the newest imported)", value="",
                                 elem_id="gen-toolset")
            requests_per_tool = gr.Slider(0, 10, value=3, step=1,
                                          label="Requests written per tool (0: answer the stored ones)")
        with gr.Row():
            call_mode = gr.Radio([("auto: structured on the embedded teacher, else the tools API", "auto"),
                                  ("the OpenAI tools API", "api"),
                                  ("structured: calls as JSON held to the schemas", "structured")],
                                 value="auto", label="How the teacher is asked for calls")
            max_calls = gr.Slider(1, MAX_CALLS, value=1, step=1, label="Calls per structured answer (at most)")
    return dict(toolset=toolset, requests_per_tool=requests_per_tool, call_mode=call_mode, max_calls=max_calls)
