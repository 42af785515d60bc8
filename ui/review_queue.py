"""Queue tab: one task at a time with all its candidate responses side by side, labelled with the keyboard.

Every change goes through the store's queue methods, so it keeps the teacher's original and this
session can undo it (the undo stack lives in a gr.State: one per browser tab).
"""
from __future__ import annotations

import gradio as gr

from ui.common import guarded

MAX_CANDIDATES = 8  # card slots; a task with more shows the first ones and says where the rest are
STATUS_COLOURS = {"pending": "#6b7280", "approved": "#2f9e44", "rejected": "#e03131", "failed": "#f08c00"}
SHORTCUTS = [("a", "approve the focused response"), ("r", "reject it"),
             ("e", "edit it (Ctrl+Enter saves & approves, Esc leaves the box)"), ("1–8", "focus response n"),
             ("j / →", "next task"), ("k / ←", "previous task"), ("u", "undo the last change")]

# Installed once per page; it only clicks the tab's own buttons, and only while the queue is shown and
# the user is not typing, so a shortcut can never do what a click could not. Keys pressed while the
# queue is still answering wait their turn: each one must act on what the screen shows after the one
# before (a gradio event takes its inputs when it fires, so "a" then "r" at once would both read the
# old focus).
KEYBOARD_JS = """
if (!window.__distillQueueKeys) {
  window.__distillQueueKeys = true;
  const click = (id) => { const b = document.getElementById(id); if (b && !b.disabled) b.click(); return true; };
  const focused = () => { const c = document.querySelector('#queue-focus input[aria-checked="true"]') ||
                           document.querySelector('#queue-focus input:checked'); return c ? c.value : '1'; };
  const typing = (t) => t && (t.isContentEditable || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' ||
    (t.tagName === 'INPUT' && !['radio', 'checkbox', 'button', 'submit', 'range'].includes(t.type)));
  const busy = () => !!document.querySelector('#queue-root [data-testid="status-tracker"]:not(.hide)');
  const waiting = [];
  let running = false, editPending = false;
  const pump = () => {
    if (running || !waiting.length) return;
    running = true;
    const step = waiting.shift();
    const go = (tries) => {
      if (busy() && tries < 250) { setTimeout(() => go(tries + 1), 40); return; }
      const grace = step() ? 150 : 0;  // a click that starts an event: give it time to show as busy
      setTimeout(() => { running = false; pump(); }, grace);
    };
    go(0);
  };
  const later = (step) => { waiting.push(step); pump(); };
  const keys = {a: 'queue-approve', r: 'queue-reject', j: 'queue-next', ArrowRight: 'queue-next',
                k: 'queue-prev', ArrowLeft: 'queue-prev', u: 'queue-undo'};
  document.addEventListener('keydown', (ev) => {
    const root = document.getElementById('queue-root');
    if (!root || root.offsetParent === null) return;
    const t = ev.target;
    if (typing(t)) {
      if (ev.key === 'Escape') t.blur();
      const card = t.closest && t.closest('[id^="queue-card-"]');
      if (card && ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey) && t.closest('[id^="queue-edit-"]')) {
        ev.preventDefault();
        later(() => click('queue-save-' + card.id.split('-').pop()));
      }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (editPending) { ev.preventDefault(); return; }  // text typed before its box has focus is not a shortcut
    if (keys[ev.key]) { ev.preventDefault(); later(() => click(keys[ev.key])); return; }
    if (ev.key === 'e') {
      ev.preventDefault();
      editPending = true;
      later(() => {
        const box = document.querySelector('#queue-edit-' + (Number(focused()) - 1) + ' textarea');
        if (box) box.focus();
        editPending = false;
      });
      return;
    }
    if (/^[1-8]$/.test(ev.key)) {
      ev.preventDefault();
      later(() => {
        const option = document.querySelector('#queue-focus input[value="' + ev.key + '"]');
        if (option) option.click();
      });
    }
  });
}
"""

STYLE = """<style>
.ds-card {border: 2px solid var(--border-color-primary, #e5e7eb); border-radius: 8px; padding: 6px;}
.ds-card.ds-focused {border-color: var(--color-accent, #f97316);
                     box-shadow: 0 0 0 2px var(--color-accent-soft, #fed7aa);}
.ds-keys kbd {border: 1px solid #bbb; border-bottom-width: 2px; border-radius: 4px; padding: 0 5px; font-size: .85em;}
.ds-keys span {margin-right: 14px; white-space: nowrap;}
</style>"""


def legend_html() -> str:
    return '<div class="ds-keys"><b>Keys:</b> ' + "".join(
        f"<span><kbd>{k}</kbd> {what}</span>" for k, what in SHORTCUTS) + "</div>"


def task_markdown(task: dict | None, shown: int, total: int) -> str:
    if task is None:
        return "_No task here. Untick “only tasks with pending responses” to see every task, or generate some._"
    tags = " · ".join(x for x in (task.get("skill"), task.get("domain"), f"{task['split']} split") if x)
    parts = [f"### Task {task['id']} · {tags}", task["instruction"]]
    if task.get("input"):
        parts.append("**Input**\n\n" + task["input"])
    if task.get("system_prompt"):
        parts.append(f"**System prompt:** {task['system_prompt']}")
    if total > shown:
        parts.append(f"_Showing {shown} of {total} responses; the rest are in the Review tab (search task id)._")
    return "\n\n".join(parts)


def card_header(slot: int, cand: dict, focused: bool) -> str:
    colour = STATUS_COLOURS.get(cand["status"], "#6b7280")
    bits = [f'<b style="color:{colour}">● {cand["status"]}</b>', f"gen {cand['id']}", cand["model"]]
    if cand.get("judge_score") is not None:
        bits.append(f"judge {cand['judge_score']:.1f}")
    if cand.get("completion_tokens") is not None:
        bits.append(f"{cand['completion_tokens']} tokens")
    if cand.get("finish_reason") == "length":
        bits.append("cut at max tokens")
    if cand.get("edited_response") is not None:
        bits.append("edited")
    head = f"{'▶ ' if focused else ''}**#{slot + 1}** · " + " · ".join(str(b) for b in bits)
    return head + (f"\n\n_reason: {cand['reason']}_" if cand.get("reason") else "")


def next_pending(cands: list[dict], after: int) -> int:
    """Slot of the first pending candidate after `after` (wrapping round); `after` itself when none."""
    order = list(range(after + 1, len(cands))) + list(range(0, after + 1))
    return next((i for i in order if cands[i]["status"] == "pending"), max(after, 0))


class Card:
    """The components of one candidate slot."""

    def __init__(self, slot: int):
        with gr.Column(visible=False, min_width=320, elem_id=f"queue-card-{slot}",
                       elem_classes=["ds-card"]) as self.box:
            self.header = gr.Markdown(elem_id=f"queue-head-{slot}")
            self.response = gr.Textbox(label="Teacher response (original)", lines=6, max_lines=14, interactive=False,
                                       elem_id=f"queue-response-{slot}")
            self.edit = gr.Textbox(label="Edited response (the original is kept)", lines=3, max_lines=14,
                                   elem_id=f"queue-edit-{slot}")
            with gr.Row():
                self.tags = gr.Textbox(label="Tags (comma-separated)", elem_id=f"queue-tags-{slot}")
                self.note = gr.Textbox(label="Note", elem_id=f"queue-note-{slot}")
            with gr.Row():
                self.approve = gr.Button("Approve", variant="primary", size="sm", elem_id=f"queue-approve-{slot}")
                self.reject = gr.Button("Reject", variant="stop", size="sm", elem_id=f"queue-reject-{slot}")
                self.save = gr.Button("Save edit & approve", size="sm", elem_id=f"queue-save-{slot}")
                self.meta = gr.Button("Save tags & note", size="sm", elem_id=f"queue-meta-{slot}")

    @property
    def outputs(self) -> list:
        return [self.box, self.header, self.response, self.edit, self.tags, self.note]

    @staticmethod
    def updates(slot: int, cand: dict | None, focused: bool, refresh_text: bool) -> list:
        """Updates for `outputs`; the editable boxes are left alone unless `refresh_text`, so a change
        on one card never wipes what the user is typing on another."""
        if cand is None:
            return [gr.update(visible=False), "", *(["" if refresh_text else gr.skip()] * 4)]
        box = gr.update(visible=True, elem_classes=["ds-card", "ds-focused"] if focused else ["ds-card"])
        header = card_header(slot, cand, focused)
        if not refresh_text:
            return [box, header, *([gr.skip()] * 4)]
        original = cand["response"] if cand["call_status"] == "ok" else f"(failed call) {cand['error'] or ''}"
        return [box, header, original, cand["edited_response"] or "", cand["tags"] or "", cand["note"] or ""]


class QueueTab:
    """The queue's layout, its event handlers and their wiring. Per-tab state lives in gr.State:
    the task shown, the generation in each card, and this tab's undo stack of QueueActions."""

    def __init__(self, studio):
        self.store = studio.store
        self._layout()
        self.task_state, self.slots_state, self.undo_state = gr.State(None), gr.State([]), gr.State([])
        self.outputs = [self.task_state, self.slots_state, self.undo_state, self.task_md, self.info, self.focus,
                        self.message, *[o for card in self.cards for o in card.outputs]]
        self.context = [self.task_state, self.pending_only, self.undo_state]
        self._wire()

    def _layout(self):
        gr.HTML(legend_html(), head=STYLE, js_on_load=KEYBOARD_JS, elem_id="queue-legend")
        with gr.Column(elem_id="queue-root"):
            with gr.Row():
                self.pending_only = gr.Checkbox(value=True, label="Only tasks with pending responses",
                                                elem_id="queue-pending")
                self.goto = gr.Number(label="Go to task id", precision=0, minimum=0, elem_id="queue-goto")
                self.info = gr.Markdown(elem_id="queue-info")
            with gr.Row():
                self.prev_btn = gr.Button("◀ Previous task (k)", size="sm", elem_id="queue-prev")
                self.next_btn = gr.Button("Next task ▶ (j)", size="sm", elem_id="queue-next")
                self.approve = gr.Button("Approve focused (a)", variant="primary", size="sm", elem_id="queue-approve")
                self.reject = gr.Button("Reject focused (r)", variant="stop", size="sm", elem_id="queue-reject")
                self.undo = gr.Button("Undo (u)", size="sm", elem_id="queue-undo")
            self.task_md = gr.Markdown(elem_id="queue-task")
            self.focus = gr.Radio(["1"], value="1", label="Focused response", elem_id="queue-focus")
            with gr.Row(equal_height=False):
                self.cards = [Card(i) for i in range(MAX_CANDIDATES)]
            self.message = gr.Markdown(elem_id="queue-message")

    # ---- handlers -----------------------------------------------------------------------------
    def render(self, task_id, focus_slot, pending_only, undo_stack, note="", refresh=None) -> list:
        """Every output for task `task_id`; `refresh`: the slots whose editable boxes are rewritten
        (None: all of them, as when the task changes)."""
        task = self.store.tasks([int(task_id)])[0] if task_id is not None else None
        cands = self.store.task_candidates(int(task_id)) if task_id is not None else []
        shown = cands[:MAX_CANDIDATES]
        focus_slot = min(max(focus_slot, 0), max(len(shown) - 1, 0))
        upto, total = self.store.queue_position(task_id, pending_only)
        scope = "tasks with pending responses" if pending_only else "tasks with responses"
        where = f"task {upto} of {total} {scope}" if task_id is not None else f"0 {scope}"
        pending = sum(c["status"] == "pending" for c in cands)
        info = (f"{where} · {pending} of {len(cands)} responses pending · {len(undo_stack)} "
                f"change{'' if len(undo_stack) == 1 else 's'} to undo")
        choices = [str(i + 1) for i in range(len(shown))] or ["1"]
        slots = []
        for i, card in enumerate(self.cards):
            cand = shown[i] if i < len(shown) else None
            slots += card.updates(i, cand, i == focus_slot, refresh is None or i in refresh)
        return [task_id, [c["id"] for c in shown], undo_stack, task_markdown(task, len(shown), len(cands)),
                info, gr.update(choices=choices, value=str(focus_slot + 1)), note, *slots]

    def first_focus(self, task_id) -> int:
        return next_pending(self.store.task_candidates(int(task_id))[:MAX_CANDIDATES], -1) if task_id else 0

    @guarded
    def show(self, task_id, pending_only, undo_stack):
        task_id = self.store.queue_task(task_id, 0, pending_only)
        return self.render(task_id, self.first_focus(task_id), pending_only, undo_stack)

    @guarded
    def move(self, step, task_id, pending_only, undo_stack):
        target = self.store.queue_task(task_id, step, pending_only)
        if target is None:
            note = "this is the last task" if step > 0 else "this is the first task"
            return self.render(task_id, 0, pending_only, undo_stack, note)
        return self.render(target, self.first_focus(target), pending_only, undo_stack)

    @guarded
    def go_to(self, number, undo_stack):
        if number is None or not self.store.tasks([int(number)]):
            raise gr.Error(f"no task with id {number}")
        return self.render(int(number), self.first_focus(int(number)), False, undo_stack,
                           "showing every task (the pending filter is off)") + [False]

    @guarded
    def act(self, slot, action, text, task_id, slots, pending_only, undo_stack):
        if slot >= len(slots):
            raise gr.Error(f"no response in place {slot + 1}: focus one of 1 to {max(len(slots), 1)}")
        edit = (text or "") if action == "edit" else None
        done = self.store.queue_label(slots[slot], "approved" if action == "edit" else action, edited_response=edit)
        cands = self.store.task_candidates(int(task_id))[:MAX_CANDIDATES]
        word = {"approved": "approved", "rejected": "rejected", "edit": "edited and approved"}[action]
        return self.render(task_id, next_pending(cands, slot), pending_only, undo_stack + [done],
                           f"generation {slots[slot]}: {word}", refresh=set())

    @guarded
    def save_meta(self, slot, tags, note, task_id, slots, pending_only, undo_stack):
        done = self.store.set_tags_note(slots[slot], tags, note)
        return self.render(task_id, slot, pending_only, undo_stack + [done],
                           f"generation {slots[slot]}: tags and note saved", refresh={slot})

    @guarded
    def undo_last(self, task_id, pending_only, undo_stack):
        if not undo_stack:
            raise gr.Error("nothing to undo in this tab")
        last = undo_stack[-1]
        self.store.queue_undo(last)
        on_task = self.store.generation(last.generation_id)["task_id"]
        ids = [c["id"] for c in self.store.task_candidates(on_task)]
        slot = ids.index(last.generation_id)
        what = "tags and note" if last.kind == "meta" else "label"
        return self.render(on_task, slot, pending_only, undo_stack[:-1],
                           f"undid the {what} change on generation {last.generation_id}",
                           refresh=None if on_task != task_id else {slot})

    def refocus(self, value, task_id):
        """Only the headers and outlines move with the focus: nothing typed is touched."""
        slot = int(value or 1) - 1
        cands = self.store.task_candidates(int(task_id))[:MAX_CANDIDATES] if task_id is not None else []
        return [u for i, card in enumerate(self.cards)
                for u in card.updates(i, cands[i] if i < len(cands) else None, i == slot, False)[:2]]

    # ---- wiring -------------------------------------------------------------------------------
    def _wire(self):
        context, outputs = self.context, self.outputs
        self.pending_only.input(self.show, context, outputs, api_visibility="private")
        self.prev_btn.click(lambda t, p, u: self.move(-1, t, p, u), context, outputs, api_name="queue_prev")
        self.next_btn.click(lambda t, p, u: self.move(1, t, p, u), context, outputs, api_name="queue_next")
        self.goto.submit(self.go_to, [self.goto, self.undo_state], outputs + [self.pending_only],
                         api_name="queue_go_to")
        self.undo.click(self.undo_last, context, outputs, api_name="queue_undo")
        labelled = [self.task_state, self.slots_state, self.pending_only, self.undo_state]
        for button, action, api in ((self.approve, "approved", "queue_approve"),
                                    (self.reject, "rejected", "queue_reject")):
            button.click(lambda f, t, s, p, u, a=action: self.act(int(f or 1) - 1, a, None, t, s, p, u),
                         [self.focus, *labelled], outputs, api_name=api)
        for i, card in enumerate(self.cards):
            for button, action in ((card.approve, "approved"), (card.reject, "rejected"), (card.save, "edit")):
                button.click(lambda x, t, s, p, u, i=i, a=action: self.act(i, a, x, t, s, p, u),
                             [card.edit, *labelled], outputs, api_visibility="private")
            card.meta.click(lambda g, n, t, s, p, u, i=i: self.save_meta(i, g, n, t, s, p, u),
                            [card.tags, card.note, *labelled], outputs, api_visibility="private")
        self.focus.input(self.refocus, [self.focus, self.task_state],
                         [o for card in self.cards for o in card.outputs[:2]],
                         api_visibility="private", show_progress="hidden")


def build(studio):
    """Lay out and wire the queue; returns (load function, its inputs, its outputs) for the tab's select."""
    tab = QueueTab(studio)
    return tab.show, tab.context, tab.outputs
