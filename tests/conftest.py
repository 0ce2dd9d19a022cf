"""Puts ``tests/`` on the import path so that test modules of every package can share the
helper modules kept here (e.g. ``fault_injection``)."""
