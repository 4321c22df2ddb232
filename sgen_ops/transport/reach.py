"""Whether Redis can be reached: the errors that mean it cannot, and ``Unavailable`` naming it in words."""

from __future__ import annotations

import redis

from ..errors import Unavailable

# Redis going away (killed, restarting, loading its data, a replica during a failover): RQ's worker quits on
# these outside its dequeue; sgen-ops' worker waits for Redis to come back.
REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    ConnectionError,
)


def address(client: redis.Redis) -> str:
    """Where ``client``'s Redis is: ``host:port``, or its socket."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def unavailable(exc: BaseException, client: redis.Redis) -> Unavailable | None:
    """``Unavailable`` for an error that means ``client``'s Redis cannot be reached, else None."""
    if isinstance(exc, Unavailable):
        return exc
    if not isinstance(exc, REDIS_DOWN):
        return None
    text = str(exc).lower()
    if "refused" in text:
        reason = "connection refused"
    elif isinstance(exc, redis.TimeoutError) or "timed out" in text or "timeout" in text:
        reason = "the connection timed out"
    elif "loading" in text:
        reason = "it is loading its data"
    elif isinstance(exc, redis.exceptions.ReadOnlyError):
        reason = "it is read-only (a replica, as during a failover)"
    elif "closed" in text or "reset" in text or "broken pipe" in text:
        reason = "the connection was closed"
    else:
        reason = "it does not answer"
    return Unavailable("redis", address(client), reason)
