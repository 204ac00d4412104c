"""The audit log in the back office (审计日志): a read-only, filterable list for the bureau."""
