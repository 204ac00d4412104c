"""The ``xinshu`` command line.

``xinshu check`` validates declarations; ``import-roster`` and
``import-answers`` run the same code a school's upload runs; ``score`` scores
a file without any database; ``dispatch`` delivers queued notifications;
``case`` drives the six-step case workflow;
``scheduler run`` is the one process that escalates, reminds and delivers;
``acknowledge`` stops a warning's escalation;
``partners import`` and ``resources import`` upsert the partner directory and
the resource library from YAML; ``demo`` builds the demo city; ``serve`` runs
the back office.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from xinshu.errors import DeclarationsInvalid, ImportRejected, XinshuError
from xinshu.models import ROLES


def _services(with_db: bool = True, **config):
    from xinshu.services import build_services

    with _reporting():
        return build_services({k: v for k, v in config.items() if v is not None}, with_db=with_db)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def main(verbose: bool) -> None:
    """xinshu (心数): student mental-health screening and crisis intervention."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@main.command()
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), help="Declaration root (default: project).")
def check(root: Path | None) -> None:
    """Validate every declaration; print "file:line: path: message" per error."""
    services = _services(with_db=False, DECLARATION_ROOT=root)
    decls = services.declarations
    named = {c for level in decls.levels.levels for target in level.notify for c in target.channels}
    unconfigured = sorted(named - services.configured_channels())
    for name in unconfigured:
        click.echo(f"note: channel {name!r} is not configured here; its notifications are not queued", err=True)
    click.echo(
        f"ok: {len(decls.files)} files, {len(decls.instruments)} instruments, {len(decls.rulesets)} alert rulesets, "
        f"{len(decls.templates)} intervention templates, {len(decls.profiles)} import profiles, "
        f"{len(decls.interview_forms)} interview forms"
    )


@main.command("add-org-unit")
@click.argument("code")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(["city", "district", "school"]))
@click.option("--parent", "parent_code", help="Code of the parent unit (a district's city, a school's district).")
@click.option("--database", help="Database URL.")
def add_org_unit_cmd(code: str, name: str, kind: str, parent_code: str | None, database: str | None) -> None:
    """Add a city, district or school (grades and classes come from rosters)."""
    from xinshu.orgs import create_org_unit

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting(), services.db.transaction() as session:
        unit = create_org_unit(session, code, name, kind, parent_code)
        click.echo(f"added {kind} {unit.code} ({unit.name})")


@main.command("add-user")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(list(ROLES)))
@click.option("--org", "org_code", required=True, help="Code of the org unit the role covers (and all below it).")
@click.option("--email", help="Address for the email channel.")
@click.password_option(help="Prompted for (twice) when not given.")
@click.option("--database", help="Database URL.")
def add_user_cmd(
    username: str, role: str, org_code: str, email: str | None, password: str, database: str | None
) -> None:
    """Add a staff account holding ROLE over an org unit."""
    from sqlalchemy import select

    from xinshu.auth import create_user
    from xinshu.models import OrgUnit, User

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting(), services.db.transaction() as session:
        unit = session.scalar(select(OrgUnit).where(OrgUnit.code == org_code))
        if unit is None:
            raise XinshuError(f"no org unit with code {org_code!r}")
        if session.scalar(select(User.id).where(User.username == username)) is not None:
            raise XinshuError(f"user {username!r} already exists")
        if len(password) < 10:
            raise XinshuError("the password must have at least 10 characters")
        create_user(session, username, password, role, unit, email=email)
        click.echo(f"added user {username} as {role} of {unit.code}")


@main.command("import-roster")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--school", "school_code", required=True, help="School org-unit code.")
@click.option("--preview", is_flag=True, help="Show what the import would do (counts, rows, ids); write nothing.")
@click.option("--year", "school_year", help="School year the roster is for, e.g. 2026-2027 (default: the current one).")
@click.option("--mark-missing-left", is_flag=True, help="Mark enrolled students the file does not name as left (离校).")
@click.option("--actor", default="cli", show_default=True, help="Who imports (enrolment history and audit log).")
@click.option("--database", help="Database URL (default: XINSHU_DATABASE_URL or ./instance/xinshu.db).")
def import_roster_cmd(
    file: Path,
    school_code: str,
    preview: bool,
    school_year: str | None,
    mark_missing_left: bool,
    actor: str,
    database: str | None,
) -> None:
    """Import a school roster (.xlsx or .csv); all-or-nothing. With --preview nothing is written."""
    from xinshu.rosters import import_roster, preview_roster

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting():
        if preview:
            with services.db.sessionmaker() as session:
                plan = preview_roster(session, file, school_code, school_year=school_year)
                session.rollback()
            click.echo(json.dumps(_preview_summary(plan), ensure_ascii=False))
            return
        with services.db.transaction() as session:
            result = import_roster(
                session, file, school_code, school_year=school_year, actor=actor, mark_missing_left=mark_missing_left
            )
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False))


def _preview_summary(plan) -> dict:
    """A roster preview as counts, row numbers and student ids (no names: the output may end up in logs)."""
    rows = {
        kind: [{"row": r.row, "student_id": r.student_id, "fields": list(r.fields)} for r in plan.of_kind(kind)]
        for kind in ("new", "changed", "moved")
    }
    return {
        "school": plan.school,
        "school_year": plan.school_year,
        "counts": plan.counts(),
        "already_imported": plan.already_imported,
        "rows": rows,
        "missing": [m.student_id for m in plan.missing],
        "classes_to_create": plan.classes_to_create,
    }


@main.command("import-answers")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--instrument", "instrument_id", required=True)
@click.option("--profile", "profile_id", required=True)
@click.option("--school", "school_code", help="Match respondents within this school only.")
@click.option("--campaign", "campaign_code", help="File the answers under this campaign (window and consent gate).")
@click.option("--database", help="Database URL.")
@click.option("--no-dispatch", is_flag=True, help="Queue notifications without delivering them now.")
def import_answers_cmd(
    file: Path,
    instrument_id: str,
    profile_id: str,
    school_code: str | None,
    campaign_code: str | None,
    database: str | None,
    no_dispatch: bool,
) -> None:
    """Import answers, score them, warn, open cases and queue notifications."""
    from xinshu.answers import import_answers
    from xinshu.campaigns import get_campaign
    from xinshu.dispatch import dispatch_pending
    from xinshu.rosters import get_school

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting():
        with services.db.transaction() as session:
            school_id = get_school(session, school_code).id if school_code else None
            campaign = get_campaign(session, campaign_code) if campaign_code else None
            result = import_answers(session, services, file, instrument_id, profile_id, school_id, campaign)
        summary = result.as_dict()
        if campaign is not None:  # the legal basis the responses were stored under (J1)
            summary["campaign"] = {k: getattr(campaign, k) for k in ("code", "legal_basis", "legal_basis_ref")}
        if not no_dispatch:
            summary["dispatch"] = dispatch_pending(services).as_dict()
        click.echo(json.dumps(summary, ensure_ascii=False))


@main.command()
@click.argument("instrument_id")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--profile", "profile_id", required=True)
def score(instrument_id: str, file: Path, profile_id: str) -> None:
    """Score FILE; write CSV (respondent, per scale raw and band, flags) to stdout.

    Touches no database. Rows with no answers at all are skipped (counted on stderr).
    """
    from xinshu.answers import read_answers, resolve_profile
    from xinshu.scoring import score_response

    services = _services(with_db=False)
    with _reporting():
        instrument, profile = resolve_profile(services, instrument_id, profile_id)
        answer_file = read_answers(file, instrument, profile)
        scorers = services.scorers()
        writer = csv.writer(sys.stdout, lineterminator="\n")
        scales = [s.id for s in instrument.scales]
        writer.writerow(["respondent", *[c for s in scales for c in (s, f"{s}_band")], "flags"])
        for row in answer_file.rows:
            result = score_response(instrument, row.answers, scorers)
            cells = [c for s in scales for c in (_num(result.scale_value(s)), result.band(s) or "")]
            writer.writerow([row.respondent, *cells, ";".join(result.flags)])
        click.echo(f"{len(answer_file.rows)} scored, {answer_file.blank_rows} blank rows skipped", err=True)


@main.group()
def norms() -> None:
    """Build norm sets from the city's own stored scores."""


@norms.command("build")
@click.argument("instrument_id")
@click.option("--scale", "scale_id", default="total", show_default=True)
@click.option("--wave", required=True, help="Label of the screening wave, e.g. 2025秋.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only responses submitted on or after this date.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Only responses submitted before this date.")
@click.option("--method", type=click.Choice(["normalized_t", "linear_t"]), default="normalized_t", show_default=True)
@click.option("--min-group-n", default=200, show_default=True, help="Smaller groups fall back to broader ones.")
@click.option("--population", help="Who the norms describe (default: the database's schools).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), help="YAML file (default stdout).")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), help="Declaration root (default: project).")
@click.option("--database", help="Database URL.")
def norms_build(
    instrument_id, scale_id, wave, since, until, method, min_group_n, population, out_file, root, database
) -> None:
    """Compute a draft norm set (grade × gender groups) and write it as YAML for review.

    Activate it by copying it to norms/ and setting status: active; every
    score computed afterwards stamps its id and version.
    """
    import yaml

    from xinshu.norm_source import stored_scores
    from xinshu.norms import build_norm_data

    services = _services(DATABASE_URL=database, DECLARATION_ROOT=root)
    with _reporting(), services.db.sessionmaker() as session:
        rows = stored_scores(session, services.declarations, instrument_id, scale_id, since, until)
        data = build_norm_data(
            rows, instrument_id, scale_id, method=method, norm_id=f"{instrument_id}-{scale_id}-{_slug(wave)}",
            version=wave, population=population or f"students in {services.db.url}", wave=wave,
            min_group_n=min_group_n,
        )  # fmt: skip
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=None, width=120)
    if out_file:
        out_file.write_text(text, "utf-8")
        click.echo(f"wrote {out_file}: n = {len(rows)}, {len(data['groups'])} groups (status: draft)", err=True)
    else:
        click.echo(text, nl=False)


def _slug(text: str) -> str:
    ascii_part = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in text).strip("-").lower()
    return ascii_part or "wave"


@main.group()
def rules() -> None:
    """Back-test and activate alert rules."""


@rules.command("diff")
@click.argument("candidate", type=click.Path(exists=True, path_type=Path))
@click.option("--database", help="Database URL.")
@click.option("--list", "show_list", is_flag=True, help="List every student whose level would change.")
def rules_diff(candidate: Path, database: str | None, show_list: bool) -> None:
    """Replay CANDIDATE (an alert-rule file or folder) on the stored data; print who would change."""
    import shutil

    from xinshu.backtest import backtest, candidate_declarations

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting():
        decls, root = candidate_declarations(services, candidate)
        shutil.rmtree(root, ignore_errors=True)
        with services.db.sessionmaker() as session:
            result = backtest(session, services.declarations, decls).as_dict()
    if not show_list:
        result.pop("students_changed")
    click.echo(json.dumps(result, ensure_ascii=False, indent=2))


@rules.command("activate")
@click.argument("candidate", type=click.Path(exists=True, path_type=Path))
@click.option("--by", "actor", required=True, help="Who activates (recorded).")
@click.option("--reason", required=True, help="Why (recorded).")
@click.option("--database", help="Database URL.")
def rules_activate(candidate: Path, actor: str, reason: str, database: str | None) -> None:
    """Back-test CANDIDATE, put it into rules/alerts/ and record the activation."""
    from xinshu.backtest import activate

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting(), services.db.transaction() as session:
        record, result = activate(session, services, candidate, actor, reason)
        click.echo(
            f"activated alert rules {record.digest[:12]} by {actor}: {len(result.changed)} students change level"
        )


@main.command()
@click.argument("student_ref")
@click.option("--source", type=click.Choice(["teacher", "parent"]), required=True)
@click.option("--category", "categories", multiple=True, required=True, help="Repeat for several categories.")
@click.option("--by", "reported_by", required=True, help="Who reports (or who entered a parent's report).")
@click.option("--note", default="")
@click.option("--database", help="Database URL.")
def report(student_ref, source, categories, reported_by, note, database) -> None:
    """Record a teacher's quick report or a parent's report about STUDENT_REF (学籍号 or student id)."""
    from xinshu.judgements import add_report

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting(), services.db.transaction() as session:
        student = _student(session, student_ref)
        _report, change = add_report(session, services, student, source, list(categories), reported_by, note)
        level = change.warning.level if change.warning else None
        click.echo(json.dumps({"report": _report.id, "warning_level": level, "opened": change.opened,
                               "raised": change.raised}))  # fmt: skip


@main.command()
@click.argument("student_ref")
@click.option("--level", type=click.IntRange(1, 4), required=True)
@click.option("--kind", type=click.Choice(["confirm", "adjust", "override"]), required=True)
@click.option("--reason", required=True)
@click.option("--by", "actor", required=True)
@click.option("--database", help="Database URL.")
def judge(student_ref, level, kind, reason, actor, database) -> None:
    """Confirm, adjust or override STUDENT_REF's warning level after the interview, with a reason."""
    from xinshu.judgements import judge as record_judgement

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting(), services.db.transaction() as session:
        judgement = record_judgement(session, services, _student(session, student_ref), level, kind, reason, actor)
        click.echo(f"recorded {kind} level {level} (rules said {judgement.rule_level or 'nothing'})")


def _student(session, ref: str):
    from sqlalchemy import select

    from xinshu.models import Student

    student = session.scalar(select(Student).where(Student.student_number == ref))
    if student is None and ref.isdigit():
        student = session.get(Student, int(ref))
    if student is None:
        raise XinshuError(f"no student with 学籍号 or id {ref!r}")
    return student


@main.group()
def partners() -> None:
    """The partner-institution directory of each district (合作机构)."""


@partners.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--database", help="Database URL.")
def partners_import(path: Path, database: str | None) -> None:
    """Upsert the partners listed in PATH (YAML); importing twice changes nothing."""
    _import_directory("partners", path, database)


@main.group()
def resources() -> None:
    """The resource library (资源库): guidance sheets, class meetings, courses, parent guidance."""


@resources.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--database", help="Database URL.")
def resources_import(path: Path, database: str | None) -> None:
    """Upsert the resources listed in PATH (YAML), by code; importing twice changes nothing."""
    _import_directory("resources", path, database)


@resources.command("check")
@click.option("--database", help="Database URL.")
def resources_check(database: str | None) -> None:
    """Exit 1 when an intervention template hands out a resource code the library lacks."""
    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting(), services.db.sessionmaker() as session:
        gaps = _resource_gaps(session, services)
    if gaps:
        raise SystemExit(1)
    click.echo(
        f"ok: every resource the {len(services.declarations.templates)} intervention templates name is in the library"
    )


def _import_directory(what: str, path: Path, database: str | None) -> None:
    from xinshu.referrals import import_partners, import_resources, load_yaml_list

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    importer = import_partners if what == "partners" else import_resources
    with _reporting():
        rows = load_yaml_list(path)
        with services.db.transaction() as session:
            summary = importer(session, rows)
            if what == "resources":
                _resource_gaps(session, services)
        click.echo(json.dumps({what: summary.as_dict()}))


def _resource_gaps(session, services) -> list:
    """Print a note per template task whose resource code is not in the library."""
    from xinshu.referrals import template_resource_gaps

    gaps = template_resource_gaps(session, services.declarations.templates)
    for template_id, task_id, code in gaps:
        click.echo(f"note: template {template_id} task {task_id} hands out {code!r}, not in the library", err=True)
    return gaps


@main.group()
def case() -> None:
    """The six-step case workflow: show a case, move it on, record its interview and plan work."""


def _case_action(database: str | None, case_id: int, action) -> None:
    """Run ``action(session, services, case)`` in one transaction; print the case afterwards."""
    from xinshu.models import Case

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting(), services.db.transaction() as session:
        record = session.get(Case, case_id)
        if record is None:
            raise XinshuError(f"no case #{case_id}")
        message = action(session, services, record)
        session.flush()
        summary = _case_summary(session, services, record)
    if message:
        click.echo(message, err=True)
    click.echo(json.dumps(summary, ensure_ascii=False, indent=2))


def _case_summary(session, services, record) -> dict:
    from xinshu.workflow import blocked_events, case_template, to_local

    def local(value):
        return to_local(value).isoformat(timespec="minutes") if value else None

    template = case_template(services, record)
    return {
        "case": record.id, "student": record.student_id, "state": record.state, "level": record.level,
        "template": f"{record.template_id} {record.template_version}", "owner": record.owner,
        "plan_approved_by": record.plan_approved_by, "plan_approved_at": local(record.plan_approved_at),
        "next": blocked_events(session, services, record),
        "tasks": [
            {"id": t.id, "title": t.title, "owner_role": t.owner_role, "step": t.step, "due": local(t.due_at),
             "status": t.status, "done_by": t.done_by, "every_days": t.every_days, "resources": t.resources}
            for t in sorted(record.tasks, key=lambda t: (t.due_at, t.id))
        ],
        "exit_criteria": [
            {"id": c.id, "text": c.text["zh"], "recorded": (record.exit_criteria or {}).get(c.id)}
            for c in template.exit_criteria
        ],
        "closed_at": local(record.closed_at), "closed_reason": record.closed_reason,
        "timeline": [
            {"at": local(e.at), "kind": e.kind, "from": e.from_state, "to": e.to_state, "actor": e.actor,
             "reason": e.reason}
            for e in record.events
        ],
    }  # fmt: skip


@case.command("show")
@click.argument("case_id", type=int)
@click.option("--database", help="Database URL.")
def case_show(case_id: int, database: str | None) -> None:
    """Print CASE_ID as JSON: state, next steps (and what blocks them), tasks, exit criteria, timeline."""
    _case_action(database, case_id, lambda session, services, record: None)


@case.command("advance")
@click.argument("case_id", type=int)
@click.argument("event")
@click.option("--by", "actor", required=True, help="Who does it (recorded).")
@click.option("--reason", default="", help="Why (recorded; required to relapse, watch, close or transfer).")
@click.option("--database", help="Database URL.")
def case_advance(case_id: int, event: str, actor: str, reason: str, database: str | None) -> None:
    """Fire EVENT on CASE_ID (start_interview, finish_interview, start_intervention, ...)."""
    from xinshu.workflow import advance

    _case_action(database, case_id, lambda s, svc, c: advance(s, svc, c, event, actor, reason) and None)


@case.command("interview")
@click.argument("case_id", type=int)
@click.option("--form", "form_id", default="standard", show_default=True, help="Interview form id.")
@click.option(
    "--answers", "answers_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON or YAML file: field id -> answer.",
)  # fmt: skip
@click.option("--level", type=click.IntRange(1, 4), required=True)
@click.option("--kind", type=click.Choice(["confirm", "adjust"]), required=True)
@click.option("--category", help="Case category for the plan template (default: keep).")
@click.option("--reason", required=True)
@click.option("--by", "actor", required=True)
@click.option("--database", help="Database URL.")
def case_interview(case_id, form_id, answers_file, level, kind, category, reason, actor, database) -> None:
    """Record the investigation interview of CASE_ID, confirm or adjust the level, and move to planning."""
    import yaml

    from xinshu.workflow import record_interview

    text = answers_file.read_text("utf-8")
    try:
        answers = json.loads(text) if answers_file.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"cannot read {answers_file}: {exc}", param_hint="--answers") from None

    def action(session, services, record):
        interview = record_interview(
            session, services, record, form_id, answers, level, kind, reason, actor, category
        )  # fmt: skip
        return f"recorded interview #{interview.id}"

    _case_action(database, case_id, action)


@case.command("approve")
@click.argument("case_id", type=int)
@click.option("--by", "actor", required=True, help="The principal approving the plan.")
@click.option("--reason", default="")
@click.option("--database", help="Database URL.")
def case_approve(case_id: int, actor: str, reason: str, database: str | None) -> None:
    """Record the principal's approval of CASE_ID's plan (required at level 3–4)."""
    from xinshu.workflow import approve_plan

    _case_action(database, case_id, lambda s, svc, c: approve_plan(s, svc, c, actor, reason) and None)


@case.command("task-done")
@click.argument("case_id", type=int)
@click.argument("task_id", type=int)
@click.option("--by", "actor", required=True)
@click.option("--note", default="")
@click.option("--database", help="Database URL.")
def case_task_done(case_id: int, task_id: int, actor: str, note: str, database: str | None) -> None:
    """Mark TASK_ID of CASE_ID done (a repeating task gets its next occurrence)."""
    from xinshu.workflow import complete_task

    _case_action(database, case_id, lambda s, svc, c: complete_task(s, svc, c, task_id, actor, note) and None)


@case.command("exit")
@click.argument("case_id", type=int)
@click.argument("criterion_id")
@click.option("--by", "actor", required=True)
@click.option("--note", default="", help="The evidence.")
@click.option("--database", help="Database URL.")
def case_exit(case_id: int, criterion_id: str, actor: str, note: str, database: str | None) -> None:
    """Record that exit criterion CRITERION_ID of CASE_ID's template is met."""
    from xinshu.workflow import record_exit_criterion

    _case_action(
        database, case_id, lambda s, svc, c: record_exit_criterion(s, svc, c, criterion_id, actor, note) and None
    )


@case.command("close")
@click.argument("case_id", type=int)
@click.option("--by", "actor", required=True)
@click.option("--reason", required=True)
@click.option("--database", help="Database URL.")
def case_close(case_id: int, actor: str, reason: str, database: str | None) -> None:
    """Close CASE_ID (every exit criterion recorded)."""
    from xinshu.workflow import advance

    _case_action(database, case_id, lambda s, svc, c: advance(s, svc, c, "close", actor, reason) and None)


@case.command("transfer")
@click.argument("case_id", type=int)
@click.option("--by", "actor", required=True)
@click.option("--reason", required=True, help="E.g. the student moved to another school.")
@click.option("--database", help="Database URL.")
def case_transfer(case_id: int, actor: str, reason: str, database: str | None) -> None:
    """End CASE_ID as transferred (e.g. the student moved school)."""
    from xinshu.workflow import advance

    _case_action(database, case_id, lambda s, svc, c: advance(s, svc, c, "transfer", actor, reason) and None)


@main.command()
@click.option("--database", help="Database URL.")
def dispatch(database: str | None) -> None:
    """Deliver due notifications once and print the counts."""
    from xinshu.dispatch import dispatch_pending

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting():
        click.echo(json.dumps(dispatch_pending(services).as_dict()))


@main.group()
def scheduler() -> None:
    """The one scheduler process: escalation, task reminders, undeliverable alerts, delivery."""


@scheduler.command("run")
@click.option("--once", is_flag=True, help="Run one tick, print its counts and exit.")
@click.option("--interval", default=60.0, show_default=True, type=click.FloatRange(min=0.1), help="Seconds.")
@click.option("--database", help="Database URL.")
def scheduler_run(once: bool, interval: float, database: str | None) -> None:
    """Run the jobs every INTERVAL seconds while holding the scheduler lease.

    Start it as its own process (one per deployment; a second one waits as a
    standby and takes over when the first stops). Prints one JSON line per tick.
    """
    import signal
    import threading

    from xinshu.scheduler import Scheduler

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting():
        runner = Scheduler(services, interval=interval)
        if once:
            try:
                click.echo(json.dumps(runner.tick(), ensure_ascii=False))
            finally:
                runner.release()
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        click.echo(f"scheduler {runner.holder} running every {interval:g} s (Ctrl+C to stop)", err=True)
        runner.run(stop, on_tick=lambda report: click.echo(json.dumps(report, ensure_ascii=False)))


@main.command()
@click.argument("warning_id", type=int)
@click.option("--by", "actor", required=True, help="Who takes the warning on (recorded).")
@click.option("--database", help="Database URL.")
def acknowledge(warning_id: int, actor: str, database: str | None) -> None:
    """Acknowledge warning WARNING_ID: its response time is met and escalation stops."""
    from xinshu.escalation import acknowledge as acknowledge_warning
    from xinshu.models import RiskWarning, utcnow

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting(), services.db.transaction() as session:
        warning = session.get(RiskWarning, warning_id)
        if warning is None:
            raise XinshuError(f"no warning #{warning_id}")
        if acknowledge_warning(session, warning, actor, utcnow()):
            click.echo(f"warning #{warning.id} acknowledged by {actor} (at {warning.escalated_to} level)")
        else:
            click.echo(f"warning #{warning.id} was already acknowledged by {warning.acknowledged_by or '?'}")


@main.command()
@click.option("--database", help="Database URL (default: a fresh ./instance/demo.db).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder with nhanes_phq9/.")
@click.option("--seed", default=20251011, show_default=True, help="Seed for the fictional people.")
@click.option("--serve", "then_serve", is_flag=True, help="Serve the back office afterwards.")
@click.option("--port", default=5000, show_default=True)
def demo(database: str | None, data_dir: Path | None, seed: int, then_serve: bool, port: int) -> None:
    """Build the demo city on a fresh database and print a JSON summary."""
    from xinshu.demo import build_demo, default_data_dir
    from xinshu.services import database_url

    url = database_url(database) if database else f"sqlite:///{Path.cwd() / 'instance' / 'demo.db'}"
    with _reporting():
        summary = build_demo(url, data_dir or default_data_dir(), seed)
    click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    click.echo(
        f"back office: http://127.0.0.1:{port}/admin/  login: {summary['login']['username']} / "
        f"{summary['login']['password']}",
        err=True,
    )
    if then_serve:
        _serve(url, "127.0.0.1", port)


@main.command()
@click.option("--database", help="Database URL.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
def serve(database: str | None, host: str, port: int) -> None:
    """Serve the back office with waitress."""
    _serve(database, host, port)


def _serve(database: str | None, host: str, port: int) -> None:
    import waitress
    from sqlalchemy import func, select

    from xinshu.app import create_app
    from xinshu.models import User

    config = {"DATABASE_URL": database} if database else {}
    with _reporting():
        app = create_app(config)
    services = app.extensions["xinshu"]
    with services.db.sessionmaker() as session:
        if session.scalar(select(func.count()).select_from(User)) == 0:
            click.echo(f"note: {services.db.url} has no user accounts yet; add one with `xinshu add-user`", err=True)
    click.echo(f"serving on http://{host}:{port}/admin/ (Ctrl+C to stop)", err=True)
    waitress.serve(app, host=host, port=port, threads=8)


class _reporting:
    """Print user errors (with every row error) and exit 1, without a traceback."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            return False
        if isinstance(exc, DeclarationsInvalid):
            for error in exc.errors:
                click.echo(str(error), err=True)
            raise SystemExit(1)
        if isinstance(exc, ImportRejected):
            click.echo(f"rejected: {len(exc.errors)} error(s); nothing was changed", err=True)
            for error in exc.errors:
                click.echo(f"  {error}", err=True)
            raise SystemExit(1)
        if isinstance(exc, XinshuError):
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(1)
        if isinstance(exc, SQLAlchemyError | ModuleNotFoundError):
            click.echo(f"database error: {type(exc).__name__}: {str(exc).splitlines()[0]}", err=True)
            raise SystemExit(1)
        return False


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def _register_plugin_commands() -> None:
    """Let plugins add commands (the ``register_commands`` hook)."""
    from xinshu.plugin_manager import get_plugin_manager
    from xinshu.services import config_from_env, plugin_options

    with _reporting():
        pm = get_plugin_manager(**plugin_options(config_from_env({})))
        pm.hook.register_commands(cli=main)


_register_plugin_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
