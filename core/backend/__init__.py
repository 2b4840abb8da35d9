"""Prompter as a Label Studio ML backend: a published version answers inside Label Studio.

- ``publications``: which version serves which project, and connecting the backend to Label Studio
  (``connect``, ``disconnect``, ``status``).
- ``answering``: the calls the backend makes for Label Studio, recorded as runs of kind "backend"
  (so budgets, spending limits and the cache hold as for any run).
- ``instructions``: what annotators typed in the interactive prompter, kept from the webhook.
- ``server``: the HTTP server Label Studio calls (``python -m core backend serve``).
"""
