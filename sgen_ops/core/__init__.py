"""The core: job states, durations and times, validation, the task registry, masking rules and role
capabilities. Pure code: no I/O, no clock reads but ``times.utcnow``; every layer above builds on it."""
