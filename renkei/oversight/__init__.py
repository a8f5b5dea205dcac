"""The auditor's desk: searching and exporting the access log, finding a patient by
name, the log's proofs and checkpoints as an auditor asks for them, and the usage
figures (reading). The log itself is renkei/access_log/."""
