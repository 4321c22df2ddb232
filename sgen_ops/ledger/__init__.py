"""The ledger: the durable record of every job in SQL (``store``: models, migrations, sessions), the job book
through which every state change goes (``jobs``), operator queries, throughput statistics, the Activity Log,
operator notes, tokens, pauses, masking rules as stored, and schedules. It sends deliveries through the
transport; it never runs attempts."""
