"""What the shared record is made of: the ten sections of MHLW 表3, each with its titles,
the schema of its content (phone numbers, ADL levels, tables), its form layout and the
team roles that may write it (catalogue), and the stable ids of list rows (rows). Whether a person may write a section is
decided in renkei/patients/authz.py `may_write`, from each section's `writers` in
catalogue.py (physicians and nurses write every section; `writers` names the others)."""
