"""Thin pipeline wiring: one ``create_pipeline()`` per stage, no logic (the logic lives in ``nodes``)."""
