"""The quality benchmark's tasks beyond the seed packs: short, everyday instructions a 135M teacher can answer,
built from templates so that anyone gets the same list. Tasks with one right answer carry a check
(`expected`, e.g. "contains:paris") for the pass rate."""
from __future__ import annotations

CAPITALS = {"France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
            "Canada": "Ottawa", "Egypt": "Cairo", "Russia": "Moscow", "China": "Beijing", "Greece": "Athens",
            "Portugal": "Lisbon", "Ireland": "Dublin", "Norway": "Oslo", "Sweden": "Stockholm", "Poland": "Warsaw",
            "Austria": "Vienna", "Kenya": "Nairobi", "Peru": "Lima", "Argentina": "Buenos Aires",
            "Thailand": "Bangkok"}
OPPOSITES = {"hot": "cold", "big": "small", "fast": "slow", "happy": "sad", "up": "down", "open": "closed",
             "light": "dark", "early": "late", "full": "empty", "old": "new", "high": "low", "wet": "dry",
             "strong": "weak", "rich": "poor", "hard": "soft", "loud": "quiet"}
THINGS = ["bicycle", "volcano", "library", "thermometer", "rainbow", "passport", "vaccine", "budget", "compass",
          "glacier", "battery", "recipe", "microscope", "mortgage", "telescope", "desert", "password",
          "spreadsheet", "lighthouse", "calendar", "pharmacy", "satellite", "umbrella", "museum"]
CATEGORIES = ["fruits", "vegetables", "musical instruments", "farm animals", "colours", "planets", "sports",
              "kitchen tools", "jobs in a hospital", "ways to save money", "things to pack for a beach trip",
              "healthy breakfast foods", "countries in Europe", "birds", "types of weather", "board games"]
OCCASIONS = ["a friend's birthday", "a colleague's retirement", "a new neighbour", "a graduation", "a wedding",
             "a thank-you to a teacher", "a get-well-soon card", "a new year message"]
SENTENCES = ["The dog runs in the park.", "She writes a letter to her aunt.", "We eat dinner at seven.",
             "He plays the guitar every evening.", "They visit the museum on Sundays.",
             "I drink coffee in the morning."]


def tasks() -> list[dict]:
    """About 130 tasks (instruction, optional input and expected, skill, domain), always in the same order."""
    out = []
    for country, capital in CAPITALS.items():
        out.append({"instruction": f"What is the capital of {country}?", "expected": f"contains:{capital}",
                    "skill": "knowledge", "domain": "geography"})
    for i, (a, b) in enumerate([(3, 4), (7, 8), (12, 5), (9, 6), (15, 10), (21, 13), (8, 8), (30, 12), (14, 27),
                                (6, 19), (40, 2), (11, 7)]):
        op, value = ("plus", a + b) if i % 2 == 0 else ("times", a * b) if a * b < 100 else ("minus", a - b)
        out.append({"instruction": f"What is {a} {op} {b}? Answer with the number.", "expected": f"contains:{value}",
                    "skill": "math", "domain": "arithmetic"})
    for word, opposite in OPPOSITES.items():
        out.append({"instruction": f"What is the opposite of the word '{word}'?", "expected": f"contains:{opposite}",
                    "skill": "language", "domain": "vocabulary"})
    for thing in THINGS:
        out.append({"instruction": f"Explain in one or two sentences what a {thing} is.", "skill": "knowledge",
                    "domain": "everyday"})
    for category in CATEGORIES:
        out.append({"instruction": f"Name three {category}.", "skill": "knowledge", "domain": "everyday"})
    for occasion in OCCASIONS:
        out.append({"instruction": f"Write a short, warm message for {occasion}.", "skill": "writing",
                    "domain": "everyday"})
    for sentence in SENTENCES:
        out.append({"instruction": "Rewrite this sentence in the past tense.", "input": sentence,
                    "skill": "language", "domain": "grammar"})
        out.append({"instruction": "Translate this sentence into French.", "input": sentence,
                    "skill": "language", "domain": "translation"})
    for thing in THINGS[:12]:
        out.append({"instruction": f"Give two tips for looking after a {thing}.", "skill": "advice",
                    "domain": "everyday"})
    return out
