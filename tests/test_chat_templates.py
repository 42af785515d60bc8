"""The chat templates a base student gets: the answer ends with eos, the prompt is a prefix of the chat, and the
default student (Gemma 3 270M base, from the registry's chunk packages) is materialised and served with it."""
from __future__ import annotations

import json
import urllib.request

import jinja2
import pytest

from models import chat_templates

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."}]


def render(template: str, messages, generation_prompt: bool = False) -> str:
    return jinja2.Environment().from_string(template).render(messages=messages, bos_token="<bos>", eos_token="<eos>",
                                                             add_generation_prompt=generation_prompt)


def test_gemma_base_template_ends_the_answer_with_eos_and_folds_the_system_prompt_in():
    assert render(chat_templates.GEMMA_BASE, CHAT) == (
        "<bos><start_of_turn>user\nBe brief.\n\nCapital of France?<end_of_turn>\n<start_of_turn>model\nParis.<eos>")
    prompt = render(chat_templates.GEMMA_BASE, CHAT[:2], generation_prompt=True)
    assert prompt == "<bos><start_of_turn>user\nBe brief.\n\nCapital of France?<end_of_turn>\n<start_of_turn>model\n"
    assert render(chat_templates.GEMMA_BASE, CHAT).startswith(prompt)  # where the labels start


def test_plain_base_template_for_any_other_base_model():
    assert render(chat_templates.PLAIN_BASE, CHAT) == (
        "<bos>Be brief.\n\nUser:\nCapital of France?\n\nAssistant:\nParis.<eos>\n\n")
    assert render(chat_templates.PLAIN_BASE, CHAT).startswith(render(chat_templates.PLAIN_BASE, CHAT[:2], True))
    assert chat_templates.for_base_model("gemma3_text") is chat_templates.GEMMA_BASE
    assert chat_templates.for_base_model("llama") is chat_templates.PLAIN_BASE


def test_a_tokenizer_without_a_template_gets_the_base_one_and_one_with_a_template_keeps_it(tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    own = tokenizer.chat_template
    assert chat_templates.ensure_template(tokenizer, tokenizer_dir) is False and tokenizer.chat_template == own
    tokenizer.chat_template = None
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    assert chat_templates.ensure_template(tokenizer, tmp_path) is True
    assert tokenizer.chat_template == chat_templates.GEMMA_BASE


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from models.resolve import bundled_tokenizer_dir

    return bundled_tokenizer_dir(tmp_path_factory.mktemp("tokenizer"))


@pytest.mark.integration
def test_the_default_student_is_materialised_and_served_with_the_eos_template(tmp_path):
    """Gemma 3 270M base from its chunk packages: safetensors with the base template, then GGUF on llama-server,
    which renders the same prompt. Fails (does not skip) when the packages are missing or the server dies."""
    from transformers import AutoTokenizer

    from models.resolve import BASE_STUDENT, resolve_student
    from models.students import StudentServers

    folder = resolve_student(BASE_STUDENT, tmp_path / "models")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert tokenizer.chat_template == chat_templates.GEMMA_BASE
    chat = tokenizer.apply_chat_template(CHAT[1:], tokenize=False)
    assert chat.endswith("<start_of_turn>model\nParis.<eos>")
    servers = StudentServers(tmp_path / "logs", tmp_path / "models")
    try:
        endpoint = servers.endpoint(BASE_STUDENT)
        request = urllib.request.Request(endpoint.base_url.removesuffix("/v1") + "/apply-template",
                                         data=json.dumps({"messages": CHAT[1:2]}).encode(),
                                         headers={"content-type": "application/json"})
        served = json.loads(urllib.request.urlopen(request, timeout=60).read())["prompt"]
        # the server adds <bos> itself; the rest is the template the student was trained with
        assert "<bos>" + served == tokenizer.apply_chat_template(CHAT[1:2], tokenize=False, add_generation_prompt=True)
    finally:
        servers.stop()
