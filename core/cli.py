"""The ``xinshu`` command line.

``xinshu check`` validates declarations; ``import-roster`` and
``import-answers`` run the same code a school's upload runs; ``score`` scores
a file without any database; ``dispatch`` delivers queued notifications;
``demo`` builds the demo city; ``serve`` runs the back office.
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
    unconfigured = sorted(set(services.channel_classes) - services.configured_channels())
    for name in unconfigured:
        click.echo(f"note: channel {name!r} is not configured here; its notifications are not queued", err=True)
    click.echo(
        f"ok: {len(decls.files)} files, {len(decls.instruments)} instruments, {len(decls.rulesets)} alert rulesets, "
        f"{len(decls.templates)} intervention templates, {len(decls.profiles)} import profiles"
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
@click.option("--database", help="Database URL (default: XINSHU_DATABASE_URL or ./instance/xinshu.db).")
def import_roster_cmd(file: Path, school_code: str, database: str | None) -> None:
    """Import a school roster (.xlsx); all-or-nothing."""
    from xinshu.rosters import import_roster

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting():
        with services.db.transaction() as session:
            result = import_roster(session, file, school_code)
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False))


@main.command("import-answers")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--instrument", "instrument_id", required=True)
@click.option("--profile", "profile_id", required=True)
@click.option("--school", "school_code", help="Match respondents within this school only.")
@click.option("--database", help="Database URL.")
@click.option("--no-dispatch", is_flag=True, help="Queue notifications without delivering them now.")
def import_answers_cmd(
    file: Path, instrument_id: str, profile_id: str, school_code: str | None, database: str | None, no_dispatch: bool
) -> None:
    """Import answers, score them, warn, open cases and queue notifications."""
    from xinshu.answers import import_answers
    from xinshu.dispatch import dispatch_pending
    from xinshu.rosters import get_school

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting():
        with services.db.transaction() as session:
            school_id = get_school(session, school_code).id if school_code else None
            result = import_answers(session, services, file, instrument_id, profile_id, school_id)
        summary = result.as_dict()
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


@main.command()
@click.option("--database", help="Database URL.")
def dispatch(database: str | None) -> None:
    """Deliver due notifications once and print the counts."""
    from xinshu.dispatch import dispatch_pending

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    with _reporting():
        click.echo(json.dumps(dispatch_pending(services).as_dict()))


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


if __name__ == "__main__":  # pragma: no cover
    main()
