"""Orchestration: work that touches both rows (through `store/`) and bytes (through `storage/`).

Routes and queue tasks call these functions; `store/` services never do file I/O themselves.
"""
