"""topics — "N tasks about TOPIC exercising SKILL in DOMAIN" (survey 3.1, Curation; UltraChat / Phi style).

Reads: nothing but the user's lists (one call per topic x skill x domain). Renders: topics.j2.
Writes: new tasks (source 'topic') tagged with the call's skill and domain; empty ones, refusals and
near-copies of existing tasks are discarded and counted. Parser: `parse_task_list`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from curation.errors import ConfigError
from curation.methods.base import Call, Method, Stage, render
from curation.methods.label import Sampling, check_sampling
from curation.methods.self_instruct import check_novelty, write_new_tasks

# The survey's skills (section 4) and verticals (section 5).
SURVEY_SKILLS = ("instruction-following", "multi-turn", "rag", "reasoning", "code", "nlu", "tool-use")
SURVEY_DOMAINS = ("law", "medicine", "finance", "science")
MAX_CALLS = 10000


@dataclass
class TopicsConfig(Sampling):
    """Topic-driven synthesis.

    topics: what the tasks are about (at least one).
    skills: skills the tasks exercise; default: the survey's seven.
    domains: verticals; default: law, medicine, finance, science.
    per_call: N, the tasks asked for per topic x skill x domain (1..20).
    similarity, threshold: the novelty filter, as in self-instruct.
    temperature, max_tokens: sampling of each call.
    """

    topics: list[str] = field(default_factory=list)
    skills: list[str] = field(default_factory=lambda: list(SURVEY_SKILLS))
    domains: list[str] = field(default_factory=lambda: list(SURVEY_DOMAINS))
    per_call: int = 5
    similarity: str = "rouge"
    threshold: float | None = None
    temperature: float = 1.0
    max_tokens: int = 512

    def __post_init__(self):
        check_sampling(self)
        check_novelty(self)
        for name in ("topics", "skills", "domains"):
            values = [v.strip() for v in getattr(self, name) if v and v.strip()]
            if not values:
                raise ConfigError(f"{name} must list at least one value (e.g. topics=['budgeting'])")
            setattr(self, name, list(dict.fromkeys(values)))
        if not 1 <= int(self.per_call) <= 20:
            raise ConfigError(f"per_call must be between 1 and 20 (got {self.per_call})")
        self.per_call = int(self.per_call)
        calls = len(self.topics) * len(self.skills) * len(self.domains)
        if calls > MAX_CALLS:
            raise ConfigError(f"topics x skills x domains makes {calls} calls; at most {MAX_CALLS}: shorten a list")


def _plan(ctx) -> list[Call]:
    config = ctx.config
    calls = []
    for topic in config.topics:
        for skill in config.skills:
            for domain in config.domains:
                content = render("topics.j2", n=config.per_call, topic=topic, skill=skill, domain=domain)
                context = {"source": "topic", "topic": topic, "skill": skill, "domain": domain,
                           "similarity": config.similarity, "threshold": config.threshold}
                calls.append(Call.make("topics", "curate", ctx.teacher.endpoint_id, ctx.teacher.model_name,
                                       [{"role": "user", "content": content}], config.params(), context=context))
    return calls


METHOD = Method("topics", TopicsConfig, "N tasks about each topic x skill x domain, tagged with skill and domain",
                lambda config: [Stage("curate", _plan, write_new_tasks)],
                writers={"curate": write_new_tasks})
