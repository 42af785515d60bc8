"""chat — conversations of N turns from each seed task (survey 4.1: Baize self-chat, UltraChat).

The teacher plays the assistant; a user simulator — the same teacher with a persona prompt, chat_user.j2 —
writes each next user turn from the conversation so far. Stages alternate: assistant turn 1, user turn 1,
assistant turn 2, ... assistant turn N; each is planned after the one before it ran, by walking the ledger
(every answer is stored there, raw, before the next turn uses it), so a stopped job resumes where it was.

Reads: the tasks given, else every train-split task (its instruction is the first user turn).
Writes: one generation per conversation (method 'chat'): `messages` hold every turn before the last
answer, `response` that answer; training puts the loss on every assistant turn (distill/data.py).
A conversation ends early, and is stored as far as it got, when an answer is empty or the simulator writes
nothing usable (counted as discarded: 'empty_answer', 'user_simulator').
Parser: `parse_user_turn`, None for a simulator answer with nothing in it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from curation.errors import ConfigError
from curation.methods.base import Call, Method, Stage, Writes, content_words, render
from curation.methods.label import Sampling, build_messages, check_sampling, select_tasks

MAX_TURNS = 8
_LABEL = re.compile(r"^\s*(?:\*\*)?\s*(?:user|human|me)\s*(?:\*\*)?\s*:\s*", re.IGNORECASE)
_NEXT_SPEAKER = re.compile(r"\n\s*(?:\*\*)?\s*(?:assistant|ai|gpt)\s*(?:\*\*)?\s*:", re.IGNORECASE)


@dataclass
class ChatConfig(Sampling):
    """Self-chat settings.

    task_ids: seed tasks (the first user turn of each conversation); empty means every train-split task.
    n: conversations per seed task (1..8).
    turns: assistant turns per conversation (2..8); the simulated user writes turns-1 follow-ups.
    persona: who the simulated user is, e.g. "a nurse who wants short practical answers"; empty: anyone.
    system_prompt: sent to the assistant before each conversation; empty means the task's own, if any.
    temperature, max_tokens: sampling of each assistant answer.
    user_max_tokens: cap on each simulated user turn in tokens (8..1024).
    """

    task_ids: list[int] = field(default_factory=list)
    n: int = 1
    turns: int = 3
    persona: str = ""
    system_prompt: str = ""
    temperature: float = 0.7
    max_tokens: int = 256
    user_max_tokens: int = 96

    def __post_init__(self):
        check_sampling(self)
        if not 1 <= int(self.n) <= 8:
            raise ConfigError(f"n (conversations per task) must be between 1 and 8 (got {self.n})")
        if not 2 <= int(self.turns) <= MAX_TURNS:
            raise ConfigError(f"turns must be between 2 and {MAX_TURNS} (got {self.turns}); one turn is the "
                              "label method")
        if not 8 <= int(self.user_max_tokens) <= 1024:
            raise ConfigError(f"user_max_tokens must be between 8 and 1024 (got {self.user_max_tokens})")
        self.n, self.turns, self.user_max_tokens = int(self.n), int(self.turns), int(self.user_max_tokens)
        self.persona, self.system_prompt = (self.persona or "").strip(), self.system_prompt or ""
        self.task_ids = [int(i) for i in self.task_ids]

    def user_params(self) -> dict:
        return {"temperature": self.temperature, "max_tokens": self.user_max_tokens}


def parse_user_turn(text: str | None) -> str | None:
    """The simulated user's message: without a leading 'User:' label or quotes, cut where the simulator
    goes on to write the assistant's part; None when nothing is left."""
    if not text:
        return None
    cleaned = _LABEL.sub("", text.strip(), count=1)
    cleaned = _NEXT_SPEAKER.split(cleaned, maxsplit=1)[0].strip().strip('"').strip()
    return cleaned if content_words(cleaned) else None


def _assistant_call(ctx, task: dict, i: int, messages: list[dict], turn: int) -> Call:
    return Call.make("chat", f"assistant_{turn}", ctx.teacher.endpoint_id, ctx.teacher.model_name, messages,
                     ctx.config.params(), i, task_id=task["id"],
                     context={"turn": turn, "last": turn == ctx.config.turns})


def _user_call(ctx, task: dict, i: int, messages: list[dict], turn: int, answered: Call, row: dict) -> Call:
    content = render("chat_user.j2", persona=ctx.config.persona,
                     turns=[m for m in messages if m["role"] != "system"])
    # What the conversation so far would store if this simulated turn ends it (write reads only the call).
    so_far = {"request_key": answered.request_key, "messages": answered.messages, "params": answered.params,
              "sample_index": i, "response": row["raw_output"], "prompt_tokens": row.get("prompt_tokens"),
              "completion_tokens": row.get("completion_tokens"), "latency_s": row.get("latency_s")}
    return Call.make("chat", f"user_{turn}", ctx.teacher.endpoint_id, ctx.teacher.model_name,
                     [{"role": "user", "content": content}], ctx.config.user_params(), i, task_id=task["id"],
                     context={"turn": turn, "so_far": so_far})


def _answered(row: dict | None) -> bool:
    return row is not None and row["state"] == "ok"


def _walk(ctx, task: dict, i: int, turn: int, role: str) -> Call | None:
    """The call of (turn, role) in conversation i of the task, rebuilt from what the ledger holds of the
    turns before it; None while one of them has no answer yet, or once the conversation has ended."""
    messages = build_messages(task, ctx.config.system_prompt)
    for t in range(1, turn + 1):
        assistant = _assistant_call(ctx, task, i, messages, t)
        if (t, "assistant") == (turn, role):
            return assistant
        row = ctx.ledger_row(assistant.request_key)
        if not _answered(row) or not content_words(row["raw_output"]):
            return None
        messages = messages + [{"role": "assistant", "content": row["raw_output"]}]
        user = _user_call(ctx, task, i, messages, t, assistant, row)
        if (t, "user") == (turn, role):
            return user
        user_row = ctx.ledger_row(user.request_key)
        follow_up = parse_user_turn(user_row["raw_output"]) if _answered(user_row) else None
        if follow_up is None:
            return None
        messages = messages + [{"role": "user", "content": follow_up}]
    return None


def _plan(turn: int, role: str):
    def plan(ctx) -> list[Call]:
        calls = []
        for task in select_tasks(ctx.store, ctx.config.task_ids):
            for i in range(ctx.config.n):
                call = _walk(ctx, task, i, turn, role)
                if call is not None:
                    calls.append(call)
        return calls
    return plan


def write_assistant(ctx, call: Call, result: dict) -> Writes:
    if result["status"] != "ok":
        return Writes()
    answer = result.get("response") or ""
    turn = call.context["turn"]
    if call.context["last"] or not content_words(answer):
        outcome = {"turns": turn, "discarded": {} if content_words(answer) else {"empty_answer": 1}}
        return Writes(generation=call.generation_row(result, ctx.run_id), raw_output=answer, outcome=outcome)
    return Writes(raw_output=answer, outcome={"turn": turn})


def write_user(ctx, call: Call, result: dict) -> Writes:
    if result["status"] != "ok":
        return Writes()
    raw = result.get("response") or ""
    if parse_user_turn(raw) is not None:
        return Writes(raw_output=raw, outcome={"turn": call.context["turn"]})
    # The simulator wrote nothing usable: the conversation ends with the answer before it, stored as it is.
    so_far = call.context["so_far"]
    generation = {**so_far, "task_id": call.task_id, "run_id": ctx.run_id, "endpoint": call.endpoint,
                  "model": call.model, "status": "ok", "finish_reason": None, "attempts": 1, "method": "chat"}
    return Writes(generation=generation, raw_output=raw,
                  outcome={"turns": call.context["turn"], "discarded": {"user_simulator": 1}})


def _stages(config: ChatConfig) -> list[Stage]:
    stages = []
    for turn in range(1, config.turns + 1):
        stages.append(Stage(f"assistant_{turn}", _plan(turn, "assistant"), write_assistant))
        if turn < config.turns:
            stages.append(Stage(f"user_{turn}", _plan(turn, "user"), write_user))
    return stages


METHOD = Method("chat", ChatConfig, "multi-turn conversations: the teacher answers and a simulated user (the "
                "teacher with a persona) asks follow-ups, N turns per seed task",
                _stages, writers={**{f"assistant_{t}": write_assistant for t in range(1, MAX_TURNS + 1)},
                                  **{f"user_{t}": write_user for t in range(1, MAX_TURNS)}})
