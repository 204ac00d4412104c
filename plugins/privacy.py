"""Privacy of minors' data: campaigns with their legal basis, guardian consent per campaign,
correction and deletion requests, the retention job and de-identified exports.

This module holds the plugin's hook implementations only; the rules live in
:mod:`xinshu.campaigns`, :mod:`xinshu.consent`, :mod:`xinshu.answer_gate`,
:mod:`xinshu.consent_notice`, :mod:`xinshu.research_export`, :mod:`xinshu.data_requests`
and :mod:`xinshu.retention`, which write the audit rows.

Command line (``register_commands``, :mod:`xinshu.plugins.privacy_cli`): ``xinshu campaign
add|list|notice``, ``xinshu consent record``, ``xinshu retention run`` and ``xinshu export
research``.

Back office (``register_admin_views``, menu 隐私保护); every POST carries the CSRF token:

* 测评活动 (endpoint ``campaigns``, :mod:`xinshu.admin.campaign_view`): campaigns, their
  guardian notice (J5) and consent records;
* 更正与删除请求 (endpoint ``datarequests``, :mod:`xinshu.admin.data_request_view`);
* 去标识化导出 (endpoint ``research_export``, :mod:`xinshu.admin.research_export_view`).

Their forms are in :mod:`xinshu.admin.privacy_forms`, what they reach (org units, students)
in :mod:`xinshu.admin.privacy_scope`.
"""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l

from xinshu import hookimpl
from xinshu.admin.campaign_view import CampaignAdminView
from xinshu.admin.data_request_view import DataRequestAdminView
from xinshu.admin.research_export_view import ResearchExportView
from xinshu.plugins.privacy_cli import campaign_group, consent_group, export_group, retention_group

CATEGORY = _l("隐私保护")


@hookimpl
def register_admin_views(admin: Any, db: Any, app: Any) -> None:
    admin.add_view(CampaignAdminView(db, name=_l("测评活动"), endpoint="campaigns", category=CATEGORY))
    admin.add_view(DataRequestAdminView(db, name=_l("更正与删除请求"), endpoint="datarequests", category=CATEGORY))
    admin.add_view(ResearchExportView(db, name=_l("去标识化导出"), endpoint="research_export", category=CATEGORY))


# --- command line --------------------------------------------------------------------------------


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(campaign_group)
    cli.add_command(consent_group)
    cli.add_command(retention_group)
    cli.add_command(export_group)


__all__ = [
    "CampaignAdminView",
    "DataRequestAdminView",
    "ResearchExportView",
    "register_admin_views",
    "register_commands",
]
