"""Warning levels (``rules/levels.yaml``), intervention templates
(``rules/interventions/*.yaml``) and interview forms (``rules/interviews/*.yaml``)
as typed objects."""

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
    """A task in an intervention template.

    Due ``due_hours`` calendar hours (sub-day crisis deadlines) or
    ``due_working_days`` working days (China's statutory calendar) after the
    plan starts; exactly one of the two is set. ``every_days`` repeats the task
    (follow-up cadence); ``resources`` are resource-library codes.
    """

    id: str
    title: dict[str, str]
    owner_role: str
    due_hours: float | None
    step: str
    category: str = "school"
    due_working_days: int | None = None
    every_days: int | None = None
    resources: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExitCriterion:
    """A condition recorded as met before a case closes."""

    id: str
    text: dict[str, str]


@dataclass(frozen=True)
class InterventionTemplate:
    """Tasks that make a case's plan, for the listed warning levels and one case ``category``."""

    id: str
    version: str
    title: dict[str, str]
    levels: tuple[int, ...]
    tasks: tuple[TaskTemplate, ...]
    category: str = "general"
    exit_criteria: tuple[ExitCriterion, ...] = ()
    source: str = ""


INTERVIEW_SECTIONS = ("risk_factors", "protective_factors", "safety_plan", "notes")


@dataclass(frozen=True)
class FormOption:
    id: str
    label: dict[str, str]


@dataclass(frozen=True)
class FormField:
    """A field of an interview form: ``type`` text, textarea, choice, multi, bool or date."""

    id: str
    label: dict[str, str]
    type: str
    section: str
    required: bool = False
    options: tuple[FormOption, ...] = ()
    help: dict[str, str] | None = None


@dataclass(frozen=True)
class InterviewForm:
    """A structured investigation-interview form (调研访谈表)."""

    id: str
    version: str
    title: dict[str, str]
    fields: tuple[FormField, ...]
    description: dict[str, str] | None = None
    sources: tuple[str, ...] = ()

    def field(self, field_id: str) -> FormField:
        for item in self.fields:
            if item.id == field_id:
                return item
        raise KeyError(field_id)

    def sections(self) -> list[tuple[str, list[FormField]]]:
        """``(section, fields)`` in :data:`INTERVIEW_SECTIONS` order, empty sections left out."""
        return [(s, [f for f in self.fields if f.section == s]) for s in INTERVIEW_SECTIONS if self.in_section(s)]

    def in_section(self, section: str) -> bool:
        return any(f.section == section for f in self.fields)


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
        TaskTemplate(
            id=t["id"],
            title=t["title"],
            owner_role=t["owner_role"],
            due_hours=t.get("due_hours"),
            step=t["step"],
            category=t.get("category", "school"),
            due_working_days=t.get("due_working_days"),
            every_days=t.get("every_days"),
            resources=tuple(t.get("resources", ())),
        )
        for t in data["tasks"]
    )
    criteria = tuple(ExitCriterion(c["id"], c["text"]) for c in data.get("exit_criteria", ()))
    return InterventionTemplate(
        data["id"],
        data["version"],
        data["title"],
        tuple(data["levels"]),
        tasks,
        data.get("category", "general"),
        criteria,
        data.get("source", ""),
    )


def build_interview_form(data: dict) -> InterviewForm:
    """Build an :class:`InterviewForm` from schema-valid data."""
    fields = tuple(
        FormField(
            id=f["id"],
            label=f["label"],
            type=f["type"],
            section=f["section"],
            required=f.get("required", False),
            options=tuple(FormOption(o["id"], o["label"]) for o in f.get("options", ())),
            help=f.get("help"),
        )
        for f in data["fields"]
    )
    return InterviewForm(
        data["id"], data["version"], data["title"], fields, data.get("description"), tuple(data.get("sources", ()))
    )
