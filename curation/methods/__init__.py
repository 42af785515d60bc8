"""The elicitation methods, one module each; `METHODS` maps the name the CLI and UI use to the method.

`method_for(config)` finds a config's method, so a job is started with just a config object.
"""
from __future__ import annotations

from curation.errors import StudioError
from curation.methods import (chat, compare, constitution, documents, evol, judge, label, logprobs, self_instruct,
                              self_knowledge, tools, topics)
from curation.methods.base import Call, Method, Stage, Writes, render
from curation.methods.chat import ChatConfig
from curation.methods.compare import CompareConfig, preferences
from curation.methods.constitution import ConstitutionConfig
from curation.methods.documents import DocumentsConfig
from curation.methods.evol import EvolConfig
from curation.methods.judge import JudgeConfig
from curation.methods.label import GenerateConfig, LabelConfig, build_messages
from curation.methods.logprobs import LogprobsConfig
from curation.methods.self_instruct import SelfInstructConfig
from curation.methods.self_knowledge import SelfConfig
from curation.methods.tools import ToolsConfig
from curation.methods.topics import SURVEY_DOMAINS, SURVEY_SKILLS, TopicsConfig

METHODS: dict[str, Method] = {m.name: m for m in (
    label.METHOD, self_instruct.METHOD, evol.METHOD, topics.METHOD, judge.METHOD, compare.METHOD,
    logprobs.METHOD, self_knowledge.METHOD, chat.METHOD, documents.METHOD, tools.METHOD,
    constitution.METHOD)}


def method_for(config) -> Method:
    """The method whose config class `config` is exactly (LogprobsConfig is not taken for GenerateConfig)."""
    for method in METHODS.values():
        if type(config) is method.config_cls:
            return method
    raise StudioError(f"no elicitation method takes a {type(config).__name__}; use one of "
                      + ", ".join(m.config_cls.__name__ for m in METHODS.values()))


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise StudioError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None


__all__ = ["METHODS", "method_for", "get_method", "Call", "Method", "Stage", "Writes", "render",
           "GenerateConfig", "LabelConfig", "SelfInstructConfig", "EvolConfig", "TopicsConfig", "JudgeConfig",
           "CompareConfig", "LogprobsConfig", "ChatConfig", "DocumentsConfig", "ToolsConfig", "ConstitutionConfig",
           "SelfConfig", "SURVEY_SKILLS", "SURVEY_DOMAINS", "build_messages", "preferences"]
