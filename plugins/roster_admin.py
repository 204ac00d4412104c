"""Roster upload in the back office: preview (new, changed, moved, missing), the per-row
error table, school-year rollover and transfers between schools.
"""
