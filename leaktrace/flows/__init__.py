"""Orchestration of long work: one module per flow, each calling store/, media/ and storage/."""
