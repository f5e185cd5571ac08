"""A Redis server of a test's own that the test can kill and start again on the same port and files, as a Redis
restart does. The class lives in tests.support (the whole run's Redis is one too); these names stay for the
modules that import them from here."""

from tests.support import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
