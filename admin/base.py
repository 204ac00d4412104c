"""Back-office base classes: login, CSRF, org-unit scoping and audited reads on every view.

Every view derives from :class:`SecureView`, :class:`SecureModelView` or
:class:`xinshu.admin.home.SecureIndexView`; all of them override
``is_accessible`` (security.md A2: Flask-Admin is open by default) and answer
an anonymous visitor with a redirect to the login page and anyone else who may
not see the page with 403.

:class:`SecureModelView` filters every list, count and single-row lookup of a
scoped model through :func:`xinshu.scoping.scope_query` (deny by default: a
model that is not scoped shows no rows unless the view sets ``unscoped =
True`` and restricts access itself). Its forms, delete forms and bulk-action
forms carry and validate a CSRF token, the same token Flask-WTF's
``CSRFProtect`` checks on every POST (security.md B1). A view with
``audit_type`` writes an audit row before showing one record (details, edit)
and, with ``audit_list``, before showing a list page (security.md I1).

Sorting is by ``column_sortable_list`` only: Flask-Admin reads ``?sort=`` as a
column *index* (anything else is ignored) and sorts only by whitelisted
columns; page numbers are clamped, so no request reaches the database with a
negative or huge offset (security.md F1).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

from flask import abort, has_request_context, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.form import SecureForm
from flask_wtf.csrf import generate_csrf, validate_csrf
from sqlalchemy import false, func, select
from wtforms.csrf.core import CSRF

from xinshu.admin.access import MAX_ID, audit_read, logged_in_user, user_roles
from xinshu.admin.formatting import TYPE_FORMATTERS
from xinshu.scoping import SCOPED_MODELS, scope_query

#: The highest list page served (50 rows a page: a million rows).
MAX_PAGE = 20_000


class AccessMixin:
    """Login required; ``required_roles`` (any of) narrows a view further."""

    required_roles: tuple[str, ...] = ()

    def is_accessible(self) -> bool:
        """True when a logged-in active user holds one of ``required_roles`` (if any)."""
        user = logged_in_user()
        if user is None:
            return False
        return not self.required_roles or bool(user_roles(user) & set(self.required_roles))

    def inaccessible_callback(self, name: str, **kwargs: Any):
        """Redirect anonymous visitors to the login page; 403 for everyone else."""
        if logged_in_user() is None:
            return redirect(url_for("auth.login", next=_current_path()))
        abort(403)


def _current_path() -> str:
    path = request.full_path
    return path[:-1] if path.endswith("?") else path


# --- CSRF -------------------------------------------------------------------


class FlaskWTFCSRF(CSRF):
    """WTForms CSRF backed by Flask-WTF: one token for the form and ``CSRFProtect``.

    Flask-Admin's :class:`~flask_admin.form.SecureForm` uses WTForms'
    ``SessionCSRF``; both it and ``CSRFProtect`` read the one ``csrf_token``
    field and neither accepts the other's token, so every admin POST would fail.
    """

    def generate_csrf_token(self, csrf_token_field) -> str:
        return generate_csrf()

    def validate_csrf_token(self, form, field) -> None:
        validate_csrf(field.data)  # raises wtforms.ValidationError


class XinshuSecureForm(SecureForm):
    """Flask-Admin's SecureForm with the Flask-WTF token: model forms, delete forms and
    bulk-action forms (Flask-Admin derives all three from ``form_base_class``)."""

    class Meta:
        csrf = True
        csrf_class = FlaskWTFCSRF


# --- base views -------------------------------------------------------------


class SecureView(AccessMixin, BaseView):
    """A plain back-office page that requires login."""


class SecureDbView(SecureView):
    """A plain back-office page that reads the database.

    Construct with the :class:`xinshu.db.Database` (or anything with a ``.session``)
    as the first argument; :attr:`session` is the request-scoped session.
    """

    def __init__(self, db: Any, *args: Any, **kwargs: Any):
        self.db = db
        super().__init__(*args, **kwargs)

    @property
    def session(self) -> Any:
        """The request-scoped SQLAlchemy session."""
        return self.db.session


class SecureModelView(AccessMixin, ModelView):
    """A model view with login, CSRF, org-unit scoping and audited reads.

    Construct with the :class:`xinshu.db.Database` (or anything with a
    ``.session``) as the second argument. Read-only by default.
    """

    form_base_class = XinshuSecureForm
    can_create = False
    can_edit = False
    can_delete = False
    can_export = False
    can_view_details = True
    can_set_page_size = False
    column_display_pk = True
    page_size = 50
    column_type_formatters = TYPE_FORMATTERS
    column_type_formatters_detail = TYPE_FORMATTERS
    #: Show every row of a model that is not in :data:`xinshu.scoping.SCOPED_MODELS`
    #: (the view must then restrict access itself, e.g. with ``required_roles``).
    unscoped = False
    #: Object type of the audit row written before one record is shown (None: not audited).
    audit_type: ClassVar[str | None] = None
    #: Also audit list pages (the ids shown) of this view.
    audit_list: ClassVar[bool] = False

    def __init__(self, model: type, db: Any, *args: Any, **kwargs: Any):
        # Flask-Admin only unwraps Flask-SQLAlchemy objects; anything else passed as
        # ``session`` is used directly, so hand it the scoped session. Passing a
        # scoped session is deprecated for Flask-Admin 3.0; the warning is expected.
        session = getattr(db, "session", db)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Passing a session object directly", category=DeprecationWarning)
            super().__init__(model, session, *args, **kwargs)

    # --- scoping

    def _restrict(self, query):
        """Keep the rows of ``query`` the current user may see (the model needs an ``id``)."""
        if self.model in SCOPED_MODELS:
            visible = scope_query(select(self.model.id), self.model, logged_in_user())
            return query.filter(self.model.id.in_(visible))
        if self.unscoped:
            return query
        return query.filter(false())

    def get_query(self):
        """Rows of the model the current user may see."""
        return self._restrict(self.session.query(self.model))

    def get_count_query(self):
        """Count of the rows :meth:`get_query` returns (before search and filters)."""
        return self._restrict(self.session.query(func.count("*")).select_from(self.model))

    def get_one(self, pk_value: Any):
        """The row with primary key ``pk_value`` if the current user may see it, else None.

        Flask-Admin then answers as for a missing record ("Record does not exist"
        and back to the list), so an out-of-scope id reveals nothing.
        """
        pk = parse_id(pk_value)
        if pk is None:
            return None
        return self.get_query().filter(self.model.id == pk).one_or_none()

    def _apply_pagination(self, query, page, page_size):
        page = min(max(page or 0, 0), MAX_PAGE)
        return super()._apply_pagination(query, page, page_size)

    # --- audited reads

    def get_list(self, page, sort_column, sort_desc, search, filters, execute=True, page_size=None):
        """The list rows; on this view's own list page with ``audit_list``, audited first."""
        count, rows = super().get_list(page, sort_column, sort_desc, search, filters, execute, page_size)
        if self.audit_list and execute and has_request_context() and request.endpoint == f"{self.endpoint}.index_view":
            rows = list(rows)
            audit_read("read", self.audit_type or self.endpoint, "", ids=[row.id for row in rows], count=count)
        return count, rows

    def audit_record(self) -> None:
        """Audit the read of the record named by ``?id=`` (if visible) before it is shown."""
        if self.audit_type is None:
            return
        model = self.get_one(request.args.get("id"))
        if model is not None:
            audit_read("read", self.audit_type, model.id)

    @expose("/details/")
    def details_view(self):
        """The record's details, after the audit row of the read."""
        self.audit_record()
        return super().details_view()


def parse_id(value: Any) -> int | None:
    """A primary key from a request value: a positive integer the database can hold, else None."""
    try:
        pk = int(value)
    except (TypeError, ValueError):
        return None
    return pk if 0 < pk <= MAX_ID else None


__all__ = [
    "MAX_ID",
    "MAX_PAGE",
    "AccessMixin",
    "FlaskWTFCSRF",
    "SecureDbView",
    "SecureModelView",
    "SecureView",
    "XinshuSecureForm",
    "parse_id",
]
