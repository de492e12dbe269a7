"""A deterministic generator of fictional entities nobody can know.

People, places, organisations and inventions, with attributes that cross-reference
each other, rendered as short encyclopedia entries with question/answer pairs. A
model can only answer questions about them from the corpus, so they measure whether
it reads before answering and abstains when the corpus lacks the entity.
Same seed, same entities, on every machine (``random.Random`` is stable).
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel

__all__ = ["Entity", "QA", "generate_entities", "GENERATOR_VERSION"]

GENERATOR_VERSION = 1
Kind = Literal["person", "place", "organisation", "invention"]

_ONSETS = [
    "b",
    "br",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "qu",
    "r",
    "s",
    "st",
    "t",
    "th",
    "v",
    "vr",
    "z",
    "h",
    "j",
    "sk",
    "tr",
]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "y"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "m", "nd", "rk", "x", "sk", "v"]
_PLACE_ENDS = [
    "ford",
    "vale",
    "mere",
    "holt",
    "wick",
    "stead",
    "port",
    "bourne",
    "moor",
    "haven",
    "thorpe",
    "dal",
]

_OCCUPATIONS = [
    "botanist",
    "cartographer",
    "composer",
    "civil engineer",
    "glassmaker",
    "astronomer",
    "linguist",
    "shipwright",
    "chemist",
    "architect",
    "novelist",
    "clockmaker",
    "geologist",
    "textile designer",
    "physician",
]
_INDUSTRIES = [
    "salt mining",
    "wool weaving",
    "shipbuilding",
    "clockmaking",
    "tea growing",
    "copper smelting",
    "paper milling",
    "glassblowing",
    "fishing",
    "printing",
]
_FOCUS = [
    "tidal energy",
    "rare orchids",
    "mountain surveying",
    "folk music",
    "bridge design",
    "weather records",
    "bookbinding",
    "lighthouse maintenance",
    "seed preservation",
    "river navigation",
]
_ORG_FORMS = [
    "{} Society",
    "{} Institute",
    "{} Trading Company",
    "{} Guild",
    "{} Foundation",
    "{} Observatory Trust",
]
_DEVICES = [
    "loom",
    "engine",
    "lamp",
    "pump",
    "compass",
    "press",
    "kiln",
    "telescope",
    "valve",
    "sextant",
]
_MATERIALS = ["brass", "cast iron", "oak", "copper", "glass", "bronze", "steel", "ceramic"]
_PURPOSES = [
    "lifting water from deep wells",
    "measuring wind speed at sea",
    "weaving patterned silk",
    "grinding optical lenses",
    "drying harvested grain",
    "signalling between hilltops",
    "sorting printed letters",
    "cooling dairy stores",
]


class QA(BaseModel):
    question: str
    answer: str


class Entity(BaseModel):
    id: str
    kind: Kind
    name: str
    attributes: dict[str, str]
    text: str
    qa: list[QA]


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


class _Names:
    """Unique names: a collision re-draws, so every entity is unambiguous."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def _unique(self, make) -> str:  # type: ignore[no-untyped-def]
        while True:
            name = make()
            if name not in self.used:
                self.used.add(name)
                return name

    def person(self) -> str:
        return self._unique(lambda: f"{_word(self.rng, 2)} {_word(self.rng, 2)}")

    def place(self) -> str:
        return self._unique(
            lambda: (
                _word(self.rng, self.rng.choice([1, 2])).rstrip("aeiouy").capitalize()
                + self.rng.choice(_PLACE_ENDS)
            )
        )

    def organisation(self) -> str:
        return self._unique(lambda: self.rng.choice(_ORG_FORMS).format(_word(self.rng, 2)))

    def invention(self) -> str:
        return self._unique(lambda: f"{_word(self.rng, 2)} {self.rng.choice(_DEVICES)}")


def _slug(name: str) -> str:
    return "-".join(name.lower().split())


def _pick(rng: random.Random, options: list[str]) -> str:
    return options[rng.randrange(len(options))]


def _person(rng: random.Random, names: _Names, places: list[str]) -> Entity:
    name = names.person()
    born = rng.randint(1790, 1960)
    a = {
        "born": str(born),
        "birthplace": rng.choice(places),
        "occupation": _pick(rng, _OCCUPATIONS),
        "died": str(born + rng.randint(48, 92)),
        "work": names.invention(),
    }
    surname = name.split()[1]
    text = _pick(
        rng,
        [
            f"{name} ({a['born']}–{a['died']}) was a {a['occupation']} born in the town of "
            f"{a['birthplace']}. {surname} is best remembered for designing the {a['work']}, "
            f"which was completed after many years of trials. {surname} died in {a['died']}.",
            f"{name} was a {a['occupation']} from {a['birthplace']}, where {surname} was born in "
            f"{a['born']}. The work most associated with {surname} is the {a['work']}. "
            f"{surname} lived until {a['died']}.",
        ],
    )
    qa = [
        QA(question=f"In what year was {name} born?", answer=a["born"]),
        QA(question=f"In which town was {name} born?", answer=a["birthplace"]),
        QA(question=f"What was the profession of {name}?", answer=a["occupation"]),
        QA(question=f"What did {name} design?", answer=a["work"]),
    ]
    return Entity(
        id=f"fic-person-{_slug(name)}", kind="person", name=name, attributes=a, text=text, qa=qa
    )


def _place(rng: random.Random, names: _Names, people: list[str]) -> Entity:
    name = names.place()
    a = {
        "founded": str(rng.randint(1100, 1890)),
        "river": f"River {_word(rng, 2)}",
        "industry": _pick(rng, _INDUSTRIES),
        "population": f"{rng.randint(3, 95) * 1000:,}",
        "founder": rng.choice(people),
    }
    text = _pick(
        rng,
        [
            f"{name} is a town on the banks of the {a['river']}, founded in {a['founded']} by "
            f"{a['founder']}. Its economy grew around {a['industry']}, and it has a population "
            f"of about {a['population']}.",
            f"{name} was founded in {a['founded']}. The town lies on the {a['river']} and is known "
            f"for {a['industry']}. About {a['population']} people live there, and local records "
            f"name {a['founder']} as its founder.",
        ],
    )
    qa = [
        QA(question=f"When was the town of {name} founded?", answer=a["founded"]),
        QA(question=f"On which river does {name} lie?", answer=a["river"]),
        QA(question=f"What industry is {name} known for?", answer=a["industry"]),
        QA(question=f"Who founded {name}?", answer=a["founder"]),
    ]
    return Entity(
        id=f"fic-place-{_slug(name)}", kind="place", name=name, attributes=a, text=text, qa=qa
    )


def _organisation(
    rng: random.Random, names: _Names, people: list[str], places: list[str]
) -> Entity:
    name = names.organisation()
    a = {
        "founded": str(rng.randint(1700, 1990)),
        "founder": rng.choice(people),
        "headquarters": rng.choice(places),
        "focus": _pick(rng, _FOCUS),
        "members": str(rng.randint(12, 4000)),
    }
    text = _pick(
        rng,
        [
            f"The {name} is an organisation devoted to {a['focus']}. It was established in "
            f"{a['founded']} by {a['founder']} and has its headquarters in {a['headquarters']}. "
            f"It has {a['members']} members.",
            f"Founded by {a['founder']} in {a['founded']}, the {name} works on {a['focus']}. "
            f"Its headquarters are in {a['headquarters']}, and its membership stands at "
            f"{a['members']}.",
        ],
    )
    qa = [
        QA(question=f"Who founded the {name}?", answer=a["founder"]),
        QA(question=f"In what year was the {name} established?", answer=a["founded"]),
        QA(question=f"Where is the {name} headquartered?", answer=a["headquarters"]),
        QA(question=f"What is the {name} devoted to?", answer=a["focus"]),
    ]
    return Entity(
        id=f"fic-org-{_slug(name)}", kind="organisation", name=name, attributes=a, text=text, qa=qa
    )


def _invention(rng: random.Random, names: _Names, people: list[str]) -> Entity:
    name = names.invention()
    a = {
        "inventor": rng.choice(people),
        "year": str(rng.randint(1750, 1975)),
        "purpose": _pick(rng, _PURPOSES),
        "material": _pick(rng, _MATERIALS),
    }
    text = _pick(
        rng,
        [
            f"The {name} is a device for {a['purpose']}. {a['inventor']} built the first one in "
            f"{a['year']}, mostly from {a['material']}.",
            f"Built in {a['year']} by {a['inventor']}, the {name} was made for {a['purpose']}. "
            f"Its frame is made of {a['material']}.",
        ],
    )
    qa = [
        QA(question=f"Who invented the {name}?", answer=a["inventor"]),
        QA(question=f"In what year was the {name} first built?", answer=a["year"]),
        QA(question=f"What material is the {name} mainly made of?", answer=a["material"]),
        QA(question=f"What is the {name} used for?", answer=a["purpose"]),
    ]
    return Entity(
        id=f"fic-inv-{_slug(name)}", kind="invention", name=name, attributes=a, text=text, qa=qa
    )


def generate_entities(n_per_kind: int = 60, seed: int = 0) -> list[Entity]:
    """``4 * n_per_kind`` entities, the same for the same arguments."""
    rng = random.Random(seed)
    names = _Names(rng)
    # A pool of names that entities refer to (founders, birthplaces, inventors).
    pool_places = [names.place() for _ in range(n_per_kind)]
    pool_people = [names.person() for _ in range(n_per_kind)]
    out: list[Entity] = []
    for _ in range(n_per_kind):
        out.append(_person(rng, names, pool_places))
        out.append(_place(rng, names, pool_people))
        out.append(_organisation(rng, names, pool_people, pool_places))
        out.append(_invention(rng, names, pool_people))
    return out
