"""Fake providers speaking each real wire protocol, for tests and `make run` without keys."""
