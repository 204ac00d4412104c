"""Staff accounts and the audit log in the back office: user management within one's own
scope (roles and org units, before/after audited) and the read-only audit log (审计日志).
"""
