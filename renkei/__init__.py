"""Renkei (連携): the service core — settings, crypto and keys, authorisation, the unit
of work and the access log, and the services every door calls (patients, record,
notes, teams, break-glass, directory). The app factory is renkei.app.create_app;
docs/ARCHITECTURE.md maps the rest."""
