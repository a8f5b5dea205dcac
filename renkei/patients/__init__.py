"""Patients and who may see them. The one authorisation path every access goes through
(authz); registering, listing and reading patients (registry); consent (consent); the
team and its roles (teams), an administrator's appointment of a manager (appointments),
emergency access (breakglass), and the escalation of urgent notes along the team's call
list (escalation)."""
