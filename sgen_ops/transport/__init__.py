"""The transport: RQ on Redis. Three priority queues carrying ledger job ids to workers, delayed delivery,
withdrawal. The ledger is the truth; what is in Redis can be rebuilt from it (``reconcile``)."""
