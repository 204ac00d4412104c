"""The YAML editor (声明编辑): instruments, rules, intervention templates and import profiles,
validated with line numbers, diffed against the active version, every version kept.
"""
