"""The transport: RQ on Redis. Three priority queues carrying ledger job ids to workers, delayed delivery,
withdrawal (``queue``); every RQ internal sgen-ops relies on, with the RQ releases it was checked against, and
the worker's side of taking deliveries (``rq``). The ledger is the truth; what is in Redis can be rebuilt from
it (``reconcile``)."""
