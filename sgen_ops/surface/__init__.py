"""The Jobs surface: every operator operation on one request path (admin gate, capability, account scope,
masking, the change, the Activity Log), declared once (``declarations``), decided by one resolver."""
