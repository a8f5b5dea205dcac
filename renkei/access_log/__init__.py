"""The access log: every request leaves one entry (entries, written by the unit of
work's commit step), placed in a Merkle tree by the sealer (sealer, tree, merkle), whose
signed heads (keyring, signed_note) are also kept outside the database (sinks).
Verification recomputes it all (verification); retention moves old entries into a
sealed archive (archive). Auditors read it through renkei/oversight/."""
