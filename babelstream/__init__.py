"""The apps: the CLI, the process supervisor behind bin/up, the worker runner, the client library, the
load generator, replay and the desktop client. Nothing below this package imports it."""
