"""SQLAlchemy 2.0 data model.

Org tree: city → district → school → grade → class (:class:`OrgUnit`, with a
materialised ``path`` such as ``/1/3/7/`` so that "everything under this unit"
is one prefix test). Students belong to a class unit and a school unit.

Responses keep the raw answers exactly as imported; :class:`Score` rows are
derived from them and stamp the instrument version and file digest.
:class:`RiskWarning` keeps the level, rule id, ruleset version and the input values
that fired (explain-why). :class:`Case` carries the six steps as states.
:class:`Notification` is the outbox: written in the same transaction as the
warning, delivered by the dispatcher with retries.

All timestamps are stored as naive UTC (:func:`utcnow`), the same on SQLite
and PostgreSQL (security.md K1, §4.5); display converts to Asia/Shanghai.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from flask_babel import gettext
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ORG_KINDS = ("city", "district", "school", "grade", "class")
ROLES = (
    "bureau_admin",
    "district_admin",
    "principal",
    "moral_education_director",
    "psychology_teacher",
    "class_teacher",
)
CASE_STATES = ("monitoring", "warned", "interviewing", "planning", "intervening", "follow_up", "closed", "transferred")
OPEN_CASE_STATES = CASE_STATES[:6]


def utcnow() -> dt.datetime:
    """Current time as naive UTC (how every timestamp is stored)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, list[Any]: JSON}


class OrgUnit(Base):
    """A node of the org tree; ``path`` lists ancestor ids, e.g. ``/1/3/7/``."""

    __tablename__ = "org_unit"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))
    path: Mapped[str] = mapped_column(String(255), index=True, default="")
    parent: Mapped[OrgUnit | None] = relationship(remote_side=[id])  # noqa: A003 - SQLAlchemy idiom

    def __str__(self) -> str:
        return self.name


class User(Base):
    """A staff account. Passwords are stored only as salted slow hashes."""

    __tablename__ = "user_account"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(120), default="")
    email: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    #: Consecutive failed logins since the last success (lockout, security.md B4).
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Login is refused until this time (naive UTC) after too many failures.
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    #: Last day the account may log in (Asia/Shanghai date); None = no expiry (A11).
    expires_on: Mapped[dt.date | None] = mapped_column(Date)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    #: Part of the Flask-Login id (:meth:`get_id`): raising it ends every session of the account
    #: (logout, password change), even a copied session cookie (Flask-Login "alternative tokens").
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    roles: Mapped[list[RoleAssignment]] = relationship(back_populates="user", cascade="all, delete-orphan")

    # Flask-Login protocol
    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """The session's user id, ``"<id>.<session_version>"`` (see :func:`xinshu.auth.load_session_user`)."""
        return f"{self.id}.{self.session_version or 0}"

    def __str__(self) -> str:
        return self.username


class RoleAssignment(Base):
    """A user holds ``role`` over one org unit and everything below it."""

    __tablename__ = "role_assignment"
    __table_args__ = (UniqueConstraint("user_id", "org_unit_id", "role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    role: Mapped[str] = mapped_column(String(40))
    user: Mapped[User] = relationship(back_populates="roles")
    org_unit: Mapped[OrgUnit] = relationship()


class Student(Base):
    """A student on a school roster.

    ``id_number`` (居民身份证号) and ``student_number`` (全国学籍号) are kept as
    exact strings; ``school_student_no`` is the school's own number (校内学号),
    unique within the school.
    """

    __tablename__ = "student"
    __table_args__ = (UniqueConstraint("school_id", "school_student_no"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    gender: Mapped[str] = mapped_column(String(1))  # "M" / "F"
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    id_number: Mapped[str | None] = mapped_column(String(18), unique=True)
    student_number: Mapped[str | None] = mapped_column(String(32), unique=True)
    school_student_no: Mapped[str | None] = mapped_column(String(32))
    grade_level: Mapped[int] = mapped_column(Integer)
    #: Calendar year the student entered the current school stage (学段), e.g. 2025.
    entry_year: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: ``enrolled``, ``graduated``, ``left`` (withdrawn) or ``erased`` (data deleted on request).
    status: Mapped[str] = mapped_column(String(16), default="enrolled", server_default="enrolled")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    school: Mapped[OrgUnit] = relationship(foreign_keys=[school_id])
    class_unit: Mapped[OrgUnit] = relationship(foreign_keys=[class_id])

    def __str__(self) -> str:
        return f"#{self.id}"


class ImportBatch(Base):
    """One accepted import (roster or answers); ``file_sha256`` detects repeats."""

    __tablename__ = "import_batch"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    filename: Mapped[str] = mapped_column(String(255))
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))
    rows: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Response(Base):
    """A submitted questionnaire: the raw answers as given, never edited.

    ``dedupe_key`` (SHA-256 over instrument, student and answers) makes a
    repeated import of the same answers a no-op.
    """

    __tablename__ = "response"
    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id"), index=True)
    instrument_id: Mapped[str] = mapped_column(String(64))
    instrument_version: Mapped[str] = mapped_column(String(32))
    answers: Mapped[dict[str, Any]] = mapped_column(JSON)
    raw_cells: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(40))
    #: ``scored``, or ``retest`` when a validity indicator fired.
    status: Mapped[str] = mapped_column(String(16), default="scored")
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id"), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("import_batch.id"))
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    student: Mapped[Student] = relationship()
    scores: Mapped[list[Score]] = relationship(back_populates="response", cascade="all, delete-orphan")

    def __str__(self) -> str:
        return gettext("答卷 #%(id)s（%(instrument)s）", id=self.id, instrument=self.instrument_id)


class Score(Base):
    """One scale's score of one response, derived from the raw answers."""

    __tablename__ = "score"
    __table_args__ = (UniqueConstraint("response_id", "scale"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("response.id"), index=True)
    scale: Mapped[str] = mapped_column(String(64))
    raw_score: Mapped[float | None] = mapped_column(Float)
    band: Mapped[str | None] = mapped_column(String(64))
    answered: Mapped[int] = mapped_column(Integer)
    valid: Mapped[bool] = mapped_column(Boolean)
    flags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    t_score: Mapped[float | None] = mapped_column(Float)
    percentile: Mapped[float | None] = mapped_column(Float)
    norm_set_id: Mapped[str | None] = mapped_column(String(64))
    norm_set_version: Mapped[str | None] = mapped_column(String(32))
    instrument_version: Mapped[str] = mapped_column(String(32))
    instrument_digest: Mapped[str] = mapped_column(String(64))
    computed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    response: Mapped[Response] = relationship(back_populates="scores")


class RiskWarning(Base):
    """A warning (预警) for a student, with the reason it fired (table ``warning``).

    ``inputs`` holds every fired rule with the exact values it read, e.g.
    ``[{"rule_id": "phq9.item9", "level": 3, "inputs": {"critical:phq9_9": true}}]``.
    """

    __tablename__ = "warning"
    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id"), index=True)
    response_id: Mapped[int | None] = mapped_column(ForeignKey("response.id"))
    level: Mapped[int] = mapped_column(Integer)
    rule_id: Mapped[str] = mapped_column(String(100))
    ruleset_id: Mapped[str] = mapped_column(String(64))
    ruleset_version: Mapped[str] = mapped_column(String(32))
    ruleset_digest: Mapped[str] = mapped_column(String(64))
    inputs: Mapped[list[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(80))
    #: Where the warning sits in the responsibility tree: school → district → city.
    escalated_to: Mapped[str] = mapped_column(String(16), default="school")
    escalated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    student: Mapped[Student] = relationship()
    response: Mapped[Response | None] = relationship()

    def __str__(self) -> str:
        return gettext("预警 #%(id)s（%(level)s级）", id=self.id, level=self.level)


class Case(Base):
    """A crisis-intervention case moving through the six steps.

    At most one open case per student (a partial unique index).
    """

    __tablename__ = "case_file"
    __table_args__ = (
        Index(
            "uq_case_one_open_per_student",
            "student_id",
            unique=True,
            sqlite_where=text("state NOT IN ('closed', 'transferred')"),
            postgresql_where=text("state NOT IN ('closed', 'transferred')"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id"), index=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    warning_id: Mapped[int] = mapped_column(ForeignKey("warning.id"))
    level: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="warned")
    template_id: Mapped[str] = mapped_column(String(64))
    template_version: Mapped[str] = mapped_column(String(32))
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    #: The named person responsible for the case now (a username) and their role.
    owner: Mapped[str | None] = mapped_column(String(80))
    owner_role: Mapped[str] = mapped_column(String(40), default="psychology_teacher")
    #: Plans of level 3–4 cases need the principal's approval before intervening.
    plan_approved_by: Mapped[str | None] = mapped_column(String(80))
    plan_approved_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    #: Exit criteria of the template recorded as met: {criterion id: {"by", "at", "note"}}.
    exit_criteria: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    closed_reason: Mapped[str | None] = mapped_column(Text)
    student: Mapped[Student] = relationship()
    school: Mapped[OrgUnit] = relationship()
    warning: Mapped[RiskWarning] = relationship()
    tasks: Mapped[list[PlanTask]] = relationship(back_populates="case", cascade="all, delete-orphan")
    events: Mapped[list[CaseEvent]] = relationship(back_populates="case", order_by="CaseEvent.id")

    def __str__(self) -> str:
        return f"case #{self.id}"


class PlanTask(Base):
    """A task of a case's plan, made from the intervention template."""

    __tablename__ = "plan_task"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_file.id"), index=True)
    template_task_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(255))
    owner_role: Mapped[str] = mapped_column(String(40))
    step: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[dt.datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="open")
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    done_by: Mapped[str | None] = mapped_column(String(80))
    #: Days between follow-ups for a repeating task (None: once).
    every_days: Mapped[int | None] = mapped_column(Integer)
    #: Codes of resource-library items the task hands out.
    resources: Mapped[list[Any]] = mapped_column(JSON, default=list)
    reminded_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    case: Mapped[Case] = relationship(back_populates="tasks")


class CaseEvent(Base):
    """An entry of a case's timeline: a state change with actor and reason."""

    __tablename__ = "case_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_file.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    #: state, interview, plan, task, referral, contact, consent, escalation, note
    kind: Mapped[str] = mapped_column(String(16), default="state")
    actor: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    case: Mapped[Case] = relationship(back_populates="events")


class Notification(Base):
    """Outbox row: one message to one role at one org unit through one channel.

    ``idempotency_key`` is stable across retries (receivers de-duplicate on
    it). ``status``: ``pending`` → ``sent``, or ``dead`` after the last retry
    (shown as undeliverable, never deleted). Bodies carry no names, ID
    numbers or answers: only case/warning id, level, school and a link.
    """

    __tablename__ = "notification"
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    warning_id: Mapped[int] = mapped_column(ForeignKey("warning.id"), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case_file.id"))
    channel: Mapped[str] = mapped_column(String(40))
    role: Mapped[str] = mapped_column(String(40))
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    level: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    org_unit: Mapped[OrgUnit] = relationship()


class InboxMessage(Base):
    """The in-app inbox: a message for holders of ``role`` at ``org_unit_id``.

    Unique on the notification's idempotency key, so a re-delivery after a
    crash is recorded once.
    """

    __tablename__ = "inbox_message"
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    role: Mapped[str] = mapped_column(String(40))
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str] = mapped_column(String(255))
    level: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    org_unit: Mapped[OrgUnit] = relationship()


class StudentReport(Base):
    """A class teacher's quick report (班主任快速上报) or a parent's report
    entered by school staff (``source`` ``teacher`` / ``parent``).

    ``categories`` (a list of report category ids) feed the alert rules while
    ``status`` is ``open``. ``note`` is free text, shown only to roles allowed
    to read case details.
    """

    __tablename__ = "student_report"
    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id"), index=True)
    source: Mapped[str] = mapped_column(String(16))
    categories: Mapped[list[Any]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text, default="")
    reported_by: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    student: Mapped[Student] = relationship()


class LevelJudgement(Base):
    """A person's decision on a student's level: ``confirm`` it after the
    interview (调研访谈), ``adjust`` it, or ``override`` it — always with a reason.

    The latest judgement sets the episode's level and is the floor below which
    rules never lower it. ``rule_level`` is what the rules said at that moment:
    rules raise the level again only when they later say more than that (the
    student got worse since the person looked).
    """

    __tablename__ = "level_judgement"
    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id"), index=True)
    warning_id: Mapped[int | None] = mapped_column(ForeignKey("warning.id"))
    level: Mapped[int] = mapped_column(Integer)
    rule_level: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(80))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class LevelChange(Base):
    """The level history of a warning episode: every rise, lowering and judgement."""

    __tablename__ = "level_change"
    id: Mapped[int] = mapped_column(primary_key=True)
    warning_id: Mapped[int] = mapped_column(ForeignKey("warning.id"), index=True)
    from_level: Mapped[int | None] = mapped_column(Integer)
    to_level: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))  # rules / person
    rule_id: Mapped[str | None] = mapped_column(String(100))
    ruleset_version: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(80), default="system")
    inputs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RulesetActivation(Base):
    """A record of alert rules put into force: who, when, why, what changed.

    ``files`` maps each alert-rule file to its SHA-256; ``backtest`` holds the
    replay summary shown before activation.
    """

    __tablename__ = "ruleset_activation"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    files: Mapped[dict[str, Any]] = mapped_column(JSON)
    activated_by: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text)
    backtest: Mapped[dict[str, Any]] = mapped_column(JSON)
    activated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Interview(Base):
    """An investigation interview (调研访谈) recorded with a YAML-declared form.

    ``answers`` maps the form's field ids to values (risk and protective
    factors, safety-plan fields, notes); the interviewer confirms or adjusts the
    level with a reason (recorded as a :class:`LevelJudgement` too).
    """

    __tablename__ = "interview"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_file.id"), index=True)
    form_id: Mapped[str] = mapped_column(String(64))
    form_version: Mapped[str] = mapped_column(String(32))
    answers: Mapped[dict[str, Any]] = mapped_column(JSON)
    level_before: Mapped[int] = mapped_column(Integer)
    level_after: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    interviewer: Mapped[str] = mapped_column(String(80))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Partner(Base):
    """A partner institution of a district (expert side of the dual platform):
    hospital psychiatry, community service, police contact, hotline, family service."""

    __tablename__ = "partner"
    id: Mapped[int] = mapped_column(primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    department: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    address: Mapped[str] = mapped_column(String(255), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    district: Mapped[OrgUnit] = relationship()


class Referral(Base):
    """A referral (转介) to a hospital, community, police or family service, with
    its own loop: sent → acknowledged → outcome → returned (return-to-school plan)."""

    __tablename__ = "referral"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_file.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partner.id"))
    status: Mapped[str] = mapped_column(String(16), default="sent")
    sent_by: Mapped[str] = mapped_column(String(80))
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    outcome: Mapped[str | None] = mapped_column(Text)
    outcome_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    return_plan: Mapped[str | None] = mapped_column(Text)
    returned_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    partner: Mapped[Partner | None] = relationship()


class ParentContact(Base):
    """The parent communication ledger (家校沟通记录): what was said, when, by
    whom, through which channel, and the parent's response."""

    __tablename__ = "parent_contact"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_file.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    by: Mapped[str] = mapped_column(String(80))
    channel: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    parent_response: Mapped[str] = mapped_column(Text, default="")


class GuardianConsent(Base):
    """A guardian's consent or refusal for a purpose (referral, data sharing…)."""

    __tablename__ = "guardian_consent"
    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id"), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case_file.id"))
    #: The screening campaign this consent covers (purpose ``screening``).
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(40))
    decision: Mapped[str] = mapped_column(String(16))
    guardian_relation: Mapped[str] = mapped_column(String(20), default="")
    evidence: Mapped[str] = mapped_column(Text, default="")
    recorded_by: Mapped[str] = mapped_column(String(80))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Resource(Base):
    """The resource library: guidance sheets, class-meeting and course packs,
    parent guidance. Intervention template tasks name resources by ``code``."""

    __tablename__ = "resource"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(255))
    audience: Mapped[str] = mapped_column(String(40), default="")
    url: Mapped[str] = mapped_column(String(500), default="")
    description: Mapped[str] = mapped_column(Text, default="")


class SchedulerLease(Base):
    """Makes sure exactly one scheduler process runs jobs: a row per job name,
    held by one process until ``expires_at``."""

    __tablename__ = "scheduler_lease"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Enrolment(Base):
    """One stretch of a student's enrolment: school, class and grade from ``started_at``
    until ``ended_at`` (None while current). Roster imports, the school-year
    rollover and transfers close the current row and open a new one, so a
    transferred student's history stays with the student (and so with the new school).
    """

    __tablename__ = "enrolment"
    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id"), index=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    class_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))
    grade_level: Mapped[int] = mapped_column(Integer)
    #: School year as ``2026-2027`` (starts 1 September, Asia/Shanghai).
    school_year: Mapped[str] = mapped_column(String(9))
    #: Why the row was opened: ``import``, ``move``, ``rollover``, ``transfer``.
    reason: Mapped[str] = mapped_column(String(16))
    #: Why the row was closed: ``move``, ``rollover``, ``transfer``, ``graduated``, ``left``.
    end_reason: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(80), default="system")


class AuditEvent(Base):
    """One audited action: who, when, what, from where and with what result.

    Append-only: the database refuses UPDATE, and DELETE of rows younger than
    183 days (triggers from migration 0004, security.md I2/I3; CSL Art. 21
    requires network logs kept at least six months). Never holds names, ID
    numbers or answers: objects are named by type and id.
    """

    __tablename__ = "audit_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(80), default="")
    #: ``read``, ``export``, ``create``, ``update``, ``delete``, ``login``, ``break_glass`` ...
    action: Mapped[str] = mapped_column(String(32), index=True)
    object_type: Mapped[str] = mapped_column(String(40), default="")
    object_id: Mapped[str] = mapped_column(String(64), default="")
    #: ``ok``, ``denied`` or ``failed``.
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    ip: Mapped[str] = mapped_column(String(64), default="")
    endpoint: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Campaign(Base):
    """A screening campaign (测评活动): which scales, for which org unit, when, and
    on what legal basis (PIPL Art. 13: consent, or statutory duty with the
    documented basis ``legal_basis_ref``). With basis ``consent`` a student
    under 14 may answer only with a guardian's consent (PIPL Art. 31).
    """

    __tablename__ = "campaign"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"), index=True)
    instruments: Mapped[list[Any]] = mapped_column(JSON, default=list)
    opens_at: Mapped[dt.datetime] = mapped_column(DateTime)
    closes_at: Mapped[dt.datetime] = mapped_column(DateTime)
    #: ``consent`` or ``statutory_duty``.
    legal_basis: Mapped[str] = mapped_column(String(20))
    legal_basis_ref: Mapped[str] = mapped_column(Text, default="")
    purpose: Mapped[str] = mapped_column(Text, default="")
    #: Screening results of this campaign are deleted or de-identified after this many days.
    retention_days: Mapped[int] = mapped_column(Integer, default=3 * 365)
    created_by: Mapped[str] = mapped_column(String(80), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    org_unit: Mapped[OrgUnit] = relationship()

    def __str__(self) -> str:
        return self.name


class DataRequest(Base):
    """A guardian's or student's request to correct or delete data (Minors
    Protection Law Art. 72), tracked from receipt to completion."""

    __tablename__ = "data_request"
    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id"), index=True)
    #: ``correction`` or ``deletion``.
    kind: Mapped[str] = mapped_column(String(16))
    #: ``received``, ``approved``, ``rejected``, ``done``.
    status: Mapped[str] = mapped_column(String(16), default="received")
    requester_relation: Mapped[str] = mapped_column(String(20), default="")
    channel: Mapped[str] = mapped_column(String(20), default="")
    details: Mapped[str] = mapped_column(Text, default="")
    received_by: Mapped[str] = mapped_column(String(80))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    due_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    #: The legal exception under which some data is kept (e.g. an open crisis case).
    legal_exception: Mapped[str] = mapped_column(Text, default="")
    completed_by: Mapped[str | None] = mapped_column(String(80))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    student: Mapped[Student] = relationship()


class DeclarationVersion(Base):
    """Every saved version of a declaration file edited in the back office
    (instrument, alert rules, intervention template, import profile ...).

    ``relpath`` is relative to the declarations root (``rules/alerts/phq9.yaml``);
    ``status`` is ``draft``, ``active``, ``superseded`` or ``rejected``.
    """

    __tablename__ = "declaration_version"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    relpath: Mapped[str] = mapped_column(String(255), index=True)
    content: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    author: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    activated_by: Mapped[str | None] = mapped_column(String(80))
    activated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    reason: Mapped[str] = mapped_column(Text, default="")
    backtest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
