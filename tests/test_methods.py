"""Elicitation methods: pure parsers and similarity maths, exact template rendering, and each method
against the real embedded teacher (short answers) or, where an exact outcome matters, the fault server."""
from __future__ import annotations

import json

import numpy as np
import pytest

from curation.errors import ConfigError
from curation.generate import preview, run_method
from curation.methods import (METHODS, CompareConfig, EvolConfig, GenerateConfig, JudgeConfig, LogprobsConfig,
                              SelfConfig, SelfInstructConfig, TopicsConfig, preferences)
from curation.methods.base import parse_task_list
from curation.methods.compare import VERDICT_SCHEMA, parse_winner
from curation.methods.evol import elimination_reason, parse_evolved
from curation.methods.judge import SCORE_SCHEMA, default_rubric, parse_score
from curation.methods.novelty import NoveltyFilter, lcs_length, max_cosine, rouge_l, tokens
from curation.teacher import TeacherConfig
from tests.conftest import add_generation
from tests.fault_server import FaultServer

OFFLINE = TeacherConfig(base_url="http://127.0.0.1:9/v1", model="m")  # preview never sends
TASKS = [{"instruction": "Name a colour.", "skill": "nlu", "domain": "art"},
         {"instruction": "Summarise.", "input": "The cat sat.", "skill": "nlu", "domain": "art"}]


# ---- pure functions ------------------------------------------------------------------------------

def test_lcs_and_rouge_l_on_hand_built_inputs():
    assert lcs_length(list("abcd"), list("acde")) == 3
    assert lcs_length([], list("abc")) == 0
    assert rouge_l(list("abcd"), list("abcd")) == 1.0
    assert rouge_l(list("abcd"), list("acde")) == pytest.approx(0.75)  # P = R = 3/4
    assert rouge_l(list("ab"), list("abcdef")) == pytest.approx(2 * 1 * (1 / 3) / (1 + 1 / 3))
    assert rouge_l([], []) == 0.0 and rouge_l(list("ab"), list("cd")) == 0.0
    assert tokens("Write a POEM, now!") == ["write", "a", "poem", "now"]


def test_max_cosine_and_empty_pool():
    pool = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert max_cosine(np.array([0.0, 3.0]), pool) == pytest.approx(1.0)
    assert max_cosine(np.array([1.0, 1.0]), pool) == pytest.approx(2 ** -0.5)
    assert max_cosine(np.array([1.0, 0.0]), np.zeros((0, 2))) == 0.0


def test_novelty_filter_discards_near_copies_and_remembers_what_it_admitted():
    pool = NoveltyFilter(["Write a short poem about the sea."], "rouge", 0.7)
    assert not pool.admit("Write a short poem about the sea!")
    assert pool.admit("List three prime numbers.")
    assert not pool.admit("List three prime numbers please.")  # the admitted one is in the pool now
    assert pool.admit("Explain how a bicycle gear works.")


@pytest.mark.integration
def test_novelty_by_embedding_cosine_with_the_bundled_embedder():
    pool = NoveltyFilter(["How do I bake sourdough bread at home?"], "embedding", 0.9)
    assert pool.max_similarity("How do I bake sourdough bread at home?") == pytest.approx(1.0, abs=1e-4)
    assert not pool.admit("How can I bake sourdough bread at home?")
    assert pool.admit("List three prime numbers.")
    assert pool.max_similarity("List three prime numbers.") == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("text, expected", [
    ('["Write a poem.", "Add 2 and 3."]', ["Write a poem.", "Add 2 and 3."]),
    ('Sure! [{"instruction": "Translate hi."}, "  "]', ["Translate hi.", ""]),
    ("1. Write a poem.\n2) **Add 2 and 3.**\n- Name a city", ["Write a poem.", "Add 2 and 3.", "Name a city"]),
    ("Task 1: Do X.\nTask 2: Do Y.", ["Do X.", "Do Y."]),
    ("I like turtles.", None), ("", None), (None, None)])
def test_parse_task_list(text, expected):
    assert parse_task_list(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Score: 7\nRationale: clear and right.", (7.0, "clear and right.")),
    ('{"score": 9, "rationale": "great"}', (9.0, "great")),
    ("**Score:** 4/10", (4.0, None)), ("I would give it 8/10.", (8.0, None)),
    ("Score: 11", None), ("Score: <an integer from 1 to 10>", None), ("lovely", None), ("", None)])
def test_parse_score(text, expected):
    assert parse_score(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Winner: A\nRationale: more precise.", ("A", "more precise.")), ("[[B]]", ("B", None)),
    ('{"winner": "tie", "rationale": "same"}', ("tie", "same")), ("Winner: tie", ("tie", None)),
    ("Both are fine.", None), ("", None)])
def test_parse_winner(text, expected):
    assert parse_winner(text) == expected


def test_preferences_combine_both_orders():
    js = [{"kind": "compare", "generation_id": 1, "other_generation_id": 2, "score": 1.0},   # 1 shown first, won
          {"kind": "compare", "generation_id": 2, "other_generation_id": 1, "score": 0.0},   # 1 shown second, won
          {"kind": "compare", "generation_id": 3, "other_generation_id": 4, "score": 1.0},   # position bias:
          {"kind": "compare", "generation_id": 4, "other_generation_id": 3, "score": 1.0},   # A always wins
          {"kind": "compare", "generation_id": 5, "other_generation_id": 6, "score": None},
          {"kind": "score", "generation_id": 1, "other_generation_id": None, "score": 8.0}]
    assert preferences(js) == [
        {"chosen": 1, "rejected": 2, "p_chosen": 1.0, "verdicts": 2, "consistent": True},
        {"chosen": 3, "rejected": 4, "p_chosen": 0.5, "verdicts": 2, "consistent": False}]


@pytest.mark.parametrize("evolved, reason", [
    (None, "empty"), ("  ...  ", "empty"), ("I'm sorry, I cannot help with that.", "refusal"),
    ("Name a colour.", "copy"), ("#Given Prompt#: Name a colour that is warm.", "leaked_template"),
    ("Name a warm colour and explain why it feels warm in two sentences.", None)])
def test_evolution_elimination(evolved, reason):
    assert elimination_reason(evolved, "Name a colour.") == reason


def test_parse_evolved_strips_the_label():
    assert parse_evolved("#Rewritten Prompt#: Name two colours.") == "Name two colours."
    assert parse_evolved("   ") is None


@pytest.mark.parametrize("cls, kwargs, field", [
    (SelfInstructConfig, {"k": 0}, "k"), (SelfInstructConfig, {"threshold": 1.5}, "threshold"),
    (SelfInstructConfig, {"similarity": "jaccard"}, "similarity"), (EvolConfig, {"rounds": 9}, "rounds"),
    (EvolConfig, {"operations": ["shout"]}, "operations"), (TopicsConfig, {"topics": []}, "topics"),
    (TopicsConfig, {"topics": ["x"], "per_call": 0}, "per_call"), (JudgeConfig, {"temperature": 5}, "temperature"),
    (CompareConfig, {"pairs_per_task": 0}, "pairs_per_task"), (LogprobsConfig, {"top_logprobs": 50}, "top_logprobs"),
    (SelfConfig, {"keep_threshold": 0}, "keep_threshold"), (SelfConfig, {"adapter": "/no/such/dir"}, "adapter")])
def test_configs_name_the_bad_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=field):
        cls(**kwargs)


def test_every_method_is_registered_with_its_config():
    assert set(METHODS) == {"label", "self-instruct", "evol", "topics", "judge", "compare", "logprobs", "self",
                            "chat", "documents", "tools", "constitution"}
    assert SelfInstructConfig().threshold == 0.7 and SelfInstructConfig(similarity="embedding").threshold == 0.9
    assert TopicsConfig(topics=["t"]).skills == ["instruction-following", "multi-turn", "rag", "reasoning", "code",
                                                   "nlu", "tool-use"]


# ---- exact template rendering (what preview shows is what is sent) --------------------------------

def _contents(store, config, limit=5):
    return [[(m["role"], m["content"]) for m in c["messages"]] for c in preview(store, OFFLINE, config, limit)]


def test_label_rendering(store):
    store.add_tasks(TASKS)
    assert _contents(store, GenerateConfig()) == [[("user", "Name a colour.")], [("user", "Summarise.\n\nThe cat sat.")]]
    explained = _contents(store, GenerateConfig(task_ids=[1], system_prompt="Be brief.", explain=True))
    assert explained == [[("system", "Be brief.\n\nYou are an AI assistant that helps people learn. While performing "
                                     "the task, think step by step and justify each step, then give the final "
                                     "answer clearly."), ("user", "Name a colour.")]]


def test_logprobs_and_self_rendering(store):
    store.add_tasks(TASKS)
    calls = preview(store, OFFLINE, LogprobsConfig(task_ids=[2], top_logprobs=3, max_tokens=5))
    assert calls[0]["messages"] == [{"role": "user", "content": "Summarise.\n\nThe cat sat."}]
    assert calls[0]["params"] == {"temperature": 0.7, "max_tokens": 5, "logprobs": True, "top_logprobs": 3}
    student = preview(store, OFFLINE, SelfConfig(task_ids=[1], max_tokens=5))[0]
    assert student["messages"] == [{"role": "user", "content": "Name a colour."}]
    assert (student["endpoint"], student["model"]) == ("local", "smollm2-135m-instruct")


def test_self_instruct_rendering(store):
    store.add_tasks(TASKS)
    assert _contents(store, SelfInstructConfig(num_prompts=1, k=2, new_per_prompt=2)) == [[("user", (
        "You are asked to come up with 2 new, diverse task instructions for training an AI assistant.\n"
        "Here are some example tasks:\n"
        "Task 1: Name a colour.\n"
        "Task 2: Summarise. (input: The cat sat.)\n"
        "Each new task must differ from the examples and from the other new tasks, be self-contained, and be "
        "answerable by a text-only assistant. Vary the verbs and the kinds of task.\n"
        'Answer with a JSON array of 2 strings and nothing else, e.g. ["first task", "second task"].'))]]


def test_evol_rendering(store):
    store.add_tasks(TASKS)
    depth = _contents(store, EvolConfig(task_ids=[2], operations=["add_constraints"]))
    assert depth == [[("user", (
        "I want you to act as a Prompt Rewriter.\n"
        "Your objective is to rewrite a given prompt into a more complex version, to make it a bit harder for "
        "well-known AI systems to handle. The rewritten prompt must be reasonable and must be understood and "
        "answered by humans.\n"
        "You SHOULD complicate the given prompt using the following method:\n"
        "Add one more constraint or requirement to #Given Prompt#.\n"
        "The rewritten prompt may add only 10 to 20 words to #Given Prompt#. Do not use the words "
        '"#Given Prompt#" or "#Rewritten Prompt#" in your answer. Answer with the rewritten prompt only.\n'
        "#Given Prompt#:\nSummarise.\n\nThe cat sat.\n#Rewritten Prompt#:"))]]
    breadth = _contents(store, EvolConfig(task_ids=[1], operations=["breadth"]))
    assert breadth == [[("user", (
        "I want you to act as a Prompt Creator.\n"
        "Your goal is to draw inspiration from #Given Prompt# to create a brand new prompt.\n"
        "The new prompt must belong to the same domain as #Given Prompt# but be about something rarer.\n"
        "Its length and complexity must be similar to those of #Given Prompt#.\n"
        "It must be reasonable and must be understood and answered by humans.\n"
        'Do not use the words "#Given Prompt#" or "#Created Prompt#" in your answer. Answer with the new '
        "prompt only.\n#Given Prompt#:\nName a colour.\n#Created Prompt#:"))]]
    for op, line in (("deepen", "If #Given Prompt# contains inquiries about certain issues, increase the depth and "
                                "breadth of the inquiry."),
                     ("concretize", "Replace general concepts in #Given Prompt# with more specific concepts."),
                     ("increase_reasoning", "If #Given Prompt# can be solved with just a few simple thinking steps, "
                                            "rewrite it to explicitly request multiple-step reasoning.")):
        content = _contents(store, EvolConfig(task_ids=[1], operations=[op]))[0][0][1]
        assert content.split("\n")[3] == line


def test_topics_rendering(store):
    rendered = _contents(store, TopicsConfig(topics=["tea"], skills=["code", "nlu"], domains=["law"], per_call=2))
    assert rendered[0] == [("user", (
        "Write 2 diverse, self-contained task instructions that a user might give an AI assistant.\n"
        "Topic: tea\nSkill the tasks exercise: code\n(each task asks to write, explain or fix a small piece of code)\n"
        "Domain: law\nEvery task must be about the topic, need the skill, and make sense in the domain. Vary "
        "difficulty and form.\n"
        'Answer with a JSON array of 2 strings and nothing else, e.g. ["first task", "second task"].'))]
    assert "Skill the tasks exercise: nlu\nDomain: law\n" in rendered[1][0][1]


def test_judge_and_compare_rendering(store):
    store.add_tasks(TASKS)
    add_generation(store, 2, "k1", response="A cat sat.")
    add_generation(store, 2, "k2", response="Cat.")
    judge = _contents(store, JudgeConfig(generation_ids=[1], rubric="Be exact.", structured=False))
    assert judge == [[("user", (
        "You are a strict and fair judge. Rate the response to the task below on a scale of 1 to 10, using this "
        "rubric:\nBe exact.\n\n[Task]\nSummarise.\n\nThe cat sat.\n\n[Response]\nA cat sat.\n\n"
        "Reply in exactly this format:\nScore: <an integer from 1 to 10>\nRationale: <one or two sentences>"))]]
    structured = preview(store, OFFLINE, JudgeConfig(generation_ids=[1], rubric="Be exact."))[0]
    assert structured["messages"][0]["content"].endswith(
        '[Response]\nA cat sat.\n\nReply with a JSON object: {"score": <an integer from 1 to 10>, '
        '"rationale": "<one or two sentences>"}')
    assert structured["params"]["response_format"]["json_schema"]["schema"] == SCORE_SCHEMA
    assert JudgeConfig().rubric == default_rubric() and default_rubric().startswith("- Helpfulness")
    compare = preview(store, OFFLINE, CompareConfig(rubric="Be exact.", structured=False))
    assert [(c["generation_id"], c["params"]) for c in compare] == [(1, {"temperature": 0.0, "max_tokens": 256}),
                                                                    (2, {"temperature": 0.0, "max_tokens": 256})]
    assert compare[0]["messages"][0]["content"] == (
        "You are a fair judge. Two assistants answered the same task. Decide which response is better, using this "
        "rubric:\nBe exact.\n\n[Task]\nSummarise.\n\nThe cat sat.\n\n[Response A]\nA cat sat.\n\n[Response B]\n"
        "Cat.\n\nDo not let the order or the length of the responses sway you.\nReply in exactly this format:\n"
        "Winner: <A, B or tie>\nRationale: <one or two sentences>")
    assert "[Response A]\nCat.\n\n[Response B]\nA cat sat." in compare[1]["messages"][0]["content"]
    verdicts = preview(store, OFFLINE, CompareConfig(rubric="Be exact."))
    assert all(c["params"]["response_format"]["json_schema"]["schema"] == VERDICT_SCHEMA for c in verdicts)
    assert verdicts[0]["messages"][0]["content"].endswith(
        'Reply with a JSON object: {"winner": "<A, B or tie>", "rationale": "<one or two sentences>"}')


# ---- exact outcomes through the fault server --------------------------------------------------------

def _scripted(server):
    return TeacherConfig(base_url=server.base_url, model="scripted", concurrency=1, max_retries=0)


def test_self_instruct_counts_discards_and_sets_parents(store):
    seeds = store.add_tasks([{"instruction": "Write a short poem about the sea.", "skill": "writing", "domain": "art"},
                             {"instruction": "List three prime numbers.", "skill": "writing", "domain": "art"}])
    answer = json.dumps(["Write a short poem about the sea!", "", "Describe how tides form in two sentences.",
                         "I'm sorry, I cannot do that.", "Describe how the tides form in 2 sentences."])
    with FaultServer([{"text": answer}, {"text": "no list here"}]) as server:
        summary = run_method(store, _scripted(server), SelfInstructConfig(num_prompts=2, k=2), server.base_url)
    assert summary["new_tasks"] == 1
    assert summary["discarded"] == {"too_similar": 2, "empty": 1, "refusal": 1, "unparsable": 1}
    new = [t for t in store.tasks() if t["source"] == "self_instruct"]
    assert [t["instruction"] for t in new] == ["Describe how tides form in two sentences."]
    assert new[0]["parent_id"] in seeds and (new[0]["skill"], new[0]["domain"]) == ("writing", "art")
    rows = store.ledger_rows()
    assert [r["state"] for r in rows] == ["ok", "ok"]
    unreadable = next(r for r in rows if r["raw_output"] == "no list here")  # raw kept, nothing parsed
    assert unreadable["result"]["discarded"] == {"unparsable": 1} and unreadable["result"]["new"] == 0


def test_judge_garbage_keeps_raw_output_with_score_none(store):
    store.add_tasks(TASKS)
    add_generation(store, 1, "g1", response="Blue.")
    add_generation(store, 1, "g2", response="Red.")
    with FaultServer([{"text": "Score: 8\nRationale: correct."}, {"text": "what a lovely day"}]) as server:
        summary = run_method(store, _scripted(server), JudgeConfig(), server.base_url)
    assert summary["ok"] == 2 and summary["discarded"] == {"unparsable": 1}
    scored = {j["generation_id"]: (j["score"], j["rationale"], j["raw_output"]) for j in store.judgments_of()}
    assert scored == {1: (8.0, "correct.", "Score: 8\nRationale: correct."), 2: (None, None, "what a lovely day")}


def test_structured_judge_asks_for_the_schema_and_still_keeps_what_it_cannot_read(store):
    """A structured judge's JSON parses; an endpoint that ignores the schema and answers garbage is kept raw."""
    store.add_tasks(TASKS)
    add_generation(store, 1, "g1", response="Blue.")
    add_generation(store, 1, "g2", response="Red.")
    with FaultServer([{"text": '{"score": 9, "rationale": "names a colour"}'}, {"text": "{score: nine"}]) as server:
        summary = run_method(store, _scripted(server), JudgeConfig(), server.base_url)
        formats = [r["body"]["response_format"] for r in server.requests]
    assert all(f["type"] == "json_schema" and f["json_schema"]["schema"] == SCORE_SCHEMA for f in formats)
    assert summary["ok"] == 2 and summary["discarded"] == {"unparsable": 1}
    scored = {j["generation_id"]: (j["score"], j["rationale"], j["raw_output"]) for j in store.judgments_of()}
    assert scored == {1: (9.0, "names a colour", '{"score": 9, "rationale": "names a colour"}'),
                      2: (None, None, "{score: nine")}


def test_compare_both_orders_become_one_preference(store):
    store.add_tasks(TASKS)
    add_generation(store, 1, "g1", response="Blue.")
    add_generation(store, 1, "g2", response="it is a colour")

    def verdict(body):  # the judge prefers "Blue." wherever it is shown
        content = body["messages"][0]["content"]
        return {"text": "Winner: A" if content.index("Blue.") < content.index("it is a colour") else "Winner: B"}

    with FaultServer([verdict]) as server:
        run_method(store, _scripted(server), CompareConfig(), server.base_url)
        assert len(server.requests) == 2
    js = store.judgments_of(kind="compare")
    assert sorted((j["generation_id"], j["other_generation_id"], j["score"]) for j in js) == [(1, 2, 1.0), (2, 1, 0.0)]
    assert preferences(js) == [{"chosen": 1, "rejected": 2, "p_chosen": 1.0, "verdicts": 2, "consistent": True}]


def test_evol_eliminates_failed_evolutions_and_evolves_the_survivor_again(store):
    store.add_tasks(TASKS[:1])
    answers = [{"text": "Name a colour."}, {"text": "#Rewritten Prompt#: Name a warm colour and say why it feels warm."}]
    with FaultServer(answers) as server:
        summary = run_method(store, _scripted(server), EvolConfig(rounds=2), server.base_url)
        assert len(server.requests) == 2
    assert summary["discarded"] == {"copy": 1} and summary["new_tasks"] == 1
    evolved = [t for t in store.tasks() if t["source"] == "evol"]
    assert [(t["instruction"], t["parent_id"], t["skill"]) for t in evolved] == [
        ("Name a warm colour and say why it feels warm.", 1, "nlu")]
    assert sorted(r["context"]["round"] for r in store.ledger_rows()) == [1, 2]


def test_self_loop_rejects_what_the_judge_scores_low(store, tiny_student):
    store.add_tasks(TASKS)
    scores = iter(["Score: 3\nRationale: weak.", "Score: 9\nRationale: good."])
    with FaultServer([lambda body: {"text": next(scores)}]) as server:
        summary = run_method(store, _scripted(server), SelfConfig(student=str(tiny_student), max_tokens=4,
                                                                  temperature=0.0, approve_kept=True),
                             server.base_url)
        assert len(server.requests) == 2  # only the judge calls reach the teacher
    assert summary["rejected_by_judge"] == 1 and summary["kept"] == 1 and summary["cost_usd"] is None
    gens = [store.generation(g["id"]) for g in store.ok_generations(methods=("self",))]
    assert [g["endpoint"] for g in gens] == ["local", "local"] and all(g["model"] == str(tiny_student) for g in gens)
    assert sorted(g["review_status"] for g in gens) == ["approved", "rejected"]


# ---- each method against the real embedded teacher ------------------------------------------------

@pytest.mark.integration
def test_real_teacher_runs_every_teacher_method(store, teacher_url):
    store.add_tasks(TASKS)
    teacher = TeacherConfig(concurrency=2)
    label = run_method(store, teacher, GenerateConfig(n=2, max_tokens=12, explain=True), teacher_url)
    assert label["ok"] == 4 and all(g["messages"][0]["role"] == "system"
                                    for g in map(store.generation, range(1, 5)))

    expand = run_method(store, teacher, SelfInstructConfig(num_prompts=2, k=2, new_per_prompt=3, max_tokens=64),
                        teacher_url)
    new = [t for t in store.tasks() if t["source"] == "self_instruct"]
    assert expand["ok"] == 2 and expand["new_tasks"] == len(new)
    assert all(t["parent_id"] in (1, 2) for t in new)
    made = sum(r["result"].get("new", 0) + sum(r["result"].get("discarded", {}).values())
               for r in store.ledger_rows() if r["method"] == "self-instruct")
    assert made == expand["new_tasks"] + sum(expand["discarded"].values())

    evol = run_method(store, teacher, EvolConfig(task_ids=[1, 2], rounds=2, max_tokens=40), teacher_url)
    evolved = [t for t in store.tasks() if t["source"] == "evol"]
    assert evol["ok"] == 4 and evol["new_tasks"] + sum(evol["discarded"].values()) == 4
    assert len(evolved) == evol["new_tasks"] and all(t["parent_id"] for t in evolved)

    topics = run_method(store, teacher, TopicsConfig(topics=["saving money"], skills=["reasoning", "code"],
                                                     domains=["finance"], per_call=2, max_tokens=64), teacher_url)
    tagged = [t for t in store.tasks() if t["source"] == "topic"]
    assert topics["ok"] == 2 and len(tagged) == topics["new_tasks"]
    assert all(t["skill"] in ("reasoning", "code") and t["domain"] == "finance" for t in tagged)

    judged = run_method(store, teacher, JudgeConfig(generation_ids=[1, 2], max_tokens=24), teacher_url)
    js = store.judgments_of(kind="score")
    assert judged["ok"] == 2 and len(js) == 2 and all(j["raw_output"] for j in js)
    assert all(j["score"] is None or 1 <= j["score"] <= 10 for j in js)

    compared = run_method(store, teacher, CompareConfig(task_ids=[1], max_tokens=16), teacher_url)
    pairs = store.judgments_of(kind="compare")
    first, second = [g["id"] for g in store.ok_generations(task_ids=[1], methods=("label",))]
    assert compared["ok"] == 2
    assert {(j["generation_id"], j["other_generation_id"]) for j in pairs} == {(first, second), (second, first)}

    lp = run_method(store, teacher, LogprobsConfig(task_ids=[1], max_tokens=6, top_logprobs=3), teacher_url)
    gen = [g for g in store.ok_generations(methods=("logprobs",))][0]
    logprobs = store.generation_logprobs(gen["id"])
    assert lp["ok"] == 1 and len(logprobs) == store.generation(gen["id"])["completion_tokens"]
    assert all(t["logprob"] <= 0 and 1 <= len(t["top"]) <= 4 for t in logprobs)
    assert store.ledger_summary()["by_state"]["failed"] == 0


@pytest.mark.integration
def test_real_teacher_judges_the_students_answers(store, teacher_url, tiny_student):
    store.add_tasks(TASKS)
    summary = run_method(store, TeacherConfig(), SelfConfig(student=str(tiny_student), max_tokens=4,
                                                            judge_max_tokens=24), teacher_url)
    assert summary["ok"] == 4  # 2 student answers + 2 verdicts
    gens = store.ok_generations(methods=("self",))
    judged = {j["generation_id"] for j in store.judgments_of(kind="score")}
    assert len(gens) == 2 and judged == {g["id"] for g in gens}
    assert summary["rejected_by_judge"] + summary["kept"] + summary["unjudged"] == 2


def test_label_answers_the_eval_split_only_when_asked_and_those_answers_become_eval_references(store):
    train, held = store.add_tasks([{"instruction": "Name a colour."}, {"instruction": "Name a fruit."}])
    store.set_split([held], "eval")
    with FaultServer([{"text": "Blue."}, {"text": "An apple."}]) as server:
        first = run_method(store, _scripted(server), GenerateConfig(), server.base_url)
        assert first["ok"] == 1 and store.heldout_examples(16) == []  # by default the eval split is left alone
        second = run_method(store, _scripted(server), GenerateConfig(with_eval=True), server.base_url)
        assert second["ok"] == 1 and second["skipped_cached"] == 1 and len(server.requests) == 2
    [reference] = store.heldout_examples(16)
    assert reference["task_id"] == held and reference["messages"][-1] == {"role": "assistant", "content": "An apple."}
    assert [ex["task_id"] for ex in store.approved_examples()] == []  # nothing approved, nothing to train on
    store.set_label([reference["generation_id"]], "approved")
    assert store.approved_examples() == []  # approved or not, an eval answer never reaches training
