"""The privacy plugin's commands (registered by :func:`xinshu.plugins.privacy.register_commands`):

* ``xinshu campaign add CODE NAME --org ORG --instrument ID ... --opens DAY --closes DAY
  --basis consent|statutory_duty [--basis-ref REF] --purpose TEXT [--retention-days N] --by WHO``;
  ``xinshu campaign list``; ``xinshu campaign notice CODE`` (the guardian notice as text);
* ``xinshu consent record CAMPAIGN STUDENT --decision granted|refused|withdrawn --relation R
  --evidence TEXT --by WHO [--at "YYYY-MM-DD HH:MM"]``;
* ``xinshu retention run [--dry-run]`` (:mod:`xinshu.retention`; prints the counts);
* ``xinshu export research --campaign CODE -o FILE.csv|FILE.xlsx --by WHO``: the
  de-identified research export (one row per score, pseudonyms keyed with
  ``XINSHU_PSEUDONYM_KEY`` or the secret key), audited.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from xinshu.campaigns import (
    LEGAL_BASES,
    MAX_RETENTION_DAYS,
    CampaignInput,
    closing_text,
    create_campaign,
    get_campaign,
    local_text,
    parse_local_bound,
    response_count,
)
from xinshu.consent import record_campaign_consent
from xinshu.consent_notice import consent_notice, notice_settings, notice_text
from xinshu.errors import XinshuError
from xinshu.models import Campaign, OrgUnit
from xinshu.research_export import RESEARCH_FORMATS, pseudonym_key, write_research_export


def _open(database: str | None):
    from xinshu.cli import _services

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    return services


def _reporting():
    from xinshu.cli import _reporting as reporting

    return reporting()


@click.group("campaign")
def campaign_group() -> None:
    """Screening campaigns: window, org unit, legal basis, retention (测评活动)."""


@campaign_group.command("add")
@click.argument("code")
@click.argument("name")
@click.option("--org", "org_code", required=True, help="Code of the city, district or school it covers.")
@click.option("--instrument", "instruments", multiple=True, required=True, help="Instrument id; repeat for several.")
@click.option("--opens", required=True, help="First day (Beijing time), YYYY-MM-DD or 'YYYY-MM-DD HH:MM'.")
@click.option("--closes", required=True, help="Last day, inclusive (YYYY-MM-DD = until 24:00 Beijing time).")
@click.option("--basis", type=click.Choice(LEGAL_BASES), required=True, help="Legal basis (PIPL Art. 13).")
@click.option("--basis-ref", default="", help="The documented statutory basis (required with statutory_duty).")
@click.option("--purpose", required=True, help="Purpose of processing, as shown to guardians.")
@click.option("--retention-days", default=3 * 365, show_default=True, type=click.IntRange(1, MAX_RETENTION_DAYS))
@click.option("--by", "actor", required=True, help="Who creates it (recorded).")
@click.option("--database", help="Database URL.")
def campaign_add(**options: Any) -> None:
    """Add campaign CODE named NAME."""
    services = _open(options["database"])
    with _reporting(), services.db.transaction() as session:
        unit = session.scalar(select(OrgUnit).where(OrgUnit.code == options["org_code"]))
        if unit is None:
            raise XinshuError(f"no org unit with code {options['org_code']!r}")
        data = CampaignInput(
            code=options["code"],
            name=options["name"],
            org_unit_id=unit.id,
            instruments=list(options["instruments"]),
            opens_at=parse_local_bound(options["opens"], end=False),
            closes_at=parse_local_bound(options["closes"], end=True),
            legal_basis=options["basis"],
            legal_basis_ref=options["basis_ref"],
            purpose=options["purpose"],
            retention_days=options["retention_days"],
        )
        campaign = create_campaign(session, data, options["actor"], set(services.declarations.instruments))
        click.echo(json.dumps(_campaign_summary(campaign), ensure_ascii=False))


def _campaign_summary(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "code": campaign.code,
        "name": campaign.name,
        "org_unit": campaign.org_unit.code if campaign.org_unit else campaign.org_unit_id,
        "instruments": list(campaign.instruments or []),
        "opens": local_text(campaign.opens_at),
        "closes": closing_text(campaign.closes_at),
        "legal_basis": campaign.legal_basis,
        "legal_basis_ref": campaign.legal_basis_ref,
        "retention_days": campaign.retention_days,
    }


@campaign_group.command("list")
@click.option("--database", help="Database URL.")
def campaign_list(database: str | None) -> None:
    """One JSON line per campaign (times in Beijing time)."""
    services = _open(database)
    with _reporting(), services.db.sessionmaker() as session:
        for campaign in session.scalars(select(Campaign).order_by(Campaign.opens_at, Campaign.id)):
            summary = _campaign_summary(campaign)
            summary["responses"] = response_count(session, campaign)
            click.echo(json.dumps(summary, ensure_ascii=False))


@campaign_group.command("notice")
@click.argument("code")
@click.option("--database", help="Database URL.")
def campaign_notice(code: str, database: str | None) -> None:
    """Print the guardian notice of campaign CODE (purpose, basis, storage, retention, rights, refusal)."""
    services = _open(database)
    with _reporting(), services.db.sessionmaker() as session:
        campaign = get_campaign(session, code)
        titles = {i: (inst.title.get("zh") or i) for i, inst in services.declarations.instruments.items()}
        click.echo(notice_text(campaign, consent_notice(campaign, titles, notice_settings(services.config))))


@click.group("consent")
def consent_group() -> None:
    """Guardians' consent, refusal or withdrawal per campaign."""


@consent_group.command("record")
@click.argument("campaign_code")
@click.argument("student_ref")
@click.option("--decision", type=click.Choice(["granted", "refused", "withdrawn"]), required=True)
@click.option("--relation", required=True, help="father, mother, grandparent or other_guardian.")
@click.option("--evidence", required=True, help="Where the signed receipt is kept (no names or ID numbers).")
@click.option("--at", "at_text", help="When the guardian decided (Beijing time; default now).")
@click.option("--by", "actor", required=True, help="Who records it.")
@click.option("--database", help="Database URL.")
def consent_record(campaign_code, student_ref, decision, relation, evidence, at_text, actor, database) -> None:
    """Record a guardian's decision on CAMPAIGN_CODE for STUDENT_REF (学籍号 or system id)."""
    from xinshu.cli import _student

    services = _open(database)
    with _reporting(), services.db.transaction() as session:
        campaign = get_campaign(session, campaign_code)
        at = parse_local_bound(at_text, end=False) if at_text else None
        consent = record_campaign_consent(
            session, campaign, _student(session, student_ref), decision, relation, evidence, actor, at
        )
        click.echo(f"recorded consent #{consent.id}: {decision} for campaign {campaign.code}")


@click.group("retention")
def retention_group() -> None:
    """Delete what is kept longer than its period (responses, audit rows, messages)."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--database", help="Database URL.")
def retention_run(dry_run: bool, database: str | None) -> None:
    """Run the retention job once and print its counts as JSON (also written to the audit log)."""
    from xinshu.retention import RetentionPolicy, run_retention

    services = _open(database)
    with _reporting():
        policy = RetentionPolicy.from_config(services.config)
        with services.db.transaction() as session:
            report = run_retention(session, policy, dry_run=dry_run, actor="cli:retention")
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))


@click.group("export")
def export_group() -> None:
    """Exports."""


@export_group.command("research")
@click.option("--campaign", "campaign_code", required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="FILE.csv|.xlsx")
@click.option("--by", "actor", default="cli", show_default=True, help="Who exports (recorded).")
@click.option("--database", help="Database URL.")
def export_research(campaign_code: str, output: Path, actor: str, database: str | None) -> None:
    """Write the de-identified export of a campaign: one row per score, pseudonymous students."""
    fmt = output.suffix.lower().lstrip(".")
    services = _open(database)
    with _reporting():
        if fmt not in RESEARCH_FORMATS:
            raise XinshuError("the output file must end in .csv or .xlsx")
        key = pseudonym_key(services.config)
        try:
            with services.db.transaction() as session, output.open("wb") as out:
                campaign = get_campaign(session, campaign_code)
                rows = write_research_export(session, campaign, out, fmt, key, actor)
        except BaseException:
            output.unlink(missing_ok=True)  # no audit row, no file
            raise
        click.echo(json.dumps({"campaign": campaign_code, "rows": rows, "file": str(output)}, ensure_ascii=False))
