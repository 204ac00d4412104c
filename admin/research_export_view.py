"""去标识化导出 (endpoint ``research_export``, ``/admin/research_export/``): bureau and district
administrators download the de-identified export of a campaign (:mod:`xinshu.research_export`),
limited to the students under their org units. The POST carries the CSRF token; the file is
sent only once its audit row is committed.
"""

from __future__ import annotations

import io
import logging
import os

from flask import abort, current_app, request, send_file
from flask_admin import expose
from flask_babel import gettext as _

from xinshu.admin.access import logged_in_user
from xinshu.admin.base import SecureDbView
from xinshu.admin.privacy_forms import ExportForm, options
from xinshu.admin.privacy_scope import role_prefixes, students_under
from xinshu.campaigns import visible_campaigns
from xinshu.errors import XinshuError
from xinshu.models import Campaign
from xinshu.research_export import pseudonym_key, write_research_export

log = logging.getLogger(__name__)

#: Who downloads de-identified research exports (roles.md: "de-identified only").
EXPORT_ROLES = ("bureau_admin", "district_admin")


class ResearchExportView(SecureDbView):
    """去标识化导出: a campaign's scores without identifiers, for bureau and district administrators."""

    required_roles = EXPORT_ROLES

    @expose("/", methods=("GET", "POST"))
    def index(self):
        session = self.db.session
        user = logged_in_user()
        prefixes = role_prefixes(user, EXPORT_ROLES)
        campaigns = list(session.scalars(visible_campaigns(user).order_by(Campaign.opens_at.desc())))
        form = ExportForm()
        form.campaign.choices = options((c.id, _("%(name)s（%(code)s）", name=c.name, code=c.code)) for c in campaigns)
        if form.validate_on_submit():
            campaign = next((c for c in campaigns if c.id == form.campaign.data), None)
            if campaign is None:
                abort(404)
            try:
                key = pseudonym_key(current_app.config)
                buffer = io.BytesIO()
                rows = write_research_export(
                    session, campaign, buffer, form.fmt.data, key, user, students_under(prefixes)
                )
                session.commit()  # the audit row; the file is sent only once it is committed
            except XinshuError as exc:
                session.rollback()
                form.campaign.errors = [*form.campaign.errors, str(exc)]
            except Exception:
                session.rollback()
                raise
            else:
                log.info("research export of campaign %s by user id %s: %s rows", campaign.id, user.id, rows)
                buffer.seek(0)
                name = f"research-{campaign.code}.{form.fmt.data}"
                return send_file(buffer, as_attachment=True, download_name=name, max_age=0)
        status = 400 if request.method == "POST" else 200
        own_key = bool(current_app.config.get("PSEUDONYM_KEY") or os.environ.get("XINSHU_PSEUDONYM_KEY"))
        return self.render("admin/xinshu_privacy_export.html", form=form, own_key=own_key), status
