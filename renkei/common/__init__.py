"""The common layer every domain builds on, and which imports none of them: the database
(db), the unit of work that ends every request and the steps domains add to its commit
(work), problem+json errors (problems), time as the API writes it (timefmt), keyset
paging (paging), spreadsheet-safe CSV (csvfile), work moved off the event loop
(offload), envelope encryption and the key store (crypto, vault), files sealed as they
arrive (frames), encrypted backups (backup) and retried requests (idempotency)."""
