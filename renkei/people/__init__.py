"""The people who use Renkei: signing in, sessions, tokens and second factors (auth),
password rules (passwords), invitations (invitations), the administrators' directory
(directory), access resets (resets), the second person who confirms what an
administrator set (confirmations), and what an account is before any patient: confirmed,
administrator, auditor (staff)."""
