"""The team's 連絡帳: notes on a patient's timeline, their categories, acknowledgements
(既読), mentions and urgent notes (notes). Escalation of an unacknowledged urgent note is
renkei/patients/escalation.py."""
