"""Who hears of a change, and how. Realtime events for the open pages, stored with each
recipient's seq at commit (events); pushes and mails decided by each person's settings
(tell), queued as deliveries and sent after the commit (deliveries) by Web Push
(webpush) or SMTP (mail). Messages carry identifiers, never names or clinical text."""
