"""The shared record's life: reading it, writing a section as a new revision based on
the version the writer saw (412 if it moved on), and its history (revisions), through
one versioned-write helper that the alert thresholds use too (versioned)."""
