"""Offline question answering over a folder of documents.

The data's path, one module per step: load → split → index (embed) → retrieve →
answer → present; the types that flow between them are in ``qa.types``, the settings
in ``qa.config``, and ``qa.pipeline`` runs the whole path for one question.
"""
