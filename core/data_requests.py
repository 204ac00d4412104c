"""Correction and deletion requests by a guardian or the student (Minors Protection Law Art. 72;
security.md J2), tracked from receipt to completion.

States (:class:`DataRequestMachine`, python-statemachine over ``DataRequest.status``)::

    received --approve-->  approved --complete--> done
    received --reject--->  rejected              (a reason is required)

* **Receive** (:func:`receive_request`): a psychology teacher, moral-education
  director or principal of the student's school records the request; it is due
  :data:`DUE_WORKING_DAYS` working days after receipt (China's statutory calendar,
  :func:`xinshu.workflow.add_working_days`). A correction names the roster fields
  to correct and their new values (name, gender, birth date, class); the values
  wait in ``DataRequest.result["changes"]`` and are removed once applied or rejected.
* **Approve / reject** (:func:`approve_request`, :func:`reject_request`): the
  principal of the school, or a district or bureau administrator above it.
* **Complete** (:func:`complete_request`): the school staff who receive requests.
  A correction is applied to the roster. A deletion deletes the student's
  responses, scores and teacher/parent reports and pseudonymises the student row
  (name → ``已删除#<id>``; ID number, 学籍号, 校内学号 and birth date → NULL;
  status ``erased``; inactive). Warnings, cases and everything recorded on them
  (timeline, plan, interviews, referrals, parent ledger, level history,
  notifications) are deleted too, unless a legal exception is recorded
  (``legal_exception``, e.g. an open crisis case, records a court or police
  matter needs): then they are kept. A student with an open case cannot be
  erased without such an exception: close the case first, or record it.
  Consent records for campaigns (not tied to a case) are kept as evidence of
  lawful processing (security.md §4.1, PIPL Art. 56), with the child's name and
  numbers replaced by the pseudonym in their free text, as in the request's own text.

Every transition writes an audit row (actor, request id; for a deletion the
counts deleted; for a correction the names of the fields changed, with
before/after only for the class, never for personal values).

The timeline, parent ledger and consent records refuse changes through the ORM
(:mod:`xinshu.timeline`, :mod:`xinshu.referrals`); erasure is the one lawful
exception and deletes with SQL statements on the session's connection.

**Residue in the database file.** Deleted rows leave their bytes in free pages
and, on SQLite in WAL mode, in the write-ahead log. :func:`complete_request`
turns on ``PRAGMA secure_delete`` (SQLite overwrites what it deletes from then
on) and :func:`purge_residue`, run after the commit, rebuilds the file
(``VACUUM``) and truncates the WAL, so the erased identifiers are in no byte of
the database files afterwards (tested). On PostgreSQL dead tuples stay on disk
until ``VACUUM`` reuses the space (``VACUUM FULL`` rewrites the tables); backups
keep the data until they age out, and a restored backup must be followed by
the deletions completed since (:mod:`xinshu.retention` re-applies those whose
request is in the database).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, false, or_, select, update
from sqlalchemy.orm import Session, aliased
from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

from xinshu import audit
from xinshu.errors import XinshuError
from xinshu.grades import parse_grade
from xinshu.i18n import N_
from xinshu.models import (
    OPEN_CASE_STATES,
    Case,
    CaseEvent,
    DataRequest,
    Enrolment,
    GuardianConsent,
    Interview,
    LevelChange,
    LevelJudgement,
    Notification,
    OrgUnit,
    ParentContact,
    PlanTask,
    Referral,
    Response,
    RiskWarning,
    Score,
    Student,
    StudentReport,
    User,
    utcnow,
)
from xinshu.workflow import add_working_days

log = logging.getLogger(__name__)

KINDS = {"correction": _l("更正"), "deletion": _l("删除")}
STATUS_LABELS = {"received": _l("已受理"), "approved": _l("已批准"), "rejected": _l("已驳回"), "done": _l("已办结")}
EVENT_LABELS = {"approve": _l("批准"), "reject": _l("驳回"), "complete": _l("办结")}
#: Roster fields a correction may change, with their labels.
CORRECTABLE = {"name": _l("姓名"), "gender": _l("性别"), "birth_date": _l("出生日期"), "class_id": _l("班级")}
CHANNELS = {
    "letter": _l("书面"),
    "phone": _l("电话"),
    "meeting": _l("当面"),
    "email": _l("电子邮件"),
    "online": _l("网上"),
    "other": _l("其他"),
}
#: Answer within this many working days of receipt.
DUE_WORKING_DAYS = 15
#: Who receives and completes requests (at the student's class or above).
RECEIVE_ROLES = ("psychology_teacher", "moral_education_director", "principal")
COMPLETE_ROLES = RECEIVE_ROLES
#: Who approves or rejects (the principal; district or bureau administrators above the school).
APPROVE_ROLES = ("principal", "district_admin", "bureau_admin")
#: Everyone who sees requests (the union of the above).
REQUEST_ROLES = tuple(dict.fromkeys(RECEIVE_ROLES + APPROVE_ROLES))
MAX_TEXT = 4000
#: Identifiers shorter than this are not searched for in free text (a 3-digit 校内学号 would
#: otherwise rewrite unrelated numbers); names of one character likewise.
MIN_SCRUB_LENGTH = {"name": 2, "id_number": 6, "student_number": 6, "school_student_no": 6}


class DataRequestError(XinshuError):
    """A request step that is not allowed now, or bad input for it."""


class DataRequestMachine(StateMachine):
    """The states of a correction or deletion request (see the module docstring)."""

    received = State("已受理", initial=True)
    approved = State("已批准")
    rejected = State("已驳回", final=True)
    done = State("已办结", final=True)

    approve = received.to(approved)
    reject = received.to(rejected)
    complete = approved.to(done)


def requester_relations() -> dict[str, str]:
    """Who may ask: the guardians of :data:`xinshu.referrals.GUARDIAN_RELATIONS` or the student."""
    from xinshu.referrals import GUARDIAN_RELATIONS

    return {**GUARDIAN_RELATIONS, "self": N_("学生本人")}


# --- roles -------------------------------------------------------------------------


def covers(user: User | None, roles: tuple[str, ...], student: Student) -> bool:
    """True when ``user`` holds one of ``roles`` at the student's class or an org unit above it."""
    if user is None or not user.is_active or student.class_unit is None:
        return False
    path = student.class_unit.path
    return any(a.role in roles and a.org_unit is not None and path.startswith(a.org_unit.path) for a in user.roles)


def allowed_events(user: User | None, request: DataRequest) -> list[str]:
    """The events ``user`` may fire on ``request`` now (``approve``, ``reject``, ``complete``)."""
    student = request.student
    events = []
    if request.status == "received" and covers(user, APPROVE_ROLES, student):
        events += ["approve", "reject"]
    if request.status == "approved" and covers(user, COMPLETE_ROLES, student):
        events.append("complete")
    return events


def _actor(actor: User | str, roles: tuple[str, ...], student: Student) -> str:
    if isinstance(actor, User):
        if not covers(actor, roles, student):
            raise DataRequestError(_("您没有处理该学生数据请求的权限"))
        return actor.username
    name = (actor or "").strip()
    if not name:
        raise DataRequestError(_("须填写操作人"))
    return name[:80]


def _text(value: str | None, what: str, required: bool = False) -> str:
    text = (value or "").strip()
    if required and not text:
        raise DataRequestError(_("请填写%(what)s", what=what))
    if len(text) > MAX_TEXT:
        raise DataRequestError(_("%(what)s最多%(n)s字", what=what, n=MAX_TEXT))
    return text


def request_prefixes(user: User | None) -> list[str]:
    """Org-unit paths where ``user`` holds a role that handles requests (:data:`REQUEST_ROLES`)."""
    if user is None or not user.is_active:
        return []
    return sorted({a.org_unit.path for a in user.roles if a.role in REQUEST_ROLES and a.org_unit is not None})


def visible_requests(user: User | None):
    """A ``select`` of the requests whose student's class lies under an org unit where ``user``
    holds one of :data:`REQUEST_ROLES` (deny by default). District and bureau administrators
    see the requests of their schools; pages show them no name (:func:`may_see_identity`)."""
    prefixes = request_prefixes(user)
    if not prefixes:
        return select(DataRequest).where(false())
    klass = aliased(OrgUnit)
    return (
        select(DataRequest)
        .join(Student, Student.id == DataRequest.student_id)
        .join(klass, klass.id == Student.class_id)
        .where(or_(*[klass.path.startswith(prefix, autoescape=True) for prefix in prefixes]))
    )


def may_see_identity(user: User | None, student: Student) -> bool:
    """Only school staff who handle requests see the student's name on a request (roles.md:
    district and bureau administrators see individual students only when escalated)."""
    return covers(user, RECEIVE_ROLES, student)


# --- receive -----------------------------------------------------------------------


def clean_changes(session: Session, student: Student, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Checked correction values as JSON-safe data: ``name`` text, ``gender`` ``M``/``F``,
    ``birth_date`` ``YYYY-MM-DD`` (not in the future), ``class_id`` a class of the student's school.

    :raises DataRequestError: an unknown field, no field, or a bad value.
    """
    unknown = sorted(set(changes) - set(CORRECTABLE))
    if unknown:
        raise DataRequestError(_("不能更正的字段：%(fields)s", fields=", ".join(unknown)))
    clean: dict[str, Any] = {}
    if changes.get("name") not in (None, ""):
        name = str(changes["name"]).strip()
        if not 1 <= len(name) <= 100:
            raise DataRequestError(_("姓名须为1到100个字"))
        clean["name"] = name
    if changes.get("gender") not in (None, ""):
        if changes["gender"] not in ("M", "F"):
            raise DataRequestError(_("性别须为男或女"))
        clean["gender"] = changes["gender"]
    if changes.get("birth_date") not in (None, ""):
        clean["birth_date"] = _birth_date(changes["birth_date"]).isoformat()
    if changes.get("class_id") not in (None, ""):
        clean["class_id"] = _class_of_school(session, student, changes["class_id"]).id
    if not clean:
        raise DataRequestError(_("请至少填写一项要更正的内容"))
    return clean


def _birth_date(value: Any) -> dt.date:
    try:
        day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise DataRequestError(_("出生日期格式应为 YYYY-MM-DD")) from None
    if not dt.date(1990, 1, 1) <= day <= utcnow().date():
        raise DataRequestError(_("出生日期不合理"))
    return day


def _class_of_school(session: Session, student: Student, value: Any) -> OrgUnit:
    try:
        klass = session.get(OrgUnit, int(value))
    except (TypeError, ValueError):
        klass = None
    school = student.school or session.get(OrgUnit, student.school_id)
    if klass is None or klass.kind != "class" or school is None or not klass.path.startswith(school.path):
        raise DataRequestError(_("班级须为该学生所在学校的班级"))
    return klass


def receive_request(
    session: Session,
    student: Student,
    kind: str,
    actor: User | str,
    *,
    relation: str,
    channel: str,
    details: str = "",
    changes: Mapping[str, Any] | None = None,
    received_at: dt.datetime | None = None,
) -> DataRequest:
    """Record a correction or deletion request (flushes; the caller commits).

    :param relation: who asks (:func:`requester_relations`).
    :param channel: how it came in (:data:`CHANNELS`).
    :param details: what the requester asked, in their words (no ID numbers, please).
    :param changes: for a correction, field → new value (:data:`CORRECTABLE`).
    :param received_at: when it came in (naive UTC; default now). The due date is
        :data:`DUE_WORKING_DAYS` working days later.
    :raises DataRequestError: bad input, an erased student, or an actor without a
        :data:`RECEIVE_ROLES` role covering the student.
    """
    received_by = _actor(actor, RECEIVE_ROLES, student)
    if kind not in KINDS:
        raise DataRequestError(_("请求类型须为更正或删除"))
    if relation not in requester_relations():
        raise DataRequestError(_("请选择请求人与学生的关系"))
    if channel not in CHANNELS:
        raise DataRequestError(_("请选择受理渠道"))
    if student.status == "erased":
        raise DataRequestError(_("该学生的数据已删除"))
    details = _text(details, _("请求内容"))
    pending: dict[str, Any] = {}
    if kind == "correction":
        pending = {"changes": clean_changes(session, student, changes or {})}
    elif changes:
        raise DataRequestError(_("删除请求不附带更正内容"))
    now = received_at or utcnow()
    request = DataRequest(
        student_id=student.id,
        kind=kind,
        status="received",
        requester_relation=relation,
        channel=channel,
        details=details,
        received_by=received_by,
        received_at=now,
        due_at=add_working_days(now, DUE_WORKING_DAYS),
        result=pending,
    )
    session.add(request)
    session.flush()
    detail = {"student_id": student.id, "kind": kind, "channel": channel, "due_at": request.due_at.isoformat()}
    if kind == "correction":
        detail["fields"] = sorted(pending["changes"])
    audit.record(session, "create", "data_request", request.id, detail=detail, actor=actor)
    log.info("data request %s (%s) received for student %s", request.id, kind, student.id)
    return request


# --- decide ------------------------------------------------------------------------


def _fire(request: DataRequest, event: str) -> str:
    before = request.status
    try:
        DataRequestMachine(model=request, state_field="status").send(event)
    except TransitionNotAllowed:
        label = STATUS_LABELS.get(before, before)
        raise DataRequestError(
            _("状态为“%(status)s”的请求不能%(event)s", status=label, event=EVENT_LABELS[event])
        ) from None
    return before


def approve_request(
    session: Session, request: DataRequest, actor: User | str, reason: str = "", legal_exception: str = ""
) -> DataRequest:
    """Approve a received request; a legal exception may be recorded now or at completion.

    :raises DataRequestError: not in ``received``, or an actor without an :data:`APPROVE_ROLES` role.
    """
    name = _actor(actor, APPROVE_ROLES, request.student)
    reason = _text(reason, _("理由"))
    exception = _text(legal_exception, _("法定例外理由"))
    before = _fire(request, "approve")
    request.decided_by, request.decided_at, request.decision_reason = name, utcnow(), reason
    if exception:
        request.legal_exception = exception
    _audit_transition(session, request, "approve", before, actor, legal_exception=bool(exception))
    return request


def reject_request(session: Session, request: DataRequest, actor: User | str, reason: str) -> DataRequest:
    """Reject a received request with a reason (required); pending correction values are dropped.

    :raises DataRequestError: no reason, not in ``received``, or an actor without an :data:`APPROVE_ROLES` role.
    """
    name = _actor(actor, APPROVE_ROLES, request.student)
    reason = _text(reason, _("驳回理由"), required=True)
    before = _fire(request, "reject")
    request.decided_by, request.decided_at, request.decision_reason = name, utcnow(), reason
    request.result = _without_values(request.result)
    _audit_transition(session, request, "reject", before, actor, reason=reason)
    return request


def _without_values(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """``result`` with the pending correction values replaced by their field names."""
    result = dict(result or {})
    changes = result.pop("changes", None)
    if changes is not None:
        result["fields"] = sorted(changes)
    return result


def _audit_transition(
    session: Session, request: DataRequest, event: str, before: str, actor: User | str, **extra: Any
) -> None:
    detail = {"event": event, "from": before, "to": request.status, "student_id": request.student_id}
    detail.update(kind=request.kind, **extra)
    action = "delete" if event == "complete" and request.kind == "deletion" else "update"
    audit.record(session, action, "data_request", request.id, detail=detail, actor=actor)


# --- complete ----------------------------------------------------------------------


@dataclass
class Completion:
    """What completing a request did: the fields corrected, or the rows deleted per table."""

    fields: list[str]
    counts: dict[str, int]
    kept: bool = False


def complete_request(
    session: Session, request: DataRequest, actor: User | str, legal_exception: str = ""
) -> Completion:
    """Carry out an approved request (in the caller's transaction) and close it.

    :param legal_exception: the legal reason to keep warnings and cases (recorded on the request).
    :raises DataRequestError: not approved, an actor without a :data:`COMPLETE_ROLES` role, or a
        deletion of a student with an open case and no legal exception.
    """
    name = _actor(actor, COMPLETE_ROLES, request.student)
    exception = _text(legal_exception, _("法定例外理由"))
    if request.status != "approved":
        _fire(request, "complete")  # raises with the state's label
    if exception:
        request.legal_exception = exception
    student = request.student
    identifiers = {field: getattr(student, field) for field in MIN_SCRUB_LENGTH}
    if request.kind == "correction":
        done = Completion(apply_correction(session, request, student, actor), {})
    else:
        done = erase_student(session, student, keep_casework=bool(request.legal_exception))
    before = _fire(request, "complete")
    request.completed_by, request.completed_at = name, utcnow()
    outcome = {"fields": done.fields, "counts": done.counts, "kept": done.kept}
    request.result = {**_without_values(request.result), **outcome}
    if request.kind == "deletion":
        _scrub_request_texts(session, request.student_id, identifiers, erased_name(request.student_id))
    extra: dict[str, Any] = {"counts": done.counts, "kept": done.kept} if request.kind == "deletion" else {}
    if request.kind == "correction":
        extra["fields"] = done.fields
    if request.legal_exception:
        extra["legal_exception"] = request.legal_exception[:500]
    _audit_transition(session, request, "complete", before, actor, **extra)
    return done


def apply_correction(session: Session, request: DataRequest, student: Student, actor: User | str) -> list[str]:
    """Apply the request's pending values to the roster; returns the fields that changed.

    The audit row (action ``update``, type ``student``) names the fields; before/after values
    are recorded only for the class (org-unit ids and grade), never for personal fields.
    """
    changes = dict((request.result or {}).get("changes") or {})
    if not changes:
        raise DataRequestError(_("该更正请求没有待更正的内容"))
    changed: list[str] = []
    detail: dict[str, Any] = {"request_id": request.id}
    for field in ("name", "gender"):
        if field in changes and getattr(student, field) != changes[field]:
            setattr(student, field, changes[field])
            changed.append(field)
    if "birth_date" in changes:
        day = _birth_date(changes["birth_date"])
        if student.birth_date != day:
            student.birth_date = day
            changed.append("birth_date")
    if "class_id" in changes and changes["class_id"] != student.class_id:
        klass = _class_of_school(session, student, changes["class_id"])
        detail["before"] = {"class_id": student.class_id, "grade_level": student.grade_level}
        _move_class(session, student, klass)
        detail["after"] = {"class_id": student.class_id, "grade_level": student.grade_level}
        changed.append("class_id")
    session.flush()
    audit.record(session, "update", "student", student.id, detail={**detail, "fields": changed}, actor=actor)
    return changed


def _move_class(session: Session, student: Student, klass: OrgUnit) -> None:
    """Put the student in ``klass`` (a correction: the open enrolment row is corrected, not ended)."""
    grade_unit = klass.parent or session.get(OrgUnit, klass.parent_id)
    try:
        grade = parse_grade(grade_unit.name) if grade_unit is not None else student.grade_level
    except ValueError:
        grade = student.grade_level
    student.class_id, student.class_unit, student.grade_level = klass.id, klass, grade
    session.execute(
        update(Enrolment)
        .where(Enrolment.student_id == student.id, Enrolment.ended_at.is_(None))
        .values(class_id=klass.id, grade_level=grade)
        .execution_options(synchronize_session=False)
    )


def erased_name(student_id: int) -> str:
    """The name an erased student's row keeps: ``已删除#<id>``."""
    return f"已删除#{student_id}"


def open_cases(session: Session, student_id: int) -> list[int]:
    """Ids of the student's cases that are not closed or transferred."""
    stmt = select(Case.id).where(Case.student_id == student_id, Case.state.in_(OPEN_CASE_STATES))
    return list(session.scalars(stmt))


def erase_student(session: Session, student: Student, keep_casework: bool) -> Completion:
    """Delete the student's screening data and pseudonymise the roster row (no commit).

    :param keep_casework: a legal exception is recorded: keep warnings, cases and what hangs on them.
    :raises DataRequestError: an open case and no legal exception.
    :return: rows deleted per table; ``kept`` tells whether case work was kept.
    """
    cases = open_cases(session, student.id)
    if cases and not keep_casework:
        ids = ", ".join(f"#{i}" for i in cases)
        raise DataRequestError(
            _("该学生有未结束的危机干预个案（%(ids)s）：须结案后再办结删除，或记录法定例外理由", ids=ids)
        )
    session.flush()
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA secure_delete=ON")  # overwrite what is deleted from here on
    sid = student.id
    counts: dict[str, int] = {}

    def run(name: str, statement) -> None:
        counts[name] = counts.get(name, 0) + int(connection.execute(statement).rowcount or 0)

    responses = select(Response.id).where(Response.student_id == sid)
    connection.execute(update(RiskWarning).where(RiskWarning.student_id == sid).values(response_id=None))
    run("scores", delete(Score).where(Score.response_id.in_(responses)))
    run("responses", delete(Response).where(Response.student_id == sid))
    run("reports", delete(StudentReport).where(StudentReport.student_id == sid))
    if not keep_casework:
        _erase_casework(run, sid)
    identifiers = {field: getattr(student, field) for field in MIN_SCRUB_LENGTH}
    pseudonym = erased_name(sid)
    _scrub_consents(connection, sid, identifiers, pseudonym)
    connection.execute(
        update(Student)
        .where(Student.id == sid)
        .values(
            name=pseudonym,
            id_number=None,
            student_number=None,
            school_student_no=None,
            birth_date=None,
            status="erased",
            active=False,
            updated_at=utcnow(),
        )
    )
    session.expire_all()  # rows changed behind the ORM's back (everything pending was flushed above)
    log.info("student %s erased (%s)", sid, ", ".join(f"{k}={v}" for k, v in counts.items()))
    return Completion([], counts, kept=keep_casework)


def _erase_casework(run, sid: int) -> None:
    """Delete the student's warnings and cases with everything recorded on them."""
    warnings = select(RiskWarning.id).where(RiskWarning.student_id == sid)
    cases = select(Case.id).where(Case.student_id == sid)
    run("notifications", delete(Notification).where(Notification.warning_id.in_(warnings)))
    run("notifications", delete(Notification).where(Notification.case_id.in_(cases)))
    for name, model in (
        ("case_events", CaseEvent),
        ("plan_tasks", PlanTask),
        ("interviews", Interview),
        ("referrals", Referral),
        ("parent_contacts", ParentContact),
        ("case_consents", GuardianConsent),
    ):
        run(name, delete(model).where(model.case_id.in_(cases)))
    run("level_changes", delete(LevelChange).where(LevelChange.warning_id.in_(warnings)))
    run("level_judgements", delete(LevelJudgement).where(LevelJudgement.student_id == sid))
    run("cases", delete(Case).where(Case.student_id == sid))
    run("warnings", delete(RiskWarning).where(RiskWarning.student_id == sid))


def _replace_identifiers(text: str, identifiers: Mapping[str, str | None], pseudonym: str) -> str:
    for field, value in identifiers.items():
        if value and len(value) >= MIN_SCRUB_LENGTH[field]:
            text = text.replace(value, pseudonym)
    return text


def _scrub_consents(connection, sid: int, identifiers: Mapping[str, str | None], pseudonym: str) -> None:
    rows = connection.execute(
        select(GuardianConsent.id, GuardianConsent.evidence).where(GuardianConsent.student_id == sid)
    )
    for consent_id, evidence in rows.all():
        clean = _replace_identifiers(evidence or "", identifiers, pseudonym)
        if clean != (evidence or ""):
            connection.execute(update(GuardianConsent).where(GuardianConsent.id == consent_id).values(evidence=clean))


def _scrub_request_texts(session: Session, sid: int, identifiers: Mapping[str, str | None], pseudonym: str) -> None:
    """Replace the erased identifiers in the student's requests' free text."""
    for request in session.scalars(select(DataRequest).where(DataRequest.student_id == sid)):
        for attr in ("details", "decision_reason", "legal_exception"):
            value = getattr(request, attr) or ""
            clean = _replace_identifiers(value, identifiers, pseudonym)
            if clean != value:
                setattr(request, attr, clean)


def purge_residue(engine) -> dict[str, Any]:
    """After an erasure is committed: rebuild a SQLite file (``VACUUM``) and truncate its WAL, so
    deleted rows leave no bytes behind. Does nothing on other databases (see the module docstring).

    Takes SQLite's exclusive lock for the time of a full copy of the file (seconds for a school's
    database); call it outside any open transaction.

    :return: ``{"dialect", "vacuumed", "wal_truncated"}``; ``wal_truncated`` is False when another
        connection kept the write-ahead log busy (old pages may then remain in it: run again).
    """
    if engine.dialect.name != "sqlite":
        return {"dialect": engine.dialect.name, "vacuumed": False}
    raw = engine.raw_connection()  # the DBAPI connection: VACUUM cannot run inside BEGIN
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("VACUUM")
        checkpoint = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        cursor.close()
    finally:
        raw.close()
    busy = bool(checkpoint and checkpoint[0])
    if busy:
        log.error("after VACUUM the WAL could not be truncated (another connection is reading); run it again")
    return {"dialect": "sqlite", "vacuumed": True, "wal_truncated": not busy}


def is_overdue(request: DataRequest, now: dt.datetime | None = None) -> bool:
    """True when an unfinished request is past its due date."""
    return (
        request.status in ("received", "approved") and request.due_at is not None and (now or utcnow()) > request.due_at
    )
