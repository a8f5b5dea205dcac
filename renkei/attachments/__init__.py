"""Photos and documents attached to a note or a section: stored sealed in frames,
listed, read back and shredded (attachments), photos made safe and small (images)."""
