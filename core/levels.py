"""Warning levels (``rules/levels.yaml``) and intervention templates
(``rules/interventions/*.yaml``) as typed objects."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NotifyTarget:
    """Tell holders of ``role`` at the student's ``at`` org level via ``channels``."""

    role: str
    at: str
    channels: tuple[str, ...]


@dataclass(frozen=True)
class LevelDef:
    """One of the four warning levels.

    ``response_hours`` is the time allowed to acknowledge a warning.
    """

    level: int
    key: str
    name: dict[str, str]
    colour: str
    response_hours: float
    notify: tuple[NotifyTarget, ...]


@dataclass(frozen=True)
class Levels:
    """The four levels and the level at which a case is opened."""

    version: str
    digest: str
    case_threshold: int
    levels: tuple[LevelDef, ...]

    def get(self, level: int) -> LevelDef:
        for item in self.levels:
            if item.level == level:
                return item
        raise KeyError(level)


@dataclass(frozen=True)
class TaskTemplate:
    """A task in an intervention template; due ``due_hours`` after opening."""

    id: str
    title: dict[str, str]
    owner_role: str
    due_hours: float
    step: str
    category: str = "school"


@dataclass(frozen=True)
class InterventionTemplate:
    """Tasks that make a case's plan, for the listed warning levels."""

    id: str
    version: str
    title: dict[str, str]
    levels: tuple[int, ...]
    tasks: tuple[TaskTemplate, ...]


def build_levels(data: dict, digest: str) -> Levels:
    """Build :class:`Levels` from schema-valid data."""
    levels = tuple(
        LevelDef(
            level=item["level"],
            key=item["key"],
            name=item["name"],
            colour=item["colour"],
            response_hours=item["response_hours"],
            notify=tuple(NotifyTarget(n["role"], n["at"], tuple(n["channels"])) for n in item["notify"]),
        )
        for item in sorted(data["levels"], key=lambda d: d["level"])
    )
    return Levels(data["version"], digest, data["case_threshold"], levels)


def build_template(data: dict) -> InterventionTemplate:
    """Build an :class:`InterventionTemplate` from schema-valid data."""
    tasks = tuple(
        TaskTemplate(t["id"], t["title"], t["owner_role"], t["due_hours"], t["step"], t.get("category", "school"))
        for t in data["tasks"]
    )
    return InterventionTemplate(data["id"], data["version"], data["title"], tuple(data["levels"]), tasks)
